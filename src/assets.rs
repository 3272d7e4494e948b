//! The files under assets/, embedded in the binary and served under /static/ with a content
//! type, an ETag and a Cache-Control header.

use hyper::header::HeaderValue;
use include_dir::{Dir, include_dir};
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hasher};
use std::sync::LazyLock;

static ASSETS: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/assets");

/// The asset file names, set by build.rs. Reading it here makes cargo recompile this crate when
/// a file is added under assets/, which include_dir! alone would not notice.
const FILES: &str = env!("PENNY_ASSET_FILES");

/// An embedded file, ready to serve.
pub struct Asset {
    pub body: &'static [u8],
    pub content_type: HeaderValue,
    /// A strong validator: a hash of the content, quoted.
    pub etag: HeaderValue,
}

static TABLE: LazyLock<HashMap<&'static str, Asset>> = LazyLock::new(|| {
    let mut table = HashMap::new();
    let mut dirs = vec![&ASSETS];
    while let Some(dir) = dirs.pop() {
        dirs.extend(dir.dirs());
        for file in dir.files() {
            let path = file.path().to_str().expect("asset paths are UTF-8");
            table.insert(path, asset(path, file.contents()));
        }
    }
    debug_assert_eq!(table.len(), FILES.split(',').count());
    table
});

fn asset(path: &str, body: &'static [u8]) -> Asset {
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let content_type = match mime.type_() {
        mime_guess::mime::TEXT => format!("{mime}; charset=utf-8"),
        _ if mime.subtype() == mime_guess::mime::SVG => format!("{mime}; charset=utf-8"),
        _ => mime.to_string(),
    };
    let mut hasher = DefaultHasher::new();
    hasher.write(body);
    Asset {
        body,
        content_type: HeaderValue::try_from(content_type).expect("a MIME type is a header value"),
        etag: HeaderValue::try_from(format!("\"{:016x}\"", hasher.finish()))
            .expect("a quoted hex string is a header value"),
    }
}

/// The asset at `path` (relative to assets/), if there is one. Only exact names match, so `..`
/// or an encoded path can never reach outside the embedded files.
pub fn get(path: &str) -> Option<&'static Asset> {
    TABLE.get(path)
}

/// Whether an `If-None-Match` header lists `etag` (or is `*`), comparing weakly as RFC 9110
/// says for GET.
pub fn matches_etag(if_none_match: &HeaderValue, etag: &HeaderValue) -> bool {
    let Ok(list) = if_none_match.to_str() else {
        return false;
    };
    let etag = etag.to_str().expect("our ETags are ASCII");
    list.split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_under_assets_is_served_with_its_type() {
        let css = get("penny.css").expect("the stylesheet is embedded");
        assert_eq!(css.content_type, "text/css; charset=utf-8");
        assert_eq!(get("favicon.ico").unwrap().content_type, "image/x-icon");
        for name in FILES.split(',') {
            let name = name.strip_prefix("assets/").unwrap();
            assert!(
                get(name).is_some(),
                "{name} is listed by build.rs but not embedded"
            );
        }
        assert!(get("../Cargo.toml").is_none());
    }

    #[test]
    fn if_none_match_compares_weakly_and_accepts_lists() {
        let etag = HeaderValue::from_static("\"abc\"");
        for header in ["\"abc\"", "W/\"abc\"", "\"x\", \"abc\"", "*"] {
            assert!(
                matches_etag(&HeaderValue::from_static(header), &etag),
                "{header}"
            );
        }
        assert!(!matches_etag(&HeaderValue::from_static("\"abcd\""), &etag));
    }
}

//! The files under assets/, embedded in the binary with a brotli and a gzip copy of each (made
//! by build.rs), and served under /static/ two ways: under a name with a hash of the content
//! in it (`penny.3f2a1b9c0d.css`), which the pages link and browsers may keep for a year, and
//! under the plain name, which browsers check with the ETag each time.

use hyper::header::{HeaderMap, HeaderValue};
use include_dir::{Dir, include_dir};
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hasher};
use std::sync::LazyLock;

static ASSETS: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/assets");
static COMPRESSED: Dir<'static> = include_dir!("$OUT_DIR/compressed");

/// The asset file names, set by build.rs. Reading it here makes cargo recompile this crate when
/// a file is added under assets/, which include_dir! alone would not notice.
const FILES: &str = env!("PENNY_ASSET_FILES");

/// Hex digits of the content hash in a hashed name: enough that two versions of a file never
/// share one in practice.
const HASH_DIGITS: usize = 10;

/// An embedded file, ready to serve.
pub struct Asset {
    pub content_type: HeaderValue,
    /// The name with the content's hash in it, e.g. `/static/penny.3f2a1b9c0d.css`.
    pub url: String,
    identity: Encoded,
    brotli: Option<Encoded>,
    gzip: Option<Encoded>,
}

/// One of an asset's encodings: its bytes, how it is labelled, and its ETag (each encoding has
/// its own, as a strong validator must).
pub struct Encoded {
    pub body: &'static [u8],
    /// The Content-Encoding, or `None` for the file as it is.
    pub coding: Option<HeaderValue>,
    /// A strong validator: a hash of the file's content and the coding, quoted.
    pub etag: HeaderValue,
}

/// How an asset was asked for.
pub enum Name {
    /// By the plain name: check with the ETag before using a kept copy.
    Plain,
    /// By the name with the current content's hash: never changes, keep it for a year.
    Hashed,
    /// By a hashed name of another version (a page from before a deploy): the current content,
    /// checked like the plain name, since it is not what that name was.
    OtherVersion,
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
    let hash = format!("{:016x}", hasher.finish());
    // build.rs wrote NAME.br and NAME.gz where they pay.
    let encoded = |extension: &str, coding: Option<&'static str>| {
        let body = match coding {
            None => body,
            Some(_) => COMPRESSED
                .get_file(format!("{path}.{extension}"))?
                .contents(),
        };
        let suffix = coding.map_or(String::new(), |_| format!("-{extension}"));
        Some(Encoded {
            body,
            coding: coding.map(HeaderValue::from_static),
            etag: HeaderValue::try_from(format!("\"{hash}{suffix}\""))
                .expect("a quoted hex string is a header value"),
        })
    };
    let url = match path.rsplit_once('.') {
        Some((stem, extension)) => format!("/static/{stem}.{}.{extension}", &hash[..HASH_DIGITS]),
        None => format!("/static/{path}.{}", &hash[..HASH_DIGITS]),
    };
    Asset {
        content_type: HeaderValue::try_from(content_type).expect("a MIME type is a header value"),
        url,
        identity: encoded("", None).expect("the file itself"),
        brotli: encoded("br", Some("br")),
        gzip: encoded("gz", Some("gzip")),
    }
}

/// The asset a path under /static/ names (relative to assets/), and how it was named. Only
/// exact names, or exact names with a hash of hex digits added before the extension, match, so
/// `..` or an encoded path can never reach outside the embedded files.
pub fn get(path: &str) -> Option<(&'static Asset, Name)> {
    if let Some(asset) = TABLE.get(path) {
        return Some((asset, Name::Plain));
    }
    let (rest, extension) = path.rsplit_once('.')?;
    let (stem, hash) = rest.rsplit_once('.')?;
    if hash.len() != HASH_DIGITS || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let asset = TABLE.get(format!("{stem}.{extension}").as_str())?;
    // The URL's hash: between its last two dots.
    let current = asset.url.rsplit('.').nth(1) == Some(hash);
    Some((
        asset,
        if current {
            Name::Hashed
        } else {
            Name::OtherVersion
        },
    ))
}

/// The URL the pages link `name` (relative to assets/) by: its hashed name.
///
/// # Panics
/// If there is no such asset: the pages name only files that are embedded.
pub fn url(name: &str) -> &'static str {
    &TABLE
        .get(name)
        .unwrap_or_else(|| panic!("{name} is not under assets/"))
        .url
}

impl Asset {
    /// The best encoding of this asset that a request's Accept-Encoding allows: brotli, then
    /// gzip, then the file as it is.
    pub fn encoding_for(&self, headers: &HeaderMap) -> &Encoded {
        let accepts = |coding| accepts_coding(headers, coding);
        match (&self.brotli, &self.gzip) {
            (Some(brotli), _) if accepts("br") => brotli,
            (_, Some(gzip)) if accepts("gzip") => gzip,
            _ => &self.identity,
        }
    }

    /// The file as it is, for tests and checks.
    pub fn identity(&self) -> &Encoded {
        &self.identity
    }
}

/// Whether the Accept-Encoding headers accept `coding` (RFC 9110 12.5.3): listed, or covered
/// by `*`, with a q-value above 0. `x-gzip` counts as `gzip`.
fn accepts_coding(headers: &HeaderMap, coding: &str) -> bool {
    let mut named = None;
    let mut any = None;
    let offers = headers
        .get_all(hyper::header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','));
    for offer in offers {
        let mut parts = offer.split(';');
        let name = parts.next().unwrap_or_default().trim();
        let q = parts
            .filter_map(|param| {
                param
                    .trim()
                    .strip_prefix("q=")
                    .or(param.trim().strip_prefix("Q="))
            })
            .map(|q| q.trim().parse::<f32>().unwrap_or(0.0))
            .next_back()
            .unwrap_or(1.0);
        let name = if name.eq_ignore_ascii_case("x-gzip") {
            "gzip"
        } else {
            name
        };
        if name.eq_ignore_ascii_case(coding) {
            named = Some(q > 0.0);
        } else if name == "*" {
            any = Some(q > 0.0);
        }
    }
    named.or(any).unwrap_or(false)
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

    fn asked(accept_encoding: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            hyper::header::ACCEPT_ENCODING,
            HeaderValue::from_str(accept_encoding).unwrap(),
        );
        headers
    }

    #[test]
    fn every_file_under_assets_is_served_with_its_type() {
        let (css, _) = get("penny.css").expect("the stylesheet is embedded");
        assert_eq!(css.content_type, "text/css; charset=utf-8");
        assert_eq!(get("favicon.ico").unwrap().0.content_type, "image/x-icon");
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
    fn hashed_names_find_their_file_and_say_whether_it_is_the_current_version() {
        let url = url("penny.css");
        let name = url.strip_prefix("/static/").unwrap();
        assert!(
            name.starts_with("penny.") && name.ends_with(".css"),
            "{url}"
        );
        assert!(matches!(get(name), Some((_, Name::Hashed))));
        assert!(matches!(
            get("penny.0123456789.css"),
            Some((_, Name::OtherVersion))
        ));
        for wrong in [
            "penny.012345678.css",
            "penny.012345678g.css",
            "nope.0123456789.css",
        ] {
            assert!(get(wrong).is_none(), "{wrong}");
        }
    }

    #[test]
    fn the_best_accepted_encoding_is_chosen() {
        let (css, _) = get("penny.css").unwrap();
        let coding = |accept: &str| {
            css.encoding_for(&asked(accept))
                .coding
                .as_ref()
                .map(|c| c.to_str().unwrap().to_owned())
        };
        assert_eq!(coding("gzip, deflate, br, zstd").as_deref(), Some("br"));
        assert_eq!(coding("gzip").as_deref(), Some("gzip"));
        assert_eq!(coding("x-gzip").as_deref(), Some("gzip"));
        assert_eq!(coding("br;q=0, gzip;q=0.5").as_deref(), Some("gzip"));
        assert_eq!(coding("*").as_deref(), Some("br"));
        assert_eq!(coding("*;q=0").as_deref(), None);
        assert_eq!(coding("br;q=0, *").as_deref(), Some("gzip"));
        assert_eq!(coding("identity").as_deref(), None);
        assert_eq!(coding("").as_deref(), None);
        assert!(css.encoding_for(&HeaderMap::new()).coding.is_none());
        let (ico, _) = get("favicon.ico").unwrap();
        assert!(
            ico.encoding_for(&asked("br, gzip")).coding.is_none(),
            "an .ico barely compresses: sent as it is"
        );
    }

    #[test]
    fn each_encoding_has_its_own_etag() {
        let (css, _) = get("penny.css").unwrap();
        let tags: std::collections::HashSet<_> = ["br", "gzip", "identity"]
            .iter()
            .map(|accept| css.encoding_for(&asked(accept)).etag.clone())
            .collect();
        assert_eq!(tags.len(), 3);
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

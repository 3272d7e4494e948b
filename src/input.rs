//! Outside input made safe: the query string, the author typed into the form and the
//! `prev_author` cookie. Everything here is pure and rejects what it cannot read exactly.

use cookie::{Cookie, SameSite};
use hyper::header::{COOKIE, HeaderMap, HeaderValue};

/// The longest author name a search accepts, in characters.
pub const MAX_AUTHOR_CHARS: usize = 100;

/// The cookie that remembers the previous search.
pub const PREV_AUTHOR: &str = "prev_author";

/// Input that cannot be used; the message is safe to show (it never repeats the input).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InputError {
    #[error("The query string has a malformed percent escape.")]
    MalformedEscape,
    #[error("The query string is not valid UTF-8.")]
    InvalidUtf8,
    #[error("The query string contains a NUL character.")]
    Nul,
    #[error("An author name can be at most 100 characters long.")]
    AuthorTooLong,
}

/// The value of the first `name=` parameter in a query string, decoded as a form would encode
/// it (`+` is a space). Any malformed pair makes the whole query an error, not only `name`'s.
pub fn query_param(query: Option<&str>, name: &str) -> Result<Option<String>, InputError> {
    let mut found = None;
    for pair in query
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode_component(key)?;
        let value = decode_component(value)?;
        if found.is_none() && key == name {
            found = Some(value);
        }
    }
    Ok(found)
}

fn decode_component(raw: &str) -> Result<String, InputError> {
    percent_decode_strict(&raw.replace('+', " "))
}

/// Percent-decodes `raw`, refusing malformed escapes, invalid UTF-8 and NUL.
fn percent_decode_strict(raw: &str) -> Result<String, InputError> {
    let bytes = raw.as_bytes();
    for (i, _) in raw.match_indices('%') {
        let escape = bytes.get(i + 1..i + 3).ok_or(InputError::MalformedEscape)?;
        if !escape.iter().all(u8::is_ascii_hexdigit) {
            return Err(InputError::MalformedEscape);
        }
    }
    let decoded = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| InputError::InvalidUtf8)?;
    if decoded.contains('\0') {
        return Err(InputError::Nul);
    }
    Ok(decoded.into_owned())
}

/// The author to search for: `author` trimmed, or `None` when blank or missing.
pub fn author(query: Option<&str>) -> Result<Option<String>, InputError> {
    let Some(author) = query_param(query, "author")? else {
        return Ok(None);
    };
    let author = author.trim();
    if author.chars().count() > MAX_AUTHOR_CHARS {
        return Err(InputError::AuthorTooLong);
    }
    Ok((!author.is_empty()).then(|| author.to_owned()))
}

/// The previous search from the `prev_author` cookie. A cookie that does not decode, or holds
/// something no search would have stored, is ignored.
pub fn prev_author(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|header| header.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|cookie| cookie.name() == PREV_AUTHOR)
        .and_then(|cookie| percent_decode_strict(cookie.value()).ok())
        .filter(|value| {
            let trimmed = value.trim();
            !trimmed.is_empty()
                && trimmed.len() == value.len()
                && value.chars().count() <= MAX_AUTHOR_CHARS
                && !value.contains('\0')
        })
}

/// The Set-Cookie value remembering `author`: percent-encoded, so any text round-trips and none
/// can break out of the header. `secure` when the visitor came over https.
pub fn prev_author_cookie(author: &str, secure: bool) -> HeaderValue {
    let cookie = Cookie::build((PREV_AUTHOR, author))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
        .build();
    HeaderValue::try_from(cookie.encoded().to_string())
        .expect("a percent-encoded cookie is printable ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(cookie: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_str(cookie).unwrap());
        headers
    }

    #[test]
    fn query_params_decode_like_a_form() {
        let query = Some("x=1&author=K%C3%A9r+nighan&author=second");
        assert_eq!(query_param(query, "author"), Ok(Some("Kér nighan".into())));
        assert_eq!(query_param(query, "title"), Ok(None));
        assert_eq!(
            query_param(Some("author"), "author"),
            Ok(Some(String::new()))
        );
        assert_eq!(query_param(None, "author"), Ok(None));
    }

    #[test]
    fn malformed_queries_are_errors_wherever_they_are() {
        for bad in ["author=%", "author=%4", "author=%zz", "other=%g1&author=x"] {
            assert_eq!(
                query_param(Some(bad), "author"),
                Err(InputError::MalformedEscape),
                "{bad}"
            );
        }
        assert_eq!(
            query_param(Some("author=%FF"), "author"),
            Err(InputError::InvalidUtf8)
        );
        assert_eq!(
            query_param(Some("author=a%00b"), "author"),
            Err(InputError::Nul)
        );
    }

    #[test]
    fn authors_are_trimmed_and_blank_is_none() {
        assert_eq!(author(Some("author=+%20Ker%09")), Ok(Some("Ker".into())));
        assert_eq!(author(Some("author=+++")), Ok(None));
        assert_eq!(author(Some("")), Ok(None));
    }

    #[test]
    fn authors_over_a_hundred_characters_are_refused() {
        let exactly = "é".repeat(100);
        let query = format!("author={exactly}");
        assert_eq!(author(Some(&query)), Ok(Some(exactly)));
        let query = format!("author={}", "é".repeat(101));
        assert_eq!(author(Some(&query)), Err(InputError::AuthorTooLong));
    }

    #[test]
    fn the_cookie_round_trips_any_text() {
        for text in [
            "Kernighan",
            "Brontë; \"x\"=1, y",
            "50% off\\_",
            "<script>",
            "日本語 ✓",
        ] {
            let set = prev_author_cookie(text, false);
            let pair = set.to_str().unwrap().split(';').next().unwrap();
            assert_eq!(
                prev_author(&headers(pair)).as_deref(),
                Some(text),
                "{set:?}"
            );
        }
    }

    #[test]
    fn the_cookie_has_its_attributes_and_secure_only_over_https() {
        let plain = prev_author_cookie("a", false);
        assert_eq!(plain, "prev_author=a; HttpOnly; SameSite=Lax; Path=/");
        let secure = prev_author_cookie("a", true);
        assert!(secure.to_str().unwrap().contains("; Secure"), "{secure:?}");
    }

    #[test]
    fn the_cookie_cannot_inject_headers() {
        let set = prev_author_cookie("x\r\nSet-Cookie: admin=1", false);
        assert!(
            set.to_str()
                .unwrap()
                .starts_with("prev_author=x%0D%0ASet-Cookie%3A%20admin%3D1;")
        );
    }

    #[test]
    fn malformed_or_implausible_cookies_are_ignored() {
        assert_eq!(prev_author(&headers("prev_author=%FF")), None);
        assert_eq!(prev_author(&headers("prev_author=%")), None);
        assert_eq!(prev_author(&headers("prev_author=%zz")), None);
        assert_eq!(prev_author(&headers("prev_author=a%00")), None);
        assert_eq!(prev_author(&headers("prev_author=")), None);
        assert_eq!(prev_author(&headers("prev_author=%20x")), None);
        let long = format!("prev_author={}", "a".repeat(101));
        assert_eq!(prev_author(&headers(&long)), None);
        assert_eq!(
            prev_author(&headers("junk; =; prev_author=Ker")).as_deref(),
            Some("Ker")
        );
    }
}

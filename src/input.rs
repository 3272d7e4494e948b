//! Outside input made safe: the query string, the author typed into the form and the
//! `prev_author` cookie. Everything here is pure and rejects what it cannot read exactly.

use crate::db::{Cursor, Position};
use cookie::{Cookie, SameSite};
use hyper::header::{COOKIE, HeaderMap, HeaderValue};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

/// The longest author name a search accepts, in characters.
pub const MAX_AUTHOR_CHARS: usize = 100;

/// The highest page number a page link may carry (a page number only numbers the results).
pub const MAX_PAGE: u64 = 100_000_000;

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
    #[error("An author name cannot contain control characters.")]
    ControlCharacter,
    #[error("That page link is not valid: start a new search.")]
    BadPageLink,
}

/// A search as the query string asks for it: `author`, and `after` or `before` with `page` for
/// a page other than the first.
#[derive(Debug, PartialEq, Eq)]
pub struct Search {
    pub author: String,
    pub position: Position,
    /// The page's number, from 1; always 1 for the first page.
    pub page: u64,
}

/// The search in a query string; `None` when the author is blank or missing. Each parameter is
/// decoded once, in one pass; a malformed pair anywhere makes the whole query an error.
pub fn search(query: Option<&str>) -> Result<Option<Search>, InputError> {
    let (mut author, mut after, mut before, mut page) = (None, None, None, None);
    for pair in query
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (key, value) = (decode_component(key)?, decode_component(value)?);
        let slot = match key.as_str() {
            "author" => &mut author,
            "after" => &mut after,
            "before" => &mut before,
            "page" => &mut page,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(value);
        }
    }
    let Some(author) = author
        .as_deref()
        .map(str::trim)
        .filter(|author| !author.is_empty())
    else {
        return Ok(None);
    };
    if author.chars().count() > MAX_AUTHOR_CHARS {
        return Err(InputError::AuthorTooLong);
    }
    if !is_plain_text(author) {
        return Err(InputError::ControlCharacter);
    }
    // Accents alone, say: nothing to search by.
    if crate::fold::fold(author).is_empty() {
        return Ok(None);
    }
    let position = match (after, before) {
        (None, None) => Position::First,
        (Some(after), None) => Position::After(cursor(&after)?),
        (None, Some(before)) => Position::Before(cursor(&before)?),
        (Some(_), Some(_)) => return Err(InputError::BadPageLink),
    };
    let page = match (&position, page) {
        (Position::First, _) => 1,
        // A link from before pages were numbered: its numbers start again at 1.
        (_, None) => 1,
        (_, Some(page)) => page_number(&page)?,
    };
    Ok(Some(Search {
        author: author.to_owned(),
        position,
        page,
    }))
}

fn page_number(raw: &str) -> Result<u64, InputError> {
    match raw.parse() {
        Ok(page) if (1..=MAX_PAGE).contains(&page) && raw.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(page)
        }
        _ => Err(InputError::BadPageLink),
    }
}

/// The author a refused search typed, as the search box can show it again: decoded and trimmed,
/// without control characters; `None` when it cannot be read at all.
pub fn typed_author(query: Option<&str>) -> Option<String> {
    let raw = query?
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(key, _)| *key == "author")?
        .1;
    let decoded = decode_component(raw).ok()?;
    let shown: String = decoded
        .chars()
        .filter(|c| !c.is_control() && !is_noncharacter(*c))
        .collect();
    Some(shown.trim().to_owned())
}

/// Unicode's noncharacters (U+FDD0..U+FDEF, and the last two code points of every plane):
/// never text anyone types.
fn is_noncharacter(c: char) -> bool {
    ('\u{FDD0}'..='\u{FDEF}').contains(&c) || (c as u32) & 0xFFFE == 0xFFFE
}

fn cursor(raw: &str) -> Result<Cursor, InputError> {
    const MAX_CURSOR_BYTES: usize = 4096;
    if raw.len() > MAX_CURSOR_BYTES {
        return Err(InputError::BadPageLink);
    }
    let cursor: Cursor = serde_json::from_str(raw).map_err(|_| InputError::BadPageLink)?;
    // JSON can spell what the query string may not (a NUL as \u0000): check the text again.
    let fields = [&cursor.author, &cursor.title, &cursor.isbn];
    if fields.iter().any(|field| !is_plain_text(field)) {
        return Err(InputError::BadPageLink);
    }
    Ok(cursor)
}

/// No control characters and no noncharacters: text that could have been typed.
fn is_plain_text(text: &str) -> bool {
    !text.chars().any(|c| c.is_control() || is_noncharacter(c))
}

/// The link to page `page` of the search for `author` at `path`: `after` or `before` the book
/// `cursor` names.
pub fn page_link(path: &str, author: &str, direction: &str, cursor: &Cursor, page: u64) -> String {
    let cursor = serde_json::to_string(cursor).expect("a cursor serializes to JSON");
    format!(
        "{path}?author={}&{direction}={}&page={page}",
        utf8_percent_encode(author, NON_ALPHANUMERIC),
        utf8_percent_encode(&cursor, NON_ALPHANUMERIC)
    )
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
                && is_plain_text(value)
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

    fn author(query: &str) -> Result<Option<String>, InputError> {
        search(Some(query)).map(|search| search.map(|search| search.author))
    }

    #[test]
    fn queries_decode_like_a_form() {
        assert_eq!(
            author("x=1&author=K%C3%A9r+nighan&author=second"),
            Ok(Some("Kér nighan".into()))
        );
        assert_eq!(author("title=x"), Ok(None));
        assert_eq!(author("author"), Ok(None));
        assert_eq!(search(None), Ok(None));
    }

    #[test]
    fn malformed_queries_are_errors_wherever_they_are() {
        for bad in [
            "author=%",
            "author=%4",
            "author=%zz",
            "other=%g1&author=x",
            "a%=1&author=x",
        ] {
            assert_eq!(author(bad), Err(InputError::MalformedEscape), "{bad}");
        }
        assert_eq!(author("author=%FF"), Err(InputError::InvalidUtf8));
        assert_eq!(author("author=a%00b"), Err(InputError::Nul));
        assert_eq!(author("author=a%0Ab"), Err(InputError::ControlCharacter));
        assert_eq!(
            author("author=a%EF%BF%BF"),
            Err(InputError::ControlCharacter)
        );
    }

    #[test]
    fn authors_are_trimmed_and_blank_is_none() {
        assert_eq!(author("author=+%20Ker%09"), Ok(Some("Ker".into())));
        assert_eq!(author("author=+++"), Ok(None));
        assert_eq!(author(""), Ok(None));
        // An accent alone, or a soft hyphen, has nothing to search by either.
        assert_eq!(author("author=%CC%81"), Ok(None));
        assert_eq!(author("author=%C2%AD"), Ok(None));
    }

    #[test]
    fn authors_over_a_hundred_characters_are_refused() {
        let exactly = "é".repeat(100);
        assert_eq!(author(&format!("author={exactly}")), Ok(Some(exactly)));
        let query = format!("author={}", "é".repeat(101));
        assert_eq!(author(&query), Err(InputError::AuthorTooLong));
    }

    #[test]
    fn page_links_round_trip_and_tampered_ones_are_refused() {
        let cursor = Cursor {
            author: "O'Brien & Søn".into(),
            title: "50% \"off\"".into(),
            isbn: "1".into(),
        };
        let link = page_link("/searchresults", "o'b", "after", &cursor, 3);
        let query = link.split_once('?').unwrap().1;
        assert_eq!(
            search(Some(query)),
            Ok(Some(Search {
                author: "o'b".into(),
                position: Position::After(cursor.clone()),
                page: 3,
            }))
        );
        let query = page_link("/x", "o", "before", &cursor, 1);
        let position = search(Some(query.split_once('?').unwrap().1))
            .unwrap()
            .unwrap()
            .position;
        assert_eq!(position, Position::Before(cursor));
        for bad in [
            "after=x",
            "after=%5B%5D",
            "after=1",
            "before=%7B%7D",
            "after=null",
        ] {
            let query = format!("author=k&{bad}");
            assert_eq!(search(Some(&query)), Err(InputError::BadPageLink), "{bad}");
        }
        let both = r#"author=k&after={"author":"a","title":"b","isbn":"c"}&before={"author":"a","title":"b","isbn":"c"}"#;
        assert_eq!(search(Some(both)), Err(InputError::BadPageLink));
        let after = r#"author=k&after={"author":"a","title":"b","isbn":"c"}"#;
        for page in ["0", "-1", "x", "+2", "100000001", "1e3"] {
            let query = format!("{after}&page={page}");
            assert_eq!(search(Some(&query)), Err(InputError::BadPageLink), "{page}");
        }
        let numbered = |query: &str| search(Some(query)).unwrap().unwrap().page;
        assert_eq!(numbered(&format!("{after}&page=7")), 7);
        assert_eq!(numbered(after), 1, "an older link without a number");
        assert_eq!(numbered("author=k&page=9"), 1, "the first page is page 1");
    }

    #[test]
    fn a_refused_search_is_shown_again_as_typed_where_it_can_be_read() {
        let long = "k".repeat(150);
        assert_eq!(typed_author(Some(&format!("author={long}"))), Some(long));
        assert_eq!(
            typed_author(Some("x=1&author=+K%C3%A9r%07nighan+")),
            Some("Kérnighan".into())
        );
        assert_eq!(typed_author(Some("author=%FF")), None);
        assert_eq!(typed_author(Some("title=x")), None);
        assert_eq!(typed_author(None), None);
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
        assert_eq!(prev_author(&headers("prev_author=a%0D%0Ab")), None);
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

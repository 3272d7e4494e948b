//! Checks on what Penny sends back to hostile input: pages that hold only Penny's own markup, the
//! payload shown as text, cookie values that stay cookie octets; and a test that the checks
//! themselves catch what they look for.

use crate::common::TestResponse;
use crate::raw::{RawResponse, assert_no_injected_header, responses};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

/// RFC 6265 4.1.1's cookie-octet: what a cookie value may hold unquoted.
pub fn is_cookie_octet(byte: u8) -> bool {
    matches!(byte, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E)
}

/// The HTML escaping maud applies to text.
pub fn escaped(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub fn encoded(text: &str) -> String {
    utf8_percent_encode(text, NON_ALPHANUMERIC).to_string()
}

/// The tags Penny's pages are made of.
pub const PENNY_TAGS: &[&str] = &[
    "!doctype", "html", "head", "meta", "title", "link", "body", "header", "main", "footer", "h1",
    "p", "a", "div", "nav", "table", "thead", "tbody", "tr", "th", "td", "form", "label", "input",
    "button", "span", "strong", "code",
];

/// Penny's one script, the search as you type: the only `<script>` a page may hold.
pub fn penny_script() -> String {
    format!(
        r#"<script src="{}" defer></script>"#,
        penny::assets::url("search.js")
    )
}

/// The previous search as a form page shows it, as HTML without its link: what a reader sees.
pub fn previous_search(body: &str) -> String {
    let start = body
        .find("Previous author search: ")
        .expect("a previous search")
        + 24;
    let line = &body[start..start + body[start..].find("</p>").unwrap()];
    match line.strip_prefix("<a href=\"") {
        Some(link) => {
            let text = &link[link.find("\">").unwrap() + 2..];
            text.strip_suffix("</a>")
                .expect("the link ends the line")
                .to_string()
        }
        None => line.to_string(),
    }
}

/// Every tag in `body` is one of Penny's, with no event handler and no javascript: URL: so no
/// payload became markup.
pub fn assert_only_pennys_markup(body: &str, context: &str) {
    let body = &body.replacen(&penny_script(), "", 1);
    let mut rest = body.as_str();
    while let Some(start) = rest.find('<') {
        let tag = &rest[start + 1..];
        // Penny quotes every attribute value with double quotes.
        let mut quoted = false;
        let end = tag
            .char_indices()
            .find(|&(_, c)| {
                if c == '"' {
                    quoted = !quoted;
                }
                c == '>' && !quoted
            })
            .map(|(i, _)| i)
            .unwrap_or_else(|| panic!("{context}: an unclosed tag in {body}"));
        let inside = &tag[..end];
        let name: String = inside
            .trim_start_matches('/')
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '/')
            .collect::<String>()
            .to_ascii_lowercase();
        assert!(
            PENNY_TAGS.contains(&name.as_str()),
            "{context}: a tag that is not Penny's: <{inside}> in {body}"
        );
        let parts: Vec<&str> = inside.split('"').collect();
        for (i, part) in parts.iter().enumerate() {
            if i % 2 == 1 {
                // A URL attribute could run it; a search box's value is only text.
                let name = parts[i - 1]
                    .trim_end()
                    .trim_end_matches('=')
                    .rsplit(char::is_whitespace)
                    .next()
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                let value = part.trim().to_ascii_lowercase();
                assert!(
                    !(["href", "src", "action"].contains(&name.as_str())
                        && value.starts_with("javascript:")),
                    "{context}: a javascript: URL in <{inside}>"
                );
                continue;
            }
            for word in part.split_whitespace().skip(usize::from(i == 0)) {
                let attribute = word.split('=').next().unwrap().to_ascii_lowercase();
                assert!(
                    !attribute.starts_with("on"),
                    "{context}: an event handler in <{inside}>"
                );
            }
        }
        rest = &tag[end + 1..];
    }
}

/// The body of a JSON response, parsed.
pub fn json(response: &TestResponse, context: &str) -> serde_json::Value {
    assert_eq!(
        response.header("content-type"),
        "application/json",
        "{context}"
    );
    serde_json::from_str(&response.body)
        .unwrap_or_else(|err| panic!("{context}: invalid JSON ({err}): {}", response.body))
}

/// The books in an /api/books answer, as (isbn, author, title), checking their shape.
pub fn api_books(value: &serde_json::Value, context: &str) -> Vec<(String, String, String)> {
    let books = value
        .as_array()
        .unwrap_or_else(|| panic!("{context}: not an array: {value}"));
    books
        .iter()
        .map(|book| {
            let book = book.as_object().unwrap();
            assert_eq!(book.len(), 3, "{context}: {value}");
            let field = |name: &str| book[name].as_str().unwrap().to_owned();
            (field("isbn"), field("author"), field("title"))
        })
        .collect()
}

#[test]
fn the_checks_themselves_catch_markup_and_injected_headers() {
    let caught =
        |check: &dyn Fn()| std::panic::catch_unwind(std::panic::AssertUnwindSafe(check)).is_err();
    let page = |inside: &str| format!("<!DOCTYPE html><html><body><p>{inside}</p></body></html>");
    assert!(!caught(&|| assert_only_pennys_markup(
        &page("&lt;script&gt;"),
        "ok"
    )));
    for markup in [
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(1)>",
        "<p onclick=\"alert(1)\">",
        "<a href=\"javascript:alert(1)\">x</a>",
        "<a href=\"/\" onmouseover=alert(1)>x</a>",
    ] {
        assert!(
            caught(&|| assert_only_pennys_markup(&page(markup), "test")),
            "{markup}"
        );
    }
    let response = |line: &str| RawResponse {
        status: 200,
        headers: vec!["content-length: 0".into(), line.into()],
        body: String::new(),
    };
    assert!(!caught(&|| assert_no_injected_header(
        &response("set-cookie: prev_author=x%0D%0AX-Injected%3A%201; Path=/"),
        "ok"
    )));
    for line in ["X-Injected: 1", "Set-Cookie: admin=1", "Refresh: 0"] {
        assert!(
            caught(&|| assert_no_injected_header(&response(line), "test")),
            "{line}"
        );
    }
    let two =
        responses("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 404 Not Found\r\n\r\n");
    assert_eq!(
        two.iter()
            .map(|response| response.status)
            .collect::<Vec<_>>(),
        [200, 404]
    );
    assert!(
        b"prev_author=%3Cx%3E'!"
            .iter()
            .all(|&byte| is_cookie_octet(byte))
    );
    assert!(!b" \";,\\".iter().any(|&byte| is_cookie_octet(byte)));
}

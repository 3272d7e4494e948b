//! CRLF injection through the author and the `prev_author` cookie, and the headers an author
//! reaches (the cookie, the API's Link header).

use crate::checks::{
    api_books, assert_only_pennys_markup, encoded, escaped, is_cookie_octet, json, previous_search,
};
use crate::common::{Backend, TestApp};
use crate::raw::{RawResponse, assert_no_injected_header, get, responses};
use percent_encoding::percent_decode_str;

/// `raw`'s only response, checked line by line for injected headers.
fn single_response(raw: &str, context: &str) -> RawResponse {
    let mut answers = responses(raw);
    assert_eq!(answers.len(), 1, "{context}: {raw}");
    let response = answers.pop().unwrap();
    assert_no_injected_header(&response, context);
    response
}

/// The Set-Cookie lines of `response`.
fn set_cookies(response: &RawResponse) -> Vec<&str> {
    response
        .headers
        .iter()
        .filter(|line| line.to_ascii_lowercase().starts_with("set-cookie:"))
        .map(|line| line["set-cookie:".len()..].trim())
        .collect()
}

/// The only Set-Cookie line of `response` is Penny's `prev_author`, its value made only of
/// cookie octets and percent-decoding to `author`, followed by Penny's own attributes alone.
fn assert_remembers(response: &RawResponse, author: &str, context: &str) {
    let cookies = set_cookies(response);
    assert_eq!(cookies.len(), 1, "{context}: {:?}", response.headers);
    let value = cookies[0]
        .strip_prefix("prev_author=")
        .and_then(|rest| rest.strip_suffix("; HttpOnly; SameSite=Lax; Path=/"))
        .unwrap_or_else(|| panic!("{context}: not Penny's cookie: {:?}", cookies[0]));
    assert!(
        value.bytes().all(is_cookie_octet),
        "{context}: the cookie value is not percent-encoded: {value:?}"
    );
    assert_eq!(
        percent_decode_str(value).decode_utf8().unwrap(),
        author,
        "{context}: {value:?}"
    );
}

pub async fn crlf_in_the_author_or_the_cookie_never_becomes_a_response_header(backend: Backend) {
    let app = TestApp::start(backend).await;
    // Authors with line breaks, as escapes and as lookalikes: refused (400, and then nothing is
    // remembered) or searched for and remembered percent-encoded.
    for (query, remembered) in [
        ("x%0D%0ASet-Cookie:%20admin=1", None),
        ("x%0d%0aX-Injected:%201", None),
        ("x%0ASet-Cookie:%20admin=1", None),
        ("x%0DSet-Cookie:%20admin=1", None),
        ("x%0D%0A%0D%0A%3Chtml%3Einjected%20body", None),
        ("x%0D%0A%09Set-Cookie:%20admin=1", None),
        ("x%C2%85X-Injected:%201", None), // U+0085 NEXT LINE is a control character
        ("x%E2%80%A8X-Injected:%201", Some("x\u{2028}X-Injected: 1")),
        (
            "x%E5%98%8A%E5%98%8DSet-Cookie:%20admin=1",
            Some("x嘊嘍Set-Cookie: admin=1"),
        ),
        ("x%C4%8A%C4%8DX-Injected:%201", Some("xĊčX-Injected: 1")),
        (
            "x%250D%250ASet-Cookie:%20admin=1",
            Some("x%0D%0ASet-Cookie: admin=1"),
        ),
        (
            "x%5Cr%5CnSet-Cookie:%20admin=1",
            Some("x\\r\\nSet-Cookie: admin=1"),
        ),
        ("x%3B%20admin=1", Some("x; admin=1")),
        (
            "x%3B%20Domain=evil.example%3B%20Path=/admin",
            Some("x; Domain=evil.example; Path=/admin"),
        ),
        ("x,%20admin=1;%20Secure", Some("x, admin=1; Secure")),
        ("%22x%22%20%5C%22admin%5C%22", Some("\"x\" \\\"admin\\\"")),
    ] {
        for path in ["/searchresults", "/api/books"] {
            let raw = app.raw(&get(&format!("{path}?author={query}"), "")).await;
            let context = format!("{path}?author={query}");
            let response = single_response(&raw, &context);
            match remembered {
                None => {
                    assert_eq!(response.status, 400, "{context}: {raw}");
                    assert!(set_cookies(&response).is_empty(), "{context}: {raw}");
                }
                Some(author) => {
                    assert_eq!(response.status, 200, "{context}: {raw}");
                    if path == "/searchresults" {
                        assert_remembers(&response, author, &context);
                        let shown = format!("Books by {}:", escaped(author));
                        assert!(
                            response.body.contains(&shown),
                            "{context}: {}",
                            response.body
                        );
                    } else {
                        assert!(set_cookies(&response).is_empty(), "{context}: {raw}");
                    }
                }
            }
        }
    }

    // Hostile cookies, written as a browser never would: ignored when they hold what no search
    // would have stored (control characters), else shown as text on the form; never a header,
    // and replaced (not echoed) by the next search's cookie.
    let cookies: [(&[u8], &str); 7] = [
        (b"prev_author=x%0D%0ASet-Cookie:%20admin=1", "none yet."),
        (b"prev_author=x%0D%0AX-Injected:%201", "none yet."),
        (
            b"prev_author=%0D%0A%0D%0A%3Cscript%3Ealert(1)%3C/script%3E",
            "none yet.",
        ),
        (
            b"prev_author=x%E5%98%8A%E5%98%8DSet-Cookie:%20admin=1",
            "x嘊嘍Set-Cookie: admin=1",
        ),
        // Raw bytes over 0x7F are not text Penny can read: the cookie is ignored.
        (
            b"prev_author=x\xe5\x98\x8a\xe5\x98\x8dSet-Cookie: admin=1",
            "none yet.",
        ),
        // A raw CRLF ends the Cookie line: X-Injected is one more request header.
        (b"prev_author=x\r\nX-Injected: 1", "x"),
        (b"prev_author=x; Set-Cookie=admin; X-Injected=1", "x"),
    ];
    for (cookie, shown) in cookies {
        let context = String::from_utf8_lossy(cookie).into_owned();
        for path in ["/searchform", "/searchresults?author=ker"] {
            let request = [
                format!("GET {path} HTTP/1.1\r\nHost: penny\r\nCookie: ").as_bytes(),
                cookie,
                b"\r\nConnection: close\r\n\r\n",
            ]
            .concat();
            let raw = app.raw(&request).await;
            let response = single_response(&raw, &context);
            assert_eq!(response.status, 200, "{context}: {raw}");
            if path == "/searchform" {
                assert!(set_cookies(&response).is_empty(), "{context}: {raw}");
                assert_eq!(
                    previous_search(&response.body),
                    escaped(shown),
                    "{context}: {}",
                    response.body
                );
                assert_only_pennys_markup(&response.body, &context);
            } else {
                assert_remembers(&response, "ker", &context);
            }
        }
    }
}

pub async fn an_author_never_breaks_out_of_the_link_header(backend: Backend) {
    let app = TestApp::start(backend).await;
    // Authors that would end the link, start another, add a parameter or a header if the API
    // copied them into its Link header as they are. Each gets 51 books: a page and one more.
    let prefixes = [
        "x>, <https://evil.example/>; rel=\"next\"",
        "x\"; rel=\"preload",
        "x; rel=preload; as=script",
        "x,<//evil.example/>",
        "x&author=evil&after=",
        "x%0D%0AX-Injected: 1",
        "x嘊嘍X-Injected: 1",
        "x\u{2028}Link: <https://evil.example/>",
    ];
    for (n, prefix) in prefixes.iter().enumerate() {
        let books: Vec<(String, String)> = (0..51)
            .map(|i| (format!("link-{n}-{i:02}"), format!("{prefix} {i:02}")))
            .collect();
        let rows: Vec<(&str, &str, &str)> = books
            .iter()
            .map(|(isbn, author)| (isbn.as_str(), author.as_str(), "T"))
            .collect();
        app.add_books(&rows).await;

        let context = format!("{prefix:?}");
        let raw = app
            .raw(&get(&format!("/api/books?author={}", encoded(prefix)), ""))
            .await;
        let response = single_response(&raw, &context);
        assert_eq!(response.status, 200, "{context}: {raw}");
        let links: Vec<&String> = response
            .headers
            .iter()
            .filter(|line| line.to_ascii_lowercase().starts_with("link:"))
            .collect();
        assert_eq!(links.len(), 1, "{context}: {:?}", response.headers);
        // One link, rel="next", whose URL is Penny's path and query, every byte of the author
        // and the cursor percent-encoded.
        let value = links[0]["link:".len()..].trim();
        let url = value
            .strip_prefix('<')
            .and_then(|rest| rest.strip_suffix(">; rel=\"next\""))
            .unwrap_or_else(|| panic!("{context}: not one next link: {value}"));
        assert!(
            url.starts_with("/api/books?author=x%")
                && url
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || b"%/?=&".contains(&byte)),
            "{context}: {url}"
        );
        // Following it gives the last book, and a link back.
        let next = app.get(url).await;
        let books = api_books(&json(&next, &context), &context);
        let last = (
            format!("link-{n}-50"),
            format!("{prefix} 50"),
            "T".to_owned(),
        );
        assert_eq!(books, [last], "{context}");
        assert!(
            next.header("link").ends_with("; rel=\"prev\""),
            "{context}: {}",
            next.header("link")
        );
    }
}

//! XSS and SQL-injection payloads sent through every place an author goes: the search, the
//! API, page links and stored books; each must come back as text and leave the database intact.

use crate::checks::{
    api_books, assert_only_pennys_markup, encoded, escaped, is_cookie_octet, json, previous_search,
};
use crate::common::{Backend, TestApp};
use hyper::StatusCode;
use penny::fold::fold;
use std::time::{Duration, Instant};

const XSS: &[&str] = &[
    "<script>alert(1)</script>",
    "<ScRiPt>alert(1)</sCrIpT>",
    "\"><img src=x onerror=alert(1)>",
    "'><svg onload=alert(1)>",
    "<img src=x onerror=alert(1)//",
    "javascript:alert(1)",
    "</title><script>alert(1)</script>",
    "</p></main><script>alert(document.cookie)</script>",
    "\" autofocus onfocus=\"alert(1)",
    "' autofocus onfocus='alert(1)",
    "<a href=\"javascript:alert(1)\">x</a>",
    "<iframe src=\"javascript:alert(1)\"></iframe>",
    "<body onload=alert(1)>",
    "<details open ontoggle=alert(1)>",
    "<scr<script>ipt>alert(1)</scr</script>ipt>",
    "<!--<script>alert(1)//-->",
    "<svg><script>alert&#40;1&#41;</script></svg>",
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    "<meta http-equiv=\"refresh\" content=\"0;url=javascript:alert(1)\">",
    "<style>*{display:none}</style>",
    "<math><mtext></table><img src=x onerror=alert(1)>",
    "{{7*7}}${7*7}<%= 7*7 %>",
    "＜script＞alert(1)＜/script＞",
    "\u{2028}<script>alert(1)</script>\u{2029}",
    "  <b>padded</b>  ",
    // Refused: control characters, and more than 100 characters.
    "<img\nsrc=x onerror=alert(1)>",
    "<script>\0alert(1)</script>",
    "\u{85}<script>alert(1)</script>",
    concat!(
        "<script>alert('this payload is far longer than the hundred characters ",
        "an author name may have, so Penny refuses it')</script>"
    ),
];

const SQL: &[&str] = &[
    "' OR '1'='1",
    "' OR 1=1 --",
    "'; DROP TABLE books; --",
    "'); DROP TABLE books; --",
    "%' OR 1=1 --",
    "\\' UNION SELECT isbn, author, title FROM books --",
    "' UNION SELECT NULL, sqlite_version(), NULL --",
    "' UNION SELECT NULL, version(), NULL --",
    "1; SELECT pg_sleep(10) --",
    "' AND (SELECT COUNT(*) FROM books) > 0 --",
    "'||(SELECT author FROM books LIMIT 1)||'",
    "\" OR \"\"=\"",
    "admin'--",
    "') OR ('1'='1",
    "' OR author LIKE '%",
    "'; ATTACH DATABASE '/tmp/pwned.db' AS pwned; --",
    "$$; DELETE FROM books; $$",
    "E'\\x27 OR 1=1",
    "‘ OR ‘1’=’1",
    "ʼ OR ʼ1ʼ=ʼ1",
    "%",
    "%%",
    "_",
    "\\",
    "'",
    "''",
    "*/ OR 1=1 /*",
    // Refused: control characters.
    "'\0; DROP TABLE books; --",
    "';\nDROP TABLE books; --",
];

/// What Penny does with `payload` typed as an author (README: trimmed; more than 100
/// characters, control characters or noncharacters get a 400).
#[derive(Debug, PartialEq)]
enum Expected {
    Search(String),
    Refused,
}

fn noncharacter(c: char) -> bool {
    ('\u{FDD0}'..='\u{FDEF}').contains(&c) || (c as u32) & 0xFFFE == 0xFFFE
}

fn expected(payload: &str) -> Expected {
    let author = payload.trim();
    assert!(!author.is_empty(), "no blank payloads in the lists");
    if author.chars().count() > 100 || author.chars().any(|c| c.is_control() || noncharacter(c)) {
        Expected::Refused
    } else {
        Expected::Search(author.to_owned())
    }
}

/// Sends `payload` as the author on the results page, back through the cookie Penny set (as a
/// browser would), through a cookie encoded by hand, and to the JSON API; checks it is text
/// everywhere and matched no book of the demo's three.
async fn send_payload(app: &TestApp, payload: &str) {
    let query = encoded(payload);
    let context = format!("{payload:?}");
    let page = app.get(&format!("/searchresults?author={query}")).await;
    assert_only_pennys_markup(&page.body, &context);
    if payload.contains(['<', '>', '"']) {
        assert!(!page.body.contains(payload), "{context}: {}", page.body);
    }
    match expected(payload) {
        Expected::Refused => {
            assert_eq!(page.status, StatusCode::BAD_REQUEST, "{context}");
            assert!(page.headers.get("set-cookie").is_none(), "{context}");
        }
        Expected::Search(author) => {
            assert_eq!(page.status, StatusCode::OK, "{context}: {}", page.body);
            let heading = format!("Books by {}:", escaped(&author));
            assert!(page.body.contains(&heading), "{context}: {}", page.body);
            assert!(page.table_rows().is_empty(), "{context}: {}", page.body);
            // The cookie, as the browser sends it back.
            let cookie = page.header("set-cookie").split(';').next().unwrap();
            assert!(cookie.bytes().all(is_cookie_octet), "{context}: {cookie}");
            let form = app.get_with("/searchform", &[("cookie", cookie)]).await;
            assert_eq!(form.status, StatusCode::OK, "{context}");
            assert_only_pennys_markup(&form.body, &context);
            let previous = format!("\">{}</a></p>", escaped(&author));
            assert!(
                form.body
                    .contains("Previous author search: <a href=\"/searchresults?author=")
                    && form.body.contains(&previous),
                "{context}: {}",
                form.body
            );
        }
    }

    // A cookie written by hand, holding the payload untrimmed.
    let cookie = format!("prev_author={query}");
    let form = app.get_with("/searchform", &[("cookie", &cookie)]).await;
    assert_eq!(form.status, StatusCode::OK, "{context}");
    assert_only_pennys_markup(&form.body, &context);
    let readable = payload.trim() == payload && matches!(expected(payload), Expected::Search(_));
    let shown = if readable {
        escaped(payload)
    } else {
        "none yet.".into()
    };
    assert_eq!(
        previous_search(&form.body),
        shown,
        "{context}: {}",
        form.body
    );

    let api = app.get(&format!("/api/books?author={query}")).await;
    let value = json(&api, &context);
    match expected(payload) {
        Expected::Refused => {
            assert_eq!(api.status, StatusCode::BAD_REQUEST, "{context}");
            assert!(value["error"].is_string(), "{context}: {value}");
        }
        Expected::Search(_) => {
            assert_eq!(api.status, StatusCode::OK, "{context}");
            assert_eq!(api_books(&value, &context), [], "{context}");
        }
    }
}

/// The demo's three books are all there, unchanged.
async fn assert_database_intact(app: &TestApp) {
    let page = app.get("/searchresults?author=ker").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(
        page.table_rows(),
        [
            ["234", "Kernighan", "The C Programming Language"],
            ["123", "Kernighan", "The Practice of Programming"],
        ]
    );
    let api = app.get("/api/books?author=sedgewick").await;
    let books = api_books(&json(&api, "sedgewick"), "sedgewick");
    assert_eq!(
        books,
        [(
            "345".to_owned(),
            "Sedgewick".to_owned(),
            "Algorithms in C".to_owned()
        )]
    );
}

pub async fn xss_payloads_are_shown_as_text_on_every_page_and_as_json_in_the_api(backend: Backend) {
    let app = TestApp::start(backend).await;
    for payload in XSS {
        send_payload(&app, payload).await;
    }
    assert_database_intact(&app).await;
}

pub async fn sql_injection_payloads_are_searched_for_as_plain_text(backend: Backend) {
    let app = TestApp::start(backend).await;
    for payload in SQL {
        let started = Instant::now();
        send_payload(&app, payload).await;
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{payload:?} took {:?}",
            started.elapsed()
        );
    }
    assert_database_intact(&app).await;
}

/// A page link whose JSON cursor carries `fields` as author, title and ISBN.
fn page_link(path: &str, direction: &str, fields: [&str; 3]) -> String {
    let cursor = serde_json::json!({ "author": fields[0], "title": fields[1], "isbn": fields[2] });
    format!(
        "{path}?author=ker&{direction}={}",
        encoded(&cursor.to_string())
    )
}

pub async fn payloads_in_page_links_are_plain_text_too(backend: Backend) {
    let app = TestApp::start(backend).await;
    // A cursor is never shown, only compared with rows: XSS payloads fill all its fields, SQL
    // ones also sit next to a real author, so that the title and ISBN comparisons run too.
    let cursors = XSS
        .iter()
        .chain(SQL)
        .map(|payload| [*payload; 3])
        .chain(SQL.iter().map(|payload| ["Kernighan", *payload, *payload]))
        .filter(|fields| !fields[1].contains('\0'));
    for fields in cursors {
        for direction in ["after", "before"] {
            let context = format!("{direction} {fields:?}");
            let page = app
                .get(&page_link("/searchresults", direction, fields))
                .await;
            // Like an author, a cursor holds typed text: control characters make it a bad link.
            let typed = fields
                .iter()
                .all(|field| !field.chars().any(|c| c.is_control() || noncharacter(c)));
            if !typed {
                assert_eq!(
                    page.status,
                    StatusCode::BAD_REQUEST,
                    "{context}: {}",
                    page.body
                );
                continue;
            }
            assert_eq!(page.status, StatusCode::OK, "{context}: {}", page.body);
            assert_only_pennys_markup(&page.body, &context);
            let api = app.get(&page_link("/api/books", direction, fields)).await;
            assert_eq!(api.status, StatusCode::OK, "{context}: {}", api.body);
            for (_, author, _) in api_books(&json(&api, &context), &context) {
                assert_eq!(author, "Kernighan", "{context}");
            }
        }
    }
    assert_database_intact(&app).await;
}

pub async fn a_nul_escaped_into_a_page_link_never_gets_a_server_error(backend: Backend) {
    let app = TestApp::start(backend).await;
    // `%00` in the query is refused before it is decoded as JSON; `\u0000` inside the
    // cursor's JSON must be refused too, not reach the database.
    for direction in ["after", "before"] {
        for fields in [
            ["\0", "", ""],
            ["k\0", "", ""],
            ["Kernighan", "\0", ""],
            ["Kernighan", "The C Programming Language", "\0"],
        ] {
            for path in ["/searchresults", "/api/books"] {
                let context = format!("{path} {direction} {fields:?}");
                let response = app.get(&page_link(path, direction, fields)).await;
                assert_eq!(
                    response.status,
                    StatusCode::BAD_REQUEST,
                    "{context}: {}",
                    response.body
                );
            }
        }
    }
    assert_database_intact(&app).await;
}

pub async fn books_whose_author_is_a_payload_round_trip_exactly_and_are_escaped(backend: Backend) {
    let app = TestApp::start(backend).await;
    let payloads: Vec<&str> = XSS
        .iter()
        .chain(SQL)
        .copied()
        .filter(|payload| expected(payload) == Expected::Search(payload.to_string()))
        .collect();
    let books: Vec<(String, &str, &str)> = payloads
        .iter()
        .enumerate()
        .map(|(i, payload)| (format!("hostile-{i:02}"), *payload, *payload))
        .collect();
    let rows: Vec<(&str, &str, &str)> = books
        .iter()
        .map(|(isbn, author, title)| (isbn.as_str(), *author, *title))
        .collect();
    app.add_books(&rows).await;

    for payload in &payloads {
        let context = format!("{payload:?}");
        // Exactly the books whose author starts with the payload, case and accents aside (so
        // full-width ＜script＞ is <script>): `%` and `_` match only themselves.
        let mut wanted: Vec<(String, String, String)> = books
            .iter()
            .filter(|(_, author, _)| fold(author).starts_with(&fold(payload)))
            .map(|(isbn, author, title)| (isbn.clone(), author.to_string(), title.to_string()))
            .collect();
        let api = app
            .get(&format!("/api/books?author={}", encoded(payload)))
            .await;
        assert_eq!(api.status, StatusCode::OK, "{context}");
        let mut found = api_books(&json(&api, &context), &context);
        found.sort();
        wanted.sort();
        assert_eq!(found, wanted, "{context}");

        let page = app
            .get(&format!("/searchresults?author={}", encoded(payload)))
            .await;
        assert_eq!(page.status, StatusCode::OK, "{context}");
        assert_only_pennys_markup(&page.body, &context);
        let (isbn, _, _) = books
            .iter()
            .find(|(_, author, _)| author == payload)
            .unwrap();
        let cell = escaped(payload);
        assert!(
            page.table_rows()
                .contains(&vec![isbn.clone(), cell.clone(), cell]),
            "{context}: {:?}",
            page.table_rows()
        );
    }
    assert_database_intact(&app).await;
}

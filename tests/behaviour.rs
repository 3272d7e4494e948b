//! What a visitor sees, written once and run against every backend: each test below runs on
//! the bundled demo, on a fresh SQLite file and on a fresh PostgreSQL database (tests that add
//! books skip the read-only demo).

#[macro_use]
mod common;

use common::{Backend, TestApp};
use hyper::StatusCode;

suite! {
    read_only: [
        home_page_greets_and_links_to_the_search_form,
        search_form_has_a_labelled_field_and_no_previous_search,
        search_finds_books_by_author_prefix_ignoring_case_and_spaces,
        search_with_no_match_says_so_and_what_to_try,
        search_ignores_case_and_accents_in_any_script,
        search_shows_each_author_exactly_as_stored,
        search_by_accents_alone_is_a_blank_search,
        the_json_api_matches_as_the_pages_do,
        search_remembers_the_author_in_a_cookie,
        cookie_is_secure_when_the_visitor_came_over_https,
        cookie_round_trips_any_text_to_the_form,
        script_in_author_and_cookie_is_escaped,
        blank_or_missing_author_shows_the_form_with_a_message,
        author_over_a_hundred_characters_is_a_400_page,
        undecodable_queries_are_400_pages,
        malformed_cookies_are_ignored,
        json_api_returns_the_same_search,
        json_api_refuses_a_blank_author_with_a_json_error,
        healthz_answers_ok,
        static_assets_have_type_etag_and_cache_control,
        static_assets_answer_304_when_unchanged,
        static_paths_cannot_escape_the_assets,
        unknown_paths_get_a_404_page_in_the_layout,
        other_methods_get_405_with_allow,
        head_works_wherever_get_does_without_a_body,
        every_response_has_the_security_headers,
        oversized_headers_are_refused,
        every_page_that_searches_has_the_search_box_filled_with_the_search,
        results_say_how_many_books_there_are,
        every_refused_search_shows_the_form_with_its_message_and_a_400,
        the_json_api_says_how_many_books_in_headers,
        robots_txt_and_a_meta_description_are_there_for_search_engines,
        the_footer_says_the_time_zone,
        the_search_as_you_type_script_is_served_from_static,
        compressed_and_identity_answers_decode_to_the_same_bytes,
        pages_link_hashed_asset_names_that_are_kept_for_a_year,
        pages_that_query_send_server_timing_and_others_do_not,
        the_pool_view_counts_the_connections,
    ],
    writable: [
        search_treats_percent_underscore_and_backslash_as_literals,
        search_orders_by_author_then_title_then_isbn,
        search_ignores_case_and_accents_of_books_added_later,
        search_finds_composed_and_decomposed_spellings_alike,
        search_orders_by_search_key_then_author_title_and_isbn,
        results_come_fifty_to_a_page_with_links_both_ways,
        exactly_fifty_matches_make_one_page_and_fifty_one_make_two,
        a_page_beyond_the_end_is_empty_and_not_an_error,
        tampered_page_links_are_refused_with_400,
        the_json_api_pages_with_a_link_header,
        pages_say_where_they_are_among_the_results,
        a_count_stops_past_its_limit_and_says_more_than,
        previous_and_next_are_buttons_above_and_below_the_table,
    ]
}

/// Adds `count` books by authors "{prefix} 000", "{prefix} 001", …
async fn add_numbered(app: &TestApp, prefix: &str, count: usize) {
    let books: Vec<(String, String, String)> = (0..count)
        .map(|i| {
            (
                format!("{prefix}-{i:04}"),
                format!("{prefix} {i:03}"),
                format!("Title {i}"),
            )
        })
        .collect();
    let books: Vec<(&str, &str, &str)> = books
        .iter()
        .map(|(isbn, author, title)| (isbn.as_str(), author.as_str(), title.as_str()))
        .collect();
    app.add_books(&books).await;
}

/// The previous search's line on a page with the form: `Previous author search: <a href="…">…`.
fn previous_search_link(page: &common::TestResponse) -> String {
    let start = page
        .body
        .find("Previous author search: ")
        .unwrap_or_else(|| panic!("no previous search in {}", page.body));
    let rest = &page.body[start..];
    rest[..rest.find("</a>").expect("the previous search is a link")].to_string()
}

/// The href of the link with `rel` on a results page, unescaped.
fn link(page: &common::TestResponse, rel: &str) -> Option<String> {
    let marker = format!(r#"rel="{rel}" href=""#);
    let start = page.body.find(&marker)? + marker.len();
    let end = start + page.body[start..].find('"').unwrap();
    Some(page.body[start..end].replace("&amp;", "&"))
}

fn isbns(page: &common::TestResponse) -> Vec<String> {
    page.table_rows()
        .into_iter()
        .map(|row| row[0].clone())
        .collect()
}

async fn home_page_greets_and_links_to_the_search_form(backend: Backend) {
    let app = TestApp::start(backend).await;
    for path in ["/", "/index"] {
        let page = app.get(path).await;
        assert_eq!(page.status, StatusCode::OK);
        assert_eq!(page.header("content-type"), "text/html; charset=utf-8");
        assert!(
            page.body.contains("<title>Penny.com</title>"),
            "{}",
            page.body
        );
        let text = page.text();
        assert!(
            text.contains("Good morning and welcome to Penny.com")
                || text.contains("Good afternoon and welcome to Penny.com"),
            "{text}"
        );
        assert!(
            page.body
                .contains(r#"href="/searchform">Click here to begin.</a>"#)
        );
        assert!(text.contains("Today is "), "{text}");
        let stylesheet = format!(
            r#"<link rel="stylesheet" href="{}">"#,
            penny::assets::url("penny.css")
        );
        assert!(page.body.contains(&stylesheet), "{}", page.body);
    }
}

async fn search_form_has_a_labelled_field_and_no_previous_search(backend: Backend) {
    let app = TestApp::start(backend).await;
    let page = app.get("/searchform").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains(
            r#"<form class="search" action="/searchresults" method="get" role="search">"#
        )
    );
    assert!(page.body.contains(r#"<label for="author">"#));
    assert!(
        page.body
            .contains(r#"id="author" type="search" name="author" value="""#),
        "{}",
        page.body
    );
    assert!(page.body.contains(r#"<button type="submit">"#));
    let text = page.text();
    assert!(text.contains("Author Search"), "{text}");
    assert!(text.contains("Previous author search: none yet."), "{text}");
}

async fn search_finds_books_by_author_prefix_ignoring_case_and_spaces(backend: Backend) {
    let app = TestApp::start(backend).await;
    let kernighan = vec![
        vec![
            "234".to_string(),
            "Kernighan".into(),
            "The C Programming Language".into(),
        ],
        vec![
            "123".to_string(),
            "Kernighan".into(),
            "The Practice of Programming".into(),
        ],
    ];
    for query in ["ker", "KER", "Kernighan", "+%20kEr%09+"] {
        let page = app.get(&format!("/searchresults?author={query}")).await;
        assert_eq!(page.status, StatusCode::OK, "{query}");
        assert_eq!(page.table_rows(), kernighan, "{query}");
        let text = page.text();
        assert!(text.contains("Author Search Results"), "{text}");
        assert!(text.contains("ISBN Author Title"), "{text}");
        assert!(
            page.body
                .contains(r#"<a href="/searchform">Click here to do another author search.</a>"#)
        );
    }
    let page = app.get("/searchresults?author=+ker+").await;
    assert!(page.text().contains("Books by ker:"), "{}", page.text());
    let page = app.get("/searchresults?author=s").await;
    assert_eq!(
        page.table_rows(),
        vec![vec!["345", "Sedgewick", "Algorithms in C"]]
    );
}

async fn search_ignores_case_and_accents_in_any_script(backend: Backend) {
    let app = TestApp::start(backend).await;
    for (query, author) in [
        ("godel", "Gödel"),
        ("G%C3%96DEL", "Gödel"),
        ("GARCIA", "García Márquez"),
        ("garcia+marquez", "García Márquez"),
        ("emile", "Émile Zola"),
        ("%C3%98RSTED", "Ørsted"),
        ("orsted", "Ørsted"),
        ("capek", "Čapek"),
        ("%C4%8CAPEK", "Čapek"),
        ("bronte", "Brontë"),
        (
            "%D0%B4%D0%BE%D1%81%D1%82%D0%BE%D0%B5%D0%B2%D1%81%D0%BA%D0%B8%D0%B9",
            "Достоевский",
        ),
        ("%D0%94%D0%9E%D0%A1%D0%A2", "Достоевский"),
        ("%EF%BC%A7%EF%BC%AF%EF%BC%A4", "Gödel"),
    ] {
        let page = app.get(&format!("/searchresults?author={query}")).await;
        assert_eq!(page.status, StatusCode::OK, "{query}");
        let rows = page.table_rows();
        assert_eq!(rows.len(), 1, "{query}: {rows:?}");
        assert_eq!(rows[0][1], author, "{query}");
    }
}

async fn search_shows_each_author_exactly_as_stored(backend: Backend) {
    let app = TestApp::start(backend).await;
    let page = app.get("/searchresults?author=GARC%C3%8DA+M").await;
    assert_eq!(
        page.table_rows(),
        vec![vec!["567", "García Márquez", "Cien años de soledad"]]
    );
    assert!(
        page.text().contains("Books by GARCÍA M:"),
        "the search as typed: {}",
        page.text()
    );
    let cookie = page.header("set-cookie");
    assert!(
        cookie.starts_with("prev_author=GARC%C3%8DA%20M;"),
        "{cookie}"
    );
}

async fn search_by_accents_alone_is_a_blank_search(backend: Backend) {
    let app = TestApp::start(backend).await;
    for query in ["%CC%81", "%C2%B4", "%C2%AD"] {
        let page = app.get(&format!("/searchresults?author={query}")).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{query}");
        assert!(
            page.text().contains("Please type an author name."),
            "{query}: {}",
            page.text()
        );
    }
}

async fn the_json_api_matches_as_the_pages_do(backend: Backend) {
    let app = TestApp::start(backend).await;
    for query in ["godel", "%C3%98", "e", "k", "%D0%B4", "zz", "%25"] {
        let page = app.get(&format!("/searchresults?author={query}")).await;
        let api = app.get(&format!("/api/books?author={query}")).await;
        let books: Vec<serde_json::Value> = serde_json::from_str(&api.body).unwrap();
        let from_api: Vec<Vec<String>> = books
            .iter()
            .map(|book| {
                ["isbn", "author", "title"]
                    .iter()
                    .map(|field| book[field].as_str().unwrap().to_string())
                    .collect()
            })
            .collect();
        let from_page: Vec<Vec<String>> = page
            .table_rows()
            .into_iter()
            .map(|row| row.into_iter().map(|cell| unescape(&cell)).collect())
            .collect();
        assert_eq!(from_api, from_page, "{query}");
    }
}

/// The text of an HTML cell as maud escapes it.
fn unescape(html: &str) -> String {
    html.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
}

async fn search_with_no_match_says_so_and_what_to_try(backend: Backend) {
    let app = TestApp::start(backend).await;
    let page = app.get("/searchresults?author=Knuth").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.summary(), "Books by Knuth: none.");
    let text = page.text();
    assert!(
        text.contains("No author’s name starts with “Knuth”. Check the spelling, or type less"),
        "{text}"
    );
    assert!(page.table_rows().is_empty());
    assert!(!page.body.contains("<table") && !page.body.contains("<nav"));
}

async fn search_remembers_the_author_in_a_cookie(backend: Backend) {
    let app = TestApp::start(backend).await;
    let page = app.get("/searchresults?author=+Ker+").await;
    assert_eq!(
        page.header("set-cookie"),
        "prev_author=Ker; HttpOnly; SameSite=Lax; Path=/"
    );
    let form = app
        .get_with("/searchform", &[("cookie", "prev_author=Ker")])
        .await;
    assert!(
        form.text().contains("Previous author search: Ker"),
        "{}",
        form.text()
    );
}

async fn cookie_is_secure_when_the_visitor_came_over_https(backend: Backend) {
    let app = TestApp::start(backend).await;
    let page = app
        .get_with(
            "/searchresults?author=ker",
            &[("x-forwarded-proto", "https")],
        )
        .await;
    assert!(
        page.header("set-cookie").contains("; Secure"),
        "{:?}",
        page.headers
    );
    let page = app
        .get_with(
            "/searchresults?author=ker",
            &[("x-forwarded-proto", "http")],
        )
        .await;
    assert!(
        !page.header("set-cookie").contains("Secure"),
        "{:?}",
        page.headers
    );
}

async fn cookie_round_trips_any_text_to_the_form(backend: Backend) {
    let app = TestApp::start(backend).await;
    for (query, shown) in [
        ("Bront%C3%AB%3B%2C%22%3D", "Brontë;,&quot;="),
        ("%E6%97%A5%E6%9C%AC+%E2%9C%93", "日本 ✓"),
        ("100%25+%5C_", "100% \\_"),
    ] {
        let page = app.get(&format!("/searchresults?author={query}")).await;
        let cookie = page
            .header("set-cookie")
            .split(';')
            .next()
            .unwrap()
            .to_string();
        assert!(cookie.is_ascii(), "{cookie}");
        let form = app.get_with("/searchform", &[("cookie", &cookie)]).await;
        let previous = previous_search_link(&form);
        assert!(
            previous.ends_with(&format!("\">{shown}")),
            "{cookie} gave {previous}"
        );
        // The link runs the same search again.
        let href = previous.split('"').nth(1).unwrap().replace("&amp;", "&");
        let again = app.get(&href).await;
        assert_eq!(
            again.header("set-cookie").split(';').next().unwrap(),
            cookie
        );
    }
}

async fn script_in_author_and_cookie_is_escaped(backend: Backend) {
    let app = TestApp::start(backend).await;
    let page = app
        .get("/searchresults?author=%3Cscript%3Ealert(1)%3C%2Fscript%3E")
        .await;
    assert!(!page.body.contains("<script>"), "{}", page.body);
    assert!(
        page.body
            .contains("Books by &lt;script&gt;alert(1)&lt;/script&gt;:")
    );
    let cookie = page
        .header("set-cookie")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let form = app.get_with("/searchform", &[("cookie", &cookie)]).await;
    assert!(!form.body.contains("<script>"), "{}", form.body);
    assert!(
        previous_search_link(&form).ends_with(">&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{}",
        form.body
    );
}

async fn blank_or_missing_author_shows_the_form_with_a_message(backend: Backend) {
    let app = TestApp::start(backend).await;
    for path in [
        "/searchresults",
        "/searchresults?author=",
        "/searchresults?author=+%20+",
    ] {
        let page = app.get(path).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{path}");
        let text = page.text();
        assert!(text.contains("Author Search"), "{text}");
        assert!(text.contains("Please type an author name."), "{text}");
        assert!(page.body.contains(r#"<label for="author">"#));
        assert!(page.headers.get("set-cookie").is_none());
    }
    // Only Penny's own words are shown, whatever else the URL carries.
    let page = app.get("/searchresults?author=&message=Hacked").await;
    assert!(!page.body.contains("Hacked"));
}

async fn author_over_a_hundred_characters_is_a_400_page(backend: Backend) {
    let app = TestApp::start(backend).await;
    let page = app
        .get(&format!("/searchresults?author={}", "k".repeat(101)))
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(
        page.text().contains("at most 100 characters"),
        "{}",
        page.text()
    );
    assert!(page.body.contains("<title>"));
    let page = app
        .get(&format!("/searchresults?author={}", "k".repeat(100)))
        .await;
    assert_eq!(page.status, StatusCode::OK);
}

async fn undecodable_queries_are_400_pages(backend: Backend) {
    let app = TestApp::start(backend).await;
    for (query, reason) in [
        ("author=%FF%FE", "not valid UTF-8"),
        ("author=ker%00", "NUL"),
        ("author=ker%2", "malformed percent escape"),
        ("author=%zzker", "malformed percent escape"),
    ] {
        for path in ["/searchresults", "/api/books"] {
            let page = app.get(&format!("{path}?{query}")).await;
            assert_eq!(page.status, StatusCode::BAD_REQUEST, "{path}?{query}");
            assert!(page.body.contains(reason), "{path}?{query}: {}", page.body);
        }
    }
}

async fn malformed_cookies_are_ignored(backend: Backend) {
    let app = TestApp::start(backend).await;
    for cookie in [
        "prev_author=%FF",
        "prev_author=%",
        "prev_author",
        "=;;=",
        "prev_author=a%00",
    ] {
        let form = app.get_with("/searchform", &[("cookie", cookie)]).await;
        assert_eq!(form.status, StatusCode::OK, "{cookie}");
        assert!(
            form.text().contains("Previous author search: none yet."),
            "{cookie}"
        );
    }
}

async fn json_api_returns_the_same_search(backend: Backend) {
    let app = TestApp::start(backend).await;
    let response = app.get("/api/books?author=KER").await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.header("content-type"), "application/json");
    let books: serde_json::Value = serde_json::from_str(&response.body).unwrap();
    assert_eq!(
        books,
        serde_json::json!([
            {"isbn": "234", "author": "Kernighan", "title": "The C Programming Language"},
            {"isbn": "123", "author": "Kernighan", "title": "The Practice of Programming"},
        ])
    );
    assert_eq!(app.get("/api/books?author=zz").await.body, "[]");
}

async fn json_api_refuses_a_blank_author_with_a_json_error(backend: Backend) {
    let app = TestApp::start(backend).await;
    for path in ["/api/books", "/api/books?author=+"] {
        let response = app.get(path).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST);
        assert_eq!(response.header("content-type"), "application/json");
        let error: serde_json::Value = serde_json::from_str(&response.body).unwrap();
        assert_eq!(
            error,
            serde_json::json!({"error": "Please type an author name."})
        );
    }
    let response = app
        .get(&format!("/api/books?author={}", "a".repeat(101)))
        .await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    assert!(
        response.body.starts_with(r#"{"error":"#),
        "{}",
        response.body
    );
}

async fn healthz_answers_ok(backend: Backend) {
    let app = TestApp::start(backend).await;
    let response = app.get("/healthz").await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.body, "ok\n");
}

async fn static_assets_have_type_etag_and_cache_control(backend: Backend) {
    let app = TestApp::start(backend).await;
    for (path, content_type) in [
        ("/static/penny.css", "text/css; charset=utf-8"),
        ("/static/favicon.svg", "image/svg+xml; charset=utf-8"),
        ("/static/favicon.ico", "image/x-icon"),
        ("/favicon.ico", "image/x-icon"),
    ] {
        let response = app.get(path).await;
        assert_eq!(response.status, StatusCode::OK, "{path}");
        assert_eq!(response.header("content-type"), content_type, "{path}");
        assert!(response.header("etag").starts_with('"'), "{path}");
        assert_eq!(
            response.header("cache-control"),
            "public, no-cache",
            "{path}: a plain name is checked with its ETag each time"
        );
        assert_eq!(response.header("vary"), "accept-encoding", "{path}");
        assert!(!response.bytes.is_empty(), "{path}");
    }
    let ico = app.get("/favicon.ico").await;
    assert!(ico.bytes.starts_with(&[0, 0, 1, 0]), "a real .ico file");
    let css = app.get("/static/penny.css").await;
    assert!(
        css.body.contains("font-family"),
        "the stylesheet is the real one"
    );
    assert!(
        !css.body.contains("http://") && !css.body.contains("https://"),
        "nothing external"
    );
}

async fn static_assets_answer_304_when_unchanged(backend: Backend) {
    let app = TestApp::start(backend).await;
    let first = app.get("/static/penny.css").await;
    let etag = first.header("etag").to_string();
    for tag in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"other\", {etag}"),
    ] {
        let again = app
            .get_with("/static/penny.css", &[("if-none-match", &tag)])
            .await;
        assert_eq!(again.status, StatusCode::NOT_MODIFIED, "{tag}");
        assert!(again.body.is_empty());
        assert_eq!(again.header("etag"), etag);
    }
    let changed = app
        .get_with("/static/penny.css", &[("if-none-match", "\"stale\"")])
        .await;
    assert_eq!(changed.status, StatusCode::OK);
}

fn decode(coding: &str, bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut decoded = Vec::new();
    match coding {
        "br" => brotli::Decompressor::new(bytes, 4096)
            .read_to_end(&mut decoded)
            .unwrap(),
        "gzip" => flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut decoded)
            .unwrap(),
        other => panic!("unexpected coding {other}"),
    };
    decoded
}

async fn compressed_and_identity_answers_decode_to_the_same_bytes(backend: Backend) {
    let app = TestApp::start(backend).await;
    for name in ["penny.css", "search.js", "favicon.svg"] {
        for path in [
            format!("/static/{name}"),
            penny::assets::url(name).to_owned(),
        ] {
            let identity = app.get(&path).await;
            assert_eq!(identity.status, StatusCode::OK, "{path}");
            assert!(identity.headers.get("content-encoding").is_none(), "{path}");
            assert_eq!(identity.header("vary"), "accept-encoding", "{path}");
            let mut etags = vec![identity.header("etag").to_owned()];
            for (accept, coding) in [
                ("gzip, deflate, br, zstd", "br"),
                ("gzip", "gzip"),
                ("br;q=0, gzip;q=0.8", "gzip"),
            ] {
                let compressed = app.get_with(&path, &[("accept-encoding", accept)]).await;
                assert_eq!(
                    compressed.header("content-encoding"),
                    coding,
                    "{path} {accept}"
                );
                assert_eq!(compressed.header("vary"), "accept-encoding", "{path}");
                assert_eq!(
                    compressed.header("content-type"),
                    identity.header("content-type")
                );
                assert!(
                    compressed.bytes.len() < identity.bytes.len(),
                    "{path} {coding}"
                );
                assert_eq!(
                    decode(coding, &compressed.bytes),
                    identity.bytes,
                    "{path} {coding}"
                );
                let etag = compressed.header("etag").to_owned();
                let unchanged = app
                    .get_with(
                        &path,
                        &[("accept-encoding", accept), ("if-none-match", &etag)],
                    )
                    .await;
                assert_eq!(
                    unchanged.status,
                    StatusCode::NOT_MODIFIED,
                    "{path} {coding}"
                );
                assert_eq!(unchanged.header("vary"), "accept-encoding");
                assert_eq!(unchanged.header("etag"), etag);
                let head = app
                    .raw(
                        format!(
                            "HEAD {path} HTTP/1.1\r\nHost: x\r\nAccept-Encoding: {accept}\r\n\
                             Connection: close\r\n\r\n"
                        )
                        .as_bytes(),
                    )
                    .await;
                let (head, body) = head.split_once("\r\n\r\n").unwrap();
                assert!(body.is_empty(), "{path}: HEAD sent a body");
                assert!(
                    head.contains(&format!("content-encoding: {coding}")),
                    "{head}"
                );
                assert!(
                    head.contains(&format!("content-length: {}", compressed.bytes.len())),
                    "{head}"
                );
                etags.push(etag);
            }
            // Another encoding's ETag does not make this one "unchanged".
            let other = app
                .get_with(
                    &path,
                    &[("accept-encoding", "br"), ("if-none-match", &etags[0])],
                )
                .await;
            assert_eq!(other.status, StatusCode::OK, "{path}");
            etags.sort();
            etags.dedup();
            assert_eq!(etags.len(), 3, "one ETag per encoding: {etags:?}");
        }
    }
    let ico = app
        .get_with("/favicon.ico", &[("accept-encoding", "br, gzip")])
        .await;
    assert!(
        ico.headers.get("content-encoding").is_none(),
        "an .ico barely compresses"
    );
    assert!(ico.bytes.starts_with(&[0, 0, 1, 0]));
}

async fn pages_link_hashed_asset_names_that_are_kept_for_a_year(backend: Backend) {
    let app = TestApp::start(backend).await;
    let page = app.get("/searchresults?author=ker").await;
    for name in ["penny.css", "search.js", "favicon.svg"] {
        let url = penny::assets::url(name);
        let (stem, extension) = name.split_once('.').unwrap();
        let hash = url
            .strip_prefix(&format!("/static/{stem}."))
            .and_then(|rest| rest.strip_suffix(&format!(".{extension}")))
            .unwrap_or_else(|| panic!("{url}"));
        assert_eq!(hash.len(), 10, "{url}");
        assert!(page.body.contains(&format!("\"{url}\"")), "{url} is linked");
        assert!(
            !page.body.contains(&format!("\"/static/{name}\"")),
            "{name}"
        );

        let hashed = app.get(url).await;
        assert_eq!(hashed.status, StatusCode::OK, "{url}");
        assert_eq!(
            hashed.header("cache-control"),
            "public, max-age=31536000, immutable"
        );
        let plain = app.get(&format!("/static/{name}")).await;
        assert_eq!(plain.bytes, hashed.bytes, "{url}");
        assert_eq!(plain.header("cache-control"), "public, no-cache");
        assert_eq!(plain.header("etag"), hashed.header("etag"));

        // A page from before a deploy links the file's old version: it gets the current one,
        // but not to keep.
        let old = app
            .get(&format!("/static/{stem}.0123456789.{extension}"))
            .await;
        assert_eq!(old.status, StatusCode::OK);
        assert_eq!(old.bytes, hashed.bytes);
        assert_eq!(old.header("cache-control"), "public, no-cache");
    }
    for missing in ["/static/nope.0123456789.css", "/static/penny.01234.css"] {
        assert_eq!(
            app.get(missing).await.status,
            StatusCode::NOT_FOUND,
            "{missing}"
        );
    }
}

async fn pages_that_query_send_server_timing_and_others_do_not(backend: Backend) {
    let app = TestApp::start(backend).await;
    for path in ["/searchresults?author=ker", "/api/books?author=ker"] {
        let started = std::time::Instant::now();
        let response = app.get(path).await;
        let took = started.elapsed().as_secs_f64() * 1000.0;
        let header = response.header("server-timing");
        let mut names = Vec::new();
        let mut total = 0.0;
        for metric in header.split(", ") {
            let parts: Vec<&str> = metric.split(';').collect();
            assert_eq!(parts.len(), 3, "{header}");
            let dur: f64 = parts[1].strip_prefix("dur=").unwrap().parse().unwrap();
            let decimals = parts[1].split('.').nth(1).unwrap_or_default();
            assert_eq!(
                decimals.len(),
                3,
                "milliseconds to the microsecond: {header}"
            );
            assert!(
                parts[2].starts_with("desc=\"") && parts[2].ends_with('"'),
                "{header}"
            );
            assert!(dur >= 0.0);
            total += dur;
            names.push(parts[0]);
        }
        assert_eq!(names, ["pool", "db", "render"], "{path}: {header}");
        assert!(total <= took, "{path}: {total} ms of {took} ms: {header}");
        assert!(
            !header.contains("postgres") && !header.contains("sqlite"),
            "{header}"
        );
    }
    for path in ["/", "/searchform", "/static/penny.css", "/healthz", "/nope"] {
        let response = app.get(path).await;
        assert!(response.headers.get("server-timing").is_none(), "{path}");
    }
}

async fn the_pool_view_counts_the_connections(backend: Backend) {
    let app = TestApp::start(backend).await;
    for _ in 0..3 {
        assert_eq!(
            app.get("/searchresults?author=ker").await.status,
            StatusCode::OK
        );
    }
    let response = app.get("/api/pool").await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.header("content-type"), "application/json");
    assert_eq!(response.header("cache-control"), "no-store");
    let pool: serde_json::Value = serde_json::from_str(&response.body).unwrap();
    let names: Vec<&str> = pool
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        names,
        [
            "closed",
            "database",
            "idle",
            "in_use",
            "open",
            "opened",
            "outages",
            "queries",
            "reachable",
            "size",
            "waiting"
        ],
        "{pool}"
    );
    let database = match backend {
        Backend::Bundled => "bundled demo",
        Backend::SqliteFile => "sqlite",
        Backend::Postgres => "postgresql",
    };
    assert_eq!(pool["database"], database);
    let count = |name: &str| {
        pool[name]
            .as_u64()
            .unwrap_or_else(|| panic!("{name}: {pool}"))
    };
    assert!(count("size") >= 1);
    assert!((1..=count("size")).contains(&count("open")), "{pool}");
    assert_eq!(count("in_use") + count("idle"), count("open"), "{pool}");
    assert_eq!(
        (count("in_use"), count("queries"), count("waiting")),
        (0, 0, 0),
        "at rest: {pool}"
    );
    assert!(count("opened") >= count("open"), "{pool}");
    assert_eq!(count("outages"), 0);
    assert_eq!(pool["reachable"], true);
}

async fn static_paths_cannot_escape_the_assets(backend: Backend) {
    let app = TestApp::start(backend).await;
    for path in [
        "/static/../Cargo.toml",
        "/static/%2e%2e/Cargo.toml",
        "/static/",
        "/static/nope.css",
        "/static//etc/passwd",
    ] {
        let response = app.get(path).await;
        assert_eq!(response.status, StatusCode::NOT_FOUND, "{path}");
        assert!(!response.body.contains("[package]"));
    }
}

async fn unknown_paths_get_a_404_page_in_the_layout(backend: Backend) {
    let app = TestApp::start(backend).await;
    let page = app.get("/nope?author=ker").await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert_eq!(page.header("content-type"), "text/html; charset=utf-8");
    assert!(page.text().contains("Page not found"), "{}", page.text());
    assert!(
        page.body
            .contains(r#"<a class="brand" href="/">Penny.com</a>"#)
    );
    let response = app.get("/api/nope").await;
    assert_eq!(response.status, StatusCode::NOT_FOUND);
    assert_eq!(response.header("content-type"), "application/json");
}

async fn other_methods_get_405_with_allow(backend: Backend) {
    let app = TestApp::start(backend).await;
    for method in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"] {
        for path in [
            "/",
            "/searchresults?author=ker",
            "/api/books?author=ker",
            "/static/penny.css",
        ] {
            let request = hyper::Request::builder()
                .method(method)
                .uri(path)
                .body(http_body_util::Empty::new())
                .unwrap();
            let response = app.send(request).await;
            assert_eq!(
                response.status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
            assert_eq!(response.header("allow"), "GET, HEAD", "{method} {path}");
        }
    }
}

async fn head_works_wherever_get_does_without_a_body(backend: Backend) {
    let app = TestApp::start(backend).await;
    for path in [
        "/",
        "/searchform",
        "/searchresults?author=ker",
        "/api/books?author=k",
        "/healthz",
        "/static/penny.css",
    ] {
        let get = app.get(path).await;
        let raw = app
            .raw(format!("HEAD {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
            .await;
        let (head, body) = raw
            .split_once("\r\n\r\n")
            .expect("a complete response head");
        assert!(head.starts_with("HTTP/1.1 200 OK"), "{path}: {head}");
        assert!(body.is_empty(), "{path}: HEAD sent a body: {body:?}");
        let length = get.header("content-length");
        assert!(
            head.contains(&format!("content-length: {length}")),
            "{path}: {head}"
        );
    }
}

async fn every_response_has_the_security_headers(backend: Backend) {
    let app = TestApp::start(backend).await;
    let ico = app.get("/favicon.ico").await;
    assert!(ico.bytes.starts_with(&[0, 0, 1, 0]), "a real .ico file");
    let css = app.get("/static/penny.css").await;
    let etag = css.header("etag").to_string();
    let responses = [
        app.get("/").await,
        app.get("/searchresults?author=ker").await,
        app.get("/searchresults").await,
        app.get("/api/books?author=ker").await,
        app.get("/healthz").await,
        css,
        app.get_with("/static/penny.css", &[("if-none-match", &etag)])
            .await,
        app.get("/nope").await,
        app.get("/searchresults?author=%FF").await,
    ];
    for response in responses {
        let csp = response.header("content-security-policy");
        assert!(csp.contains("default-src 'none'"), "{csp}");
        assert!(csp.contains("script-src 'self';"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(response.header("x-content-type-options"), "nosniff");
        assert_eq!(response.header("x-frame-options"), "DENY");
        assert!(!response.header("referrer-policy").is_empty());
    }
}

async fn oversized_headers_are_refused(backend: Backend) {
    let app = TestApp::start(backend).await;
    let huge = "a".repeat(64 * 1024);
    let raw = app
        .raw(format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {huge}\r\n\r\n").as_bytes())
        .await;
    assert!(
        raw.starts_with("HTTP/1.1 431"),
        "{}",
        &raw[..raw.len().min(200)]
    );
    // The server goes on serving everyone else.
    assert_eq!(app.get("/").await.status, StatusCode::OK);
}

async fn search_treats_percent_underscore_and_backslash_as_literals(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.add_books(&[
        ("950", "%Percent", "Wildcard One"),
        ("951", "_Under", "Wildcard Two"),
        ("952", "\\Slash", "Wildcard Three"),
        ("953", "K_nuth", "Wildcard Four"),
    ])
    .await;
    let isbns = |page: common::TestResponse| -> Vec<String> {
        page.table_rows()
            .into_iter()
            .map(|row| row[0].clone())
            .collect()
    };
    assert_eq!(isbns(app.get("/searchresults?author=%25").await), ["950"]);
    assert_eq!(isbns(app.get("/searchresults?author=_").await), ["951"]);
    assert_eq!(isbns(app.get("/searchresults?author=%5C").await), ["952"]);
    assert_eq!(isbns(app.get("/searchresults?author=k_").await), ["953"]);
    assert!(isbns(app.get("/searchresults?author=%25ker").await).is_empty());
    assert!(isbns(app.get("/searchresults?author=k%25").await).is_empty());
}

async fn search_orders_by_author_then_title_then_isbn(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.add_books(&[
        ("999", "Kay", "B Title"),
        ("998", "Kay", "B Title"),
        ("997", "Kay", "A Title"),
        ("996", "kay", "A Title"),
        ("995", "Kaye", "A Title"),
    ])
    .await;
    let response = app.get("/api/books?author=ka").await;
    let books: Vec<serde_json::Value> = serde_json::from_str(&response.body).unwrap();
    let isbns: Vec<&str> = books
        .iter()
        .map(|book| book["isbn"].as_str().unwrap())
        .collect();
    assert_eq!(isbns, ["997", "998", "999", "996", "995"]);
}

async fn search_ignores_case_and_accents_of_books_added_later(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.add_books(&[
        ("800", "Émile Zola", "L'Assommoir"),
        ("801", "émile", "Other"),
        ("802", "Straße", "Street"),
        ("803", "İnce", "Memed"),
        ("804", "Østergaard", "Ø"),
        ("805", "O’Brien", "At Swim-Two-Birds"),
    ])
    .await;
    for (query, expected) in [
        ("EMILE", &["801", "678", "800"][..]),
        ("%C3%89mile+z", &["678", "800"]),
        ("strasse", &["802"]),
        ("STRAS", &["802"]),
        ("stra%C3%9F", &["802"]),
        ("ince", &["803"]),
        ("%C4%B1nce", &["803"]),
        ("oster", &["804"]),
        ("o%27brien", &["805"]),
    ] {
        let response = app.get(&format!("/api/books?author={query}")).await;
        let books: Vec<serde_json::Value> = serde_json::from_str(&response.body).unwrap();
        let found: Vec<&str> = books.iter().map(|b| b["isbn"].as_str().unwrap()).collect();
        assert_eq!(found, expected, "{query}: {}", response.body);
    }
}

async fn search_finds_composed_and_decomposed_spellings_alike(backend: Backend) {
    let app = TestApp::start(backend).await;
    // The same name twice: é as one code point, and as e with a combining acute accent.
    app.add_books(&[
        ("810", "Ren\u{e9} Char", "Composed"),
        ("811", "Rene\u{301} Char", "Decomposed"),
    ])
    .await;
    for query in ["ren%C3%A9", "rene%CC%81", "RENE", "Ren%C3%89+c"] {
        let page = app.get(&format!("/searchresults?author={query}")).await;
        let rows = page.table_rows();
        let authors: Vec<&str> = rows.iter().map(|row| row[1].as_str()).collect();
        // Each shown as stored, byte for byte: the order is by author after the key, and the
        // composed é (C3 A9) sorts after e and U+0301 (65 CC 81).
        assert_eq!(authors, ["Rene\u{301} Char", "Ren\u{e9} Char"], "{query}");
    }
}

async fn search_orders_by_search_key_then_author_title_and_isbn(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.add_books(&[
        ("820", "Émile B", "T"),
        ("821", "emile a", "T"),
        ("822", "EMILE A", "T"),
        ("823", "Emile a", "U"),
        ("824", "Emile a", "T"),
        ("825", "Émile a", "T"),
    ])
    .await;
    let response = app.get("/api/books?author=emile+").await;
    let books: Vec<serde_json::Value> = serde_json::from_str(&response.body).unwrap();
    let isbns: Vec<&str> = books.iter().map(|b| b["isbn"].as_str().unwrap()).collect();
    // Key "emile a" first (authors by their bytes: E < e < É), then "emile b", then the demo's
    // "emile zola".
    assert_eq!(isbns, ["822", "824", "823", "821", "825", "820", "678"]);
}

async fn results_come_fifty_to_a_page_with_links_both_ways(backend: Backend) {
    let app = TestApp::start(backend).await;
    add_numbered(&app, "Pager", 120).await;
    let expected: Vec<String> = (0..120).map(|i| format!("Pager-{i:04}")).collect();

    let first = app.get("/searchresults?author=pager").await;
    assert_eq!(isbns(&first), expected[..50]);
    assert_eq!(link(&first, "prev"), None);
    let second = app.get(&link(&first, "next").expect("a next link")).await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(isbns(&second), expected[50..100]);
    assert!(
        second.text().contains("Books by pager:"),
        "{}",
        second.text()
    );
    let third = app.get(&link(&second, "next").unwrap()).await;
    assert_eq!(isbns(&third), expected[100..]);
    assert_eq!(link(&third, "next"), None, "the last page has no next");

    let back = app
        .get(&link(&third, "prev").expect("a previous link"))
        .await;
    assert_eq!(isbns(&back), expected[50..100]);
    let start = app.get(&link(&back, "prev").unwrap()).await;
    assert_eq!(isbns(&start), expected[..50]);
    assert_eq!(link(&start, "prev"), None, "back at the first page");
}

async fn exactly_fifty_matches_make_one_page_and_fifty_one_make_two(backend: Backend) {
    let app = TestApp::start(backend).await;
    add_numbered(&app, "Exact", 50).await;
    add_numbered(&app, "Over", 51).await;
    let exact = app.get("/searchresults?author=exact").await;
    assert_eq!(isbns(&exact).len(), 50);
    assert_eq!((link(&exact, "next"), link(&exact, "prev")), (None, None));

    let over = app.get("/searchresults?author=over").await;
    assert_eq!(isbns(&over).len(), 50);
    let last = app.get(&link(&over, "next").expect("a second page")).await;
    assert_eq!(isbns(&last), ["Over-0050"]);
    assert_eq!(link(&last, "next"), None);
}

async fn a_page_beyond_the_end_is_empty_and_not_an_error(backend: Backend) {
    let app = TestApp::start(backend).await;
    add_numbered(&app, "Tail", 3).await;
    let after_last = r#"{"author":"Tail 002","title":"Title 2","isbn":"Tail-0002"}"#;
    let path = format!("/searchresults?author=tail&after={}", encode(after_last));
    let page = app.get(&path).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.text()
            .contains("There are no more books by “tail” here. Back to the first page"),
        "{}",
        page.text()
    );
    assert_eq!(link(&page, "next"), None);
    let far = r#"{"author":"zzz","title":"","isbn":""}"#;
    let api = app
        .get(&format!("/api/books?author=tail&after={}", encode(far)))
        .await;
    assert_eq!((api.status, api.body.as_str()), (StatusCode::OK, "[]"));
}

async fn tampered_page_links_are_refused_with_400(backend: Backend) {
    let app = TestApp::start(backend).await;
    let both = format!("after={}&before={}", encode("{}"), encode("{}"));
    for cursor in [
        "after=garbage",
        "after=%5B1%2C2%5D",
        "before=%7B%22author%22%3A1%7D",
        &both,
    ] {
        for path in ["/searchresults", "/api/books"] {
            let response = app.get(&format!("{path}?author=ker&{cursor}")).await;
            assert_eq!(response.status, StatusCode::BAD_REQUEST, "{path} {cursor}");
            assert!(
                response.body.contains("page link is not valid"),
                "{}",
                response.body
            );
        }
    }
    let huge = format!("after={}", "x".repeat(5000));
    let response = app.get(&format!("/searchresults?author=ker&{huge}")).await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
}

async fn the_json_api_pages_with_a_link_header(backend: Backend) {
    let app = TestApp::start(backend).await;
    add_numbered(&app, "Api", 75).await;
    let first = app.get("/api/books?author=api").await;
    let books: Vec<serde_json::Value> = serde_json::from_str(&first.body).unwrap();
    assert_eq!(books.len(), 50);
    assert_eq!(books[0]["isbn"], "Api-0000");
    let header = first.header("link").to_string();
    assert!(
        header.starts_with("</api/books?author=api&after="),
        "{header}"
    );
    assert!(header.ends_with(r#">; rel="next""#), "{header}");
    let next = &header[1..header.find('>').unwrap()];
    let second = app.get(next).await;
    let books: Vec<serde_json::Value> = serde_json::from_str(&second.body).unwrap();
    assert_eq!(books.len(), 25);
    assert_eq!(books[0]["isbn"], "Api-0050");
    let header = second.header("link");
    assert!(
        header.contains(r#"rel="prev""#) && !header.contains(r#"rel="next""#),
        "{header}"
    );
    assert!(
        app.get("/api/books?author=ker")
            .await
            .headers
            .get("link")
            .is_none()
    );
}

fn encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

async fn every_page_that_searches_has_the_search_box_filled_with_the_search(backend: Backend) {
    let app = TestApp::start(backend).await;
    for (path, value) in [
        ("/", ""),
        ("/searchform", ""),
        ("/searchresults?author=+Ker+", "Ker"),
        ("/searchresults?author=G%C3%B6d%22%3E", "Göd&quot;&gt;"),
    ] {
        let page = app.get(path).await;
        let input = format!(r#"<input id="author" type="search" name="author" value="{value}""#);
        assert!(page.body.contains(&input), "{path}: {}", page.body);
        assert!(
            page.body
                .contains(r#"<label for="author">Author name</label>"#),
            "{path}"
        );
    }
    // The home page's box searches; the link to the form stays, in the lecture's words.
    let home = app.get("/").await;
    assert!(home.body.contains(r#"action="/searchresults""#));
    assert!(
        home.body
            .contains(r#"href="/searchform">Click here to begin.</a>"#)
    );
    let with_cookie = app.get_with("/", &[("cookie", "prev_author=Ker")]).await;
    assert!(
        with_cookie
            .body
            .contains(r#"Previous author search: <a href="/searchresults?author=Ker">Ker</a>"#),
        "{}",
        with_cookie.body
    );
}

async fn results_say_how_many_books_there_are(backend: Backend) {
    let app = TestApp::start(backend).await;
    let summary = |path: &'static str| {
        let app = &app;
        async move { app.get(path).await.summary() }
    };
    assert_eq!(
        summary("/searchresults?author=ker").await,
        "Books by ker: 2 books."
    );
    assert_eq!(
        summary("/searchresults?author=s").await,
        "Books by s: 1 book."
    );
    assert_eq!(
        summary("/searchresults?author=zz").await,
        "Books by zz: none."
    );
}

async fn pages_say_where_they_are_among_the_results(backend: Backend) {
    let app = TestApp::start(backend).await;
    add_numbered(&app, "Pager", 120).await;
    let first = app.get("/searchresults?author=pager").await;
    assert_eq!(first.summary(), "Books by pager: 1–50 of 120 books.");
    let second = app.get(&link(&first, "next").unwrap()).await;
    assert_eq!(second.summary(), "Books by pager: 51–100 of 120 books.");
    let third = app.get(&link(&second, "next").unwrap()).await;
    assert_eq!(third.summary(), "Books by pager: 101–120 of 120 books.");
    let back = app.get(&link(&third, "prev").unwrap()).await;
    assert_eq!(back.summary(), "Books by pager: 51–100 of 120 books.");
    let start = app.get(&link(&back, "prev").unwrap()).await;
    assert_eq!(start.summary(), "Books by pager: 1–50 of 120 books.");
}

async fn a_count_stops_past_its_limit_and_says_more_than(backend: Backend) {
    let app = TestApp::start(backend).await;
    let limit = penny::db::COUNT_LIMIT as usize;
    add_numbered(&app, "Many", limit + 60).await;
    let first = app.get("/searchresults?author=many").await;
    assert_eq!(
        first.summary(),
        "Books by many: 1–50 of more than 1,000 books."
    );
    let api = app.get("/api/books?author=many").await;
    assert_eq!(api.header("x-total-count"), "1000");
    assert_eq!(api.header("x-total-count-exact"), "false");
    let second = app.get(&link(&first, "next").unwrap()).await;
    assert_eq!(
        second.summary(),
        "Books by many: 51–100 of more than 1,050 books."
    );
    // From the third page on, fewer than the limit are left: the count is exact again.
    let third = app.get(&link(&second, "next").unwrap()).await;
    assert_eq!(third.summary(), "Books by many: 101–150 of 1,060 books.");
}

async fn previous_and_next_are_buttons_above_and_below_the_table(backend: Backend) {
    let app = TestApp::start(backend).await;
    add_numbered(&app, "Pager", 120).await;
    let first = app.get("/searchresults?author=pager").await;
    let second = app.get(&link(&first, "next").unwrap()).await;
    let body = &second.body;
    let table = body.find("<table").unwrap();
    let table_end = body.find("</table>").unwrap();
    for rel in ["prev", "next"] {
        let marker = format!(r#"<a class="button secondary" rel="{rel}" href=""#);
        let places: Vec<usize> = body.match_indices(&marker).map(|(i, _)| i).collect();
        assert_eq!(places.len(), 2, "{rel}: {body}");
        assert!(
            places[0] < table && places[1] > table_end,
            "{rel}: above and below"
        );
    }
    // On the first page there is no page before: the button is there, disabled.
    assert_eq!(
        first
            .body
            .matches(r#"<span class="button secondary" aria-disabled="true">← Previous</span>"#)
            .count(),
        2
    );
    // One page of results has no pager at all.
    assert!(
        !app.get("/searchresults?author=ker")
            .await
            .body
            .contains("<nav")
    );
}

async fn every_refused_search_shows_the_form_with_its_message_and_a_400(backend: Backend) {
    let app = TestApp::start(backend).await;
    let long = "k".repeat(150);
    for (query, message, typed) in [
        ("author=", "Please type an author name.", ""),
        ("author=%CC%81", "Please type an author name.", "\u{301}"),
        (&*format!("author={long}"), "at most 100 characters", &*long),
        (
            "author=ker%07nighan",
            "cannot contain control characters",
            "kernighan",
        ),
        (
            "author=ker&after=garbage",
            "That page link is not valid",
            "ker",
        ),
        ("author=%FF", "not valid UTF-8", ""),
        ("author=k%zz", "malformed percent escape", ""),
    ] {
        let page = app.get(&format!("/searchresults?{query}")).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{query}");
        assert!(
            page.body.contains("<h1>Author Search</h1>"),
            "{query}: {}",
            page.body
        );
        let notice = r#"<p class="notice" id="author-error" role="alert">"#;
        let start = page
            .body
            .find(notice)
            .unwrap_or_else(|| panic!("{query}: {}", page.body));
        let shown = &page.body[start + notice.len()..];
        assert!(
            shown[..shown.find("</p>").unwrap()].contains(message),
            "{query}: {shown}"
        );
        assert!(page.body.contains(r#"aria-invalid="true""#), "{query}");
        assert!(
            page.body
                .contains(&format!(r#"name="author" value="{typed}""#)),
            "{query}: {}",
            page.body
        );
        assert!(page.headers.get("set-cookie").is_none(), "{query}");
    }
}

async fn the_json_api_says_how_many_books_in_headers(backend: Backend) {
    let app = TestApp::start(backend).await;
    let api = app.get("/api/books?author=ker").await;
    assert_eq!(api.header("x-total-count"), "2");
    assert_eq!(api.header("x-total-count-exact"), "true");
    let none = app.get("/api/books?author=zz").await;
    assert_eq!(none.header("x-total-count"), "0");
    assert_eq!(none.body, "[]", "the body is the same array as before");
}

async fn robots_txt_and_a_meta_description_are_there_for_search_engines(backend: Backend) {
    let app = TestApp::start(backend).await;
    let robots = app.get("/robots.txt").await;
    assert_eq!(robots.status, StatusCode::OK);
    assert_eq!(robots.header("content-type"), "text/plain; charset=utf-8");
    assert!(
        robots.body.starts_with("User-agent: *\n"),
        "{}",
        robots.body
    );
    for path in ["/", "/searchform", "/searchresults?author=ker", "/nope"] {
        let page = app.get(path).await;
        assert!(
            page.body
                .contains(r#"<meta name="description" content="Find books by their author"#),
            "{path}"
        );
    }
}

async fn the_footer_says_the_time_zone(backend: Backend) {
    // The test server's clock is UTC (a real server's comes from TZ: see tests/cli.rs).
    let app = TestApp::start(backend).await;
    for path in ["/", "/searchresults?author=ker", "/nope"] {
        let text = app.get(path).await.text();
        let today = &text[text.find("Today is ").unwrap_or_else(|| panic!("{text}"))..];
        assert!(today.ends_with(" UTC."), "{path}: {today}");
    }
}

async fn the_search_as_you_type_script_is_served_from_static(backend: Backend) {
    let app = TestApp::start(backend).await;
    let script = app.get("/static/search.js").await;
    assert_eq!(script.status, StatusCode::OK);
    assert_eq!(
        script.header("content-type"),
        "text/javascript; charset=utf-8"
    );
    assert!(script.body.contains("/api/books"), "{}", script.body);
    for (path, has_script) in [
        ("/", false),
        ("/searchform", true),
        ("/searchresults?author=ker", true),
    ] {
        let page = app.get(path).await;
        let tag = format!(
            r#"<script src="{}" defer></script>"#,
            penny::assets::url("search.js")
        );
        assert_eq!(page.body.contains(&tag), has_script, "{path}");
        assert_eq!(
            page.body.matches("<script").count(),
            usize::from(has_script),
            "{path}"
        );
    }
}

//! Hostile input: malformed and smuggling-shaped HTTP over raw sockets, CRLF injection through
//! the author (into the cookie and the API's Link header) and the `prev_author` cookie, and
//! lists of XSS and SQL-injection payloads sent through every place an author can go. Penny must answer each with a 4xx, a page that shows
//! the payload as text, or a closed connection: never a 5xx, never a hang, never an injected
//! header, never a file from outside assets/, and its database must come out intact.

#[macro_use]
mod common;

use common::{Backend, TestApp, TestResponse};
use hyper::StatusCode;
use penny::fold::fold;
use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use std::time::{Duration, Instant};

suite! {
    read_only: [
        crlf_in_the_author_or_the_cookie_never_becomes_a_response_header,
        xss_payloads_are_shown_as_text_on_every_page_and_as_json_in_the_api,
        sql_injection_payloads_are_searched_for_as_plain_text,
        payloads_in_page_links_are_plain_text_too,
        a_nul_escaped_into_a_page_link_never_gets_a_server_error,
    ],
    writable: [
        books_whose_author_is_a_payload_round_trip_exactly_and_are_escaped,
        an_author_never_breaks_out_of_the_link_header,
    ],
}

// ---------------------------------------------------------------------------------------------
// Part 1: malformed HTTP over raw sockets.
// ---------------------------------------------------------------------------------------------

/// What a case of the corpus may get back.
#[derive(Clone, Copy, Debug)]
enum Fate {
    /// At most one response, and a 4xx; or the connection closed with nothing sent.
    Refused,
    /// A request that looks odd but is valid HTTP: exactly these statuses, in this order, and
    /// nothing more (in particular no answer to a request smuggled in after them).
    Answered(&'static [u16]),
}

/// One response cut out of what a raw connection read.
#[derive(Debug)]
struct RawResponse {
    status: u16,
    /// The header lines, as sent.
    headers: Vec<String>,
    body: String,
}

/// The responses in `raw`, one after the other (Penny always sends a Content-Length).
fn responses(raw: &str) -> Vec<RawResponse> {
    let mut rest = raw;
    let mut found = Vec::new();
    while !rest.is_empty() {
        let (head, after) = rest
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("an incomplete response head in {raw:?}"));
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        let status = status_line
            .strip_prefix("HTTP/1.1 ")
            .or_else(|| status_line.strip_prefix("HTTP/1.0 "))
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("not a status line: {status_line:?} in {raw:?}"));
        let headers: Vec<String> = lines.map(str::to_owned).collect();
        let length = headers
            .iter()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().unwrap())
            })
            .unwrap_or(0);
        let body = after
            .get(..length)
            .unwrap_or_else(|| panic!("a body shorter than its Content-Length in {raw:?}"));
        found.push(RawResponse {
            status,
            headers,
            body: body.to_owned(),
        });
        rest = &after[length..];
    }
    found
}

/// The header names Penny and hyper send; anything else in a response was injected.
const RESPONSE_HEADERS: &[&str] = &[
    "allow",
    "cache-control",
    "connection",
    "content-length",
    "content-security-policy",
    "content-type",
    "date",
    "etag",
    "link",
    "referrer-policy",
    "set-cookie",
    "x-content-type-options",
    "x-frame-options",
    "x-total-count",
    "x-total-count-exact",
];

/// Every header line of `response` is one Penny sends, and none is one a request tried to
/// inject.
fn assert_no_injected_header(response: &RawResponse, context: &str) {
    for line in &response.headers {
        let lower = line.to_ascii_lowercase();
        let name = lower.split(':').next().unwrap();
        assert!(
            RESPONSE_HEADERS.contains(&name),
            "{context}: a header Penny never sends: {line:?}"
        );
        assert!(
            !lower.starts_with("set-cookie: admin") && !lower.starts_with("x-injected"),
            "{context}: an injected header: {line:?}"
        );
    }
}

/// What must never come back from a path under /static/: Cargo.toml, /etc/passwd, penny.sql.
fn assert_no_file_from_outside_assets(raw: &str, context: &str) {
    for marker in ["[package]", "root:x:0:0", "CREATE TABLE", "[dependencies]"] {
        assert!(
            !raw.contains(marker),
            "{context}: a file outside assets/ leaked: {raw}"
        );
    }
}

/// `request_line`, a Host, `headers` (each ending in CRLF) and `Connection: close`.
fn head(request_line: &[u8], headers: &[u8]) -> Vec<u8> {
    [
        request_line,
        b"\r\nHost: penny\r\n",
        headers,
        b"Connection: close\r\n\r\n",
    ]
    .concat()
}

/// `GET target` with `headers` (each ending in CRLF) and `Connection: close`.
fn get(target: &str, headers: &str) -> Vec<u8> {
    head(
        format!("GET {target} HTTP/1.1").as_bytes(),
        headers.as_bytes(),
    )
}

/// `request` followed by `body`.
fn with_body(request: Vec<u8>, body: &str) -> Vec<u8> {
    [request, body.as_bytes().to_vec()].concat()
}

/// A request that could smuggle another in after it: `GET /healthz` with `headers` (each ending
/// in CRLF), kept alive, then `body`, then `GET /smuggled` (which closes the connection).
fn then_smuggled(request_line: &str, headers: &str, body: &str) -> Vec<u8> {
    format!(
        "{request_line}\r\nHost: penny\r\n{headers}\r\n{body}\
         GET /smuggled HTTP/1.1\r\nHost: penny\r\nConnection: close\r\n\r\n"
    )
    .into_bytes()
}

/// `GET /healthz` kept alive with `headers` and `body`, then a second request (see
/// `then_smuggled`).
fn get_then_smuggled(headers: &str, body: &str) -> Vec<u8> {
    then_smuggled("GET /healthz HTTP/1.1", headers, body)
}

/// `count` header lines of `value_bytes` bytes each.
fn headers(count: usize, value_bytes: usize) -> String {
    let value = "v".repeat(value_bytes);
    (0..count)
        .map(|i| format!("X-Header-{i}: {value}\r\n"))
        .collect()
}

/// A complete request, sent as the body of another.
const HIDDEN: &str = "GET /healthz HTTP/1.1\r\nHost: penny\r\n\r\n";

/// The corpus: a name, the bytes sent on a fresh connection, and what they may get.
fn corpus() -> Vec<(&'static str, Vec<u8>, Fate)> {
    use Fate::{Answered, Refused};
    let big = "a".repeat(64 * 1024);
    let many: String = (0..500).map(|i| format!("X-Header-{i}: v\r\n")).collect();
    let chunked = "Transfer-Encoding: chunked\r\n";
    [
        // Request lines that are not HTTP/1.x.
        (
            "a TLS ClientHello",
            b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n".to_vec(),
            Refused,
        ),
        ("a lone word", b"HELLO\r\n\r\n".to_vec(), Refused),
        (
            "three words that are not HTTP",
            b"FOO BAR BAZ\r\n\r\n".to_vec(),
            Refused,
        ),
        (
            "an HTTP/0.9 request line",
            b"GET /\r\n\r\n".to_vec(),
            Refused,
        ),
        ("HTTP/9.9", head(b"GET / HTTP/9.9", b""), Refused),
        ("HTTP/1.x", head(b"GET / HTTP/1.x", b""), Refused),
        ("HTTP/2.0 in text", head(b"GET / HTTP/2.0", b""), Refused),
        ("HTTP/1.1.1", head(b"GET / HTTP/1.1.1", b""), Refused),
        ("a lowercase version", head(b"GET / http/1.1", b""), Refused),
        (
            "the HTTP/2 preface",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
            Refused,
        ),
        ("a lowercase method", head(b"get / HTTP/1.1", b""), Refused),
        (
            "a control byte in the method",
            head(b"G\x01T / HTTP/1.1", b""),
            Refused,
        ),
        (
            "tabs between the words",
            head(b"GET\t/\tHTTP/1.1", b""),
            Refused,
        ),
        (
            "two spaces between the words",
            head(b"GET  /  HTTP/1.1", b""),
            Refused,
        ),
        (
            "a 20 KiB method",
            head(
                format!("{} / HTTP/1.1", "A".repeat(20 * 1024)).as_bytes(),
                b"",
            ),
            Refused,
        ),
        ("a 64 KiB path", get(&format!("/{big}"), ""), Refused),
        (
            "a 64 KiB query",
            get(&format!("/searchresults?author={big}"), ""),
            Refused,
        ),
        ("a NUL in the path", get("/\0", ""), Refused),
        (
            "a NUL in the query",
            get("/searchresults?author=a\0b", ""),
            Refused,
        ),
        ("a control byte in the path", get("/\x01", ""), Refused),
        ("a DEL in the path", get("/\x7f", ""), Refused),
        (
            "invalid UTF-8 in the path",
            head(b"GET /static/\xff\xfe HTTP/1.1", b""),
            Refused,
        ),
        (
            "invalid UTF-8 in the query",
            head(b"GET /searchresults?author=\xc3\x28 HTTP/1.1", b""),
            Refused,
        ),
        (
            "encoded invalid UTF-8 in the path",
            get("/static/%FF%FE", ""),
            Refused,
        ),
        (
            "a CRLF inside the request target",
            get("/searchresults?author=x\r\nSet-Cookie: admin=1", ""),
            Refused,
        ),
        (
            "a bare CR ending the request line",
            head(b"GET / HTTP/1.1\rX-A: 1", b""),
            Refused,
        ),
        // Headers.
        (
            "a 64 KiB header",
            get("/", &format!("X-Big: {big}\r\n")),
            Refused,
        ),
        ("500 headers", get("/", &many), Refused),
        // hyper takes at most 100 headers: Host, Connection and 98 more, not 99.
        ("100 headers", get("/", &headers(98, 1)), Answered(&[200])),
        ("101 headers", get("/", &headers(99, 1)), Refused),
        (
            "few headers over the size limit",
            get("/", &headers(80, 250)),
            Refused,
        ),
        (
            "a 15 KiB Cookie of a thousand pairs",
            get(
                "/searchform",
                &format!(
                    "Cookie: {}prev_author=Ker\r\n",
                    (0..1000)
                        .map(|i| format!("c{i:03}=v; "))
                        .collect::<String>()
                ),
            ),
            Answered(&[200]),
        ),
        (
            "ninety Cookie lines",
            get(
                "/searchform",
                &(0..90)
                    .map(|i| format!("Cookie: c{i}=v\r\n"))
                    .collect::<String>(),
            ),
            Answered(&[200]),
        ),
        (
            "a space inside a header name",
            get("/", "X Bad: 1\r\n"),
            Refused,
        ),
        (
            "a space before the colon",
            get("/", "X-Bad : 1\r\n"),
            Refused,
        ),
        (
            "an invalid byte in a header name",
            head(b"GET / HTTP/1.1", b"X-\xffBad: 1\r\n"),
            Refused,
        ),
        (
            "control bytes in a header value",
            get("/", "X-Bad: \x01\x7f\r\n"),
            Refused,
        ),
        ("an empty header name", get("/", ": empty\r\n"), Refused),
        (
            "a header line without a colon",
            get("/", "JustAName\r\n"),
            Refused,
        ),
        (
            "a bare CR inside a header value",
            get("/", "X-A: 1\rX-Injected: 1\r\n"),
            Refused,
        ),
        (
            "an obs-fold continuation with a space",
            get("/", "X-A: 1\r\n X-Injected: 1\r\n"),
            Refused,
        ),
        (
            "an obs-fold continuation with a tab",
            get("/", "X-A: 1\r\n\tX-Injected: 1\r\n"),
            Refused,
        ),
        (
            "a first header line starting with a space",
            head(b"GET / HTTP/1.1\r\n X-A: 1", b""),
            Refused,
        ),
        // Allowed by RFC 9110 5.5 (obs-text): the bytes are ignored, not reflected.
        (
            "bytes over 0x7F in a header value",
            head(b"GET / HTTP/1.1", b"X-A: \xff\xfe\r\n"),
            Answered(&[200]),
        ),
        // RFC 9112 2.2 lets a recipient take a bare LF as a line end; the X-Injected line is
        // then one more request header, which Penny never echoes.
        (
            "bare LF line ends",
            b"GET / HTTP/1.1\nHost: penny\nX-A: 1\nX-Injected: 1\nConnection: close\n\n".to_vec(),
            Answered(&[200]),
        ),
        // RFC 9112 2.2: empty lines before a request line are ignored.
        (
            "empty lines before the request line",
            [b"\r\n\r\n".to_vec(), get("/healthz", "")].concat(),
            Answered(&[200]),
        ),
        // Host (RFC 9112 3.2): exactly one on HTTP/1.1, at most one on HTTP/1.0.
        (
            "no Host on HTTP/1.1",
            b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n".to_vec(),
            Answered(&[400]),
        ),
        (
            "no Host on an absolute-form HTTP/1.1 target",
            b"GET http://penny/healthz HTTP/1.1\r\nConnection: close\r\n\r\n".to_vec(),
            Answered(&[400]),
        ),
        (
            "two Hosts",
            get("/healthz", "Host: elsewhere\r\n"),
            Answered(&[400]),
        ),
        (
            "two equal Hosts",
            get("/healthz", "Host: penny\r\n"),
            Answered(&[400]),
        ),
        (
            "two Hosts on HTTP/1.0",
            b"GET /healthz HTTP/1.0\r\nHost: penny\r\nHost: elsewhere\r\n\r\n".to_vec(),
            Answered(&[400]),
        ),
        (
            "no Host on HTTP/1.0",
            b"GET /healthz HTTP/1.0\r\n\r\n".to_vec(),
            Answered(&[200]),
        ),
        (
            "an empty Host",
            b"GET /healthz HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n".to_vec(),
            Answered(&[200]),
        ),
        // Content-Length.
        (
            "two equal Content-Lengths",
            get("/", "Content-Length: 0\r\nContent-Length: 0\r\n"),
            Answered(&[200]),
        ),
        (
            "two different Content-Lengths",
            with_body(
                get("/", "Content-Length: 0\r\nContent-Length: 5\r\n"),
                "hello",
            ),
            Refused,
        ),
        (
            "a Content-Length list",
            with_body(get("/", "Content-Length: 5, 6\r\n"), "hello"),
            Refused,
        ),
        (
            "a Content-Length list of equal values",
            with_body(get("/", "Content-Length: 5, 5\r\n"), "hello"),
            Refused,
        ),
        (
            "a negative Content-Length",
            get("/", "Content-Length: -1\r\n"),
            Refused,
        ),
        (
            "a Content-Length with a plus sign",
            with_body(get("/", "Content-Length: +5\r\n"), "hello"),
            Refused,
        ),
        (
            "a hex Content-Length",
            with_body(get("/", "Content-Length: 0x5\r\n"), "hello"),
            Refused,
        ),
        (
            "an overflowing Content-Length",
            get("/", "Content-Length: 99999999999999999999999\r\n"),
            Refused,
        ),
        // A Content-Length longer than what follows: Penny answers without reading the body,
        // and hyper closes rather than look for a next request inside it.
        (
            "a Content-Length swallowing a second request",
            get_then_smuggled("Content-Length: 100000\r\n", ""),
            Answered(&[200]),
        ),
        // Content-Length and Transfer-Encoding together (RFC 9112 6.3: chunked wins and the
        // connection is closed after the response): the smuggled request is never answered.
        (
            "CL.TE on a POST",
            then_smuggled(
                "POST / HTTP/1.1",
                &format!("Content-Length: 6\r\n{chunked}"),
                "0\r\n\r\n",
            ),
            Refused,
        ),
        (
            "TE.CL on a POST",
            then_smuggled(
                "POST / HTTP/1.1",
                &format!("{chunked}Content-Length: 4\r\n"),
                "5c\r\n",
            ),
            Refused,
        ),
        (
            "CL.TE on a GET",
            get_then_smuggled(&format!("Content-Length: 6\r\n{chunked}"), "0\r\n\r\n"),
            Answered(&[200]),
        ),
        (
            "TE.CL on a GET",
            get_then_smuggled(
                &format!("{chunked}Content-Length: 3\r\n"),
                "1\r\nG\r\n0\r\n\r\n",
            ),
            Answered(&[200]),
        ),
        (
            "CL with TE after a tab",
            get_then_smuggled(
                "Content-Length: 5\r\nTransfer-Encoding:\tchunked\r\n",
                "0\r\n\r\n",
            ),
            Answered(&[200]),
        ),
        // Transfer codings Penny cannot read: RFC 9112 6.3 says 400 and close.
        (
            "Transfer-Encoding: xchunked",
            get_then_smuggled("Transfer-Encoding: xchunked\r\n", "0\r\n\r\n"),
            Refused,
        ),
        (
            "xchunked with a Content-Length",
            get_then_smuggled(
                "Content-Length: 5\r\nTransfer-Encoding: xchunked\r\n",
                "0\r\n\r\n",
            ),
            Refused,
        ),
        (
            "Transfer-Encoding: identity",
            get_then_smuggled("Transfer-Encoding: identity\r\n", ""),
            Refused,
        ),
        (
            "chunked then identity",
            get_then_smuggled("Transfer-Encoding: chunked, identity\r\n", "0\r\n\r\n"),
            Refused,
        ),
        (
            "two Transfer-Encoding lines",
            get_then_smuggled(
                &format!("{chunked}Transfer-Encoding: identity\r\n"),
                "0\r\n\r\n",
            ),
            Refused,
        ),
        (
            "a quoted chunked",
            get_then_smuggled("Transfer-Encoding: \"chunked\"\r\n", "0\r\n\r\n"),
            Refused,
        ),
        (
            "a space before the Transfer-Encoding colon",
            get_then_smuggled(
                "Transfer-Encoding : chunked\r\nContent-Length: 5\r\n",
                "0\r\n\r\n",
            ),
            Refused,
        ),
        (
            "Transfer-Encoding folded onto the line before",
            get_then_smuggled(&format!("X-A: 1\r\n {chunked}"), "0\r\n\r\n"),
            Refused,
        ),
        (
            "a vertical tab before chunked",
            get_then_smuggled("Transfer-Encoding: \x0bchunked\r\n", "0\r\n\r\n"),
            Refused,
        ),
        (
            "Transfer-Encoding on HTTP/1.0",
            then_smuggled("GET / HTTP/1.0", chunked, "0\r\n\r\n"),
            Refused,
        ),
        // chunked applied twice, or after another coding: hyper takes any list that ends in
        // chunked; Penny reads a single chunked only (RFC 9112 6.1), answers 400 and closes.
        (
            "chunked, chunked",
            get_then_smuggled("Transfer-Encoding: chunked, chunked\r\n", "0\r\n\r\n"),
            Answered(&[400]),
        ),
        (
            "two chunked Transfer-Encoding lines",
            get_then_smuggled(&format!("{chunked}{chunked}"), "0\r\n\r\n"),
            Answered(&[400]),
        ),
        (
            "gzip, chunked",
            get_then_smuggled("Transfer-Encoding: gzip, chunked\r\n", "0\r\n\r\n"),
            Answered(&[400]),
        ),
        (
            "identity then chunked on two lines",
            get_then_smuggled(
                &format!("Transfer-Encoding: identity\r\n{chunked}"),
                "0\r\n\r\n",
            ),
            Answered(&[400]),
        ),
        // Chunked bodies on a GET. Valid ones are read and the next request is answered.
        (
            "CHUNKED in capitals",
            get_then_smuggled("Transfer-Encoding: CHUNKED\r\n", "0\r\n\r\n"),
            Answered(&[200, 404]),
        ),
        (
            "a valid chunked body",
            get_then_smuggled(chunked, "5\r\nhello\r\n0\r\n\r\n"),
            Answered(&[200, 404]),
        ),
        (
            "a chunk extension",
            get_then_smuggled(chunked, "5;ext=\"x\"\r\nhello\r\n0\r\n\r\n"),
            Answered(&[200, 404]),
        ),
        (
            "a trailer trying to inject a header",
            get_then_smuggled(chunked, "0\r\nX-Injected: 1\r\n\r\n"),
            Answered(&[200, 404]),
        ),
        // Invalid ones: Penny answers the (valid) head without reading the body, and hyper then
        // closes instead of reading on, so the request after the bad body is never answered.
        (
            "a chunk size that is not hex",
            get_then_smuggled(chunked, "zz\r\nhello\r\n0\r\n\r\n"),
            Answered(&[200]),
        ),
        (
            "an overflowing chunk size",
            get_then_smuggled(chunked, "ffffffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
            Answered(&[200]),
        ),
        (
            "a negative chunk size",
            get_then_smuggled(chunked, "-5\r\nhello\r\n0\r\n\r\n"),
            Answered(&[200]),
        ),
        (
            "a 0x chunk size",
            get_then_smuggled(chunked, "0x5\r\nhello\r\n0\r\n\r\n"),
            Answered(&[200]),
        ),
        (
            "chunk data longer than its size",
            get_then_smuggled(chunked, "5\r\nhelloXX\r\n0\r\n\r\n"),
            Answered(&[200]),
        ),
        (
            "chunk lines ending in bare LF",
            get_then_smuggled(chunked, "5\nhello\n0\n\n"),
            Answered(&[200]),
        ),
        // Pipelining: both answered, in order (the order is checked on content below).
        (
            "two GETs in one write",
            get_then_smuggled("", ""),
            Answered(&[200, 404]),
        ),
        // A whole request as the body of a GET is a body: the /healthz inside it is never
        // answered (that would make a third response, a 200).
        (
            "a request hidden in a Content-Length body",
            get_then_smuggled(&format!("Content-Length: {}\r\n", HIDDEN.len()), HIDDEN),
            Answered(&[200, 404]),
        ),
        // A bad request ends the pipeline: the one before it is answered, it gets a 400 and the
        // connection closes, so the one after it is not.
        (
            "a malformed request in the middle of a pipeline",
            [
                b"GET /healthz HTTP/1.1\r\nHost: penny\r\n\r\n".as_slice(),
                b"GET / HTTP/9.9\r\nHost: penny\r\n\r\n",
                b"GET /healthz HTTP/1.1\r\nHost: penny\r\nConnection: close\r\n\r\n",
            ]
            .concat(),
            Answered(&[200, 400]),
        ),
        // Paths trying to leave assets/.
        (
            "/static/../Cargo.toml",
            get("/static/../Cargo.toml", ""),
            Refused,
        ),
        (
            "/static/../../../../etc/passwd",
            get("/static/../../../../etc/passwd", ""),
            Refused,
        ),
        (
            "/static/%2e%2e/Cargo.toml",
            get("/static/%2e%2e/Cargo.toml", ""),
            Refused,
        ),
        (
            "/static/%2E%2E%2FCargo.toml",
            get("/static/%2E%2E%2FCargo.toml", ""),
            Refused,
        ),
        (
            "/static/..%2fCargo.toml",
            get("/static/..%2fCargo.toml", ""),
            Refused,
        ),
        (
            "/static/..%2F..%2F..%2Fetc%2Fpasswd",
            get("/static/..%2F..%2F..%2Fetc%2Fpasswd", ""),
            Refused,
        ),
        (
            "/static/%252e%252e%252fCargo.toml",
            get("/static/%252e%252e%252fCargo.toml", ""),
            Refused,
        ),
        (
            "/static/..\\Cargo.toml",
            get("/static/..\\Cargo.toml", ""),
            Refused,
        ),
        (
            "/static/..%5cCargo.toml",
            get("/static/..%5cCargo.toml", ""),
            Refused,
        ),
        (
            "/static/%c0%ae%c0%ae/Cargo.toml",
            get("/static/%c0%ae%c0%ae/Cargo.toml", ""),
            Refused,
        ),
        (
            "/static/....//Cargo.toml",
            get("/static/....//Cargo.toml", ""),
            Refused,
        ),
        (
            "/static/penny.css/../../Cargo.toml",
            get("/static/penny.css/../../Cargo.toml", ""),
            Refused,
        ),
        (
            "/static/%00../penny.sql",
            get("/static/%00../penny.sql", ""),
            Refused,
        ),
        (
            "/static//etc/passwd",
            get("/static//etc/passwd", ""),
            Refused,
        ),
        ("//etc/passwd", get("//etc/passwd", ""), Refused),
        (
            "/static/.%2e/Cargo.toml",
            get("/static/.%2e/Cargo.toml", ""),
            Refused,
        ),
        (
            "/static/%2e./Cargo.toml",
            get("/static/%2e./Cargo.toml", ""),
            Refused,
        ),
        (
            "/static/%2E%2e%2f..%2F%2e%2E/etc/passwd",
            get("/static/%2E%2e%2f..%2F%2e%2E/etc/passwd", ""),
            Refused,
        ),
        (
            "/static/..;/Cargo.toml",
            get("/static/..;/Cargo.toml", ""),
            Refused,
        ),
        (
            "/static/%u002e%u002e/Cargo.toml",
            get("/static/%u002e%u002e/Cargo.toml", ""),
            Refused,
        ),
        ("/../Cargo.toml", get("/../Cargo.toml", ""), Refused),
        (
            "/%2e%2e/%2e%2e/etc/passwd",
            get("/%2e%2e/%2e%2e/etc/passwd", ""),
            Refused,
        ),
        (
            "/favicon.ico/../Cargo.toml",
            get("/favicon.ico/../Cargo.toml", ""),
            Refused,
        ),
        // CRLF escaped into the path rather than the query: never decoded into a header.
        (
            "an encoded CRLF in a static path",
            get("/static/x%0d%0aX-Injected:%201", ""),
            Refused,
        ),
        (
            "an encoded CRLF after a page's path",
            get("/searchresults%0D%0ASet-Cookie:%20admin=1?author=ker", ""),
            Refused,
        ),
        ("/static/ alone", get("/static/", ""), Refused),
        // Absolute-form targets (RFC 9112 3.2.2: a server must accept them).
        (
            "an absolute-form target",
            get("http://example.com/healthz", ""),
            Answered(&[200]),
        ),
        (
            "an absolute-form traversal",
            get("http://example.com/static/../Cargo.toml", ""),
            Refused,
        ),
        (
            "an absolute-form encoded traversal",
            get("http://example.com/static/%2e%2e/penny.sql", ""),
            Refused,
        ),
        // Methods Penny does not serve.
        (
            "CONNECT to a host",
            head(b"CONNECT example.com:443 HTTP/1.1", b""),
            Refused,
        ),
        (
            "CONNECT to a local port",
            head(b"CONNECT 127.0.0.1:22 HTTP/1.1", b""),
            Refused,
        ),
        (
            "TRACE echoing a header",
            head(b"TRACE / HTTP/1.1", b"X-Injected: 1\r\n"),
            Refused,
        ),
        ("OPTIONS *", head(b"OPTIONS * HTTP/1.1", b""), Refused),
        ("an authority-form GET", get("example.com:80", ""), Refused),
    ]
    .into()
}

#[tokio::test]
async fn malformed_http_gets_a_4xx_or_a_closed_connection_never_a_5xx_or_a_hang() {
    let app = TestApp::start(Backend::Bundled).await;
    for (name, request, fate) in corpus() {
        let started = Instant::now();
        let raw = app.raw(&request).await;
        let took = started.elapsed();
        let shown: String = raw.chars().take(600).collect();
        // raw() gives up after 5 s: anything near that means the server kept the socket open.
        assert!(
            took < Duration::from_secs(4),
            "{name}: no answer and no close within {took:?}: {shown}"
        );
        let answers = responses(&raw);
        for response in &answers {
            assert!(response.status < 500, "{name}: a server error: {shown}");
            assert_no_injected_header(response, name);
        }
        assert_no_file_from_outside_assets(&raw, name);
        assert!(
            !raw.to_ascii_lowercase().contains("x-injected"),
            "{name}: an injected header came back: {shown}"
        );
        let statuses: Vec<u16> = answers.iter().map(|response| response.status).collect();
        match fate {
            Fate::Refused => assert!(
                statuses.is_empty() || (statuses.len() == 1 && (400..500).contains(&statuses[0])),
                "{name}: expected a 4xx or nothing, got {statuses:?}: {shown}"
            ),
            Fate::Answered(expected) => {
                assert_eq!(statuses, expected, "{name}: {shown}");
            }
        }
        let health = app.get("/healthz").await;
        assert_eq!(
            (health.status, health.body.as_str()),
            (StatusCode::OK, "ok\n"),
            "the server stopped answering after {name}"
        );
    }
    let page = app.get("/searchresults?author=ker").await;
    assert_eq!(page.table_rows().len(), 2, "{}", page.body);
}

#[tokio::test]
async fn a_doubled_chunked_coding_gets_a_400_that_closes_the_connection() {
    let app = TestApp::start(Backend::Bundled).await;
    for coding in ["chunked, chunked", "chunked\r\nTransfer-Encoding: chunked"] {
        let raw = app
            .raw(&get_then_smuggled(
                &format!("Transfer-Encoding: {coding}\r\n"),
                "5\r\nhello\r\n0\r\n\r\n",
            ))
            .await;
        let answers = responses(&raw);
        assert_eq!(
            answers.len(),
            1,
            "{coding}: the request after it was read: {raw}"
        );
        assert_eq!(answers[0].status, 400, "{raw}");
        assert!(
            answers[0]
                .headers
                .iter()
                .any(|line| line.eq_ignore_ascii_case("connection: close")),
            "{raw}"
        );
        assert!(answers[0].body.contains("Transfer-Encoding"), "{raw}");
    }
}

#[tokio::test]
async fn an_http_1_1_request_needs_exactly_one_host_and_http_1_0_none() {
    let app = TestApp::start(Backend::Bundled).await;
    for (request, status) in [
        ("GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 400),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
            400,
        ),
        (
            "GET /api/books?author=k HTTP/1.1\r\nConnection: close\r\n\r\n",
            400,
        ),
        ("GET / HTTP/1.0\r\n\r\n", 200),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            200,
        ),
    ] {
        let raw = app.raw(request.as_bytes()).await;
        let answers = responses(&raw);
        let statuses: Vec<u16> = answers.iter().map(|answer| answer.status).collect();
        assert_eq!(statuses, [status], "{request:?}: {raw}");
        if status == 400 {
            assert!(answers[0].body.contains("Host"), "{raw}");
        }
    }
}

#[tokio::test]
async fn pipelined_requests_are_all_answered_in_order() {
    let app = TestApp::start(Backend::Bundled).await;
    let raw = app
        .raw(
            b"GET /healthz HTTP/1.1\r\nHost: p\r\n\r\n\
              GET /api/books?author=sed HTTP/1.1\r\nHost: p\r\n\r\n\
              GET /nope HTTP/1.1\r\nHost: p\r\n\r\n\
              GET /searchresults?author=ker HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n",
        )
        .await;
    let answers = responses(&raw);
    let statuses: Vec<u16> = answers.iter().map(|response| response.status).collect();
    assert_eq!(statuses, [200, 200, 404, 200], "{raw}");
    assert_eq!(answers[0].body, "ok\n");
    assert!(answers[1].body.contains("Sedgewick"), "{}", answers[1].body);
    assert!(
        answers[2].body.contains("Page not found"),
        "{}",
        answers[2].body
    );
    assert!(answers[3].body.contains("Kernighan"), "{}", answers[3].body);
    assert!(
        !answers[3].body.contains("Sedgewick"),
        "{}",
        answers[3].body
    );
}

#[tokio::test]
async fn a_hundred_pipelined_requests_are_all_answered_in_order() {
    let app = TestApp::start(Backend::Bundled).await;
    let paths: Vec<&str> = (0..100)
        .map(|i| ["/healthz", "/nope", "/api/books?author=sed"][i % 3])
        .collect();
    let mut request = String::new();
    for (i, path) in paths.iter().enumerate() {
        let close = if i == paths.len() - 1 {
            "Connection: close\r\n"
        } else {
            ""
        };
        request.push_str(&format!("GET {path} HTTP/1.1\r\nHost: p\r\n{close}\r\n"));
    }
    let raw = app.raw(request.as_bytes()).await;
    let answers = responses(&raw);
    assert_eq!(answers.len(), paths.len(), "{raw}");
    for (path, answer) in paths.iter().zip(&answers) {
        match *path {
            "/healthz" => assert_eq!((answer.status, answer.body.as_str()), (200, "ok\n")),
            "/nope" => assert_eq!(answer.status, 404, "{}", answer.body),
            _ => {
                assert_eq!(answer.status, 200, "{}", answer.body);
                assert!(answer.body.contains("Sedgewick"), "{}", answer.body);
            }
        }
    }
}

#[tokio::test]
async fn a_static_path_can_only_ever_serve_a_file_from_assets() {
    let app = TestApp::start(Backend::Bundled).await;
    let css = app.get("/static/penny.css").await;
    assert_eq!(css.status, StatusCode::OK);
    // Suffixes and query strings do not change which file is served, and nothing else is.
    for path in [
        "/static/penny.css?../../Cargo.toml",
        "/static/penny.css?%2e%2e%2fCargo.toml",
    ] {
        let response = app.get(path).await;
        assert_eq!(response.status, StatusCode::OK, "{path}");
        assert_eq!(response.body, css.body, "{path}");
    }
    // Near misses of a real name are not normalized into it.
    for path in [
        "/static/./penny.css",
        "/static//penny.css",
        "/static/%70enny.css",
        "/static/penny.css/",
        "/static/penny.css%00",
        "/static/PENNY.CSS",
        "/static/assets/penny.css",
    ] {
        let response = app.get(path).await;
        assert_eq!(response.status, StatusCode::NOT_FOUND, "{path}");
        assert!(!response.body.contains("[package]"), "{path}");
    }
}

// ---------------------------------------------------------------------------------------------
// Part 2: CRLF injection through the author and the cookie, and the headers an author reaches.
// ---------------------------------------------------------------------------------------------

/// RFC 6265 4.1.1's cookie-octet: what a cookie value may hold unquoted.
fn is_cookie_octet(byte: u8) -> bool {
    matches!(byte, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E)
}

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

async fn crlf_in_the_author_or_the_cookie_never_becomes_a_response_header(backend: Backend) {
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

async fn an_author_never_breaks_out_of_the_link_header(backend: Backend) {
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

// ---------------------------------------------------------------------------------------------
// Part 3: XSS and SQL injection through every place an author goes.
// ---------------------------------------------------------------------------------------------

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

/// The HTML escaping maud applies to text.
fn escaped(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

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

fn encoded(text: &str) -> String {
    utf8_percent_encode(text, NON_ALPHANUMERIC).to_string()
}

/// The tags Penny's pages are made of.
const PENNY_TAGS: &[&str] = &[
    "!doctype", "html", "head", "meta", "title", "link", "body", "header", "main", "footer", "h1",
    "p", "a", "div", "nav", "table", "thead", "tbody", "tr", "th", "td", "form", "label", "input",
    "button", "span", "strong",
];

/// Penny's one script, the search as you type: the only `<script>` a page may hold.
const PENNY_SCRIPT: &str = r#"<script src="/static/search.js" defer></script>"#;

/// The previous search as a form page shows it, as HTML without its link: what a reader sees.
fn previous_search(body: &str) -> String {
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
fn assert_only_pennys_markup(body: &str, context: &str) {
    let body = &body.replacen(PENNY_SCRIPT, "", 1);
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
fn json(response: &TestResponse, context: &str) -> serde_json::Value {
    assert_eq!(
        response.header("content-type"),
        "application/json",
        "{context}"
    );
    serde_json::from_str(&response.body)
        .unwrap_or_else(|err| panic!("{context}: invalid JSON ({err}): {}", response.body))
}

/// The books in an /api/books answer, as (isbn, author, title), checking their shape.
fn api_books(value: &serde_json::Value, context: &str) -> Vec<(String, String, String)> {
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

async fn xss_payloads_are_shown_as_text_on_every_page_and_as_json_in_the_api(backend: Backend) {
    let app = TestApp::start(backend).await;
    for payload in XSS {
        send_payload(&app, payload).await;
    }
    assert_database_intact(&app).await;
}

async fn sql_injection_payloads_are_searched_for_as_plain_text(backend: Backend) {
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

async fn payloads_in_page_links_are_plain_text_too(backend: Backend) {
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

async fn a_nul_escaped_into_a_page_link_never_gets_a_server_error(backend: Backend) {
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

async fn books_whose_author_is_a_payload_round_trip_exactly_and_are_escaped(backend: Backend) {
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

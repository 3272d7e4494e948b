//! Malformed and smuggling-shaped HTTP over raw sockets, from a corpus of cases each with the
//! fate it may meet; pipelining; and paths under /static/ that try to leave assets/.

use crate::common::{Backend, TestApp};
use crate::raw::{assert_no_injected_header, get, head, responses};
use hyper::StatusCode;
use std::time::{Duration, Instant};

/// What a case of the corpus may get back.
#[derive(Clone, Copy, Debug)]
enum Fate {
    /// At most one response, and a 4xx; or the connection closed with nothing sent.
    Refused,
    /// A request that looks odd but is valid HTTP: exactly these statuses, in this order, and
    /// nothing more (in particular no answer to a request smuggled in after them).
    Answered(&'static [u16]),
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

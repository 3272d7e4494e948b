//! Raw HTTP for the hostile tests: requests written byte by byte, and the responses read off the
//! socket cut into status, header lines and body, checked for headers Penny never sends.

/// `request_line`, a Host, `headers` (each ending in CRLF) and `Connection: close`.
pub fn head(request_line: &[u8], headers: &[u8]) -> Vec<u8> {
    [
        request_line,
        b"\r\nHost: penny\r\n",
        headers,
        b"Connection: close\r\n\r\n",
    ]
    .concat()
}

/// `GET target` with `headers` (each ending in CRLF) and `Connection: close`.
pub fn get(target: &str, headers: &str) -> Vec<u8> {
    head(
        format!("GET {target} HTTP/1.1").as_bytes(),
        headers.as_bytes(),
    )
}

/// One response cut out of what a raw connection read.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// The header lines, as sent.
    pub headers: Vec<String>,
    pub body: String,
}

/// The responses in `raw`, one after the other (Penny always sends a Content-Length).
pub fn responses(raw: &str) -> Vec<RawResponse> {
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
pub const RESPONSE_HEADERS: &[&str] = &[
    "allow",
    "cache-control",
    "connection",
    "content-encoding",
    "content-length",
    "content-security-policy",
    "content-type",
    "date",
    "etag",
    "link",
    "location",
    "referrer-policy",
    "retry-after",
    "server-timing",
    "set-cookie",
    "strict-transport-security",
    "vary",
    "x-content-type-options",
    "x-frame-options",
    "x-request-id",
    "x-total-count",
    "x-total-count-exact",
];

/// Every header line of `response` is one Penny sends, and none is one a request tried to
/// inject.
pub fn assert_no_injected_header(response: &RawResponse, context: &str) {
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

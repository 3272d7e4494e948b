//! The properties Penny's parsers of outside input keep, one check per fuzz target. A check
//! takes the raw bytes a fuzzer or a corpus file supplies and panics when a property fails; the
//! targets in fuzz_targets/ and the stable test tests/fuzz_corpus.rs both call these.

use http_body_util::BodyExt;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use penny::assets;
use penny::config::{Config, DatabaseUrl, PoolConfig};
use penny::db::{Cursor, Db, Position};
use penny::input::{self, InputError, MAX_AUTHOR_CHARS, Search};
use penny::routes::{self, App};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use std::ops::RangeInclusive;
use std::sync::LazyLock;
use std::time::Duration;

/// A property check: panics when `data` breaks a property.
pub type Check = fn(data: &[u8]);

/// Every fuzz target, by name, with its check.
pub const TARGETS: &[(&str, Check)] = &[
    ("query", query),
    ("page_link", page_link),
    ("cookie", cookie),
    ("database_url", database_url),
    ("environment", environment),
    ("if_none_match", if_none_match),
    ("request", request),
];

/// Splits `data` into `N` fields at 0xFF bytes, which UTF-8 never uses, so a corpus file stays
/// readable. Missing fields are `None`; the last field keeps any further 0xFF bytes.
fn fields<const N: usize>(data: &[u8]) -> [Option<&[u8]>; N] {
    let mut parts = data.splitn(N, |&byte| byte == 0xFF);
    std::array::from_fn(|_| parts.next())
}

/// A field as text: invalid UTF-8 becomes U+FFFD, a missing field is empty.
fn text(field: Option<&[u8]>) -> String {
    String::from_utf8_lossy(field.unwrap_or_default()).into_owned()
}

/// Text someone could have typed: no control characters and no Unicode noncharacters.
fn typeable(text: &str) -> bool {
    !text.chars().any(|c| {
        c.is_control() || ('\u{FDD0}'..='\u{FDEF}').contains(&c) || (c as u32) & 0xFFFE == 0xFFFE
    })
}

/// An author a search accepts as it is: not blank, already trimmed, at most 100 characters,
/// typeable.
fn acceptable_author(author: &str) -> bool {
    !author.is_empty()
        && author.trim() == author
        && author.chars().count() <= MAX_AUTHOR_CHARS
        && typeable(author)
}

fn cursor_is_typeable(cursor: &Cursor) -> bool {
    [&cursor.author, &cursor.title, &cursor.isbn]
        .iter()
        .all(|field| typeable(field))
}

/// The search in the query of `link`.
fn search_in(link: &str) -> Result<Option<Search>, InputError> {
    input::search(link.split_once('?').map(|(_, query)| query))
}

/// A query string, as `/searchresults` and `/api/books` read it. A malformed escape anywhere is
/// an error; a search that is accepted has an acceptable author and typeable cursor fields; and
/// the link Penny would print for it reads back as the same search.
pub fn query(data: &[u8]) {
    let [raw] = fields(data);
    let query = text(raw);
    let result = input::search(Some(&query));
    let bytes = query.as_bytes();
    let malformed = query.match_indices('%').any(|(i, _)| {
        !bytes
            .get(i + 1..i + 3)
            .is_some_and(|escape| escape.iter().all(u8::is_ascii_hexdigit))
    });
    if malformed {
        assert!(result.is_err(), "{query:?} gave {result:?}");
    }
    let Ok(Some(search)) = result else {
        return;
    };
    assert!(
        acceptable_author(&search.author),
        "{query:?} gave the author {:?}",
        search.author
    );
    if let Position::After(cursor) | Position::Before(cursor) = &search.position {
        assert!(cursor_is_typeable(cursor), "{query:?} gave {cursor:?}");
    }
    let (path, author) = ("/searchresults", &search.author);
    let link = match &search.position {
        Position::First => format!(
            "{path}?author={}",
            utf8_percent_encode(author, NON_ALPHANUMERIC)
        ),
        Position::After(cursor) => input::page_link(path, author, "after", cursor, search.page),
        Position::Before(cursor) => input::page_link(path, author, "before", cursor, search.page),
    };
    assert_eq!(search_in(&link), Ok(Some(search)), "{query:?} -> {link}");
}

/// `page_link` for any author and cursor: [direction, author, cursor author, title, isbn]. The
/// link is printable ASCII that a URI and a Link header can carry, and it reads back as the
/// same search, or as the error the same text typed into the form would get.
pub fn page_link(data: &[u8]) {
    let [direction, author, cursor_author, title, isbn] = fields(data);
    let direction = if text(direction) == "before" {
        "before"
    } else {
        "after"
    };
    let author = text(author);
    let cursor = Cursor {
        author: text(cursor_author),
        title: text(title),
        isbn: text(isbn),
    };
    let link = input::page_link("/api/books", &author, direction, &cursor, 2);
    assert!(link.bytes().all(|b| b.is_ascii_graphic()), "{link}");
    Uri::try_from(link.as_str()).unwrap_or_else(|err| panic!("{link} is not a URI: {err}"));
    HeaderValue::try_from(format!("<{link}>; rel=\"next\""))
        .unwrap_or_else(|err| panic!("{link} cannot be a Link header: {err}"));

    let trimmed = author.trim();
    let json = serde_json::to_string(&cursor).expect("a cursor serializes to JSON");
    let expected = if author.contains('\0') {
        Err(InputError::Nul)
    } else if trimmed.is_empty() {
        Ok(None)
    } else if trimmed.chars().count() > MAX_AUTHOR_CHARS {
        Err(InputError::AuthorTooLong)
    } else if !typeable(trimmed) {
        Err(InputError::ControlCharacter)
    } else if penny::fold::fold(trimmed).is_empty() {
        Ok(None)
    } else if !cursor_is_typeable(&cursor) || json.len() > 4096 {
        Err(InputError::BadPageLink)
    } else {
        let position = match direction {
            "before" => Position::Before(cursor),
            _ => Position::After(cursor),
        };
        Ok(Some(Search {
            author: trimmed.to_owned(),
            position,
            page: 2,
        }))
    };
    assert_eq!(search_in(&link), expected, "{link}");
}

/// The `prev_author` cookie: [Cookie header lines, author]. Whatever the Cookie headers hold,
/// a remembered author is acceptable; the Set-Cookie value for any author is printable ASCII
/// with its attributes, and reads back as that author exactly when a search would accept it.
pub fn cookie(data: &[u8]) {
    let [lines, author] = fields(data);
    let mut headers = HeaderMap::new();
    for line in lines.unwrap_or_default().split(|&byte| byte == b'\n') {
        if let Ok(value) = HeaderValue::from_bytes(line) {
            headers.append(header::COOKIE, value);
        }
    }
    if let Some(remembered) = input::prev_author(&headers) {
        assert!(
            acceptable_author(&remembered),
            "{headers:?} gave {remembered:?}"
        );
    }

    let author = text(author);
    for secure in [false, true] {
        let set_cookie = input::prev_author_cookie(&author, secure);
        let value = set_cookie
            .to_str()
            .unwrap_or_else(|_| panic!("{set_cookie:?} is not ASCII"));
        assert!(value.bytes().all(|b| b == b' ' || b.is_ascii_graphic()));
        assert_eq!(value.contains("; Secure"), secure, "{value}");
        for attribute in ["; HttpOnly", "; SameSite=Lax", "; Path=/"] {
            assert!(value.contains(attribute), "{value}");
        }
        let (pair, _) = value.split_once(';').expect("the cookie has attributes");
        let mut sent = HeaderMap::new();
        sent.insert(header::COOKIE, HeaderValue::from_str(pair).expect("ASCII"));
        let expected = acceptable_author(&author).then(|| author.clone());
        assert_eq!(input::prev_author(&sent), expected, "{value}");
    }
}

/// DATABASE_URL: [url, PGSSLMODE, PGSSLROOTCERT, PENNY_PGBOUNCER], each variable unset when
/// its field is missing. Whatever the password in `scheme://user:password@…` is, only its
/// length and punctuation can matter: with every letter and digit of it changed, the error
/// message, the description and the Debug output are the same. So none of them shows any part
/// of the password.
pub fn database_url(data: &[u8]) {
    let [url, sslmode, rootcert, pgbouncer] = fields(data);
    let url = text(url);
    let env = [
        ("PGSSLMODE", sslmode),
        ("PGSSLROOTCERT", rootcert),
        ("PENNY_PGBOUNCER", pgbouncer),
    ]
    .map(|(name, value)| (name, value.map(|value| text(Some(value)))));
    let lookup = |name: &str| {
        env.iter()
            .find(|(var, _)| *var == name)
            .and_then(|(_, value)| value.clone())
    };
    let outcome = |url: &str| match DatabaseUrl::parse_with(Some(url), &lookup) {
        Ok(DatabaseUrl::Postgres(pg)) => Some(format!("{} / {pg:?}", pg.describe())),
        Ok(_) => None,
        Err(err) => Some(format!("error: {err} / {err:?}")),
    };
    let before = outcome(&url);

    let Some((start, end)) = password_span(&url) else {
        return;
    };
    let password = &url[start..end];
    let other: String = password.chars().map(other_character).collect();
    let changed = format!("{}{other}{}", &url[..start], &url[end..]);
    assert_eq!(
        before,
        outcome(&changed),
        "the password {password:?} in {url:?} shows"
    );
}

/// Where the password is in `scheme://user:password@…`, as libpq and tokio-postgres read it:
/// from the first `:` of the credentials to the first `@`.
fn password_span(url: &str) -> Option<(usize, usize)> {
    let url_start = url.len() - url.trim_start().len();
    let credentials_start = url_start + url.trim_start().find("://")? + 3;
    let credentials_end = credentials_start + url[credentials_start..].find('@')?;
    let colon = url[credentials_start..credentials_end].find(':')?;
    Some((credentials_start + colon + 1, credentials_end))
}

/// Another letter or digit of the same kind (a hex digit stays a hex digit, so escapes stay
/// escapes); anything else is left alone.
fn other_character(c: char) -> char {
    let shift =
        |c: char, first: char, len: u8| char::from(first as u8 + (c as u8 - first as u8 + 1) % len);
    match c {
        '0'..='9' => shift(c, '0', 10),
        'a'..='f' => shift(c, 'a', 6),
        'A'..='F' => shift(c, 'A', 6),
        'g'..='z' => shift(c, 'g', 20),
        'G'..='Z' => shift(c, 'G', 20),
        _ => c,
    }
}

/// The pool, limit and port settings: [PENNY_POOL_SIZE, PENNY_POOL_TIMEOUT_SECS,
/// PENNY_POOL_IDLE_SECS, PENNY_POOL_LIFETIME_SECS, PENNY_QUERY_TIMEOUT_SECS, PENNY_MAX_IN_FLIGHT,
/// PORT], each unset when its field is missing. Every setting in range
/// is taken as written, a missing one gets its default, and one out of range stops start-up
/// with an error that names the first bad setting.
pub fn environment(data: &[u8]) {
    let [size, timeout, idle, lifetime, query, in_flight, port] =
        fields(data).map(|field| field.map(|value| text(Some(value))));
    let env = [
        ("PENNY_POOL_SIZE", &size),
        ("PENNY_POOL_TIMEOUT_SECS", &timeout),
        ("PENNY_POOL_IDLE_SECS", &idle),
        ("PENNY_POOL_LIFETIME_SECS", &lifetime),
        ("PENNY_QUERY_TIMEOUT_SECS", &query),
        ("PENNY_MAX_IN_FLIGHT", &in_flight),
        ("PORT", &port),
    ];
    let result = Config::from_lookup(|name| {
        env.iter()
            .find(|(var, _)| *var == name)
            .and_then(|(_, value)| (*value).clone())
    });

    // Each setting as it should be read: None when unset, Some(None) when out of range.
    let read = |value: &Option<String>, range: RangeInclusive<u32>| {
        value.as_ref().map(|value| {
            let n = value.trim().parse::<u32>().ok();
            n.filter(|n| range.contains(n))
        })
    };
    let pool = [
        read(&size, 1..=1000),
        read(&timeout, 1..=60),
        read(&idle, 1..=86_400),
        read(&lifetime, 1..=86_400),
        read(&query, 1..=60),
        read(&in_flight, 1..=100_000),
    ];
    let port_number = port.as_ref().map(|port| port.trim().parse::<u16>().ok());
    let out_of_range = pool.map(|setting| setting == Some(None));
    let first_bad = env
        .iter()
        .zip(out_of_range.into_iter().chain([port_number == Some(None)]))
        .find(|(_, bad)| *bad)
        .map(|((name, _), _)| *name);
    let config = match (result, first_bad) {
        (Err(err), Some(name)) => {
            assert!(err.to_string().starts_with(name), "{err} for {env:?}");
            return;
        }
        (Err(err), None) => panic!("{err} for {env:?}, all in range"),
        (Ok(config), Some(name)) => panic!("{name} out of range taken in {env:?}: {config:?}"),
        (Ok(config), None) => config,
    };
    let defaults = PoolConfig::default();
    let [size, timeout, idle, lifetime, query, in_flight] = pool.map(Option::flatten);
    let secs =
        |secs: Option<u32>, default| secs.map_or(default, |secs| Duration::from_secs(secs.into()));
    let expected = PoolConfig {
        size: size.unwrap_or(defaults.size),
        checkout_timeout: secs(timeout, defaults.checkout_timeout),
        idle_timeout: secs(idle, defaults.idle_timeout),
        max_lifetime: secs(lifetime, defaults.max_lifetime),
        query_timeout: secs(query, defaults.query_timeout),
    };
    assert_eq!(config.pool, expected, "{env:?}");
    assert_eq!(
        config.max_in_flight,
        in_flight.map_or(1024, |n| n as usize),
        "{env:?}"
    );
    let bind = match port_number.flatten() {
        Some(port) => format!("0.0.0.0:{port}"),
        None => "127.0.0.1:8000".into(),
    };
    assert_eq!(config.bind.to_string(), bind, "{env:?}");
}

/// `If-None-Match` against an asset's ETag: [header, asset name]. A header matches only if it
/// holds `*` or the tag, and adding the tag (strong or weak) to any list makes it match.
pub fn if_none_match(data: &[u8]) {
    let [raw, name] = fields(data);
    let Ok(if_none_match) = HeaderValue::from_bytes(raw.unwrap_or_default()) else {
        return;
    };
    let etag = &assets::get(&text(name))
        .or_else(|| assets::get("penny.css"))
        .expect("the stylesheet is embedded")
        .0
        .identity()
        .etag;
    let tag = etag.to_str().expect("ETags are ASCII");
    if assets::matches_etag(&if_none_match, etag) {
        let list = if_none_match.to_str().expect("a matching header is ASCII");
        assert!(list.contains('*') || list.contains(tag), "{list:?}");
    }
    if let Ok(list) = if_none_match.to_str() {
        for added in [format!("{list}, {tag}"), format!("{list},W/{tag}")] {
            let header = HeaderValue::from_str(&added).expect("still a header value");
            assert!(assets::matches_etag(&header, etag), "{added:?}");
        }
    }
}

/// The whole app over the bundled demo database, built once.
static APP: LazyLock<(tokio::runtime::Runtime, App)> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime starts");
    let db = runtime
        .block_on(Db::open(&DatabaseUrl::Bundled, &PoolConfig::default()))
        .expect("the bundled database opens");
    let clock = penny::clock::Clock::utc();
    (
        runtime,
        App {
            db,
            clock,
            https_only: false,
            pool_view: true,
        },
    )
});

/// The tags Penny's pages are made of.
const PENNY_TAGS: &[&str] = &[
    "!doctype", "html", "head", "meta", "title", "link", "body", "header", "main", "footer", "h1",
    "p", "a", "div", "nav", "table", "thead", "tbody", "tr", "th", "td", "form", "label", "input",
    "button", "span", "strong", "code",
];

/// Penny's one script, the search as you type: the only `<script>` a page may hold.
fn penny_script() -> String {
    format!(
        r#"<script src="{}" defer></script>"#,
        assets::url("search.js")
    )
}

/// A request to the app: [method, request target, Cookie, If-None-Match, X-Forwarded-Proto].
/// Over the bundled database no request gets a 5xx; every response has the security headers;
/// HTML holds only Penny's tags and JSON parses; a cookie is set only by a search, remembers its
/// author and is Secure only over https; Link headers read back as the same search; and only
/// the embedded files are served under /static/.
pub fn request(data: &[u8]) {
    let [method, target, cookie, if_none_match, proto] = fields(data);
    let Ok(method) = Method::from_bytes(method.filter(|m| !m.is_empty()).unwrap_or(&b"GET"[..]))
    else {
        return;
    };
    let Ok(uri) = Uri::try_from(target.unwrap_or(&b"/"[..])) else {
        return;
    };
    let mut request = Request::builder()
        .method(method.clone())
        .uri(uri.clone())
        .body(())
        .expect("a method and a URI make a request");
    for (name, value) in [
        (header::COOKIE, cookie),
        (header::IF_NONE_MATCH, if_none_match),
        (header::HeaderName::from_static("x-forwarded-proto"), proto),
    ] {
        if let Some(Ok(value)) = value.map(HeaderValue::from_bytes) {
            request.headers_mut().insert(name, value);
        }
    }
    let (runtime, app) = &*APP;
    let (parts, body) = runtime.block_on(async {
        let request_id = HeaderValue::from_static("fuzz-request");
        let (parts, body) = routes::handle(app, &request, &request_id)
            .await
            .into_parts();
        let body = body.collect().await.expect("a full body").to_bytes();
        (parts, body)
    });
    let context = format!("{method} {uri} {:?}", request.headers());
    let status = parts.status;
    let headers = &parts.headers;

    assert!(!status.is_server_error(), "{status} for {context}");
    for name in [
        header::CONTENT_SECURITY_POLICY,
        header::X_CONTENT_TYPE_OPTIONS,
        header::REFERRER_POLICY,
        header::X_FRAME_OPTIONS,
    ] {
        assert!(headers.contains_key(&name), "no {name} for {context}");
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|value| value.to_str().expect("ASCII"));
    if content_type == Some("text/html; charset=utf-8") {
        let html = std::str::from_utf8(&body).expect("HTML is UTF-8");
        assert_only_pennys_tags(html, &context);
    }
    if content_type == Some("application/json") {
        serde_json::from_slice::<serde_json::Value>(&body)
            .unwrap_or_else(|err| panic!("{err} in the JSON for {context}"));
    }

    let path = uri.path();
    let search = || {
        input::search(uri.query())
            .expect("a search that got an answer")
            .expect("a search with an author")
    };
    if let Some(set_cookie) = headers.get(header::SET_COOKIE) {
        assert_eq!(status, StatusCode::OK, "{context}");
        assert_eq!(path, "/searchresults", "{context}");
        let set_cookie = set_cookie.to_str().expect("ASCII");
        let (pair, _) = set_cookie.split_once(';').expect("attributes");
        let mut sent = HeaderMap::new();
        sent.insert(header::COOKIE, HeaderValue::from_str(pair).expect("ASCII"));
        assert_eq!(
            input::prev_author(&sent),
            Some(search().author),
            "{context}"
        );
        let https = request
            .headers()
            .get("x-forwarded-proto")
            .and_then(|proto| proto.to_str().ok())
            .is_some_and(|proto| proto.to_ascii_lowercase().contains("https"));
        assert!(https || !set_cookie.contains("; Secure"), "{context}");
    }
    if let Some(link) = headers.get(header::LINK) {
        let link = link.to_str().expect("ASCII");
        for part in link.split(", ") {
            let href = part
                .strip_prefix('<')
                .and_then(|part| part.split_once('>'))
                .map(|(href, _)| href)
                .unwrap_or_else(|| panic!("{link:?} for {context}"));
            let linked = search_in(href).expect("a link Penny made reads back");
            assert_eq!(linked.map(|s| s.author), Some(search().author), "{context}");
        }
    }
    if matches!(status, StatusCode::OK | StatusCode::NOT_MODIFIED)
        && let Some(name) = path.strip_prefix("/static/")
    {
        // The request accepts no coding: the file as it is.
        let (asset, _) = assets::get(name).unwrap_or_else(|| panic!("served {context}"));
        let identity = asset.identity();
        assert_eq!(headers.get(header::ETAG), Some(&identity.etag), "{context}");
        if status == StatusCode::OK {
            assert_eq!(&body[..], identity.body, "{context}");
        }
    }
}

/// Every tag in `html` is one of Penny's: no text became markup. Penny escapes `<` in text and
/// attribute values, so each `<` starts a tag.
fn assert_only_pennys_tags(html: &str, context: &str) {
    let html = &html.replacen(&penny_script(), "", 1);
    for (i, _) in html.match_indices('<') {
        let name: String = html[i + 1..]
            .trim_start_matches('/')
            .chars()
            .take_while(|&c| !c.is_whitespace() && c != '>' && c != '/')
            .collect::<String>()
            .to_ascii_lowercase();
        assert!(
            PENNY_TAGS.contains(&name.as_str()),
            "<{name}> for {context}"
        );
    }
}

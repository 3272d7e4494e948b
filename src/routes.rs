//! One match from path to page, one handler per page. Handlers return `Result`; `handle` turns
//! errors into pages (or JSON under /api/) and adds the security headers, so it cannot fail.

use crate::assets;
use crate::clock::Clock;
use crate::db::{Count, Db, PAGE_SIZE, Page, Timing};
use crate::error::AppError;
use crate::input;
use crate::views::{self, Greeting, PageLinks, Results, SearchBox};
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use maud::Markup;
use std::time::{Duration, Instant};

/// The response body type: every body is complete before it is sent.
pub type Body = Full<Bytes>;

/// What every handler can reach. Shared by all connections behind an `Arc`.
pub struct App {
    pub db: Db,
    /// The time of day the pages show.
    pub clock: Clock,
    /// Redirect http to https and send HSTS (see `Config::https_only`).
    pub https_only: bool,
    /// Answer /api/pool (see `Config::pool_view`).
    pub pool_view: bool,
}

enum Route<'a> {
    Home,
    SearchForm,
    SearchResults,
    ApiBooks,
    ApiPool,
    Health,
    Favicon,
    Robots,
    Static(&'a str),
}

fn route(path: &str) -> Option<Route<'_>> {
    Some(match path {
        "/" | "/index" => Route::Home,
        "/searchform" => Route::SearchForm,
        "/searchresults" => Route::SearchResults,
        "/api/books" => Route::ApiBooks,
        "/api/pool" => Route::ApiPool,
        "/healthz" => Route::Health,
        "/favicon.ico" => Route::Favicon,
        "/robots.txt" => Route::Robots,
        _ => Route::Static(path.strip_prefix("/static/")?),
    })
}

/// Answers one request. Never fails: errors become pages.
/// `request_id` is the one it is logged with (see `request_id`); a 5xx page shows it.
pub async fn handle<B>(app: &App, req: &Request<B>, request_id: &HeaderValue) -> Response<Body> {
    let proto = if app.https_only {
        forwarded_proto(req.headers())
    } else {
        None
    };
    let redirect = (proto == Some(Proto::Http))
        .then(|| to_https(req))
        .flatten();
    let mut response = match redirect {
        Some(redirect) => redirect,
        None => match Timing::record(dispatch(app, req)).await {
            Ok(response) => response,
            Err(err) => error_response(app, req, request_id, &err),
        },
    };
    add_security_headers(response.headers_mut());
    if proto == Some(Proto::Https) {
        // Browsers take it only over https: from then on they ask for https themselves.
        response
            .headers_mut()
            .insert(header::STRICT_TRANSPORT_SECURITY, HSTS);
    }
    response
}

/// A year, as HSTS guides advise; not for subdomains, which may be other people's apps.
const HSTS: HeaderValue = HeaderValue::from_static("max-age=31536000");

/// The redirect to https for a GET or HEAD that Heroku's router (or a proxy like it) says came
/// over http: 308, the same host without its port, path and query. Only such a request comes
/// here, so a plain local run (no X-Forwarded-Proto) or one over https already (no loop) never
/// does. `None` for /healthz (probes use plain http), another method (it gets its 405), or a
/// Host that is not a host name.
fn to_https<B>(req: &Request<B>) -> Option<Response<Body>> {
    if req.uri().path() == "/healthz"
        || (req.method() != Method::GET && req.method() != Method::HEAD)
    {
        return None;
    }
    let host = req.headers().get(header::HOST)?.to_str().ok()?;
    let authority: hyper::http::uri::Authority = host.parse().ok()?;
    let path = req.uri().path_and_query().map_or("/", |path| path.as_str());
    let location = format!("https://{}{path}", authority.host());
    let location = HeaderValue::try_from(location).ok()?;
    let mut response = Response::new(Body::from("Penny is served over https.\n"));
    *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, location);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Some(response)
}

/// The answer to a request that arrives while the server is at its limit of requests in flight:
/// a 503 (page or JSON, as for any error) that asks to come back in a second.
pub fn overloaded<B>(app: &App, req: &Request<B>, request_id: &HeaderValue) -> Response<Body> {
    refused(app, req, request_id, &AppError::Overloaded)
}

/// The answer to a request refused before it is routed (overload, bad framing): the error's
/// page or JSON, with the security headers.
pub fn refused<B>(
    app: &App,
    req: &Request<B>,
    request_id: &HeaderValue,
    err: &AppError,
) -> Response<Body> {
    let mut response = error_response(app, req, request_id, err);
    add_security_headers(response.headers_mut());
    response
}

fn error_response<B>(
    app: &App,
    req: &Request<B>,
    request_id: &HeaderValue,
    err: &AppError,
) -> Response<Body> {
    let path = req.uri().path();
    // A 5xx shows it, so that what a visitor reports can be found in the log.
    let request_id = request_id.to_str().ok();
    if err.is_logged() {
        tracing::error!(
            path,
            request_id,
            error = err.cause_chain(),
            "request failed"
        );
    }
    let shown_id = request_id.filter(|_| err.status().is_server_error());
    let mut response = if path.starts_with("/api/") {
        json_error(err, shown_id)
    } else {
        error_page(err, &app.clock.now().text, shown_id)
    };
    let headers = response.headers_mut();
    if matches!(err, AppError::MethodNotAllowed) {
        headers.insert(header::ALLOW, ALLOW);
    }
    if matches!(err, AppError::TransferEncoding) {
        // Where the body ends cannot be trusted, so neither can whatever follows it: hyper
        // closes the connection after this answer instead of reading a next request.
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if err.status() == StatusCode::SERVICE_UNAVAILABLE {
        // Outages and overload here pass in seconds; a well-behaved client comes back soon.
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

async fn dispatch<B>(app: &App, req: &Request<B>) -> Result<Response<Body>, AppError> {
    let route = route(req.uri().path()).ok_or(AppError::NotFound)?;
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Err(AppError::MethodNotAllowed);
    }
    match route {
        Route::Home => Ok(home(app, req)),
        Route::SearchForm => Ok(search_form(app, req)),
        Route::SearchResults => search_results(app, req).await,
        Route::ApiBooks => api_books(app, req).await,
        Route::ApiPool if app.pool_view => Ok(api_pool(app)),
        Route::ApiPool => Err(AppError::NotFound),
        Route::Health => Ok(healthz(app).await),
        Route::Favicon => static_file("favicon.ico", req),
        Route::Robots => static_file("robots.txt", req),
        Route::Static(name) => static_file(name, req),
    }
}

fn home<B>(app: &App, req: &Request<B>) -> Response<Body> {
    let now = app.clock.now();
    let prev_author = input::prev_author(req.headers());
    let page = views::home(
        Greeting::at_hour(now.hour),
        prev_author.as_deref(),
        &now.text,
    );
    html(StatusCode::OK, page)
}

fn search_form<B>(app: &App, req: &Request<B>) -> Response<Body> {
    let prev_author = input::prev_author(req.headers());
    let page = views::search_form(
        &SearchBox::default(),
        prev_author.as_deref(),
        &app.clock.now().text,
    );
    html(StatusCode::OK, page)
}

async fn search_results<B>(app: &App, req: &Request<B>) -> Result<Response<Body>, AppError> {
    let query = req.uri().query();
    // Whatever is wrong with the search, the form says so, with the search as typed.
    let search = match input::search(query) {
        Ok(Some(search)) => search,
        refused => {
            let error = match refused {
                Err(err) => AppError::BadInput(err),
                Ok(_) => AppError::NoAuthor,
            };
            let typed = input::typed_author(query).unwrap_or_default();
            let search_box = SearchBox {
                value: &typed,
                error: Some(&error.to_string()),
            };
            let prev_author = input::prev_author(req.headers());
            let page =
                views::search_form(&search_box, prev_author.as_deref(), &app.clock.now().text);
            return Ok(html(error.status(), page));
        }
    };
    let page = app
        .db
        .search_books(&search.author, &search.position)
        .await?;
    let timing = Timing::so_far();
    let rendering = Instant::now();
    let links = page_links("/searchresults", &search.author, &page, search.page);
    let offset = (search.page - 1) * PAGE_SIZE as u64;
    let results = Results {
        author: &search.author,
        books: &page.books,
        first: offset + 1,
        total: page.remaining.after(offset),
        past_the_end: page.books.is_empty() && search.position != crate::db::Position::First,
        links: &links,
    };
    let view = views::search_results(&results, &app.clock.now().text);
    let mut response = html(StatusCode::OK, view);
    let headers = response.headers_mut();
    headers.insert(SERVER_TIMING, server_timing(timing, rendering.elapsed()));
    let cookie = input::prev_author_cookie(&search.author, came_over_https(req.headers()));
    headers.insert(header::SET_COOKIE, cookie);
    Ok(response)
}

/// The books as a JSON array, as before counts existed; the count is in headers, so that no
/// client reading the array sees a change: `X-Total-Count`, the number of books the search
/// finds, or the number Penny stopped counting at when `X-Total-Count-Exact` is `false`.
async fn api_books<B>(app: &App, req: &Request<B>) -> Result<Response<Body>, AppError> {
    let search = input::search(req.uri().query())?.ok_or(AppError::NoAuthor)?;
    let page = app
        .db
        .search_books(&search.author, &search.position)
        .await?;
    let timing = Timing::so_far();
    let rendering = Instant::now();
    let body = serde_json::to_vec(&page.books).expect("books serialize to JSON");
    let mut response = json(StatusCode::OK, body);
    let render = rendering.elapsed();
    let offset = (search.page - 1) * PAGE_SIZE as u64;
    let (total, exact) = match page.remaining.after(offset) {
        Count::Exact(total) => (total, "true"),
        Count::MoreThan(total) => (total, "false"),
    };
    let headers = response.headers_mut();
    headers.insert(SERVER_TIMING, server_timing(timing, render));
    headers.insert(X_TOTAL_COUNT, HeaderValue::from(total));
    headers.insert(X_TOTAL_COUNT_EXACT, HeaderValue::from_static(exact));
    let links = page_links("/api/books", &search.author, &page, search.page);
    let link_header = [("prev", &links.previous), ("next", &links.next)]
        .into_iter()
        .filter_map(|(rel, href)| Some(format!("<{}>; rel=\"{rel}\"", href.as_ref()?)))
        .collect::<Vec<_>>()
        .join(", ");
    if !link_header.is_empty() {
        let value =
            HeaderValue::try_from(link_header).expect("page links are percent-encoded ASCII");
        response.headers_mut().insert(header::LINK, value);
    }
    Ok(response)
}

/// The connection pool now (see `db::PoolStatus`), as JSON: what a lesson on pooling watches
/// while a load test runs. Asks the database nothing.
fn api_pool(app: &App) -> Response<Body> {
    let body = serde_json::to_vec(&app.db.pool_status()).expect("counts serialize to JSON");
    json(StatusCode::OK, body)
}

/// The links to the pages before and after `page`, page number `number`, of the search for
/// `author` at `path`.
fn page_links(path: &str, author: &str, page: &Page, number: u64) -> PageLinks {
    PageLinks {
        previous: page.previous.as_ref().map(|cursor| {
            input::page_link(
                path,
                author,
                "before",
                cursor,
                number.saturating_sub(1).max(1),
            )
        }),
        next: page
            .next
            .as_ref()
            .map(|cursor| input::page_link(path, author, "after", cursor, number + 1)),
    }
}

async fn healthz(app: &App) -> Response<Body> {
    let (status, body) = match app.db.ping().await {
        Ok(()) => (StatusCode::OK, "ok\n"),
        Err(err) => {
            // An outage is logged where it is noticed, once per cause, not at every probe.
            let err = AppError::from(err);
            if err.is_logged() {
                tracing::warn!(error = err.cause_chain(), "health check failed");
            }
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable\n")
        }
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// An embedded file, in the best encoding the request accepts (see `assets`), with `Vary:
/// Accept-Encoding` so that caches keep each encoding apart. Under its hashed name it may be
/// kept for a year; under any other, it is checked with its ETag each time.
fn static_file<B>(name: &str, req: &Request<B>) -> Result<Response<Body>, AppError> {
    let (asset, named) = assets::get(name).ok_or(AppError::NotFound)?;
    let encoded = asset.encoding_for(req.headers());
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .is_some_and(|tags| assets::matches_etag(tags, &encoded.etag));
    let mut response = if fresh {
        let mut response = Response::new(Body::default());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else {
        let mut response = Response::new(Body::from(Bytes::from_static(encoded.body)));
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, asset.content_type.clone());
        if let Some(coding) = &encoded.coding {
            headers.insert(header::CONTENT_ENCODING, coding.clone());
        }
        response
    };
    let headers = response.headers_mut();
    headers.insert(header::ETAG, encoded.etag.clone());
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    let cache_control = match named {
        assets::Name::Hashed => "public, max-age=31536000, immutable",
        assets::Name::Plain | assets::Name::OtherVersion => "public, no-cache",
    };
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control),
    );
    Ok(response)
}

fn error_page(err: &AppError, now: &str, request_id: Option<&str>) -> Response<Body> {
    let (heading, message) = err.explain();
    html(
        err.status(),
        views::error_page(heading, &message, now, request_id),
    )
}

/// `{"error": "..."}`, with `"request_id"` when there is one to show.
fn json_error(err: &AppError, request_id: Option<&str>) -> Response<Body> {
    let (_, message) = err.explain();
    let mut body = serde_json::json!({ "error": message });
    if let Some(id) = request_id {
        body["request_id"] = id.into();
    }
    let body = serde_json::to_vec(&body).expect("a string map serializes to JSON");
    json(err.status(), body)
}

const SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");

/// What a page that queried spent its time on, for a browser's developer tools (the W3C's
/// Server Timing): waiting for a database connection, the queries, and rendering the
/// page (or the JSON). Milliseconds, to the microsecond. On by default: it costs a line of
/// formatting, and says nothing about the database but how long it took.
fn server_timing(db: Timing, render: Duration) -> HeaderValue {
    let metrics = [
        ("pool", db.wait, "Waiting for a connection"),
        ("db", db.query, "Queries"),
        ("render", render, "Rendering"),
    ];
    // Put together by hand, the numbers by itoa: `format!` took 5 % of the demo's page.
    let mut value = String::with_capacity(128);
    let mut digits = itoa::Buffer::new();
    for (name, duration, description) in metrics {
        if !value.is_empty() {
            value.push_str(", ");
        }
        let micros = duration.as_micros();
        value.push_str(name);
        value.push_str(";dur=");
        value.push_str(digits.format(micros / 1000));
        // The microseconds after the point, always three digits: 1000 + 7 is "1007".
        value.push('.');
        value.push_str(&digits.format(1000 + micros % 1000)[1..]);
        value.push_str(";desc=\"");
        value.push_str(description);
        value.push('"');
    }
    HeaderValue::try_from(value).expect("digits and ASCII words are a header value")
}

const X_TOTAL_COUNT: HeaderName = HeaderName::from_static("x-total-count");
const X_TOTAL_COUNT_EXACT: HeaderName = HeaderName::from_static("x-total-count-exact");

const ALLOW: HeaderValue = HeaderValue::from_static("GET, HEAD");

fn html(status: StatusCode, markup: Markup) -> Response<Body> {
    respond(
        status,
        "text/html; charset=utf-8",
        markup.into_string().into_bytes(),
    )
}

fn json(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    respond(status, "application/json", body)
}

/// Room for every header an answer can carry (these two, the security headers, HSTS, the
/// request ID, and Server-Timing, counts and links or a cookie, or an error's: twelve at
/// most), so that none of them makes the map grow. (Twelve take a table of 16; 13 would take
/// 32.)
const HEADERS: usize = 12;

fn respond(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.reserve(HEADERS);
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proto {
    Http,
    Https,
}

/// How the visitor reached the proxy in front of Penny: Heroku's router ends TLS and says so
/// in X-Forwarded-Proto (the first value, where proxies have added theirs). `None` with no
/// such header, or one that names neither.
fn forwarded_proto(headers: &HeaderMap) -> Option<Proto> {
    let proto = headers.get("x-forwarded-proto")?.to_str().ok()?;
    let proto = proto.split(',').next()?.trim();
    if proto.eq_ignore_ascii_case("https") {
        Some(Proto::Https)
    } else if proto.eq_ignore_ascii_case("http") {
        Some(Proto::Http)
    } else {
        None
    }
}

/// Heroku's router ends TLS and says so in X-Forwarded-Proto.
fn came_over_https(headers: &HeaderMap) -> bool {
    forwarded_proto(headers) == Some(Proto::Https)
}

fn add_security_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; \
             img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

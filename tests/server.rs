//! The server under stress and on purpose-broken databases: shutdown with requests in flight,
//! slow clients, a full pool, a table gone missing, and the query plans behind the search.

mod common;

use common::{Backend, CapturedLog, RunningPenny, TestApp, TestDb};
use hyper::StatusCode;
use penny::config::{DatabaseUrl, PoolConfig};
use penny::db::{Db, Position};
use penny::server::ServerOptions;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Takes SQLite's exclusive lock on the test database, so every query waits until `release`.
fn lock_database(db: &TestDb) -> rusqlite::Connection {
    let lock = rusqlite::Connection::open(db.sqlite_path().unwrap()).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    lock
}

fn release(lock: rusqlite::Connection) {
    lock.execute_batch("COMMIT").unwrap();
}

#[tokio::test]
async fn shutdown_finishes_the_request_in_flight_and_refuses_new_ones() {
    let app = TestApp::start(Backend::SqliteFile).await;
    let addr = app.addr;
    let lock = lock_database(&app.db);
    let in_flight = tokio::spawn(common::get(addr, "/searchresults?author=ker", &[]));
    tokio::time::sleep(Duration::from_millis(300)).await;

    let stopped = tokio::spawn(app.stop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !stopped.is_finished(),
        "the server waits for the request in flight"
    );
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no new connections after shutdown"
    );

    release(lock);
    let page = in_flight.await.unwrap();
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.table_rows().len(), 2);
    tokio::time::timeout(Duration::from_secs(5), stopped)
        .await
        .expect("the server stops once the request is done")
        .unwrap();
}

#[tokio::test]
async fn shutdown_closes_idle_keep_alive_connections_at_once() {
    let app = TestApp::start(Backend::Bundled).await;
    let mut idle = TcpStream::connect(app.addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = [0u8; 4096];
    let read = idle.read(&mut buffer).await.unwrap();
    assert!(buffer[..read].starts_with(b"HTTP/1.1 200 OK"));

    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(2), app.stop())
        .await
        .expect("an idle connection does not hold shutdown up");
    assert!(started.elapsed() < Duration::from_secs(2));
    let read = tokio::time::timeout(Duration::from_secs(1), idle.read(&mut buffer)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the idle connection is closed"
    );
}

#[tokio::test]
async fn a_full_pool_answers_503_after_the_checkout_timeout_and_recovers() {
    let mut db = TestDb::create(Backend::SqliteFile).await;
    let pool = PoolConfig {
        size: 1,
        checkout_timeout: Duration::from_millis(500),
        ..PoolConfig::default()
    };
    db.db = Db::open(&db.url, &pool).await.unwrap();
    let app = TestApp::serve(db, ServerOptions::default()).await;
    let lock = lock_database(&app.db);
    // The first request takes the only connection and waits on the lock.
    let holder = tokio::spawn(common::get(app.addr, "/searchresults?author=ker", &[]));
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = Instant::now();
    let page = app.get("/searchresults?author=ker").await;
    assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        page.text().contains("Service unavailable"),
        "{}",
        page.text()
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    let api = app.get("/api/books?author=ker").await;
    assert_eq!(api.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(api.body.starts_with(r#"{"error":"#), "{}", api.body);
    assert_eq!(
        app.get("/healthz").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );

    release(lock);
    assert_eq!(holder.await.unwrap().status, StatusCode::OK);
    assert_eq!(
        app.get("/searchresults?author=ker").await.status,
        StatusCode::OK
    );
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_database_error_shows_a_generic_page_without_the_cause() {
    let app = TestApp::start(Backend::SqliteFile).await;
    // A row Penny cannot read, put there by hand: an author that is bytes, not text.
    let other = rusqlite::Connection::open(app.db.sqlite_path().unwrap()).unwrap();
    other
        .execute_batch("INSERT INTO books VALUES ('1', X'FFFE', 'Bytes', 'kernighan')")
        .unwrap();

    let page = app.get("/searchresults?author=ker").await;
    assert_eq!(page.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        page.text().contains("Something went wrong"),
        "{}",
        page.text()
    );
    assert!(
        page.body
            .contains(r#"<a class="brand" href="/">Penny.com</a>"#)
    );
    let api = app.get("/api/books?author=ker").await;
    assert_eq!(api.status, StatusCode::INTERNAL_SERVER_ERROR);
    for body in [&page.body, &api.body] {
        assert!(!body.contains("Blob"), "{body}");
        assert!(!body.to_lowercase().contains("sqlite"), "{body}");
    }
    assert_eq!(
        app.get("/healthz").await.status,
        StatusCode::OK,
        "the database itself answers"
    );
    assert_eq!(app.get("/").await.status, StatusCode::OK);
}

#[tokio::test]
async fn the_bundled_database_holds_exactly_what_penny_sql_says() {
    let expected = rusqlite::Connection::open_in_memory().unwrap();
    expected.execute_batch(penny::db::SCHEMA).unwrap();
    let mut rows: Vec<(String, String, String, String)> = expected
        .prepare("SELECT isbn, author, title, author_key FROM books")
        .unwrap()
        .query_map([], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    rows.sort();
    assert_eq!(rows.len(), 11);
    for (_, author, _, key) in &rows {
        assert_eq!(
            key,
            &penny::fold::fold(author),
            "penny.sql's key for {author}"
        );
    }

    let bundled = Db::open(&DatabaseUrl::Bundled, &PoolConfig::default())
        .await
        .unwrap();
    let mut books: Vec<(String, String, String)> = bundled
        .search_books("", &Position::First)
        .await
        .unwrap()
        .books
        .into_iter()
        .map(|book| {
            let (isbn, author, title) = (book.isbn(), book.author(), book.title());
            (isbn.to_owned(), author.to_owned(), title.to_owned())
        })
        .collect();
    books.sort();
    let rows: Vec<_> = rows.into_iter().map(|(i, a, t, _)| (i, a, t)).collect();
    assert_eq!(books, rows);
}

#[tokio::test]
async fn the_search_is_an_index_range_scan_on_every_sqlite_database() {
    for backend in [Backend::Bundled, Backend::SqliteFile] {
        let db = TestDb::create(backend).await;
        let cursor = penny::db::Cursor {
            author: "Kernighan".into(),
            title: "T".into(),
            isbn: "1".into(),
        };
        // A page after (or before) a cursor starts (or ends) the scan at it.
        for (position, range) in [
            (Position::First, "(author_key>? AND author_key<?)"),
            (
                Position::After(cursor.clone()),
                "((author_key,author,title,isbn)>(?,?,?,?) AND author_key<?)",
            ),
            (
                Position::Before(cursor),
                "(author_key>? AND (author_key,author,title,isbn)<(?,?,?,?))",
            ),
        ] {
            let plan = db
                .db
                .explain_search("Ker", &position)
                .await
                .unwrap()
                .join("\n");
            assert!(
                plan.contains(&format!(
                    "SEARCH books USING COVERING INDEX books_search {range}"
                )),
                "{backend:?}, {position:?}: {plan}"
            );
            assert!(!plan.contains("SCAN"), "{backend:?}: {plan}");
            assert!(
                !plan.contains("TEMP B-TREE"),
                "{backend:?}: sorted by the index: {plan}"
            );
        }
    }
}

#[tokio::test]
async fn the_read_only_demo_refuses_writes_clearly() {
    let db = TestDb::create(Backend::Bundled).await;
    let err = Db::open_for_schema(&db.url, &PoolConfig::default())
        .await
        .err()
        .expect("the demo cannot be loaded into");
    assert!(err.to_string().contains("DATABASE_URL"), "{err}");
}

#[tokio::test]
async fn a_deep_page_reads_about_a_page_of_rows_not_all_the_matches() {
    // Many authors, and one author with many books: either way the scan starts at the cursor.
    for one_author in [false, true] {
        let db = TestDb::create(Backend::SqliteFile).await;
        let author = |i: usize| {
            if one_author {
                "Deep".to_string()
            } else {
                format!("Deep {i:06}")
            }
        };
        let books = (0..20_000)
            .map(|i| penny::db::Book::new(&format!("{i:06}"), &author(i), &format!("T {i:06}")))
            .collect();
        db.db.add_books(books).await.unwrap();
        let steps = |plan: Vec<String>| -> u64 {
            let last = plan.last().unwrap().clone();
            let words: Vec<&str> = last.split(' ').collect();
            assert_eq!(words[1], "51", "a full page and one more: {last}");
            words[4].parse().unwrap()
        };
        let first = steps(
            db.db
                .explain_search("deep", &Position::First)
                .await
                .unwrap(),
        );
        let cursor = |i: usize| penny::db::Cursor {
            author: author(i),
            title: format!("T {i:06}"),
            isbn: format!("{i:06}"),
        };
        for position in [
            Position::After(cursor(10_000)),
            Position::After(cursor(19_000)),
            Position::Before(cursor(19_500)),
            Position::Before(cursor(500)),
        ] {
            let deep = steps(db.db.explain_search("deep", &position).await.unwrap());
            assert!(
                deep < first * 3,
                "one author: {one_author}, {position:?}: {deep} steps against {first} for \
                 the first page"
            );
        }
    }
}

#[cfg_attr(
    not(penny_ss),
    ignore = "needs iproute2's ss: apt-get install iproute2"
)]
#[test]
fn penny_listens_with_a_backlog_of_1024_or_all_the_kernel_allows() {
    let penny = RunningPenny::start(&["--bind", "127.0.0.1:0"], &[], None);
    let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .expect("Linux says how long a listen queue may be")
        .trim()
        .parse()
        .unwrap();
    let filter = format!("sport = :{}", penny.addr.port());
    let listing = match std::process::Command::new("ss")
        .args(["-ltnH", &filter])
        .output()
    {
        Ok(output) if output.status.success() => String::from_utf8(output.stdout).unwrap(),
        failed => {
            let message = format!("SKIPPED: cannot run `ss` (iproute2): {failed:?}");
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}");
            eprintln!("{message}");
            return;
        }
    };
    // State, Recv-Q, Send-Q (for a listening socket: its backlog), local and peer address.
    let backlog: u32 = listing
        .split_whitespace()
        .nth(2)
        .unwrap_or_else(|| panic!("no listening socket in {listing:?}"))
        .parse()
        .unwrap();
    assert!(
        backlog >= somaxconn.min(1024),
        "backlog {backlog}, somaxconn {somaxconn}: {listing}"
    );
}

/// The `penny` binary on the bundled demo, allowed `fds` open file descriptors.
fn penny_with_fd_limit(fds: u32) -> RunningPenny {
    RunningPenny::start_binary(
        std::path::Path::new("/bin/bash"),
        &[
            "-c",
            &format!("ulimit -n {fds} && exec \"$0\" --bind 127.0.0.1:0"),
            env!("CARGO_BIN_EXE_penny"),
        ],
        &[],
        None,
    )
}

#[tokio::test]
async fn running_out_of_file_descriptors_is_logged_once_and_its_end_with_a_count() {
    let penny = penny_with_fd_limit(64);
    // More connections than Penny has descriptors: those it cannot accept wait in the backlog.
    let mut idle = Vec::new();
    for _ in 0..100 {
        idle.push(TcpStream::connect(penny.addr).await.unwrap());
    }
    penny.wait_for_log("accept failed", Duration::from_secs(5));
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(idle);

    let log = penny.wait_for_log("accepting connections again", Duration::from_secs(10));
    // The episode: up to the line that ends it (a second one may begin as the backlog drains).
    let (episode, after) = log.split_once("accepting connections again").unwrap();
    assert_eq!(episode.matches("accept failed").count(), 1, "{log}");
    let summary = after.lines().next().unwrap();
    let failed: u64 = summary
        .split_once("failed=")
        .and_then(|(_, rest)| rest.split(' ').next())
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("no count in {summary:?}"));
    // A second of failures, retried every 50 ms.
    assert!(failed >= 5, "{summary}");
    assert_eq!(
        common::get(penny.addr, "/healthz", &[]).await.status,
        StatusCode::OK
    );
}

/// Connects with a small receive buffer, asks for `count` copies of a 7.5 KiB file in one go,
/// and then neither reads nor sends: the answers fill the kernel's buffers until Penny cannot
/// write any more.
async fn stalled_pipeline(addr: std::net::SocketAddr, count: usize) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(8 * 1024).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let requests = "GET /static/search.js HTTP/1.1\r\nHost: x\r\n\r\n".repeat(count);
    // All of it fits in the kernel's buffers at once; if not, what was sent is enough.
    let _ = tokio::time::timeout(
        Duration::from_millis(500),
        stream.write_all(requests.as_bytes()),
    )
    .await;
    stream
}

/// Reads what is left on `stream` for up to `limit`: true if Penny closed it meanwhile.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buffer = vec![0u8; 64 * 1024];
    let read_all = async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(limit, read_all).await.is_ok()
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_once_nothing_moves_for_the_stall_timeout() {
    let options = ServerOptions {
        stall_timeout: Duration::from_secs(1),
        // Longer than the test: only the stall timeout can close a connection here.
        header_timeout: Duration::from_secs(60),
        ..ServerOptions::default()
    };
    let app = TestApp::serve(TestDb::create(Backend::Bundled).await, options).await;
    let mut stalled = stalled_pipeline(app.addr, 1000).await;
    // One second for Penny to fill the buffers and stall, the bound, and one more for the check.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Had Penny kept the connection, reading would let it write again: the rest of the 1000
    // answers would come, and then nothing, with the connection open for the next request.
    assert!(
        closed_within(&mut stalled, Duration::from_secs(5)).await,
        "the stalled connection is still open"
    );
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_request_waiting_on_the_database_longer_than_the_stall_timeout_is_answered() {
    let options = ServerOptions {
        stall_timeout: Duration::from_millis(300),
        ..ServerOptions::default()
    };
    let app = TestApp::serve(TestDb::create(Backend::SqliteFile).await, options).await;
    let lock = lock_database(&app.db);
    let waiting = tokio::spawn(common::get(app.addr, "/searchresults?author=ker", &[]));
    // Nothing moves on its connection meanwhile: six times the stall timeout.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!waiting.is_finished(), "the search waits on the lock");
    release(lock);
    let page = waiting.await.unwrap();
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.table_rows().len(), 2);
}

/// Sends one GET that closes the connection, and waits up to `limit` for the answer's status
/// line; `None` if none came.
async fn status_within(addr: std::net::SocketAddr, path: &str, limit: Duration) -> Option<String> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(limit, stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    answer.lines().next().map(str::to_owned)
}

#[tokio::test]
async fn stalled_clients_holding_every_descriptor_are_dropped_and_sigterm_does_not_wait_for_them() {
    let mut penny = penny_with_fd_limit(64);
    // More than Penny has descriptors for: those it cannot accept wait in the backlog, and
    // stall in their turn once it accepts them.
    let mut stalled = Vec::new();
    for _ in 0..80 {
        stalled.push(stalled_pipeline(penny.addr, 1000).await);
    }
    penny.wait_for_log("accept failed", Duration::from_secs(10));
    let started = Instant::now();
    let status = status_within(penny.addr, "/healthz", Duration::from_secs(30)).await;
    let waited = started.elapsed();
    // The first stalled connections go after the 10 s bound (and a second for the check).
    assert_eq!(
        status.as_deref(),
        Some("HTTP/1.1 200 OK"),
        "locked out for {waited:?}"
    );
    assert!(waited < Duration::from_secs(20), "served after {waited:?}");

    // The connections accepted from the backlog have stalled by now; shutdown does not wait
    // out its 9 s grace period for them.
    tokio::time::sleep(Duration::from_secs(2)).await;
    penny.signal("TERM");
    let signalled = Instant::now();
    let exit = penny.wait_for_exit(Duration::from_secs(15));
    let took = signalled.elapsed();
    assert!(
        exit.is_some_and(|status| status.success()),
        "{exit:?} {}",
        penny.stdout()
    );
    assert!(
        took < Duration::from_secs(5),
        "exited {took:?} after SIGTERM"
    );
    eprintln!("a visitor locked out was served after {waited:?}; exit {took:?} after SIGTERM");
    drop(stalled);
}

#[tokio::test]
async fn requests_hyper_refuses_are_logged_with_the_status_it_sent() {
    let log = CapturedLog::start();
    let options = ServerOptions {
        header_timeout: Duration::from_millis(500),
        // Room for a URI over hyper's own limit of 64 KiB, which it answers 414.
        max_header_bytes: 96 * 1024,
        ..ServerOptions::default()
    };
    let app = TestApp::serve(TestDb::create(Backend::Bundled).await, options).await;
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70 * 1024));
    let big_head = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    for (request, status) in [
        ("GET / HTTP/9.9\r\nHost: x\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: x\r\nX Bad: 1\r\n\r\n", 400),
        (long_uri.as_str(), 414),
        (big_head.as_str(), 431),
    ] {
        let before = log.text().matches("request status=").count();
        let answer = app.raw(request.as_bytes()).await;
        let shown = &request[..request.len().min(30)];
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{shown}: {}",
            &answer[..answer.len().min(100)]
        );
        let text = log
            .wait_for(&format!("request status={status}"), Duration::from_secs(2))
            .await;
        assert_eq!(
            text.matches("request status=").count(),
            before + 1,
            "{shown}: {text}"
        );
    }

    // An idle connection timing out is no request; a request head cut short is one.
    let mut buffer = [0u8; 1024];
    let mut idle = TcpStream::connect(app.addr).await.unwrap();
    assert!(matches!(idle.read(&mut buffer).await, Ok(0) | Err(_)));
    let mut partial = TcpStream::connect(app.addr).await.unwrap();
    partial
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    assert!(matches!(partial.read(&mut buffer).await, Ok(0) | Err(_)));
    let text = log
        .wait_for("request not answered", Duration::from_secs(2))
        .await;
    assert_eq!(text.matches("request not answered").count(), 1, "{text}");
    // The requests Penny itself answers keep their one line each.
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
    let text = log
        .wait_for("path=/healthz status=200", Duration::from_secs(2))
        .await;
    assert_eq!(text.matches("path=/healthz").count(), 1, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_waiting_to_be_accepted_at_sigterm_are_answered_not_reset() {
    // Penny frozen, so that the kernel completes connections into the listen backlog without
    // Penny accepting them; then SIGTERM and thaw: those connections were made before the
    // signal, and each must get its answer.
    for round in 0..3 {
        let mut penny = RunningPenny::start(&["--bind", "127.0.0.1:0"], &[], None);
        penny.signal("STOP");
        let mut waiting = Vec::new();
        for _ in 0..40 {
            let mut stream = TcpStream::connect(penny.addr).await.unwrap();
            let request = "GET /searchresults?author=ker HTTP/1.1\r\nHost: penny\r\nConnection: close\r\n\r\n";
            stream.write_all(request.as_bytes()).await.unwrap();
            waiting.push(stream);
        }
        penny.signal("TERM");
        penny.signal("CONT");
        let mut unanswered = 0;
        for mut stream in waiting {
            let mut answer = Vec::new();
            let read =
                tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer));
            let read = read.await;
            let ok = matches!(read, Ok(Ok(_)))
                && String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200");
            if !ok {
                eprintln!("{read:?} {:?}", String::from_utf8_lossy(&answer));
            }
            unanswered += usize::from(!ok);
        }
        let status = penny.wait_for_exit(Duration::from_secs(15));
        assert_eq!(
            unanswered,
            0,
            "round {round}: connections closed unanswered at shutdown: {}",
            penny.stdout()
        );
        assert!(
            status.is_some_and(|status| status.success()),
            "round {round}: {status:?}"
        );
    }
}

/// The `Server-Timing` metrics of a response, by name, in milliseconds.
fn server_timing(response: &common::TestResponse) -> std::collections::BTreeMap<String, f64> {
    response
        .header("server-timing")
        .split(',')
        .map(|metric| {
            let mut params = metric.trim().split(';');
            let name = params.next().unwrap().to_owned();
            let dur = params
                .find_map(|param| param.strip_prefix("dur="))
                .unwrap_or_else(|| panic!("no dur in {metric}"))
                .parse()
                .unwrap();
            (name, dur)
        })
        .collect()
}

/// Server-Timing tells the time a request waited for a connection from the time its query
/// took: a request that holds the only connection while its query waits on a lock shows it as
/// query time, and one that waits for that connection shows it as waiting.
#[tokio::test]
async fn server_timing_tells_waiting_for_a_connection_from_the_query() {
    let mut db = TestDb::create(Backend::SqliteFile).await;
    let pool = PoolConfig {
        size: 1,
        ..PoolConfig::default()
    };
    db.db = Db::open(&db.url, &pool).await.unwrap();
    let app = TestApp::serve(db, ServerOptions::default()).await;
    let quick = app.get("/searchresults?author=ker").await;
    let metrics = server_timing(&quick);
    assert_eq!(
        metrics.keys().collect::<Vec<_>>(),
        ["db", "pool", "render"],
        "{}",
        quick.header("server-timing")
    );
    assert!(
        metrics.values().all(|&ms| (0.0..100.0).contains(&ms)),
        "{metrics:?}"
    );

    let lock = lock_database(&app.db);
    let holder = tokio::spawn(common::get(app.addr, "/searchresults?author=ker", &[]));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let waiter = tokio::spawn(common::get(app.addr, "/api/books?author=ker", &[]));
    tokio::time::sleep(Duration::from_millis(400)).await;
    // The pool view says the same: one connection at work, one request waiting for it.
    let pool: serde_json::Value = serde_json::from_str(&app.get("/api/pool").await.body).unwrap();
    assert_eq!(
        (&pool["in_use"], &pool["queries"], &pool["waiting"]),
        (&1.into(), &1.into(), &1.into()),
        "{pool}"
    );
    release(lock);
    let (holder, waiter) = (holder.await.unwrap(), waiter.await.unwrap());
    assert_eq!(
        (holder.status, waiter.status),
        (StatusCode::OK, StatusCode::OK)
    );
    let (held, waited) = (server_timing(&holder), server_timing(&waiter));
    assert!(
        held["db"] >= 550.0,
        "the query waited on the lock: {held:?}"
    );
    assert!(held["pool"] < 100.0, "{held:?}");
    assert!(
        waited["pool"] >= 350.0,
        "it waited for the connection: {waited:?}"
    );
    assert!(waited["db"] < 100.0, "{waited:?}");
}

#[tokio::test]
async fn the_pool_view_is_on_unless_turned_off() {
    let on = RunningPenny::start(&["--bind", "127.0.0.1:0"], &[], None);
    assert_eq!(
        common::get(on.addr, "/api/pool", &[]).await.status,
        StatusCode::OK
    );
    let off = RunningPenny::start(
        &["--bind", "127.0.0.1:0"],
        &[("PENNY_POOL_VIEW", "false")],
        None,
    );
    let response = common::get(off.addr, "/api/pool", &[]).await;
    assert_eq!(response.status, StatusCode::NOT_FOUND);
    assert_eq!(
        common::get(off.addr, "/api/books?author=ker", &[])
            .await
            .status,
        StatusCode::OK
    );
}

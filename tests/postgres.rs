//! PostgreSQL broken on purpose: down at start, restarted under Penny, wrong passwords,
//! unreachable hosts, a pool exhausted by locked queries; plus the schema commands and the
//! search's query plan on a table big enough for the planner to care.

mod common;

use common::load::{time_until_ok, timed_get};
use common::postgres::{
    PASSWORD, PgServer, TableLock, available, can_start_servers, loaded_database,
};
use common::{RunningPenny, TestDb, assert_one_clear_line, run_penny};
use hyper::StatusCode;
use penny::config::PoolConfig;
use penny::db::{Book, Position};
use std::time::{Duration, Instant};

#[cfg_attr(
    not(penny_postgres_server),
    ignore = "needs PostgreSQL server binaries to start servers with: apt-get install postgresql, brew install postgresql@15, or set PENNY_TEST_PG_BINDIR"
)]
#[tokio::test]
async fn penny_starts_while_postgres_is_down_and_serves_once_it_is_up() {
    if !can_start_servers() {
        return;
    }
    let server = PgServer::start();
    let url = loaded_database(&server).0;
    server.stop();

    let started = Instant::now();
    let penny = RunningPenny::start(&["--bind", "127.0.0.1:0"], &[("DATABASE_URL", &url)], None);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "it binds without the database"
    );
    assert_eq!(
        timed_get(penny.addr, "/").await.0.map(|(status, _)| status),
        Ok(StatusCode::OK)
    );
    for path in [
        "/healthz",
        "/searchresults?author=ker",
        "/api/books?author=ker",
    ] {
        let (answer, took) = timed_get(penny.addr, path).await;
        assert_eq!(
            answer.map(|(status, _)| status),
            Ok(StatusCode::SERVICE_UNAVAILABLE),
            "{path}"
        );
        assert!(took < Duration::from_secs(1), "{path} took {took:?}");
    }
    let page = common::get(penny.addr, "/searchresults?author=ker", &[]).await;
    assert!(
        page.text().contains("Service unavailable"),
        "{}",
        page.text()
    );
    assert!(
        !page.body.contains("Connection refused"),
        "the cause stays in the log"
    );

    server.start_again();
    let took = time_until_ok(
        penny.addr,
        "/searchresults?author=ker",
        Duration::from_secs(5),
    )
    .await;
    assert!(
        took.expect("Penny recovers") < Duration::from_secs(2),
        "{took:?}"
    );
    assert_eq!(
        timed_get(penny.addr, "/healthz")
            .await
            .0
            .map(|(status, _)| status),
        Ok(StatusCode::OK)
    );
}

#[cfg_attr(
    not(penny_postgres_server),
    ignore = "needs PostgreSQL server binaries to start servers with: apt-get install postgresql, brew install postgresql@15, or set PENNY_TEST_PG_BINDIR"
)]
#[tokio::test]
async fn a_postgres_restart_gives_fast_503s_then_every_request_succeeds_again() {
    if !can_start_servers() {
        return;
    }
    let server = PgServer::start();
    let url = loaded_database(&server).0;
    let penny = RunningPenny::start(&["--bind", "127.0.0.1:0"], &[("DATABASE_URL", &url)], None);
    // Fill the pool with several connections, all of which the restart will cut.
    let warm: Vec<_> = (0..20)
        .map(|_| tokio::spawn(common::get(penny.addr, "/searchresults?author=ker", &[])))
        .collect();
    for request in warm {
        assert_eq!(request.await.unwrap().status, StatusCode::OK);
    }

    server.stop();
    for _ in 0..10 {
        let (answer, took) = timed_get(penny.addr, "/searchresults?author=ker").await;
        assert_eq!(
            answer.map(|(status, _)| status),
            Ok(StatusCode::SERVICE_UNAVAILABLE)
        );
        assert!(
            took < Duration::from_secs(1),
            "a request during the outage took {took:?}"
        );
    }
    server.start_again();
    let took = time_until_ok(
        penny.addr,
        "/searchresults?author=ker",
        Duration::from_secs(5),
    )
    .await;
    assert!(
        took.expect("Penny recovers") < Duration::from_secs(2),
        "{took:?}"
    );

    // No stale connection is left to fail a later request.
    let after: Vec<_> = (0..40)
        .map(|_| tokio::spawn(common::get(penny.addr, "/api/books?author=ker", &[])))
        .collect();
    for request in after {
        let response = request.await.unwrap();
        assert_eq!(response.status, StatusCode::OK, "{}", response.body);
        assert!(response.body.contains("Kernighan"));
    }

    // The outage is logged when it starts and when it ends, not once per request.
    let log = penny.stdout();
    assert_eq!(
        log.matches("the database is unavailable").count(),
        1,
        "{log}"
    );
    assert_eq!(
        log.matches("the database is reachable again").count(),
        1,
        "{log}"
    );
}

#[cfg_attr(
    not(penny_postgres),
    ignore = "needs PostgreSQL: apt-get install postgresql, brew install postgresql@15, or set PENNY_TEST_PG_BINDIR or PENNY_TEST_DATABASE_URL"
)]
#[tokio::test]
async fn a_wrong_password_fails_within_five_seconds_with_one_line_and_no_password() {
    if !available() {
        return;
    }
    let server = PgServer::shared();
    let url = loaded_database(server).0.replace(PASSWORD, "Wrong-pw-81x");
    for command in [&["books", "ker"][..], &["init-db"][..]] {
        let started = Instant::now();
        let output = run_penny(command, &[("DATABASE_URL", &url)], None);
        assert!(started.elapsed() < Duration::from_secs(5), "{command:?}");
        let err = assert_one_clear_line(&output, &[]);
        assert!(err.contains("password authentication failed"), "{err}");
        assert!(
            !err.contains("Wrong-pw-81x") && !err.contains(PASSWORD),
            "{err}"
        );
    }
}

#[tokio::test]
async fn an_unreachable_or_silent_server_fails_within_five_seconds() {
    let refused = format!(
        "postgres://u:unused-pw-5521@127.0.0.1:{}/d",
        common::postgres::free_port()
    );
    // A server that accepts connections and never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!(
        "postgres://u:unused-pw-5521@{}/d",
        silent.local_addr().unwrap()
    );
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming() {
            held.push(stream);
        }
    });
    for (url, reason) in [(&refused, "refused"), (&silent_url, "did not answer")] {
        for command in [&["books", "ker"][..], &["init-db"][..]] {
            let started = Instant::now();
            let output = run_penny(command, &[("DATABASE_URL", url)], None);
            let took = started.elapsed();
            assert!(
                took < Duration::from_secs(5),
                "{command:?} on {url} took {took:?}"
            );
            let err = assert_one_clear_line(&output, &[]);
            assert!(err.to_lowercase().contains(reason), "{err}");
        }
    }
}

#[cfg_attr(
    not(penny_postgres),
    ignore = "needs PostgreSQL: apt-get install postgresql, brew install postgresql@15, or set PENNY_TEST_PG_BINDIR or PENNY_TEST_DATABASE_URL"
)]
#[tokio::test]
async fn more_queries_than_the_pool_carries_wait_then_get_503_and_the_pool_recovers() {
    if !available() {
        return;
    }
    let server = PgServer::shared();
    let url = loaded_database(server).0;
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("PENNY_POOL_SIZE", "2"),
        ("PENNY_POOL_TIMEOUT_SECS", "1"),
    ];
    let penny = RunningPenny::start(&["--bind", "127.0.0.1:0"], &env, None);
    let dbname = url.rsplit('/').next().unwrap().split('?').next().unwrap();

    // Both connections open first: one opened in the middle of the burst below can take more
    // than the 1 s checkout timeout on a busy machine, and its request would be one more 503.
    // Searches held up by a lock spread over two connections (8 on one before another opens).
    let warm_up = TableLock::take(server, dbname, 10.0);
    let searches = tokio::spawn(common::get_at_once(
        penny.addr,
        "/searchresults?author=ker",
        16,
    ));
    let mut open = 0;
    for _ in 0..200 {
        let pool = common::get(penny.addr, "/api/pool", &[]).await.body;
        let pool: serde_json::Value = serde_json::from_str(&pool).unwrap();
        open = pool["open"].as_u64().unwrap();
        if open == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    warm_up.release(server, dbname);
    assert_eq!(open, 2, "both connections open");
    for (response, _) in searches.await.unwrap() {
        assert_eq!(response.status, StatusCode::OK);
    }

    // Another session locks the table for 3 s: the searches the two connections carry (16
    // each) wait on it, and the rest wait for room.
    let (carried, more) = (2 * 16, 6);
    let lock = TableLock::take(server, dbname, 3.0);
    let answers: Vec<(StatusCode, Duration)> =
        common::get_at_once(penny.addr, "/searchresults?author=ker", carried + more)
            .await
            .into_iter()
            .map(|(response, took)| (response.status, took))
            .collect();
    lock.release(server, dbname);
    let unavailable: Vec<_> = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    let ok = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::OK)
        .count();
    assert_eq!((ok, unavailable.len()), (carried, more), "{answers:?}");
    for (_, took) in unavailable {
        assert!(
            *took >= Duration::from_millis(900),
            "queued for the timeout: {took:?}"
        );
        assert!(*took < Duration::from_secs(2), "but no longer: {took:?}");
    }

    for _ in 0..20 {
        assert_eq!(
            timed_get(penny.addr, "/searchresults?author=ker")
                .await
                .0
                .map(|(status, _)| status),
            Ok(StatusCode::OK)
        );
    }
    let connections = server.psql(
        "postgres",
        &format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{dbname}' AND application_name = 'penny'"),
    );
    assert!(
        connections.parse::<u32>().unwrap() <= 2,
        "{connections} connections"
    );
}

#[cfg_attr(
    not(penny_postgres),
    ignore = "needs PostgreSQL: apt-get install postgresql, brew install postgresql@15, or set PENNY_TEST_PG_BINDIR or PENNY_TEST_DATABASE_URL"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_at_once_share_a_few_connections_instead_of_one_each() {
    if !available() {
        return;
    }
    let server = PgServer::shared();
    let url = loaded_database(server).0;
    let dbname = dbname(&url).to_owned();
    // The default pool of 10, every connection opened and idle.
    let penny = RunningPenny::start(&["--bind", "127.0.0.1:0"], &[("DATABASE_URL", &url)], None);
    for (response, _) in common::get_at_once(penny.addr, "/api/books?author=ker", 20).await {
        assert_eq!(response.status, StatusCode::OK);
    }

    // 16 searches held up by a lock for 2 s: each is on the server, on some connection.
    let lock = TableLock::take(server, &dbname, 2.0);
    let searches = tokio::spawn(common::get_at_once(penny.addr, "/api/books?author=ker", 16));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let waiting = {
        let dbname = dbname.clone();
        tokio::task::spawn_blocking(move || {
            server.psql(
                &dbname,
                &format!(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = '{dbname}' \
                     AND application_name = 'penny' AND wait_event_type = 'Lock'"
                ),
            )
        })
        .await
        .unwrap()
    };
    lock.release(server, &dbname);
    for (response, _) in searches.await.unwrap() {
        assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    }
    let waiting: u32 = waiting.parse().unwrap();
    // Eight to a connection: two, or a few more if some were opened at the same moment.
    assert!(
        (2..=4).contains(&waiting),
        "16 searches waited on {waiting} connections"
    );
}

#[cfg_attr(
    not(penny_postgres),
    ignore = "needs PostgreSQL: apt-get install postgresql, brew install postgresql@15, or set PENNY_TEST_PG_BINDIR or PENNY_TEST_DATABASE_URL"
)]
#[tokio::test]
async fn the_password_never_appears_in_a_log_line_an_error_or_a_page() {
    if !available() {
        return;
    }
    let server = PgServer::shared();
    let url = loaded_database(server).0;
    let down_url = format!(
        "postgres://postgres:{PASSWORD}@127.0.0.1:{}/x",
        common::postgres::free_port()
    );
    let mut seen = String::new();
    for url in [&url, &down_url] {
        let mut penny =
            RunningPenny::start(&["--bind", "127.0.0.1:0"], &[("DATABASE_URL", url)], None);
        seen.push_str(&penny.banner);
        for path in [
            "/",
            "/searchresults?author=ker",
            "/api/books?author=",
            "/healthz",
            "/nope",
        ] {
            seen.push_str(&common::get(penny.addr, path, &[]).await.body);
        }
        penny.signal("TERM");
        penny
            .wait_for_exit(Duration::from_secs(5))
            .expect("penny exits");
        seen.push_str(&penny.stdout());
        seen.push_str(&penny.stderr());
    }
    let bad = run_penny(&["books", "ker"], &[("DATABASE_URL", &down_url)], None);
    seen.push_str(&String::from_utf8_lossy(&bad.stderr));
    assert!(
        seen.contains("Kernighan") && seen.contains("unavailable"),
        "{seen}"
    );
    assert!(!seen.contains(PASSWORD), "the password leaked: {seen}");
}

#[cfg_attr(
    not(penny_postgres),
    ignore = "needs PostgreSQL: apt-get install postgresql, brew install postgresql@15, or set PENNY_TEST_PG_BINDIR or PENNY_TEST_DATABASE_URL"
)]
#[tokio::test]
async fn database_errors_never_hold_the_password_however_they_are_shown() {
    if !available() {
        return;
    }
    let server = PgServer::shared();
    let url = loaded_database(server).0;
    let wrong = "Wrong-pw-in-process-31x";
    common::secrets::register(wrong);
    let down = format!(
        "postgres://postgres:{PASSWORD}@127.0.0.1:{}/x",
        common::postgres::free_port()
    );
    let pool = PoolConfig {
        checkout_timeout: Duration::from_secs(2),
        ..PoolConfig::default()
    };
    for (url, cause) in [
        (
            url.replace(PASSWORD, wrong),
            "password authentication failed",
        ),
        (down, "refused"),
    ] {
        // The outage is logged in-process too; the harness checks that line when `db` drops.
        let db = TestDb::open(&url, &pool).await;
        let err = db
            .db
            .search_books("ker", &Position::First)
            .await
            .expect_err("no connection can be had");
        let err = penny::error::AppError::from(err);
        let shown = format!(
            "{err}\n{err:#}\n{err:?}\n{err:#?}\n{}\n{}",
            err.cause_chain(),
            err.explain().1
        );
        common::secrets::check(&shown, "a database error");
        assert!(shown.to_lowercase().contains(cause), "{shown}");
    }
}

#[cfg_attr(
    not(penny_postgres),
    ignore = "needs PostgreSQL: apt-get install postgresql, brew install postgresql@15, or set PENNY_TEST_PG_BINDIR or PENNY_TEST_DATABASE_URL"
)]
#[tokio::test]
async fn init_db_on_postgres_keeps_every_book_and_reset_reloads() {
    if !available() {
        return;
    }
    let server = PgServer::shared();
    let url = loaded_database(server).0;
    let dbname = url.rsplit('/').next().unwrap().split('?').next().unwrap();
    server.psql(
        dbname,
        "INSERT INTO books VALUES ('999', 'Knuth', 'TAOCP'); DELETE FROM books WHERE isbn = '345'",
    );
    let output = run_penny(&["init-db"], &[("DATABASE_URL", &url)], None);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        server.psql(
            dbname,
            "SELECT string_agg(isbn, ',' ORDER BY isbn) FROM books"
        ),
        "123,234,456,567,678,789,890,901,912,923,999",
        "the book added by hand kept, the demo book deleted by hand not put back"
    );
    assert_eq!(
        server.psql(dbname, "SELECT author_key FROM books WHERE isbn = '999'"),
        "knuth"
    );

    let output = run_penny(&["init-db", "--reset"], &[("DATABASE_URL", &url)], None);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        server.psql(
            dbname,
            "SELECT string_agg(isbn, ',' ORDER BY isbn) FROM books"
        ),
        "123,234,345,456,567,678,789,890,901,912,923"
    );
    let indexes = server.psql(
        dbname,
        "SELECT string_agg(indexname, ',' ORDER BY 1) FROM pg_indexes WHERE tablename = 'books'",
    );
    assert_eq!(indexes, "books_pkey,books_search_c");

    let listed = run_penny(&["books", "KER"], &[("DATABASE_URL", &url)], None);
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout),
        "234\tKernighan\tThe C Programming Language\n123\tKernighan\tThe Practice of Programming\n"
    );
}

#[cfg_attr(
    not(penny_postgres),
    ignore = "needs PostgreSQL: apt-get install postgresql, brew install postgresql@15, or set PENNY_TEST_PG_BINDIR or PENNY_TEST_DATABASE_URL"
)]
#[tokio::test]
async fn the_search_is_an_index_scan_on_a_big_postgres_table() {
    if !available() {
        return;
    }
    let server = PgServer::shared();
    let url = loaded_database(server).0;
    let db = TestDb::open(&url, &PoolConfig::default()).await;
    let db = &db.db;
    let syllables = [
        "ker", "sed", "knu", "rit", "tho", "pik", "wir", "dij", "hoa", "lam",
    ];
    let books = (0..20_000)
        .map(|i| {
            let author = format!(
                "{}{}{i}",
                syllables[i % 10].to_uppercase(),
                syllables[(i / 10) % 10]
            );
            Book::new(&format!("978{i:010}"), &author, &format!("Volume {i}"))
        })
        .collect();
    db.add_books(books).await.unwrap();
    let dbname = url.rsplit('/').next().unwrap().split('?').next().unwrap();
    server.psql(dbname, "VACUUM ANALYZE books");

    // One author prefix in a hundred: selective enough that the planner prefers the index.
    let plan = db
        .explain_search("KerSed", &Position::First)
        .await
        .unwrap()
        .join("\n");
    assert!(
        plan.contains("Index Only Scan using books_search_c")
            || plan.contains("Index Scan using books_search_c"),
        "{plan}"
    );
    assert!(
        !plan.contains("Seq Scan") && !plan.contains("Sort"),
        "{plan}"
    );
    // Planned once for any values, not for these: the plan reads them as parameters.
    let cond = plan.lines().find(|line| line.contains("Index Cond:"));
    assert!(cond.is_some_and(|cond| cond.contains("$1")), "{plan}");
    let first = db.search_books("kersed", &Position::First).await.unwrap();
    assert_eq!(first.books.len(), 50);

    // A page deep into the matches starts its index scan at its cursor: it reads about a page.
    let deep = db.search_books("k", &Position::First).await.unwrap();
    let mut position = Position::After(deep.next.unwrap());
    for _ in 0..20 {
        let page = db.search_books("k", &position).await.unwrap();
        position = Position::After(page.next.unwrap());
    }
    for position in [
        position.clone(),
        Position::Before(match &position {
            Position::After(cursor) => cursor.clone(),
            _ => unreachable!(),
        }),
    ] {
        let plan = db.explain_search("k", &position).await.unwrap().join("\n");
        assert!(
            plan.contains("Index Only Scan") || plan.contains("Index Scan"),
            "{plan}"
        );
        assert!(plan.contains("actual rows=51"), "{plan}");
        let removed: u64 = plan
            .lines()
            .filter_map(|line| line.trim().strip_prefix("Rows Removed by Filter: "))
            .map(|n| n.parse::<u64>().unwrap())
            .sum();
        assert!(
            removed < 100,
            "read {removed} rows only to skip them: {plan}"
        );
    }
}

#[cfg_attr(
    not(penny_postgres),
    ignore = "needs PostgreSQL: apt-get install postgresql, brew install postgresql@15, or set PENNY_TEST_PG_BINDIR or PENNY_TEST_DATABASE_URL"
)]
#[tokio::test]
async fn a_deep_page_of_one_authors_books_starts_at_its_cursor_on_postgres() {
    if !available() {
        return;
    }
    let server = PgServer::shared();
    let url = loaded_database(server).0;
    let db = TestDb::open(&url, &PoolConfig::default()).await;
    let db = &db.db;
    let books = (0..20_000)
        .map(|i| Book::new(&format!("{i:06}"), "Deep", &format!("T {i:06}")))
        .collect();
    db.add_books(books).await.unwrap();
    let dbname = url.rsplit('/').next().unwrap().split('?').next().unwrap();
    server.psql(dbname, "VACUUM ANALYZE books");
    let cursor = penny::db::Cursor {
        author: "Deep".into(),
        title: "T 010000".into(),
        isbn: "010000".into(),
    };
    for position in [Position::After(cursor.clone()), Position::Before(cursor)] {
        let plan = db
            .explain_search("deep", &position)
            .await
            .unwrap()
            .join("\n");
        // Backward for a page before the cursor.
        assert!(plan.contains("using books_search_c"), "{plan}");
        assert!(plan.contains("Index Only Scan"), "{plan}");
        assert!(plan.contains("actual rows=51"), "{plan}");
        let cond = plan
            .lines()
            .find(|line| line.trim().starts_with("Index Cond:"))
            .unwrap_or_default();
        assert!(
            cond.contains("ROW(author_key, author, title, isbn)"),
            "{plan}"
        );
        assert!(!plan.contains("Rows Removed"), "{plan}");
    }
}

#[cfg_attr(
    not(penny_postgres),
    ignore = "needs PostgreSQL: apt-get install postgresql, brew install postgresql@15, or set PENNY_TEST_PG_BINDIR or PENNY_TEST_DATABASE_URL"
)]
#[tokio::test]
async fn load_synthetic_adds_the_same_books_every_time_and_keeps_what_is_there() {
    if !available() {
        return;
    }
    let server = PgServer::shared();
    let url = loaded_database(server).0;
    for _ in 0..2 {
        let output = run_penny(&["load-synthetic", "2000"], &[("DATABASE_URL", &url)], None);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let dbname = url.rsplit('/').next().unwrap().split('?').next().unwrap();
    assert_eq!(
        server.psql(dbname, "SELECT count(*) FROM books"),
        "2011",
        "2,000 synthetic books and the demo's 11"
    );
    let first = penny::db::synthetic::book(0);
    let stored = server.psql(
        dbname,
        &format!(
            "SELECT author || '|' || author_key FROM books WHERE isbn = '{}'",
            first.isbn()
        ),
    );
    assert_eq!(
        stored,
        format!("{}|{}", first.author(), penny::fold::fold(first.author()))
    );
}

/// The database's name in a URL made by `loaded_database`.
fn dbname(url: &str) -> &str {
    url.rsplit('/').next().unwrap().split('?').next().unwrap()
}

#[cfg_attr(
    not(penny_postgres),
    ignore = "needs PostgreSQL: apt-get install postgresql, brew install postgresql@15, or set PENNY_TEST_PG_BINDIR or PENNY_TEST_DATABASE_URL"
)]
#[tokio::test]
async fn a_query_the_server_cancels_is_a_503_logged_once_not_a_500_per_request() {
    if !available() {
        return;
    }
    let server = PgServer::shared();
    let url = loaded_database(server).0;
    let dbname = dbname(&url);
    // Penny's role has a statement_timeout, which the searches run into while another session
    // locks the table.
    let role = format!("impatient_{dbname}");
    server.psql(
        "postgres",
        &format!(
            "CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}'; \
             ALTER ROLE {role} SET statement_timeout = '200ms'"
        ),
    );
    server.psql(dbname, &format!("GRANT SELECT ON books TO {role}"));
    let url = url.replacen("//postgres:", &format!("//{role}:"), 1);
    let penny = RunningPenny::start(&["--bind", "127.0.0.1:0"], &[("DATABASE_URL", &url)], None);
    assert!(
        time_until_ok(
            penny.addr,
            "/searchresults?author=ker",
            Duration::from_secs(5)
        )
        .await
        .is_some()
    );
    let lock = TableLock::take(server, dbname, 5.0);
    for path in ["/searchresults?author=ker", "/api/books?author=ker"] {
        for (response, _) in common::get_at_once(penny.addr, path, 8).await {
            assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
            assert_eq!(response.header("retry-after"), "1");
        }
    }
    lock.release(server, dbname);
    assert!(
        time_until_ok(
            penny.addr,
            "/searchresults?author=ker",
            Duration::from_secs(5)
        )
        .await
        .is_some()
    );
    let log = penny.wait_for_log("reachable again", Duration::from_secs(5));
    assert_eq!(
        log.matches("the database is unavailable").count(),
        1,
        "{log}"
    );
    assert!(
        log.contains("canceling statement due to statement timeout"),
        "{log}"
    );
    assert_eq!(
        log.matches(" ERROR ").count(),
        1,
        "one line for the outage: {log}"
    );
}

#[cfg_attr(
    not(penny_postgres),
    ignore = "needs PostgreSQL: apt-get install postgresql, brew install postgresql@15, or set PENNY_TEST_PG_BINDIR or PENNY_TEST_DATABASE_URL"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_connection_ended_by_the_server_at_once_fails_no_request() {
    if !available() {
        return;
    }
    let server = PgServer::shared();
    let url = loaded_database(server).0;
    let dbname = dbname(&url);
    let penny = RunningPenny::start(&["--bind", "127.0.0.1:0"], &[("DATABASE_URL", &url)], None);
    let terminate = format!(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = '{dbname}' AND application_name = 'penny'"
    );
    let mut failures = Vec::new();
    for round in 0..5 {
        // Fill the pool, end every connection it holds, and search again at once.
        for (response, _) in common::get_at_once(penny.addr, "/api/books?author=ker", 20).await {
            assert_eq!(response.status, StatusCode::OK, "round {round}: warm-up");
        }
        let ended = server.psql(dbname, &terminate);
        assert_ne!(ended, "0", "round {round}: connections were ended");
        for (response, _) in common::get_at_once(penny.addr, "/api/books?author=ker", 20).await {
            if response.status != StatusCode::OK {
                failures.push((round, response.status, response.body));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:?}");
}

#[cfg_attr(
    not(penny_postgres_server),
    ignore = "needs PostgreSQL server binaries to start servers with: apt-get install postgresql, brew install postgresql@15, or set PENNY_TEST_PG_BINDIR"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_that_refuses_more_connections_is_not_stormed_and_penny_says_why_once() {
    if !can_start_servers() {
        return;
    }
    // A server of its own, whose log counts the refused connects.
    let server = PgServer::start();
    let url = loaded_database(&server).0;
    let dbname = dbname(&url);
    // A role that may hold 3 connections, and a pool of 10 that would like more.
    let role = format!("storm_{dbname}");
    server.psql(
        "postgres",
        &format!(
            "CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}' CONNECTION LIMIT 3; \
             GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"
        ),
    );
    server.psql(dbname, &format!("GRANT SELECT ON books TO {role}"));
    let url = url.replacen("//postgres:", &format!("//{role}:"), 1);
    let refused = format!("too many connections for role \"{role}\"");
    let before = server.log().matches(&refused).count();
    let penny = RunningPenny::start(&["--bind", "127.0.0.1:0"], &[("DATABASE_URL", &url)], None);

    // Three seconds of 24 clients at once: more than three connections are wanted all along.
    let started = Instant::now();
    let mut statuses = Vec::new();
    while started.elapsed() < Duration::from_secs(3) {
        for (response, _) in common::get_at_once(penny.addr, "/api/books?author=ker", 24).await {
            statuses.push(response.status);
        }
    }
    let attempts = server.log().matches(&refused).count() - before;
    let log = penny.stdout();
    println!(
        "a pool of 10 against a limit of 3: {} requests, {attempts} refused connects in 3 s",
        statuses.len()
    );
    assert!(
        statuses.iter().all(|status| *status == StatusCode::OK),
        "the three connections serve everyone: {statuses:?}"
    );
    assert!(attempts >= 1, "the pool tried to grow");
    assert!(attempts <= 20, "{attempts} refused connects: backing off");
    assert_eq!(
        log.matches("the database refuses more connections").count(),
        1,
        "{log}"
    );
    assert!(log.contains("PENNY_POOL_SIZE"), "{log}");
}

/// The pool view (/api/pool) against PostgreSQL's own count of Penny's connections, at rest and
/// while searches wait on a lock.
#[cfg_attr(
    not(penny_postgres),
    ignore = "needs PostgreSQL: apt-get install postgresql, brew install postgresql@15, or set PENNY_TEST_PG_BINDIR or PENNY_TEST_DATABASE_URL"
)]
#[tokio::test]
async fn the_pool_view_matches_pg_stat_activity_under_load() {
    if !available() {
        return;
    }
    let server = PgServer::shared();
    let (url, dbname) = loaded_database(server);
    // A name of its own, so that no other session (init-db's, still closing) is counted.
    let url = format!("{url}&application_name=pool_view");
    let penny = RunningPenny::start(
        &["--bind", "127.0.0.1:0"],
        &[("DATABASE_URL", &url), ("PENNY_POOL_SIZE", "4")],
        None,
    );
    let pool = || async {
        let response = common::get(penny.addr, "/api/pool", &[]).await;
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(response.header("cache-control"), "no-store");
        serde_json::from_str::<serde_json::Value>(&response.body).unwrap()
    };
    let connections = |state: &'static str| {
        let dbname = dbname.clone();
        tokio::task::spawn_blocking(move || {
            let count = server.psql(
                &dbname,
                &format!(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = '{dbname}' \
                     AND application_name = 'pool_view' AND state LIKE '{state}'"
                ),
            );
            count.parse::<u64>().unwrap()
        })
    };
    for (response, _) in common::get_at_once(penny.addr, "/api/books?author=ker", 8).await {
        assert_eq!(response.status, StatusCode::OK);
    }
    // A connection's server process ends a moment after Penny closes it: the two counts agree
    // once both have settled.
    let mut rest = pool().await;
    let mut all = connections("%").await.unwrap();
    for _ in 0..20 {
        if rest["open"].as_u64() == Some(all) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        (rest, all) = (pool().await, connections("%").await.unwrap());
    }
    let sessions = server.psql(
        &dbname,
        &format!(
            "SELECT pid, application_name, state, backend_start, left(query, 60) \
             FROM pg_stat_activity WHERE datname = '{dbname}'"
        ),
    );
    assert_eq!(rest["database"], "postgresql");
    assert_eq!(rest["size"], 4);
    assert_eq!(rest["reachable"], true);
    assert_eq!(
        (rest["in_use"].as_u64(), rest["queries"].as_u64()),
        (Some(0), Some(0)),
        "{rest}"
    );
    assert_eq!(rest["open"].as_u64(), Some(all), "{rest}\n{sessions}");
    assert!(rest["opened"].as_u64() >= rest["open"].as_u64(), "{rest}");

    // 12 searches held up by a lock: the view shows them, on the connections PostgreSQL has.
    let lock = TableLock::take(server, &dbname, 3.0);
    let searches = tokio::spawn(common::get_at_once(penny.addr, "/api/books?author=ker", 12));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let busy = pool().await;
    let active = connections("active").await.unwrap();
    let all = connections("%").await.unwrap();
    lock.release(server, &dbname);
    for (response, _) in searches.await.unwrap() {
        assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    }
    assert_eq!(busy["queries"], 12, "{busy}");
    assert_eq!(busy["waiting"], 0, "{busy}");
    assert_eq!(busy["in_use"].as_u64(), Some(active), "{busy}");
    assert_eq!(busy["open"].as_u64(), Some(all), "{busy}");
    assert!(
        busy["in_use"].as_u64() >= Some(2),
        "twelve share a few connections: {busy}"
    );
}

//! The database's schema, set up and kept up to date by `penny init-db`: a database from the
//! release before search keys, one loaded from penny.sql by hand, books added or changed by
//! hand, and two `init-db` at once. Each test runs on a SQLite file and on PostgreSQL.

#[macro_use]
mod common;

use common::{Backend, CapturedLog, EmptyDb, RunningPenny, TestDb, init_db, run_penny};
use hyper::StatusCode;
use penny::config::PoolConfig;
use std::path::Path;
use std::time::Duration;

suite! {
    read_only: [],
    writable: [
        a_database_from_the_release_before_search_keys_is_upgraded_keeping_every_book,
        a_database_loaded_from_penny_sql_by_hand_is_searchable_at_once_and_kept_by_init_db,
        penny_sql_and_the_migrations_make_the_same_schema,
        books_added_or_changed_by_hand_are_found_after_init_db_and_penny_says_so_meanwhile,
        two_init_dbs_at_once_make_one_sound_database,
        a_database_without_search_keys_is_named_with_the_command_that_upgrades_it,
        the_watch_for_books_without_a_key_says_when_they_appear_and_when_they_are_gone,
    ]
}

/// What `penny init-db` of the release before search keys made.
fn previous_release(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => include_str!("fixtures/previous-release-postgres.sql"),
        _ => include_str!("fixtures/previous-release-sqlite.sql"),
    }
}

/// How long a log line may take to appear.
const LIMIT: Duration = Duration::from_secs(10);

fn penny_sql() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/penny.sql"))
}

/// `penny books AUTHOR` on `url`: the lines it prints.
fn books(url: &str, author: &str) -> String {
    let output = run_penny(&["books", author], &[("DATABASE_URL", url)], None);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn history(db: &EmptyDb) -> String {
    db.query("SELECT version, name FROM refinery_schema_history ORDER BY version")
}

fn indexes(db: &EmptyDb, backend: Backend) -> String {
    db.query(match backend {
        Backend::Postgres => {
            "SELECT indexname FROM pg_indexes WHERE tablename = 'books' ORDER BY 1"
        }
        _ => {
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'books' ORDER BY 1"
        }
    })
}

/// The table's columns and indexes, as the database describes them.
fn schema(db: &EmptyDb, backend: Backend) -> String {
    let (columns, indexes) = match backend {
        Backend::Postgres => (
            "SELECT column_name, data_type, collation_name, is_nullable FROM \
             information_schema.columns WHERE table_name = 'books' ORDER BY ordinal_position",
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'books' ORDER BY indexname",
        ),
        _ => (
            "SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info('books')",
            "SELECT i.name, c.seqno, c.name FROM sqlite_master i, pragma_index_info(i.name) c \
             WHERE i.type = 'index' AND i.tbl_name = 'books' ORDER BY 1, 2",
        ),
    };
    format!("{}\n{}", db.query(columns), db.query(indexes))
}

async fn a_database_from_the_release_before_search_keys_is_upgraded_keeping_every_book(
    backend: Backend,
) {
    let db = EmptyDb::new(backend);
    db.run(previous_release(backend));
    db.run(
        "INSERT INTO books (isbn, author, title) VALUES ('9001', 'Gödel', 'Kurt'), \
         ('9002', 'ČAPEK', 'Karel'), ('9003', NULL, 'No author'), ('9004', 'Zola', NULL)",
    );
    let printed = init_db(&db.url);
    for line in [
        "Applied migration V1__books",
        "Applied migration V2__author_key",
        "Set the search key of 7 books",
        "The database is ready",
    ] {
        assert!(printed.contains(line), "{printed}");
    }
    assert!(!printed.contains("Loaded penny.sql"), "{printed}");
    assert_eq!(
        db.query("SELECT isbn, author, title, author_key FROM books ORDER BY isbn"),
        "123|Kernighan|The Practice of Programming|kernighan\n\
         234|Kernighan|The C Programming Language|kernighan\n\
         345|Sedgewick|Algorithms in C|sedgewick\n\
         9001|Gödel|Kurt|godel\n\
         9002|ČAPEK|Karel|capek\n\
         9003||No author|\n\
         9004|Zola||zola"
    );
    assert_eq!(history(&db), "1|books\n2|author_key");
    let indexes = indexes(&db, backend);
    assert!(!indexes.contains("books_author_search"), "{indexes}");
    assert!(indexes.contains("books_search"), "{indexes}");
    assert_eq!(books(&db.url, "GODEL"), "9001\tGödel\tKurt\n");
    assert_eq!(books(&db.url, "capek"), "9002\tČAPEK\tKarel\n");

    // Again: nothing left to do, nothing changed.
    let before = db.query("SELECT isbn, author_key FROM books ORDER BY isbn");
    let printed = init_db(&db.url);
    assert!(
        !printed.contains("Applied") && !printed.contains("Set the"),
        "{printed}"
    );
    assert_eq!(
        db.query("SELECT isbn, author_key FROM books ORDER BY isbn"),
        before
    );
}

async fn a_database_loaded_from_penny_sql_by_hand_is_searchable_at_once_and_kept_by_init_db(
    backend: Backend,
) {
    let db = EmptyDb::new(backend);
    db.run_file(penny_sql());
    // Straight away, as the lecture does it: no `penny init-db` in between.
    let penny = RunningPenny::start(
        &["--bind", "127.0.0.1:0"],
        &[("DATABASE_URL", &db.url)],
        None,
    );
    let page = common::get(penny.addr, "/searchresults?author=orsted", &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(
        page.table_rows(),
        vec![vec!["789", "Ørsted", "Selected Scientific Works"]]
    );
    assert!(!penny.stdout().contains("WARN"), "{}", penny.stdout());
    drop(penny);

    let before = db.query("SELECT * FROM books ORDER BY isbn");
    let printed = init_db(&db.url);
    assert!(
        !printed.contains("Applied") && !printed.contains("Set the"),
        "{printed}"
    );
    assert_eq!(db.query("SELECT * FROM books ORDER BY isbn"), before);
    // The database is recorded as up to date, so the migrations never run on it.
    assert_eq!(history(&db), "1|books\n2|author_key");
    assert_eq!(
        books(&db.url, "ДОСТ"),
        "923\tДостоевский\tПреступление и наказание\n"
    );

    // Loaded again by hand, over a database init-db has seen: the same again.
    db.run_file(penny_sql());
    init_db(&db.url);
    assert_eq!(history(&db), "1|books\n2|author_key");
    assert_eq!(db.query("SELECT * FROM books ORDER BY isbn"), before);
}

async fn penny_sql_and_the_migrations_make_the_same_schema(backend: Backend) {
    let migrated = EmptyDb::new(backend);
    migrated.run(previous_release(backend));
    init_db(&migrated.url);
    let fresh = EmptyDb::new(backend);
    init_db(&fresh.url);
    let by_hand = EmptyDb::new(backend);
    by_hand.run_file(penny_sql());
    init_db(&by_hand.url);
    let expected = schema(&migrated, backend);
    assert_eq!(schema(&fresh, backend), expected);
    assert_eq!(schema(&by_hand, backend), expected);
    for db in [&migrated, &fresh, &by_hand] {
        assert_eq!(history(db), history(&migrated));
    }
}

async fn books_added_or_changed_by_hand_are_found_after_init_db_and_penny_says_so_meanwhile(
    backend: Backend,
) {
    let db = EmptyDb::new(backend);
    init_db(&db.url);
    db.run(
        "INSERT INTO books (isbn, author, title) VALUES ('7001', 'Łukasiewicz', 'Logic'), \
         ('7002', 'Tarsky', 'Truth')",
    );
    let penny = RunningPenny::start(
        &["--bind", "127.0.0.1:0"],
        &[("DATABASE_URL", &db.url)],
        None,
    );
    let log = penny.wait_for_log("without a search key", LIMIT);
    assert!(log.contains("count=2"), "{log}");
    assert!(log.contains("run `penny init-db`"), "{log}");
    let search = |author: &'static str| {
        let addr = penny.addr;
        async move {
            let path = format!("/api/books?author={author}");
            let response = common::get(addr, &path, &[]).await;
            assert_eq!(response.status, StatusCode::OK);
            response.body
        }
    };
    assert_eq!(search("lukasiewicz").await, "[]");

    // A typo fixed by hand: the stored key still says the old name until init-db.
    db.run("UPDATE books SET author = 'Tarski' WHERE isbn = '7002'");
    let printed = init_db(&db.url);
    assert!(
        printed.contains("Set the search key of 2 books"),
        "{printed}"
    );
    assert!(search("lukasiewicz").await.contains("\"7001\""));
    assert!(search("tarski").await.contains("\"7002\""));
    assert_eq!(search("tarsky").await, "[]");
    let warnings = penny.stdout().matches("without a search key").count();
    assert_eq!(warnings, 1, "said once: {}", penny.stdout());
}

async fn two_init_dbs_at_once_make_one_sound_database(backend: Backend) {
    for previous in [false, true] {
        for _ in 0..3 {
            let db = EmptyDb::new(backend);
            if previous {
                db.run(previous_release(backend));
                db.run("INSERT INTO books (isbn, author, title) VALUES ('9001', 'Gödel', 'K')");
            }
            let start = || {
                std::process::Command::new(env!("CARGO_BIN_EXE_penny"))
                    .arg("init-db")
                    .env("DATABASE_URL", &db.url)
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("penny starts")
            };
            let (first, second) = (start(), start());
            for child in [first, second] {
                let output = child.wait_with_output().unwrap();
                common::secrets::check_output(&output, "init-db");
                assert!(
                    output.status.success(),
                    "{}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            assert_eq!(history(&db), "1|books\n2|author_key");
            let expected_books = if previous { "4" } else { "11" };
            assert_eq!(db.query("SELECT count(*) FROM books"), expected_books);
            assert_eq!(
                db.query("SELECT count(*) FROM books WHERE author_key IS NULL"),
                "0"
            );
            assert_eq!(books(&db.url, "godel").lines().count(), 1);
        }
    }
}

async fn a_database_without_search_keys_is_named_with_the_command_that_upgrades_it(
    backend: Backend,
) {
    let db = EmptyDb::new(backend);
    db.run(previous_release(backend));
    if !matches!(backend, Backend::Postgres) {
        // A SQLite file is checked at start-up.
        let output = run_penny(&["serve"], &[("DATABASE_URL", &db.url)], None);
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("no author_key column"), "{stderr}");
        assert!(stderr.contains("run `penny init-db`"), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        return;
    }
    // PostgreSQL is not contacted at start-up: Penny serves 503s, says why once, and recovers
    // as soon as init-db has run.
    let penny = RunningPenny::start(
        &["--bind", "127.0.0.1:0"],
        &[("DATABASE_URL", &db.url)],
        None,
    );
    for _ in 0..5 {
        let page = common::get(penny.addr, "/searchresults?author=ker", &[]).await;
        assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(!page.body.contains("author_key"), "{}", page.body);
    }
    let health = common::get(penny.addr, "/healthz", &[]).await;
    assert_eq!(health.status, StatusCode::SERVICE_UNAVAILABLE);
    let log = penny.wait_for_log("run `penny init-db`", LIMIT);
    assert_eq!(log.matches("run `penny init-db`").count(), 1, "{log}");
    init_db(&db.url);
    let page = common::get(penny.addr, "/searchresults?author=ker", &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.table_rows().len(), 2);
}

async fn the_watch_for_books_without_a_key_says_when_they_appear_and_when_they_are_gone(
    backend: Backend,
) {
    let db = EmptyDb::new(backend);
    init_db(&db.url);
    let served = TestDb::open(&db.url, &PoolConfig::default()).await;
    let log = CapturedLog::start();
    let watch = tokio::spawn(
        served
            .db
            .clone()
            .watch_unsearchable_books(Duration::from_millis(20)),
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !log.text().contains("search key"),
        "nothing to say yet: {}",
        log.text()
    );
    db.run("INSERT INTO books (isbn, author, title) VALUES ('7001', 'Łukasiewicz', 'Logic')");
    let text = log.wait_for("without a search key", LIMIT).await;
    assert!(text.contains("count=1"), "{text}");
    init_db(&db.url);
    let text = log
        .wait_for("every book has its search key again", LIMIT)
        .await;
    watch.abort();
    assert_eq!(text.matches("without a search key").count(), 1, "{text}");
}

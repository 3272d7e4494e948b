//! What the reliability scenarios share: the paths they load, the check for a generic error
//! page, a loaded SQLite file, and ways to run and watch the penny process.

use crate::common::postgres::PASSWORD;
use crate::common::{RunningPenny, run_penny};
use std::collections::BTreeSet;

/// The pages that need the database.
pub const DATABASE_PATHS: [&str; 3] = [
    "/searchresults?author=ker",
    "/api/books?author=ker",
    "/healthz",
];

/// The pages a visitor reads from the database.
pub const DATABASE_PAGES: [&str; 2] = ["/searchresults?author=ker", "/api/books?author=ker"];

/// A visitor's mix: pages with and without the database, and a static file.
pub const MIXED_PATHS: [&str; 4] = [
    "/",
    "/searchresults?author=ker",
    "/static/penny.css",
    "/api/books?author=ker",
];

/// Whether a 5xx body is Penny's generic page (or JSON error) and names no cause.
pub fn is_generic_error(body: &str) -> bool {
    let lower = body.to_lowercase();
    let generic = body.contains("Service unavailable")
        || body.contains("No books yet")
        || body.contains("Something went wrong")
        || body.starts_with(r#"{"error":"#)
        || body.trim() == "unavailable";
    let leaks = [
        "sqlite",
        "postgres",
        "password",
        "refused",
        "no such",
        "not a database",
        "timed out",
        "tokio",
    ]
    .iter()
    .any(|cause| lower.contains(cause));
    generic && !leaks && !body.contains(PASSWORD)
}

/// Runs blocking work (pg_ctl, psql, waiting for a process) off the async workers.
pub async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        .expect("the blocking work does not panic")
}

/// A SQLite file with penny.sql loaded, in a temp dir that lives as long as the value.
pub struct SqliteFile {
    pub path: std::path::PathBuf,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl SqliteFile {
    pub fn create() -> SqliteFile {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("penny.sqlite");
        let url = format!("sqlite://{}", path.display());
        let output = run_penny(&["init-db"], &[("DATABASE_URL", &url)], None);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        SqliteFile {
            path,
            url,
            _dir: dir,
        }
    }

    /// Takes SQLite's exclusive lock, so every query waits (up to its busy timeout) until the
    /// returned connection commits.
    pub fn lock(&self) -> rusqlite::Connection {
        let lock = rusqlite::Connection::open(&self.path).unwrap();
        lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
        lock
    }
}

pub fn serve(env: &[(&str, &str)]) -> RunningPenny {
    RunningPenny::start(&["--bind", "127.0.0.1:0"], env, None)
}

pub fn is_running(penny: &mut RunningPenny) -> bool {
    penny
        .child
        .try_wait()
        .expect("the child can be polled")
        .is_none()
}

/// The X-Request-Id of every request line in penny's log.
pub fn logged_request_ids(log: &str) -> BTreeSet<String> {
    log.lines()
        .filter_map(|line| line.split("request_id=").nth(1))
        .map(|rest| {
            rest.trim_start_matches('"')
                .split(['"', ' '])
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

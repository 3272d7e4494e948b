//! The database: `Db` is one of the backends, picked once at start-up, with one method per query.
//! Driver types stop here; nothing above this module names one.

mod postgres;
mod sqlite;

use crate::config::{DatabaseUrl, PoolConfig};
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A row of the books table, as the pages and the JSON API show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Book {
    pub isbn: String,
    pub author: String,
    pub title: String,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What went wrong talking to the database. Causes are for the log, never for a page.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No connection could be had: the database is down, full or unreachable. Worth a retry.
    #[error("the database is unavailable")]
    Unavailable(#[source] BoxError),
    /// The database answered, but the statement failed.
    #[error("a database query failed")]
    Query(#[source] BoxError),
    /// The database cannot serve Penny as it is (no such file, no books table, read-only demo).
    #[error("{0}")]
    Setup(String),
}

/// The database Penny serves from. Cheap to clone: a handle to a shared pool.
#[derive(Clone)]
pub struct Db {
    backend: Backend,
    /// Whether the last attempt to reach the database worked, so that an outage is logged
    /// once when it starts and once when it ends, not once per request.
    reachable: Arc<AtomicBool>,
}

/// One arm per database; each method of `Db` matches on it, so every query exists for both.
#[derive(Clone)]
enum Backend {
    Sqlite(sqlite::SqliteDb),
    Postgres(postgres::PostgresDb),
}

/// The penny.sql shipped with this build: the schema and its three books.
pub const SCHEMA: &str = include_str!("../../penny.sql");

/// What a search for an author prefix looks for: authors whose lowercased form lies in
/// `[from, to)`. Lowercasing is ASCII-only, the same on every backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthorRange {
    pub from: String,
    /// `None` when no string is greater than every string with the prefix (it is all U+10FFFF).
    pub to: Option<String>,
}

impl AuthorRange {
    /// The range of the authors starting with `prefix`, ignoring ASCII case. The text is taken
    /// literally: `%`, `_` and `\` are characters like any other.
    pub fn starting_with(prefix: &str) -> AuthorRange {
        let from = prefix.to_ascii_lowercase();
        let mut to = from.clone();
        // The smallest string greater than every extension of the prefix: bump the last
        // character that can be bumped and drop what follows it.
        let to = loop {
            match to.pop() {
                None => break None,
                Some(last) => {
                    if let Some(next) = next_char(last) {
                        to.push(next);
                        break Some(to);
                    }
                }
            }
        };
        AuthorRange { from, to }
    }
}

fn next_char(c: char) -> Option<char> {
    match c {
        '\u{D7FF}' => Some('\u{E000}'),
        char::MAX => None,
        c => char::from_u32(c as u32 + 1),
    }
}

impl Db {
    /// Opens the database that `url` names for serving. SQLite files are checked now, so that a
    /// wrong path stops start-up with a clear message.
    /// PostgreSQL is not contacted here: Penny must start (and answer 503) while it is down.
    pub async fn open(url: &DatabaseUrl, pool: &PoolConfig) -> Result<Db, DbError> {
        let backend = match url {
            DatabaseUrl::Bundled => Backend::Sqlite(sqlite::SqliteDb::open_bundled(pool).await?),
            DatabaseUrl::Sqlite(path) => {
                Backend::Sqlite(sqlite::SqliteDb::open_file(path.clone(), pool, false).await?)
            }
            DatabaseUrl::Postgres(url) => Backend::Postgres(postgres::PostgresDb::open(url, pool)?),
        };
        Ok(Db::new(backend))
    }

    fn new(backend: Backend) -> Db {
        Db {
            backend,
            reachable: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Opens the database that `url` names for `penny init-db`, creating a SQLite file if needed.
    pub async fn open_for_schema(url: &DatabaseUrl, pool: &PoolConfig) -> Result<Db, DbError> {
        match url {
            DatabaseUrl::Bundled => Err(DbError::Setup(
                "no DATABASE_URL is set, and the bundled demo database is read-only; \
                 set DATABASE_URL=sqlite://penny.sqlite to make a database file"
                    .into(),
            )),
            DatabaseUrl::Sqlite(path) => Ok(Db::new(Backend::Sqlite(
                sqlite::SqliteDb::open_file(path.clone(), pool, true).await?,
            ))),
            DatabaseUrl::Postgres(_) => Db::open(url, pool).await,
        }
    }

    /// Logs the start and the end of an outage, once each.
    fn observe<T>(&self, result: Result<T, DbError>) -> Result<T, DbError> {
        match &result {
            Err(DbError::Unavailable(cause)) => {
                if self.reachable.swap(false, Ordering::Relaxed) {
                    tracing::error!(
                        cause = cause_chain(cause.as_ref()),
                        "the database is unavailable"
                    );
                }
            }
            Ok(_) => {
                if !self.reachable.load(Ordering::Relaxed)
                    && !self.reachable.swap(true, Ordering::Relaxed)
                {
                    tracing::info!("the database is reachable again");
                }
            }
            Err(_) => {}
        }
        result
    }

    /// The books whose author starts with `prefix` (ASCII case ignored), ordered by author
    /// (case ignored, then exact), title and ISBN.
    pub async fn search_books(&self, prefix: &str) -> Result<Vec<Book>, DbError> {
        let range = AuthorRange::starting_with(prefix);
        self.observe(match &self.backend {
            Backend::Sqlite(db) => db.search_books(range).await,
            Backend::Postgres(db) => db.search_books(range).await,
        })
    }

    /// Adds `books` in one transaction; an ISBN already present is left as it is.
    pub async fn add_books(&self, books: Vec<Book>) -> Result<(), DbError> {
        self.observe(match &self.backend {
            Backend::Sqlite(db) => db.add_books(books).await,
            Backend::Postgres(db) => db.add_books(books).await,
        })
    }

    /// The database's plan for a search, one line per step, to show which index it uses.
    pub async fn explain_search(&self, prefix: &str) -> Result<Vec<String>, DbError> {
        let range = AuthorRange::starting_with(prefix);
        self.observe(match &self.backend {
            Backend::Sqlite(db) => db.explain_search(range).await,
            Backend::Postgres(db) => db.explain_search(range).await,
        })
    }

    /// Asks the database a trivial question about the books table, for /healthz.
    pub async fn ping(&self) -> Result<(), DbError> {
        self.observe(match &self.backend {
            Backend::Sqlite(db) => db.ping().await,
            Backend::Postgres(db) => db.ping().await,
        })
    }

    /// Runs penny.sql plus the backend's search index. Without `reset` the DROP statements are
    /// skipped, so only what is missing gets created and no data is lost.
    pub async fn load_schema(&self, reset: bool) -> Result<(), DbError> {
        let script = schema_script(SCHEMA, reset);
        self.observe(match &self.backend {
            Backend::Sqlite(db) => db.load_schema(script).await,
            Backend::Postgres(db) => db.load_schema(script).await,
        })
    }
}

/// `err` and its sources on one line, for the log.
pub fn cause_chain(err: &dyn std::error::Error) -> String {
    let mut line = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    line
}

/// penny.sql's statements, without its DROP statements unless `reset`, joined back into one
/// script. A statement ends with a line that ends in `;`.
fn schema_script(schema: &str, reset: bool) -> String {
    let mut script = String::new();
    let mut statement = String::new();
    for line in schema.lines() {
        let code = line.trim();
        if code.is_empty() || code.starts_with("--") {
            continue;
        }
        statement.push_str(line);
        statement.push('\n');
        if code.ends_with(';') {
            let is_drop = statement
                .trim_start()
                .to_ascii_uppercase()
                .starts_with("DROP ");
            if reset || !is_drop {
                script.push_str(&statement);
            }
            statement.clear();
        }
    }
    script.push_str(&statement);
    script
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_range_ends_just_past_the_prefix() {
        let range = AuthorRange::starting_with("Ker");
        assert_eq!(range.from, "ker");
        assert_eq!(range.to.as_deref(), Some("kes"));
    }

    #[test]
    fn wildcards_are_ordinary_characters_in_a_range() {
        let range = AuthorRange::starting_with("50%");
        assert_eq!(
            (range.from.as_str(), range.to.as_deref()),
            ("50%", Some("50&"))
        );
        let range = AuthorRange::starting_with("a_\\");
        assert_eq!(range.to.as_deref(), Some("a_]"));
    }

    #[test]
    fn only_ascii_letters_are_lowercased() {
        assert_eq!(AuthorRange::starting_with("ÉMILE").from, "Émile");
    }

    #[test]
    fn the_last_characters_that_cannot_grow_are_dropped() {
        let range = AuthorRange::starting_with("a\u{10FFFF}");
        assert_eq!(range.to.as_deref(), Some("b"));
        assert_eq!(AuthorRange::starting_with("\u{10FFFF}").to, None);
        assert_eq!(
            AuthorRange::starting_with("\u{D7FF}").to.as_deref(),
            Some("\u{E000}")
        );
    }

    #[test]
    fn the_schema_script_skips_drops_unless_reset() {
        let idempotent = schema_script(SCHEMA, false);
        assert!(!idempotent.contains("DROP"), "{idempotent}");
        assert!(idempotent.contains("CREATE TABLE IF NOT EXISTS books"));
        assert_eq!(idempotent.matches("INSERT INTO books").count(), 3);
        let reset = schema_script(SCHEMA, true);
        assert!(reset.starts_with("DROP TABLE IF EXISTS books;"), "{reset}");
    }
}

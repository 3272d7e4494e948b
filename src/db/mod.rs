//! The database: `Db` is one of the backends, picked once at start-up, with one method per query.
//! Driver types stop here; nothing above this module names one.

mod counts;
mod outage;
mod postgres;
mod sqlite;
pub mod synthetic;
mod timing;

pub use postgres::FIRST as POSTGRES_FIRST_PAGE;
pub use postgres::LoneConnection;

use crate::config::{DatabaseUrl, PoolConfig};
use crate::fold::fold;
use outage::Outages;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
pub use timing::Timing;

/// A row of the books table, as the pages and the JSON API show it. Its three values share
/// one allocation: a page of 50 books makes 50, not 150, and on PostgreSQL's 50-book page the
/// other 100 were a tenth of the work of serving it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Book {
    /// The ISBN, the author and the title, one after another.
    text: String,
    /// Where the author and the title start in `text`.
    author_at: usize,
    title_at: usize,
}

impl Book {
    pub fn new(isbn: &str, author: &str, title: &str) -> Book {
        let mut text = String::with_capacity(isbn.len() + author.len() + title.len());
        text.push_str(isbn);
        text.push_str(author);
        text.push_str(title);
        Book {
            text,
            author_at: isbn.len(),
            title_at: isbn.len() + author.len(),
        }
    }

    pub fn isbn(&self) -> &str {
        &self.text[..self.author_at]
    }

    pub fn author(&self) -> &str {
        &self.text[self.author_at..self.title_at]
    }

    pub fn title(&self) -> &str {
        &self.text[self.title_at..]
    }
}

/// As a JSON object with the three values by name, as the API has always sent it.
impl Serialize for Book {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut book = serializer.serialize_struct("Book", 3)?;
        book.serialize_field("isbn", self.isbn())?;
        book.serialize_field("author", self.author())?;
        book.serialize_field("title", self.title())?;
        book.end()
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What went wrong talking to the database. Causes are for the log, never for a page.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No connection could be had: the database is down, full or unreachable. Worth a retry.
    #[error("the database is unavailable")]
    Unavailable(#[source] BoxError),
    /// The database answers but has no books table (or an old one): nobody has run `penny
    /// init-db` or loaded penny.sql yet. Logged once, like an outage, and over once they have.
    #[error("the database is not set up for Penny")]
    NotSetUp(#[source] BoxError),
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
    /// Every query's outcome goes through it, so that an outage is logged when it starts and
    /// when it ends, not once per request.
    outages: Arc<Outages>,
    /// Recent counts of searches with more than a page of books.
    counts: Arc<counts::Counts>,
}

/// One arm per database; each method of `Db` matches on it, so every query exists for both.
#[derive(Clone)]
enum Backend {
    Sqlite(sqlite::SqliteDb),
    Postgres(postgres::PostgresDb),
}

/// The most books a page of results shows.
pub const PAGE_SIZE: usize = 50;

/// What to do about a database that is not set up for Penny, for the log and the error page.
pub const HOW_TO_SET_UP: &str = "it needs Penny's books: run `penny init-db` (on Heroku, \
    `heroku run penny init-db`), or load penny.sql (`psql \"$DATABASE_URL\" -f penny.sql`)";

/// A book's place in the search's order (its author's search key, then the author as stored,
/// the title and the ISBN): where a page starts or ends. Travels in page links as JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub author: String,
    pub title: String,
    pub isbn: String,
}

impl Cursor {
    /// The search key of the cursor's author: where it sits in the search's order.
    fn key(&self) -> String {
        fold(&self.author)
    }
}

impl From<&Book> for Cursor {
    fn from(book: &Book) -> Cursor {
        Cursor {
            author: book.author().to_owned(),
            title: book.title().to_owned(),
            isbn: book.isbn().to_owned(),
        }
    }
}

/// Which page of a search: keyset pagination, so that a page deep into a million matches
/// costs the same as the first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Position {
    #[default]
    First,
    /// The page of books that come right after this one.
    After(Cursor),
    /// The page of books that come right before this one.
    Before(Cursor),
}

/// One page of a search, with where the pages around it start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    pub books: Vec<Book>,
    /// For a "Previous" link: the page before is `Position::Before(previous)`.
    pub previous: Option<Cursor>,
    /// For a "Next" link: the page after is `Position::After(next)`.
    pub next: Option<Cursor>,
    /// How many books the search finds from this page's first book to its last, this page's
    /// own included.
    pub remaining: Count,
}

/// A number of books, counted up to a point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    Exact(u64),
    /// More than this many: counting stopped there.
    MoreThan(u64),
}

impl Count {
    /// This count with `n` more books before it.
    pub fn after(self, n: u64) -> Count {
        match self {
            Count::Exact(count) => Count::Exact(n + count),
            Count::MoreThan(count) => Count::MoreThan(n + count),
        }
    }
}

/// Counting stops past this many books, so that a count never reads more of the index than
/// about a page does (bench/ab.sh measures it): a bigger result says "more than".
pub const COUNT_LIMIT: u64 = 1000;

/// The penny.sql shipped with this build: the schema and the demo books.
pub const SCHEMA: &str = include_str!("../../penny.sql");

/// The migration files, set by build.rs. Reading it here makes cargo recompile this crate when a
/// migration is added, which embed_migrations! alone would not notice.
const _MIGRATION_FILES: &str = env!("PENNY_MIGRATION_FILES");

/// What a search for an author prefix looks for: books whose `author_key` (the author's
/// `fold`) lies in `[from, to)`, comparing UTF-8 bytes, the same on every backend.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AuthorRange {
    pub from: String,
    pub to: String,
}

impl AuthorRange {
    /// The range of the authors whose search key starts with the key of `prefix`: case and
    /// accents do not count (see `fold`), and the text is otherwise taken literally: `%`, `_`
    /// and `\` are characters like any other.
    pub fn starting_with(prefix: &str) -> AuthorRange {
        let from = fold(prefix);
        let to = past_every_extension_of(&from);
        AuthorRange { from, to }
    }
}

/// The smallest string greater than every string that starts with `key`: the last character
/// that can be bumped, bumped, and what follows it dropped. Only a key made of U+10FFFF alone
/// (a noncharacter, which no search accepts) or the empty one has no such string; for those
/// the range ends at U+10FFFF.
fn past_every_extension_of(key: &str) -> String {
    let mut to = key.to_owned();
    while let Some(last) = to.pop() {
        if let Some(next) = next_char(last) {
            to.push(next);
            return to;
        }
    }
    format!("{key}{}", char::MAX)
}

impl AuthorRange {
    /// The range narrowed to where a page at `position` can be, so that the index scan starts
    /// at the cursor rather than at the start of the prefix: a page deep into many matches
    /// reads only about a page of rows. (The row comparison in the SQL does the rest; neither
    /// SQLite nor PostgreSQL starts an index scan at it by itself here.)
    fn around(mut self, position: &Position) -> AuthorRange {
        match position {
            Position::First => {}
            Position::After(cursor) => {
                let start = cursor.key();
                if start > self.from {
                    self.from = start;
                }
            }
            Position::Before(cursor) => {
                let end = past_every_extension_of(&cursor.key());
                if end < self.to {
                    self.to = end;
                }
            }
        }
        self
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
            outages: Arc::new(Outages::new()),
            counts: Arc::default(),
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

    /// Passes `result` on, logging the start and the end of an outage (see `Outages`).
    fn observe<T>(&self, result: Result<T, DbError>) -> Result<T, DbError> {
        self.outages.observe(result)
    }

    /// A page of the books whose author starts with `prefix`, case and accents aside (see
    /// `fold`), ordered by the author's search key, then the author as stored, the title and the
    /// ISBN, each by its UTF-8 bytes. Reads at most one row more than a page.
    ///
    /// The page says how many books there are from its first one on: when there is no page
    /// after it, it knows; when there is, a second query counts them, up to `COUNT_LIMIT`, and
    /// that count is used again for the same search and page for `counts::COUNT_TTL`.
    pub async fn search_books(&self, prefix: &str, position: &Position) -> Result<Page, DbError> {
        let range = AuthorRange::starting_with(prefix).around(position);
        let rows = self.observe(match &self.backend {
            Backend::Sqlite(db) => db.search_books(range, position.clone()).await,
            Backend::Postgres(db) => db.search_books(range, position.clone()).await,
        })?;
        let mut page = page(rows, position);
        if let (Some(_), Some(first)) = (&page.next, page.books.first()) {
            let all = AuthorRange::starting_with(prefix);
            let key = self
                .counts
                .key((&all, first.author(), first.title(), first.isbn()));
            if let Some(count) = self.counts.get(key) {
                page.remaining = count;
                return Ok(page);
            }
            let from = Cursor::from(first);
            let counted = self.observe(match &self.backend {
                Backend::Sqlite(db) => db.count_books(all, from).await,
                Backend::Postgres(db) => db.count_books(all, from).await,
            })?;
            page.remaining = if counted > COUNT_LIMIT {
                Count::MoreThan(COUNT_LIMIT)
            } else {
                Count::Exact(counted)
            };
            self.counts.put(key, page.remaining);
        }
        Ok(page)
    }

    /// At shutdown, once the server has stopped: waits up to `limit` for the database calls
    /// still running on the blocking pool to end, and starts no new one, so that no thread is
    /// inside SQLite while the process exits. False when some were still running at the limit.
    /// PostgreSQL's connections live on the async runtime, which ends them itself.
    pub async fn close(&self, limit: std::time::Duration) -> bool {
        match &self.backend {
            Backend::Sqlite(db) => db.close(limit).await,
            Backend::Postgres(_) => true,
        }
    }

    /// Adds `books` in one transaction; an ISBN already present is left as it is.
    pub async fn add_books(&self, books: Vec<Book>) -> Result<(), DbError> {
        let added = self.observe(match &self.backend {
            Backend::Sqlite(db) => db.add_books(books).await,
            Backend::Postgres(db) => db.add_books(books).await,
        });
        // After the books are in: a search meanwhile may have counted without them.
        self.counts.forget();
        added
    }

    /// Loads `count` synthetic books (see `synthetic`) in bulk: COPY on PostgreSQL, one
    /// transaction on SQLite. Books already there are left as they are, so it can be rerun.
    /// `done` counts the books written so far, for a progress bar; the index and statistics
    /// are brought up to date after the last one.
    pub async fn load_synthetic(
        &self,
        count: u64,
        done: Arc<std::sync::atomic::AtomicU64>,
    ) -> Result<(), DbError> {
        self.observe(match &self.backend {
            Backend::Sqlite(db) => db.load_synthetic(count, done).await,
            Backend::Postgres(db) => db.load_synthetic(count, done).await,
        })
    }

    /// How the database runs a search: its plan, one line per step, to show which index it uses,
    /// and how much it read doing so (the search is run).
    pub async fn explain_search(
        &self,
        prefix: &str,
        position: &Position,
    ) -> Result<Vec<String>, DbError> {
        let range = AuthorRange::starting_with(prefix).around(position);
        self.observe(match &self.backend {
            Backend::Sqlite(db) => db.explain_search(range, position.clone()).await,
            Backend::Postgres(db) => db.explain_search(range, position.clone()).await,
        })
    }

    /// The pool as it is now, and what it has done since start: for /api/pool, where a lesson
    /// can watch it fill up under load. Counts only: nothing here names the database.
    pub fn pool_status(&self) -> PoolStatus {
        let mut status = match &self.backend {
            Backend::Sqlite(db) => db.pool_status(),
            Backend::Postgres(db) => db.pool_status(),
        };
        (status.outages, status.reachable) = self.outages.so_far();
        status
    }

    /// Asks the database a trivial question about the books table, for /healthz.
    pub async fn ping(&self) -> Result<(), DbError> {
        self.observe(match &self.backend {
            Backend::Sqlite(db) => db.ping().await,
            Backend::Postgres(db) => db.ping().await,
        })
    }

    /// What `penny init-db` does, under a lock that a second `init-db` waits for: a database
    /// with no books table (or any, with `reset`) gets penny.sql; any other is brought up to
    /// date by the backend's migrations, never losing a book. Then every book whose search key
    /// is missing or out of date gets it, and PostgreSQL gets its search index.
    pub async fn init_schema(&self, reset: bool) -> Result<SchemaChanges, DbError> {
        self.observe(match &self.backend {
            Backend::Sqlite(db) => db.init_schema(reset).await,
            Backend::Postgres(db) => db.init_schema(reset).await,
        })
    }

    /// How many books have no search key: added by hand since the last `penny init-db`, and
    /// not found by any search until it runs.
    pub async fn count_unsearchable_books(&self) -> Result<u64, DbError> {
        self.observe(match &self.backend {
            Backend::Sqlite(db) => db.count_unsearchable_books().await,
            Backend::Postgres(db) => db.count_unsearchable_books().await,
        })
    }

    /// Checks for books without a search key now and then every `every`, and says so in the log
    /// when some appear (once, with the command that fixes it) and when they are gone. Runs
    /// until the process ends; a failed check is the outage log's business, not this one's.
    pub async fn watch_unsearchable_books(self, every: std::time::Duration) {
        let mut reported = 0;
        loop {
            if let Ok(count) = self.count_unsearchable_books().await {
                if count > 0 && reported == 0 {
                    tracing::warn!(
                        count,
                        "books without a search key (added by hand?) are not found by any \
                         search: run `penny init-db` to fill it in (on Heroku: `heroku run \
                         penny init-db`)"
                    );
                } else if count == 0 && reported > 0 {
                    tracing::info!("every book has its search key again");
                }
                reported = count;
            }
            tokio::time::sleep(every).await;
        }
    }
}

/// A snapshot of the connection pool (see `Db::pool_status`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PoolStatus {
    /// `postgresql`, `sqlite`, or `bundled demo`.
    pub database: &'static str,
    /// The most connections the pool opens (PENNY_POOL_SIZE).
    pub size: u32,
    /// Connections open now: `in_use` and `idle`.
    pub open: u32,
    /// Open connections that requests are using now.
    pub in_use: u32,
    /// Open connections that wait for a request.
    pub idle: u32,
    /// Queries running now. On PostgreSQL a connection carries several at once.
    pub queries: u32,
    /// Queries waiting for a connection (or for room on one) now.
    pub waiting: u32,
    /// Connections opened since Penny started.
    pub opened: u64,
    /// Connections closed since Penny started (broken, idle too long, or too old).
    pub closed: u64,
    /// Times the database became unavailable since Penny started.
    pub outages: u64,
    /// Whether the last query reached the database.
    pub reachable: bool,
}

/// What `Db::init_schema` changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SchemaChanges {
    /// Whether penny.sql was loaded: the database had no books table, or a reset was asked for.
    pub loaded_penny_sql: bool,
    /// The migrations applied, oldest first, as `V2__author_key`.
    pub migrations: Vec<String>,
    /// How many books got a search key that was missing or out of date.
    pub keys_set: u64,
}

/// Makes a page of `rows`, up to one more than a page, as the backend read them for `position`
/// (for `Before`, in reverse order).
fn page(mut rows: Vec<Book>, position: &Position) -> Page {
    let more = rows.len() > PAGE_SIZE;
    rows.truncate(PAGE_SIZE);
    if matches!(position, Position::Before(_)) {
        rows.reverse();
    }
    let (has_previous, has_next) = match position {
        Position::First => (false, more),
        Position::After(_) => (true, more),
        Position::Before(_) => (more, true),
    };
    // A cursor copies a book's fields: made only for a link that is shown.
    let previous = rows.first().filter(|_| has_previous).map(Cursor::from);
    let next = rows.last().filter(|_| has_next).map(Cursor::from);
    // Right when there is no page after this one; `search_books` counts when there is.
    let remaining = Count::Exact(rows.len() as u64);
    Page {
        books: rows,
        previous,
        next,
        remaining,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_range_ends_just_past_the_prefix() {
        let range = AuthorRange::starting_with("Ker");
        assert_eq!(range.from, "ker");
        assert_eq!(range.to, "kes");
    }

    #[test]
    fn wildcards_are_ordinary_characters_in_a_range() {
        let range = AuthorRange::starting_with("50%");
        assert_eq!((range.from.as_str(), range.to.as_str()), ("50%", "50&"));
        let range = AuthorRange::starting_with("a_\\");
        assert_eq!(range.to, "a_]");
    }

    #[test]
    fn a_range_starts_at_the_search_key_of_the_prefix() {
        let range = AuthorRange::starting_with("ÉMILE Z");
        assert_eq!(
            (range.from.as_str(), range.to.as_str()),
            ("emile z", "emile {")
        );
        assert_eq!(AuthorRange::starting_with("Gödel").from, "godel");
    }

    #[test]
    fn the_last_characters_that_cannot_grow_are_dropped() {
        let range = AuthorRange::starting_with("a\u{10FFFF}");
        assert_eq!(range.to, "b");
        assert_eq!(AuthorRange::starting_with("").to, "\u{10FFFF}");
        assert_eq!(AuthorRange::starting_with("\u{D7FF}").to, "\u{E000}");
    }

    fn books(n: usize) -> Vec<Book> {
        (0..n)
            .map(|i| Book::new(&format!("{i:03}"), "A", "T"))
            .collect()
    }

    #[test]
    fn a_first_page_links_onward_only_when_a_row_is_left_over() {
        let full = page(books(PAGE_SIZE + 1), &Position::First);
        assert_eq!(full.books.len(), PAGE_SIZE);
        assert_eq!(full.previous, None);
        assert_eq!(full.next.unwrap().isbn, format!("{:03}", PAGE_SIZE - 1));
        let exact = page(books(PAGE_SIZE), &Position::First);
        assert_eq!((exact.books.len(), exact.next), (PAGE_SIZE, None));
    }

    #[test]
    fn a_page_read_backwards_is_put_in_order() {
        let mut rows = books(PAGE_SIZE + 1);
        rows.reverse();
        let cursor = Cursor::from(&rows[0]);
        let before = page(rows, &Position::Before(cursor));
        assert_eq!(before.books.first().unwrap().isbn(), "001");
        assert_eq!(before.previous.unwrap().isbn, "001");
        assert_eq!(before.next.unwrap().isbn, format!("{PAGE_SIZE:03}"));
    }

    #[test]
    fn a_page_range_starts_or_ends_at_its_cursor() {
        let cursor = Cursor {
            author: "Kernighan".into(),
            title: "T".into(),
            isbn: "1".into(),
        };
        let range = AuthorRange::starting_with("k");
        let after = range.clone().around(&Position::After(cursor.clone()));
        assert_eq!((after.from.as_str(), after.to.as_str()), ("kernighan", "l"));
        let before = range.clone().around(&Position::Before(cursor.clone()));
        assert_eq!(
            (before.from.as_str(), before.to.as_str()),
            ("k", "kernighao")
        );
        let outside = AuthorRange::starting_with("s").around(&Position::After(cursor));
        assert_eq!((outside.from.as_str(), outside.to.as_str()), ("s", "t"));
    }
}

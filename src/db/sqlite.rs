//! SQLite through an r2d2 pool of rusqlite connections. Every call on a file runs on tokio's
//! blocking pool, so a slow disk or a busy lock never stalls the async workers; the bundled
//! demo, read-only bytes in memory, is queried in place.

use super::{AuthorRange, Book, DbError, Position, synthetic};
use crate::config::PoolConfig;
use r2d2::ManageConnection;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, MAIN_DB, OpenFlags, ToSql, params};
use std::path::{Path, PathBuf};

/// The demo database, built from penny.sql by build.rs.
static BUNDLED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/penny.sqlite"));

/// The index the search needs; `penny init-db` adds it after penny.sql.
const SEARCH_INDEX: &str = include_str!("sqlite_index.sql");

// The ORDER BY matches the index's columns, so rows come out of the index already sorted, and
// a page is a range scan that stops after LIMIT rows, however many books match. The LIMIT is
// written out (PAGE_SIZE + 1, checked by a test): SQLite plans by a bound LIMIT's value, so
// binding one marks the cached statement stale, and it was parsed again for every search.
const FIRST: &str = "SELECT coalesce(isbn, ''), author, coalesce(title, '') FROM books \
     WHERE lower(author) >= ?1 AND lower(author) < ?2 \
     ORDER BY lower(author), author, title, isbn LIMIT 51";
const AFTER: &str = "SELECT coalesce(isbn, ''), author, coalesce(title, '') FROM books \
     WHERE lower(author) >= ?1 AND lower(author) < ?2 \
     AND (lower(author), author, title, isbn) > (lower(?3), ?3, ?4, ?5) \
     ORDER BY lower(author), author, title, isbn LIMIT 51";
const BEFORE: &str = "SELECT coalesce(isbn, ''), author, coalesce(title, '') FROM books \
     WHERE lower(author) >= ?1 AND lower(author) < ?2 \
     AND (lower(author), author, title, isbn) < (lower(?3), ?3, ?4, ?5) \
     ORDER BY lower(author) DESC, author DESC, title DESC, isbn DESC LIMIT 51";

/// A pool of SQLite connections. Cheap to clone.
#[derive(Clone)]
pub struct SqliteDb {
    pool: r2d2::Pool<Manager>,
    /// The bundled database: read-only bytes in memory, so a query on it never waits.
    in_memory: bool,
}

impl SqliteDb {
    /// The read-only demo database inside the binary: each connection reads the same static
    /// bytes, so nothing is written to disk and nothing is copied.
    pub async fn open_bundled(config: &PoolConfig) -> Result<SqliteDb, DbError> {
        let manager = SqliteConnectionManager::memory()
            .with_init(|conn| conn.deserialize_bytes(MAIN_DB, BUNDLED));
        let mut db = SqliteDb::start(manager, config, "the bundled database".into(), true).await?;
        db.in_memory = true;
        Ok(db)
    }

    /// A database file. Unless `create`, the file must exist and hold a books table.
    pub async fn open_file(
        path: PathBuf,
        config: &PoolConfig,
        create: bool,
    ) -> Result<SqliteDb, DbError> {
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if create {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        // A lock another process holds is waited on for the query timeout, then given up on.
        let busy_timeout = config.query_timeout;
        let manager = SqliteConnectionManager::file(&path)
            .with_flags(flags)
            .with_init(move |conn| conn.busy_timeout(busy_timeout));
        SqliteDb::start(manager, config, describe(&path), !create).await
    }

    /// Opens one connection first, so a bad file fails now with SQLite's own reason instead of
    /// after the pool's timeout; with `check_books`, that connection must see a books table.
    async fn start(
        manager: SqliteConnectionManager,
        config: &PoolConfig,
        what: String,
        check_books: bool,
    ) -> Result<SqliteDb, DbError> {
        // A local file cannot drop a connection the way a network can: no check on checkout.
        let builder = r2d2::Pool::builder()
            .max_size(config.size)
            .min_idle(Some(1))
            .test_on_check_out(false)
            .connection_timeout(config.checkout_timeout);
        tokio::task::spawn_blocking(move || {
            let conn = manager
                .connect()
                .map_err(|err| DbError::Setup(format!("cannot open {what}: {err}")))?;
            if check_books {
                if let Err(err) = conn.prepare("SELECT isbn, author, title FROM books LIMIT 0") {
                    return Err(no_books_table(&what, err));
                }
            }
            Ok(SqliteDb {
                pool: builder.build_unchecked(Manager(manager)),
                in_memory: false,
            })
        })
        .await
        .map_err(|err| DbError::Query(err.into()))?
    }

    /// Runs `f` with a pooled connection on the blocking pool.
    async fn run<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        // A query on the bundled database is a few microseconds of work on memory, less than
        // handing it to another thread costs; with a connection free, it runs right here.
        if self.in_memory {
            if let Some(mut conn) = self.pool.try_get() {
                return conn.run(f);
            }
        }
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = pool.get().map_err(|err| DbError::Unavailable(err.into()))?;
            conn.run(f)
        })
        .await
        .map_err(|err| DbError::Query(err.into()))?
    }

    /// Up to a page and one more row from `position` on, in the query's order (backwards for
    /// `Before`).
    pub async fn search_books(
        &self,
        range: AuthorRange,
        position: Position,
    ) -> Result<Vec<Book>, DbError> {
        self.run(move |conn| {
            let (sql, params) = search_query(&range, &position);
            conn.prepare_cached(sql)?
                .query_map(params.as_slice(), book)?
                .collect()
        })
        .await
    }

    /// The query plan, then the work running the search took, in SQLite's virtual machine
    /// steps (which grow with the rows read).
    pub async fn explain_search(
        &self,
        range: AuthorRange,
        position: Position,
    ) -> Result<Vec<String>, DbError> {
        self.run(move |conn| {
            let (sql, params) = search_query(&range, &position);
            let mut lines: Vec<String> = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?
                .query_map(params.as_slice(), |row| row.get(3))?
                .collect::<Result<_, _>>()?;
            let mut statement = conn.prepare(sql)?;
            let rows = statement.query_map(params.as_slice(), book)?.count();
            let steps = statement.get_status(rusqlite::StatementStatus::VmStep);
            lines.push(format!(
                "returned {rows} rows in {steps} virtual machine steps"
            ));
            Ok(lines)
        })
        .await
    }

    pub async fn add_books(&self, books: Vec<Book>) -> Result<(), DbError> {
        self.run(move |conn| {
            let tx = conn.transaction()?;
            {
                let mut insert = tx.prepare(
                    "INSERT INTO books (isbn, author, title) VALUES (?1, ?2, ?3) \
                     ON CONFLICT DO NOTHING",
                )?;
                for book in &books {
                    insert.execute(params![book.isbn, book.author, book.title])?;
                }
            }
            tx.commit()
        })
        .await
    }

    pub async fn load_synthetic(&self, count: u64) -> Result<(), DbError> {
        self.run(move |conn| {
            let tx = conn.transaction()?;
            {
                let mut insert = tx.prepare(
                    "INSERT INTO books (isbn, author, title) VALUES (?1, ?2, ?3) \
                     ON CONFLICT DO NOTHING",
                )?;
                for index in 0..count {
                    let book = synthetic::book(index);
                    insert.execute(params![book.isbn, book.author, book.title])?;
                }
            }
            tx.execute_batch("ANALYZE books")?;
            tx.commit()
        })
        .await
    }

    pub async fn ping(&self) -> Result<(), DbError> {
        self.run(|conn| {
            conn.prepare_cached("SELECT count(*) FROM (SELECT 1 FROM books LIMIT 1)")?
                .query_row([], |_| Ok(()))
        })
        .await
    }

    pub async fn load_schema(&self, script: String) -> Result<(), DbError> {
        self.run(move |conn| {
            let tx = conn.transaction()?;
            tx.execute_batch(&script)?;
            tx.execute_batch(SEARCH_INDEX)?;
            tx.commit()
        })
        .await
    }
}

/// The search's SQL for `position`, and its parameters: the range, then the cursor's fields.
fn search_query<'a>(
    range: &'a AuthorRange,
    position: &'a Position,
) -> (&'static str, Vec<&'a dyn ToSql>) {
    let mut params: Vec<&dyn ToSql> = vec![&range.from, &range.to];
    let (sql, cursor) = match position {
        Position::First => (FIRST, None),
        Position::After(cursor) => (AFTER, Some(cursor)),
        Position::Before(cursor) => (BEFORE, Some(cursor)),
    };
    if let Some(cursor) = cursor {
        params.extend([&cursor.author as &dyn ToSql, &cursor.title, &cursor.isbn]);
    }
    (sql, params)
}

fn book(row: &rusqlite::Row<'_>) -> rusqlite::Result<Book> {
    Ok(Book {
        isbn: row.get(0)?,
        author: row.get(1)?,
        title: row.get(2)?,
    })
}

fn describe(path: &Path) -> String {
    format!("SQLite database {}", path.display())
}

fn no_books_table(what: &str, err: rusqlite::Error) -> DbError {
    let reason = err.to_string();
    if reason.contains("no such table") {
        DbError::Setup(format!(
            "{what} has no books table; run `penny init-db` to create it"
        ))
    } else {
        DbError::Setup(format!("cannot read {what}: {reason}"))
    }
}

/// r2d2_sqlite's manager, except that a connection whose statement failed is closed instead of
/// going back to the pool. A connection keeps what it has read of the schema: one that saw the
/// file truncated would go on answering "no such table" after the file was put back, until the
/// pool retired it half an hour later. Opening a new one costs far less than that.
#[derive(Debug)]
struct Manager(SqliteConnectionManager);

/// A pooled connection, and whether its last statement failed.
struct Conn {
    connection: Connection,
    failed: bool,
}

impl Conn {
    fn run<T>(
        &mut self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, DbError> {
        let result = f(&mut self.connection);
        self.failed = result.is_err();
        result.map_err(classify)
    }
}

impl ManageConnection for Manager {
    type Connection = Conn;
    type Error = rusqlite::Error;

    fn connect(&self) -> Result<Conn, rusqlite::Error> {
        Ok(Conn {
            connection: self.0.connect()?,
            failed: false,
        })
    }

    fn is_valid(&self, conn: &mut Conn) -> Result<(), rusqlite::Error> {
        self.0.is_valid(&mut conn.connection)
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.failed
    }
}

/// Errors that a retry may cure (locked, unreadable, out of space) mean "unavailable".
fn classify(err: rusqlite::Error) -> DbError {
    use rusqlite::ErrorCode::*;
    match err.sqlite_error_code() {
        Some(
            DatabaseBusy | DatabaseLocked | CannotOpen | SystemIoFailure | DiskFull | NotADatabase
            | DatabaseCorrupt,
        ) => DbError::Unavailable(err.into()),
        _ => DbError::Query(err.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::PAGE_SIZE;

    #[test]
    fn every_search_reads_one_row_more_than_a_page() {
        let limit = format!("LIMIT {}", PAGE_SIZE + 1);
        for sql in [FIRST, AFTER, BEFORE] {
            assert!(sql.ends_with(&limit), "{sql}");
        }
    }
}

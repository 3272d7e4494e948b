//! SQLite through an r2d2 pool of rusqlite connections. Every call on a file runs on tokio's
//! blocking pool, queued for a task that serves many calls at a time (see `queue`), so a slow
//! disk or a busy lock never stalls the async workers; the bundled demo, read-only bytes in
//! memory, is queried in place.

mod queue;

use self::queue::{Call, Queue};
use super::{
    AuthorRange, Book, Cursor, DbError, PoolStatus, Position, SCHEMA, SchemaChanges, Timing,
    synthetic,
};
use crate::config::PoolConfig;
use crate::fold::fold;
use r2d2::ManageConnection;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::functions::FunctionFlags;
use rusqlite::types::{FromSqlError, ValueRef};
use rusqlite::{Connection, MAIN_DB, OpenFlags, ToSql, params};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, TryAcquireError};

/// The demo database, built from penny.sql by build.rs.
static BUNDLED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/penny.sqlite"));

// The schema changes since penny.sql's first books table, one file each, applied in order by
// `penny init-db` (see `init_schema`).
refinery::embed_migrations!("src/db/sqlite/migrations");

// The ORDER BY matches the columns of the books_search index, so rows come out of the index
// already sorted, and a page is a range scan that stops after LIMIT rows, however many books
// match. SQLite compares text by its bytes, as the search's order is defined. The LIMIT is
// written out (PAGE_SIZE + 1, checked by a test): SQLite plans by a bound LIMIT's value, so
// binding one marks the cached statement stale, and it was parsed again for every search.
const FIRST: &str = "SELECT coalesce(isbn, ''), coalesce(author, ''), coalesce(title, '') \
     FROM books WHERE author_key >= ?1 AND author_key < ?2 \
     ORDER BY author_key, author, title, isbn LIMIT 51";
// In AFTER and BEFORE the cursor's row comparison comes first: SQLite then starts (or ends) the
// index scan at the cursor itself, and a page deep into one author's books reads only a page
// (written after the range, it was only a filter, checked by a test).
const AFTER: &str = "SELECT coalesce(isbn, ''), coalesce(author, ''), coalesce(title, '') \
     FROM books WHERE (author_key, author, title, isbn) > (?3, ?4, ?5, ?6) \
     AND author_key >= ?1 AND author_key < ?2 \
     ORDER BY author_key, author, title, isbn LIMIT 51";
const BEFORE: &str = "SELECT coalesce(isbn, ''), coalesce(author, ''), coalesce(title, '') \
     FROM books WHERE (author_key, author, title, isbn) < (?3, ?4, ?5, ?6) \
     AND author_key >= ?1 AND author_key < ?2 \
     ORDER BY author_key DESC, author DESC, title DESC, isbn DESC LIMIT 51";

/// The books from a page's first one on, up to one more than COUNT_LIMIT (written out, like
/// LIMIT above, checked by a test): a seek to the book, then a count along the index.
const COUNT: &str = "SELECT count(*) FROM (SELECT 1 FROM books \
     WHERE (author_key, author, title, isbn) >= (?3, ?4, ?5, ?6) \
     AND author_key >= ?1 AND author_key < ?2 LIMIT 1001)";

/// What the search reads: a database without these columns is from an earlier Penny.
const CHECK_BOOKS: &str = "SELECT isbn, author, title, author_key FROM books LIMIT 0";

/// Calls admitted to the queue per pooled connection; a call that finds no permit waits for
/// one, no longer than the checkout timeout. Four: 16 or 64 served the 3-book page no faster,
/// and on a million books under 256 connections raised p99 from 8.8 ms to 11.3 and peak
/// memory from 17 MiB to 19.5 (64).
const CALLS_PER_CONNECTION: usize = 4;

/// Each connection's page cache, in KiB (SQLite's default is 2,000). The kernel caches the
/// file for every connection at once; what each connection keeps on top counts against
/// Penny's memory, ten times over with the default pool. A search reads a few pages.
const CACHE_KIB: i64 = 512;

/// How long `penny init-db` waits for another one (or a long write) to let go of the file.
const INIT_LOCK_TIMEOUT: Duration = Duration::from_secs(120);

/// A pool of SQLite connections. Cheap to clone.
#[derive(Clone)]
pub struct SqliteDb {
    pool: r2d2::Pool<Manager>,
    /// The bundled database: read-only bytes in memory, so a query on it never waits.
    in_memory: bool,
    /// `CALLS_PER_CONNECTION` permits per pooled connection: a call holds one from before it
    /// is queued until it has run. Closed at shutdown.
    calls: Arc<Semaphore>,
    /// The calls waiting for a connection, and the tasks on the blocking pool serving them.
    queue: Arc<Queue>,
    checkout_timeout: Duration,
    /// The pool's connections opened and closed, counted by its manager.
    counts: Arc<Counts>,
}

impl SqliteDb {
    /// The read-only demo database inside the binary: each connection reads the same static
    /// bytes, so nothing is written to disk and nothing is copied.
    pub async fn open_bundled(config: &PoolConfig) -> Result<SqliteDb, DbError> {
        let manager = SqliteConnectionManager::memory()
            .with_init(|conn| conn.deserialize_bytes(MAIN_DB, BUNDLED));
        let manager = Manager {
            inner: manager,
            cache_kib: None,
            counts: Arc::default(),
        };
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
        if let Some(problem) = access_problem(&path, create) {
            return Err(DbError::Setup(problem));
        }
        // A lock another process holds is waited on for the query timeout, then given up on.
        let busy_timeout = config.query_timeout;
        let manager = SqliteConnectionManager::file(&path)
            .with_flags(flags)
            .with_init(move |conn| conn.busy_timeout(busy_timeout));
        // Only where Penny serves: `init-db` (which creates) keeps SQLite's default.
        let manager = Manager {
            inner: manager,
            cache_kib: (!create).then_some(CACHE_KIB),
            counts: Arc::default(),
        };
        SqliteDb::start(manager, config, describe(&path), !create).await
    }

    /// Opens one connection first, so a bad file fails now with SQLite's own reason instead of
    /// after the pool's timeout; with `check_books`, that connection must see a books table.
    async fn start(
        manager: Manager,
        config: &PoolConfig,
        what: String,
        check_books: bool,
    ) -> Result<SqliteDb, DbError> {
        let (size, checkout_timeout) = (config.size, config.checkout_timeout);
        // A local file cannot drop a connection the way a network can: no check on checkout.
        let builder = r2d2::Pool::builder()
            .max_size(config.size)
            .min_idle(Some(1))
            .test_on_check_out(false)
            .connection_timeout(config.checkout_timeout);
        let counts = manager.counts.clone();
        tokio::task::spawn_blocking(move || {
            let conn = manager
                .inner
                .connect()
                .map_err(|err| DbError::Setup(format!("cannot open {what}: {err}")))?;
            if check_books && let Err(err) = conn.prepare(CHECK_BOOKS) {
                return Err(not_set_up(&what, err));
            }
            let pool = builder.build_unchecked(manager);
            Ok(SqliteDb {
                queue: Arc::new(Queue::new(pool.clone(), checkout_timeout)),
                pool,
                in_memory: false,
                calls: Arc::new(Semaphore::new(size as usize * CALLS_PER_CONNECTION)),
                checkout_timeout,
                counts,
            })
        })
        .await
        .map_err(|err| DbError::Query(err.into()))?
    }

    /// Runs `f` with a pooled connection on the blocking pool, on its own.
    async fn run<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, DbError> + Send + 'static,
    {
        self.call(false, f).await
    }

    /// Runs `f`, which only reads, with a pooled connection on the blocking pool, in one read
    /// transaction with the other reads queued beside it.
    async fn read<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, DbError> + Send + 'static,
    {
        self.call(true, f).await
    }

    async fn call<T, F>(&self, read_only: bool, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, DbError> + Send + 'static,
    {
        // A query on the bundled database is a few microseconds of work on memory, less than
        // handing it to another thread costs; with a connection free, it runs right here.
        let started = Instant::now();
        if self.in_memory
            && let Some(mut conn) = self.pool.try_get()
        {
            let got = Instant::now();
            let result = conn.run(f);
            Timing::add(got - started, got.elapsed());
            return result;
        }
        let limit = self.checkout_timeout;
        // A free permit is taken at once; only a wait for one needs a timer.
        let permit = match self.calls.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(TryAcquireError::Closed) => return Err(shutting_down()),
            Err(TryAcquireError::NoPermits) => {
                tokio::time::timeout(limit, self.calls.clone().acquire_owned())
                    .await
                    .map_err(|_| no_connection(limit))?
                    .map_err(|_| shutting_down())?
            }
        };
        let (call, pending) = Call::new(read_only, permit, f);
        self.queue.push(call);
        let wait = limit.saturating_sub(started.elapsed());
        let (result, got) = pending
            .answer(wait)
            .await
            .ok_or_else(|| no_connection(limit))?;
        // The hand-offs to the blocking thread and back count as waiting and as the query.
        Timing::add(got - started, got.elapsed());
        result
    }

    /// See `Db::pool_status`. A call holds a permit while it waits for a connection and while
    /// it runs; the bundled database's calls that find a connection free skip the permit.
    pub fn pool_status(&self) -> PoolStatus {
        let state = self.pool.state();
        let in_use = state.connections - state.idle_connections;
        let permits = self.pool.max_size() as usize * CALLS_PER_CONNECTION;
        let admitted = permits.saturating_sub(self.calls.available_permits()) as u32;
        let counts = &self.counts;
        PoolStatus {
            database: if self.in_memory {
                "bundled demo"
            } else {
                "sqlite"
            },
            size: self.pool.max_size(),
            open: state.connections,
            in_use,
            idle: state.idle_connections,
            queries: in_use,
            waiting: admitted.saturating_sub(in_use),
            opened: counts.opened.load(Ordering::Relaxed),
            closed: counts.closed.load(Ordering::Relaxed),
            ..PoolStatus::default()
        }
    }

    /// Waits, up to `limit`, for the calls running on the blocking pool to end, and lets no new
    /// one start: at exit, no thread is left inside SQLite while the process goes away.
    pub async fn close(&self, limit: Duration) -> bool {
        let permits = self.pool.max_size() * CALLS_PER_CONNECTION as u32;
        let all = tokio::time::timeout(limit, self.calls.acquire_many(permits)).await;
        self.calls.close();
        matches!(all, Ok(Ok(_)))
    }

    /// Up to a page and one more row from `position` on, in the query's order (backwards for
    /// `Before`).
    pub async fn search_books(
        &self,
        range: AuthorRange,
        position: Position,
    ) -> Result<Vec<Book>, DbError> {
        self.read(move |conn| {
            let key = cursor(&position).map(Cursor::key);
            let (sql, params) = search_query(&range, &position, key.as_ref());
            let books = conn
                .prepare_cached(sql)?
                .query_map(params.as_slice(), book)?
                .collect::<Result<_, _>>()?;
            Ok(books)
        })
        .await
    }

    /// How many books of `range` there are from `from` on (`from` included), up to one more
    /// than COUNT_LIMIT.
    pub async fn count_books(&self, range: AuthorRange, from: Cursor) -> Result<u64, DbError> {
        self.read(move |conn| {
            let key = from.key();
            let params = params![
                range.from,
                range.to,
                key,
                from.author,
                from.title,
                from.isbn
            ];
            let count: i64 = conn
                .prepare_cached(COUNT)?
                .query_row(params, |row| row.get(0))?;
            Ok(count as u64)
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
        self.read(move |conn| {
            let key = cursor(&position).map(Cursor::key);
            let (sql, params) = search_query(&range, &position, key.as_ref());
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
        self.run(move |conn| insert_books(conn, books.into_iter()))
            .await
    }

    pub async fn load_synthetic(
        &self,
        count: u64,
        done: Arc<std::sync::atomic::AtomicU64>,
    ) -> Result<(), DbError> {
        self.run(move |conn| {
            let books = (0..count).map(synthetic::book).inspect(|_| {
                done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            });
            insert_books(conn, books)?;
            conn.execute_batch("ANALYZE books")?;
            Ok(())
        })
        .await
    }

    pub async fn ping(&self) -> Result<(), DbError> {
        self.read(|conn| {
            conn.prepare_cached("SELECT count(*) FROM (SELECT author_key FROM books LIMIT 1)")?
                .query_row([], |_| Ok(()))?;
            Ok(())
        })
        .await
    }

    /// See `Db::init_schema`. The lock is SQLite's own: the connection takes the file's
    /// exclusive lock and keeps it (`locking_mode = EXCLUSIVE`) until everything is done, so a
    /// second `penny init-db` waits, then finds nothing left to do.
    pub async fn init_schema(&self, reset: bool) -> Result<SchemaChanges, DbError> {
        self.run(move |conn| {
            conn.busy_timeout(INIT_LOCK_TIMEOUT)?;
            // The lock is taken in the normal mode and only then kept: a connection already in
            // exclusive mode keeps the shared lock it took while it waits for the exclusive
            // one, so two init-dbs starting together each held what the other waited for,
            // until the timeout.
            conn.execute_batch("BEGIN EXCLUSIVE")?;
            conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
            conn.execute_batch("COMMIT")?;
            let changes = init_locked(conn, reset);
            // Back to normal, also after a failure: the lock goes at the next read.
            conn.pragma_update(None, "locking_mode", "NORMAL")?;
            conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))?;
            changes
        })
        .await
    }

    pub async fn count_unsearchable_books(&self) -> Result<u64, DbError> {
        self.read(|conn| {
            let count: i64 = conn
                .prepare_cached("SELECT count(*) FROM books WHERE author_key IS NULL")?
                .query_row([], |row| row.get(0))?;
            Ok(count as u64)
        })
        .await
    }
}

/// The rest of `init_schema`, with the file locked.
fn init_locked(conn: &mut Connection, reset: bool) -> Result<SchemaChanges, DbError> {
    let mut changes = SchemaChanges::default();
    let has_books = has_table(conn, "books")?;
    if reset || !has_books {
        let tx = conn.transaction()?;
        tx.execute_batch(SCHEMA)?;
        tx.commit()?;
        changes.loaded_penny_sql = true;
    }
    // A books table with a search key and no record of migrations comes from penny.sql (by
    // hand, or just now): it is as the latest migration leaves it.
    if !has_table(conn, "refinery_schema_history")? && has_search_key(conn)? {
        migrations::runner()
            .set_target(refinery::Target::Fake)
            .run(conn)
            .map_err(migration_failed)?;
    }
    let report = migrations::runner().run(conn).map_err(migration_failed)?;
    changes.migrations = report
        .applied_migrations()
        .iter()
        .map(ToString::to_string)
        .collect();
    changes.keys_set = set_search_keys(conn)?;
    Ok(changes)
}

fn has_table(conn: &Connection, name: &str) -> Result<bool, DbError> {
    let count: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [name],
        |row| row.get(0),
    )?;
    Ok(count > 0)
}

fn has_search_key(conn: &Connection) -> Result<bool, DbError> {
    let count: i64 = conn.query_row(
        "SELECT count(*) FROM pragma_table_info('books') WHERE name = 'author_key'",
        [],
        |row| row.get(0),
    )?;
    Ok(count > 0)
}

/// Sets the search key of every book whose key is missing or not its author's fold (a book
/// added or changed by hand), in one statement: the fold runs inside SQLite as a function that
/// only this connection has, for as long as this takes. A book with no author gets an empty
/// key, which no search matches.
fn set_search_keys(conn: &Connection) -> Result<u64, DbError> {
    conn.create_scalar_function(
        "penny_fold",
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            Ok(match ctx.get_raw(0) {
                ValueRef::Text(text) => fold(&String::from_utf8_lossy(text)),
                _ => String::new(),
            })
        },
    )?;
    let set = conn.execute(
        "UPDATE books SET author_key = penny_fold(author) \
         WHERE author_key IS NOT penny_fold(author)",
        [],
    );
    conn.remove_function("penny_fold", 1)?;
    Ok(set? as u64)
}

/// Adds `books` with their search keys, in one transaction; an ISBN already present is left
/// as it is.
fn insert_books(conn: &mut Connection, books: impl Iterator<Item = Book>) -> Result<(), DbError> {
    let tx = conn.transaction()?;
    {
        let mut insert = tx.prepare(
            "INSERT INTO books (isbn, author, title, author_key) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT DO NOTHING",
        )?;
        for book in books {
            let key = fold(book.author());
            insert.execute(params![book.isbn(), book.author(), book.title(), key])?;
        }
    }
    tx.commit()?;
    Ok(())
}

fn cursor(position: &Position) -> Option<&Cursor> {
    match position {
        Position::First => None,
        Position::After(cursor) | Position::Before(cursor) => Some(cursor),
    }
}

/// The search's SQL for `position`, and its parameters: the range, then the cursor's place
/// (`key` is its author's search key).
fn search_query<'a>(
    range: &'a AuthorRange,
    position: &'a Position,
    key: Option<&'a String>,
) -> (&'static str, Vec<&'a dyn ToSql>) {
    let mut params: Vec<&dyn ToSql> = vec![&range.from, &range.to];
    let sql = match position {
        Position::First => FIRST,
        Position::After(_) => AFTER,
        Position::Before(_) => BEFORE,
    };
    if let (Some(cursor), Some(key)) = (cursor(position), key) {
        params.extend([
            key as &dyn ToSql,
            &cursor.author,
            &cursor.title,
            &cursor.isbn,
        ]);
    }
    (sql, params)
}

fn migration_failed(err: refinery::Error) -> DbError {
    DbError::Query(err.into())
}

fn book(row: &rusqlite::Row<'_>) -> rusqlite::Result<Book> {
    Ok(Book::new(text(row, 0)?, text(row, 1)?, text(row, 2)?))
}

/// Column `index` of `row` as text borrowed from the row (a `String` each would be copied
/// again into the book), failing as `Row::get` does: a value of another type is named with
/// its column, for the log.
fn text<'r>(row: &'r rusqlite::Row<'_>, index: usize) -> rusqlite::Result<&'r str> {
    let value = row.get_ref(index)?;
    value.as_str().map_err(|err| match err {
        FromSqlError::InvalidType => {
            let name = row.as_ref().column_name(index).unwrap_or_default();
            rusqlite::Error::InvalidColumnType(index, name.into(), value.data_type())
        }
        other => rusqlite::Error::FromSqlConversionFailure(index, value.data_type(), other.into()),
    })
}

fn no_connection(limit: Duration) -> DbError {
    DbError::Unavailable(format!("no database connection within {limit:?}").into())
}

fn shutting_down() -> DbError {
    DbError::Unavailable("Penny is shutting down".into())
}

/// What stops Penny from using the file at `path` (creating it, with `create`), in words that
/// say what to do, before SQLite's own "unable to open database file" would say it less well.
/// SQLite needs to write next to the file too (its journal), so the directory counts.
fn access_problem(path: &Path, create: bool) -> Option<String> {
    use std::io::ErrorKind;
    let what = describe(path);
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let denied = |target: &Path| {
        format!(
            "permission denied: {what}: Penny (running as {}) cannot write {}. Give that user \
             the directory and the file (chown or chmod), or, in Docker, run the image with \
             --user \"$(id -u):$(id -g)\" so that it writes as you do",
            process_user(),
            target.display()
        )
    };
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Some(format!("{what} is a directory, not a database file")),
        Ok(_) => {
            let writable = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(path);
            match writable {
                Err(err) if err.kind() == ErrorKind::PermissionDenied => Some(denied(path)),
                // Writing (init-db) needs the directory too, for SQLite's journal.
                _ if create && dir_is_read_only(dir) => Some(denied(dir)),
                _ => None,
            }
        }
        Err(err) if err.kind() == ErrorKind::NotFound => {
            if !create {
                Some(format!(
                    "{what} does not exist: run `penny init-db` with the same DATABASE_URL to \
                     create it"
                ))
            } else if !dir.is_dir() {
                Some(format!(
                    "cannot create {what}: the directory {} does not exist",
                    dir.display()
                ))
            } else if dir_is_read_only(dir) {
                Some(denied(dir))
            } else {
                None
            }
        }
        Err(err) if err.kind() == ErrorKind::PermissionDenied => Some(denied(path)),
        Err(_) => None,
    }
}

/// Whether a file cannot be made in `dir` by this process.
fn dir_is_read_only(dir: &Path) -> bool {
    let probe = dir.join(format!(".penny-write-check-{}", std::process::id()));
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            false
        }
        Err(err) => err.kind() == std::io::ErrorKind::PermissionDenied,
    }
}

/// "uid N" of this process, for the permission message, where /proc tells.
fn process_user() -> String {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map_or("its own user".into(), |meta| format!("uid {}", meta.uid()))
}

fn describe(path: &Path) -> String {
    format!("SQLite database {}", path.display())
}

/// Why `what` cannot be served as it is, from the error of a query on its books table.
fn not_set_up(what: &str, err: rusqlite::Error) -> DbError {
    let reason = err.to_string();
    if reason.contains("no such table") {
        DbError::Setup(format!(
            "{what} has no books table; run `penny init-db` to create it"
        ))
    } else if reason.contains("no such column") {
        DbError::Setup(format!(
            "{what} was made by an earlier Penny or an older penny.sql: its books table has \
             no author_key column; run `penny init-db` to bring it up to date (no book is lost)"
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
struct Manager {
    inner: SqliteConnectionManager,
    /// The page cache each connection sets on its first call, if any.
    cache_kib: Option<i64>,
    counts: Arc<Counts>,
}

/// Connections opened and closed since start, for `SqliteDb::pool_status`.
#[derive(Debug, Default)]
struct Counts {
    opened: AtomicU64,
    closed: AtomicU64,
}

/// A pooled connection, and whether a statement failed on it since it was checked out.
struct Conn {
    connection: Connection,
    counts: Arc<Counts>,
    failed: bool,
    /// Set on the first call rather than on connect: the pragma reads the file's header, so
    /// on connect it would wait out another process's lock inside the pool's checkout (and
    /// answer 503) where the query itself waits for it with the query timeout.
    cache_kib: Option<i64>,
}

impl Conn {
    fn run<T>(
        &mut self,
        f: impl FnOnce(&mut Connection) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        if let Some(kib) = self.cache_kib.take() {
            // On a file that is not a database this fails, and so does the query after it,
            // which says why.
            let _ = self.connection.pragma_update(None, "cache_size", -kib);
        }
        let result = f(&mut self.connection);
        self.failed |= result.is_err();
        result
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.counts.closed.fetch_add(1, Ordering::Relaxed);
    }
}

impl ManageConnection for Manager {
    type Connection = Conn;
    type Error = rusqlite::Error;

    fn connect(&self) -> Result<Conn, rusqlite::Error> {
        let connection = self.inner.connect()?;
        self.counts.opened.fetch_add(1, Ordering::Relaxed);
        Ok(Conn {
            connection,
            counts: self.counts.clone(),
            failed: false,
            cache_kib: self.cache_kib,
        })
    }

    fn is_valid(&self, conn: &mut Conn) -> Result<(), rusqlite::Error> {
        self.inner.is_valid(&mut conn.connection)
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.failed
    }
}

impl From<rusqlite::Error> for DbError {
    fn from(err: rusqlite::Error) -> DbError {
        classify(err)
    }
}

/// Errors that a retry may cure (locked, unreadable, out of space) mean "unavailable". A file
/// that lost its books table or search key under a running Penny is "not set up": like an
/// outage, it is logged once, and ends when the file is put right.
fn classify(err: rusqlite::Error) -> DbError {
    use rusqlite::ErrorCode::*;
    if let rusqlite::Error::SqliteFailure(_, Some(message)) = &err
        && (message.starts_with("no such table") || message.starts_with("no such column"))
    {
        return DbError::NotSetUp(format!("{message}; {}", crate::db::HOW_TO_SET_UP).into());
    }
    match err.sqlite_error_code() {
        Some(
            DatabaseBusy | DatabaseLocked | CannotOpen | SystemIoFailure | DiskFull | NotADatabase
            | DatabaseCorrupt,
        ) => DbError::Unavailable(err.into()),
        _ => DbError::Query(err.into()),
    }
}

/// Marks the blocking thread a SQLite call runs on as batch work for Linux's scheduler
/// (SCHED_BATCH), once per thread: woken with a call while an async worker runs on its core, it
/// waits for the worker's turn to end instead of taking the core at once, so under load the
/// worker hands over several calls in one switch instead of switching twice per request. A fifth
/// of Penny's CPU on a SQLite file's 3-book page went to those switches; this made that page
/// 7-11 % faster (16 and 256 connections, pinned to one core or not) and left the million-book
/// page as fast, with p99 under 256 connections up to a fifth higher.
#[cfg(target_os = "linux")]
fn yield_to_the_runtime_when_woken() {
    thread_local! {
        static MARKED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    if !MARKED.replace(true) {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: sched_setscheduler reads `param` and changes only the calling thread (pid 0).
        // SCHED_BATCH needs no privilege; were it refused, the thread would stay as it was.
        unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
    }
}

#[cfg(not(target_os = "linux"))]
fn yield_to_the_runtime_when_woken() {}

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
        let limit = format!("LIMIT {})", crate::db::COUNT_LIMIT + 1);
        assert!(COUNT.ends_with(&limit), "{COUNT}");
    }

    /// The file `empty_books_file` makes in `dir`.
    pub(super) fn books_path(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("p.sqlite")
    }

    /// A pool set up by `config` on a new file in `dir` (in WAL mode with `wal`) with an empty
    /// books table.
    pub(super) async fn empty_books_file(
        dir: &tempfile::TempDir,
        config: &PoolConfig,
        wal: bool,
    ) -> SqliteDb {
        let path = books_path(dir);
        let setup = rusqlite::Connection::open(&path).unwrap();
        if wal {
            setup
                .query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
                .unwrap();
        }
        setup
            .execute_batch("CREATE TABLE books (isbn, author, title, author_key)")
            .unwrap();
        SqliteDb::open_file(path, config, false).await.unwrap()
    }

    #[tokio::test]
    async fn a_file_s_connections_keep_a_small_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        let db = empty_books_file(&dir, &PoolConfig::default(), false).await;
        let cache: i64 = db
            .run(|conn| Ok(conn.query_row("PRAGMA cache_size", [], |row| row.get(0))?))
            .await
            .unwrap();
        assert_eq!(cache, -CACHE_KIB);
    }

    #[cfg(target_os = "linux")]
    #[tokio::test(flavor = "multi_thread")]
    async fn calls_run_on_batch_threads_and_leave_the_async_workers_as_they_were() {
        let dir = tempfile::tempdir().unwrap();
        let db = empty_books_file(&dir, &PoolConfig::default(), false).await;
        // SAFETY: sched_getscheduler only reads the calling thread's policy.
        let policy = || unsafe { libc::sched_getscheduler(0) };
        for _ in 0..3 {
            let on_the_call = db.run(move |_| Ok(policy())).await.unwrap();
            assert_eq!(on_the_call, libc::SCHED_BATCH);
            assert_eq!(policy(), libc::SCHED_OTHER, "the async worker");
        }
    }

    #[tokio::test]
    async fn a_new_connection_waits_for_another_process_s_lock_in_its_query_not_its_checkout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.sqlite");
        let lock = rusqlite::Connection::open(&path).unwrap();
        lock.execute_batch("CREATE TABLE books (isbn, author, title, author_key)")
            .unwrap();
        let config = PoolConfig {
            size: 2,
            checkout_timeout: Duration::from_millis(300),
            ..PoolConfig::default()
        };
        let db = SqliteDb::open_file(path, &config, false).await.unwrap();
        lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
        // The second call comes once the first waits on the lock, so it is not in the first's
        // batch: it opens a second connection while the file is locked.
        let count = |db: SqliteDb| async move {
            db.run(|conn| {
                Ok(conn.query_row("SELECT count(*) FROM books", [], |row| row.get::<_, i64>(0))?)
            })
            .await
        };
        let first = tokio::spawn(count(db.clone()));
        tokio::time::sleep(config.checkout_timeout / 3).await;
        let second = tokio::spawn(count(db.clone()));
        tokio::time::sleep(config.checkout_timeout * 2).await;
        lock.execute_batch("COMMIT").unwrap();
        assert_eq!(first.await.unwrap().unwrap(), 0);
        assert_eq!(second.await.unwrap().unwrap(), 0);
    }
}

//! PostgreSQL through a bb8 pool of tokio-postgres connections, over rustls. Talking to
//! Postgres directly, each connection prepares the search once and reuses it; through PgBouncer
//! in transaction mode, every query is a single unnamed statement instead.

use super::{
    AuthorRange, Book, Cursor, DbError, PAGE_SIZE, Position, SCHEMA, SchemaChanges, cause_chain,
    synthetic,
};
use crate::config::{PoolConfig, PostgresUrl, SslMode};
use crate::fold::fold;
use bb8::{ErrorSink, ManageConnection, Pool, PooledConnection, RunError};
use bb8_postgres::PostgresConnectionManager;
use futures_util::SinkExt;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OnceCell, watch};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Row, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

// The schema changes since penny.sql's first books table, one file each, applied in order by
// `penny init-db` (see `init_schema`).
refinery::embed_migrations!("src/db/postgres/migrations");

/// The index behind the search, made by `penny init-db`. COLLATE "C" compares bytes, as SQLite
/// does, whatever the database's locale: both backends agree on every answer and its order.
/// NULLS FIRST puts a book without a title where SQLite puts it. penny.sql cannot make this
/// index (SQLite knows no "C"), so init-db makes it every time, in case penny.sql was loaded
/// by hand since, and drops the one penny.sql made, which PostgreSQL's search cannot use.
const SEARCH_INDEX: &str = r#"DROP INDEX IF EXISTS books_search;
    CREATE INDEX IF NOT EXISTS books_search_c ON books (author_key COLLATE "C",
        author COLLATE "C", title COLLATE "C" NULLS FIRST, isbn COLLATE "C")"#;

const FIRST: &str = r#"SELECT coalesce(isbn, ''), coalesce(author, ''), coalesce(title, '')
    FROM books WHERE author_key COLLATE "C" >= $1 AND author_key COLLATE "C" < $2
    ORDER BY author_key COLLATE "C", author COLLATE "C", title COLLATE "C" NULLS FIRST,
        isbn COLLATE "C"
    LIMIT $3"#;
const AFTER: &str = r#"SELECT coalesce(isbn, ''), coalesce(author, ''), coalesce(title, '')
    FROM books WHERE author_key COLLATE "C" >= $1 AND author_key COLLATE "C" < $2
    AND (author_key COLLATE "C", author COLLATE "C", title COLLATE "C", isbn COLLATE "C")
        > ($4 COLLATE "C", $5 COLLATE "C", $6 COLLATE "C", $7 COLLATE "C")
    ORDER BY author_key COLLATE "C", author COLLATE "C", title COLLATE "C" NULLS FIRST,
        isbn COLLATE "C"
    LIMIT $3"#;
const BEFORE: &str = r#"SELECT coalesce(isbn, ''), coalesce(author, ''), coalesce(title, '')
    FROM books WHERE author_key COLLATE "C" >= $1 AND author_key COLLATE "C" < $2
    AND (author_key COLLATE "C", author COLLATE "C", title COLLATE "C", isbn COLLATE "C")
        < ($4 COLLATE "C", $5 COLLATE "C", $6 COLLATE "C", $7 COLLATE "C")
    ORDER BY author_key COLLATE "C" DESC, author COLLATE "C" DESC,
        title COLLATE "C" DESC NULLS LAST, isbn COLLATE "C" DESC
    LIMIT $3"#;

/// The books from a page's first one on, up to $3 of them: a seek, then a count along the index.
const COUNT: &str = r#"SELECT count(*) FROM (SELECT 1
    FROM books WHERE author_key COLLATE "C" >= $1 AND author_key COLLATE "C" < $2
    AND (author_key COLLATE "C", author COLLATE "C", title COLLATE "C", isbn COLLATE "C")
        >= ($4 COLLATE "C", $5 COLLATE "C", $6 COLLATE "C", $7 COLLATE "C")
    LIMIT $3) AS books"#;

/// The parameter types of FIRST, and of AFTER, BEFORE and COUNT.
const FIRST_TYPES: [Type; 3] = [Type::TEXT, Type::TEXT, Type::INT8];
const CURSOR_TYPES: [Type; 7] = [
    Type::TEXT,
    Type::TEXT,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
];

/// The advisory lock that `penny init-db` holds while it changes the schema: a second one waits
/// for the first, then finds nothing left to do. ("penny" in ASCII.)
const INIT_LOCK: i64 = 0x70_65_6e_6e_79;

const PING: &str = "SELECT author_key FROM books LIMIT 1";

/// Runs `$query` (an expression using `$conn`, a pooled connection) within the query timeout
/// and, if it failed in a way another try cures (see `PostgresDb::worth_a_retry`), runs it once
/// more. A macro rather than a closure: the future borrows the connection.
macro_rules! with_connection {
    ($db:expr, |$conn:ident| $query:expr) => {{
        let mut retried = false;
        loop {
            let $conn = $db.checkout().await?;
            match $db.within_deadline(&$conn, $query).await? {
                Err(err) if !retried && $db.worth_a_retry(&err) => retried = true,
                result => break result.map_err(classify),
            }
        }
    }};
}

/// A pool of PostgreSQL connections. Cheap to clone.
#[derive(Clone)]
pub struct PostgresDb {
    pool: Pool<Manager>,
    shared: Arc<Shared>,
    checkout_timeout: Duration,
    query_timeout: Duration,
    /// For cancel requests, which go over a connection of their own.
    tls: MakeRustlsConnect,
    /// Told (by the URL or PENNY_PGBOUNCER) that this is PgBouncer in transaction mode.
    pgbouncer: bool,
}

impl PostgresDb {
    /// Sets up the pool without connecting: Penny starts, and answers 503, while Postgres is down.
    pub fn open(url: &PostgresUrl, config: &PoolConfig) -> Result<PostgresDb, DbError> {
        // Shorter than the checkout timeout by default, so that a caller waiting on a connect
        // hears why it failed rather than only that its wait ran out.
        let connect_timeout = url
            .config
            .get_connect_timeout()
            .copied()
            .unwrap_or(config.checkout_timeout * 2 / 3);
        let tls = tls(url)?;
        let shared = Arc::new(Shared::new(url.pgbouncer, config.size));
        let manager = Manager {
            inner: PostgresConnectionManager::new(url.config.clone(), tls.clone()),
            connect_timeout,
            shared: shared.clone(),
        };
        let pool = Pool::builder()
            .max_size(config.size)
            .min_idle(None)
            .connection_timeout(config.checkout_timeout)
            .idle_timeout(Some(config.idle_timeout))
            .max_lifetime(Some(config.max_lifetime))
            // The most recently used connection first: one after another, requests reuse a warm
            // connection instead of rotating through every one a burst opened, and the idle
            // timeout can close the surplus.
            .queue_strategy(bb8::QueueStrategy::Lifo)
            // A failed connect is reported at once (see `checkout`), never retried until the
            // checkout timeout.
            .retry_connection(false)
            .error_sink(Box::new(Sink(shared.clone())))
            .build_unchecked(manager);
        Ok(PostgresDb {
            pool,
            shared,
            checkout_timeout: config.checkout_timeout,
            query_timeout: config.query_timeout,
            tls,
            pgbouncer: url.pgbouncer,
        })
    }

    /// Runs `query` on `conn` for at most the query timeout. Past it, the server is asked to
    /// cancel the query (it may be waiting on a lock that another session holds), the
    /// connection is left out of the pool, and the caller gets `Unavailable`.
    async fn within_deadline<T>(
        &self,
        conn: &Conn,
        query: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<Result<T, tokio_postgres::Error>, DbError> {
        match tokio::time::timeout(self.query_timeout, query).await {
            Ok(result) => Ok(result),
            Err(_) => {
                conn.abandon(self.tls.clone());
                let message = format!(
                    "a query ran for longer than {:?} and was cancelled",
                    self.query_timeout
                );
                Err(DbError::Unavailable(message.into()))
            }
        }
    }

    /// Whether a query that failed with `err` is worth another try, and what the pool learns
    /// from it first:
    /// - the connection was cut off (the server restarted, or an administrator ended its
    ///   session): every other connection opened before now may be gone too, so each is
    ///   checked with a round trip before its next use, and the retry runs on one that works;
    /// - a prepared statement vanished or clashed between two queries: this is PgBouncer in
    ///   transaction mode, which hands each transaction to any server connection, though
    ///   nobody said so. The pool stops preparing statements (as `?pgbouncer=true` would) and
    ///   says once in the log what to set.
    fn worth_a_retry(&self, err: &tokio_postgres::Error) -> bool {
        if connection_lost(err) {
            self.shared.lost.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        if statements_not_kept(err) {
            if !self.shared.unnamed.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    cause = %err,
                    "prepared statements do not last between queries here: DATABASE_URL seems \
                     to lead to PgBouncer in transaction mode. Penny now sends every query as \
                     an unnamed statement; add ?pgbouncer=true to DATABASE_URL (or set \
                     PENNY_PGBOUNCER=true) to say so from the start"
                );
            }
            return true;
        }
        false
    }

    /// A connection from the pool. While the pool holds no connection at all, fails as soon as
    /// an attempt to connect fails and no other is under way (bb8 itself would only report its
    /// timeout, seconds later);
    /// while it holds some, one slow or failed connect does not fail the callers waiting for
    /// one of them to come free.
    async fn checkout(&self) -> Result<PooledConnection<'_, Manager>, DbError> {
        let mut failed = self.shared.failures.notify.subscribe();
        let get = self.pool.get();
        tokio::pin!(get);
        loop {
            tokio::select! {
                conn = &mut get => return conn.map_err(|err| match err {
                    RunError::User(PoolError::Connect(err)) => err,
                    RunError::User(PoolError::Closed) => {
                        DbError::Unavailable("the connection was closed".into())
                    }
                    RunError::TimedOut => DbError::Unavailable(
                        format!("no database connection within {:?}", self.checkout_timeout).into(),
                    ),
                }),
                Ok(()) = failed.changed() => {
                    if self.shared.open.load(Ordering::Relaxed) == 0
                        && self.shared.connecting.load(Ordering::Relaxed) == 0
                    {
                        return Err(DbError::Unavailable(self.shared.failures.last().into()));
                    }
                }
            }
        }
    }

    /// Up to `limit` rows from `position` on, in the query's order (backwards for `Before`).
    pub async fn search_books(
        &self,
        range: &AuthorRange,
        position: &Position,
        limit: usize,
    ) -> Result<Vec<Book>, DbError> {
        let rows = with_connection!(self, |conn| conn.search(range, position, limit))?;
        Ok(rows.iter().map(book).collect())
    }

    /// How many books of `range` there are from `from` on (`from` included), up to one more
    /// than COUNT_LIMIT.
    pub async fn count_books(&self, range: &AuthorRange, from: &Cursor) -> Result<u64, DbError> {
        let rows = with_connection!(self, |conn| conn.count(range, from))?;
        let count: i64 = rows.first().map_or(0, |row| row.get(0));
        Ok(count as u64)
    }

    pub async fn explain_search(
        &self,
        range: &AuthorRange,
        position: &Position,
    ) -> Result<Vec<String>, DbError> {
        let (sql, cursor) = search_sql(position);
        let explain = format!("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) {sql}");
        let limit = (PAGE_SIZE + 1) as i64;
        let key = cursor.map(Cursor::key);
        let params = search_params(range, &limit, cursor.zip(key.as_ref()));
        let rows = with_connection!(self, |conn| conn.client.query_typed(&explain, &params))?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    pub async fn add_books(&self, books: Vec<Book>) -> Result<(), DbError> {
        let isbns: Vec<&str> = books.iter().map(|book| book.isbn.as_str()).collect();
        let authors: Vec<&str> = books.iter().map(|book| book.author.as_str()).collect();
        let titles: Vec<&str> = books.iter().map(|book| book.title.as_str()).collect();
        let keys: Vec<String> = books.iter().map(|book| fold(&book.author)).collect();
        let params = [
            (&isbns as _, Type::TEXT_ARRAY),
            (&authors as _, Type::TEXT_ARRAY),
            (&titles as _, Type::TEXT_ARRAY),
            (&keys as _, Type::TEXT_ARRAY),
        ];
        let insert = "INSERT INTO books (isbn, author, title, author_key) \
                      SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) \
                      ON CONFLICT DO NOTHING";
        with_connection!(self, |conn| conn.client.query_typed(insert, &params))?;
        Ok(())
    }

    /// COPY into a temporary table, then one INSERT that skips ISBNs already present.
    pub async fn load_synthetic(&self, count: u64, done: &AtomicU64) -> Result<(), DbError> {
        let mut conn = self.checkout().await?;
        let tx = conn.client.transaction().await.map_err(classify)?;
        tx.batch_execute(
            "CREATE TEMPORARY TABLE synthetic_books \
             (isbn text, author text, title text, author_key text) ON COMMIT DROP",
        )
        .await
        .map_err(classify)?;
        let sink = tx
            .copy_in("COPY synthetic_books (isbn, author, title, author_key) FROM STDIN")
            .await
            .map_err(classify)?;
        let mut sink = std::pin::pin!(sink);
        let mut index = 0;
        while index < count {
            let mut chunk = String::with_capacity(1 << 20);
            let end = count.min(index + 10_000);
            for book in (index..end).map(synthetic::book) {
                // Generated text has no tab, newline or backslash to escape.
                let key = fold(&book.author);
                let line = format!("{}\t{}\t{}\t{key}\n", book.isbn, book.author, book.title);
                chunk.push_str(&line);
            }
            sink.send(bytes::Bytes::from(chunk))
                .await
                .map_err(classify)?;
            done.fetch_add(end - index, Ordering::Relaxed);
            index = end;
        }
        sink.as_mut().finish().await.map_err(classify)?;
        tx.batch_execute(
            "INSERT INTO books (isbn, author, title, author_key) \
             SELECT * FROM synthetic_books ON CONFLICT DO NOTHING",
        )
        .await
        .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        // Settle the table now (statistics, visibility map for index-only scans) rather than
        // leave it to autovacuum during the first minute of traffic.
        conn.client
            .batch_execute("VACUUM (ANALYZE) books")
            .await
            .map_err(classify)
    }

    pub async fn ping(&self) -> Result<(), DbError> {
        with_connection!(self, |conn| conn.client.simple_query(PING))?;
        Ok(())
    }

    /// See `Db::init_schema`. Other sessions go on reading meanwhile. No query timeout:
    /// setting a million search keys, or building the index, takes as long as it takes.
    /// Changing the schema needs a session of its own for its lock and the migrations'
    /// statements, which PgBouncer's transaction mode does not give: it is refused there.
    pub async fn init_schema(&self, reset: bool) -> Result<SchemaChanges, DbError> {
        if self.pgbouncer {
            return Err(DbError::Setup(
                "penny init-db changes the schema, which needs a session of its own: run it \
                 with the database's own URL, not through PgBouncer (without pgbouncer=true)"
                    .into(),
            ));
        }
        let mut conn = self.checkout().await?;
        let client = &mut conn.client;
        client
            .execute("SELECT pg_advisory_lock($1)", &[&INIT_LOCK])
            .await
            .map_err(classify)?;
        let changes = init_locked(client, reset).await;
        client
            .execute("SELECT pg_advisory_unlock($1)", &[&INIT_LOCK])
            .await
            .map_err(classify)?;
        changes
    }

    pub async fn count_unsearchable_books(&self) -> Result<u64, DbError> {
        let sql = "SELECT count(*) FROM books WHERE author_key IS NULL";
        let rows = with_connection!(self, |conn| conn.client.query_typed(sql, &[]))?;
        let count: i64 = rows.first().map_or(0, |row| row.get(0));
        Ok(count as u64)
    }
}

/// The rest of `init_schema`, holding the lock.
async fn init_locked(client: &mut Client, reset: bool) -> Result<SchemaChanges, DbError> {
    let mut changes = SchemaChanges::default();
    if reset || !exists(client, "SELECT to_regclass('books') IS NOT NULL").await? {
        // One simple query: one implicit transaction.
        client.batch_execute(SCHEMA).await.map_err(classify)?;
        changes.loaded_penny_sql = true;
    }
    // A books table with a search key and no record of migrations comes from penny.sql (by
    // hand, or just now): it is as the latest migration leaves it.
    let from_penny_sql = "SELECT to_regclass('refinery_schema_history') IS NULL \
        AND EXISTS (SELECT FROM pg_attribute WHERE attrelid = to_regclass('books') \
                    AND attname = 'author_key' AND NOT attisdropped)";
    if exists(client, from_penny_sql).await? {
        migrations::runner()
            .set_target(refinery::Target::Fake)
            .run_async(client)
            .await
            .map_err(migration_failed)?;
    }
    let report = migrations::runner()
        .run_async(client)
        .await
        .map_err(migration_failed)?;
    changes.migrations = report
        .applied_migrations()
        .iter()
        .map(ToString::to_string)
        .collect();
    client.batch_execute(SEARCH_INDEX).await.map_err(classify)?;
    changes.keys_set = set_search_keys(client).await?;
    // Settle the table (statistics, and after many new keys the visibility map that lets the
    // search read the index alone) rather than leave it to autovacuum.
    let settle = if changes.keys_set > 0 {
        "VACUUM (ANALYZE) books"
    } else {
        "ANALYZE books"
    };
    client.batch_execute(settle).await.map_err(classify)?;
    Ok(changes)
}

async fn exists(client: &Client, sql: &str) -> Result<bool, DbError> {
    let row = client.query_one(sql, &[]).await.map_err(classify)?;
    Ok(row.get(0))
}

/// Sets the search key of every book whose key is missing or not its author's fold (a book
/// added or changed by hand). The fold is Penny's, in Rust, so it is worked out here, once per
/// different author and key, and sent back in one UPDATE. A book with no author gets an empty
/// key, which no search matches.
async fn set_search_keys(client: &Client) -> Result<u64, DbError> {
    let pairs = client
        .query(
            "SELECT author, author_key FROM books GROUP BY author, author_key",
            &[],
        )
        .await
        .map_err(classify)?;
    let (mut authors, mut keys) = (Vec::new(), Vec::new());
    let mut no_author = false;
    for pair in &pairs {
        let (author, key): (Option<String>, Option<String>) = (pair.get(0), pair.get(1));
        match author {
            Some(author) => {
                let folded = fold(&author);
                if key.as_ref() != Some(&folded) {
                    authors.push(author);
                    keys.push(folded);
                }
            }
            None => no_author |= key.as_deref() != Some(""),
        }
    }
    let mut set = 0;
    if !authors.is_empty() {
        // `=`, not IS NOT DISTINCT FROM, so that this is one hash join however big the table.
        let update = r#"UPDATE books AS b SET author_key = f.key
            FROM unnest($1::text[], $2::text[]) AS f(author, key)
            WHERE b.author = f.author AND b.author_key IS DISTINCT FROM f.key"#;
        set += client
            .execute(update, &[&authors, &keys])
            .await
            .map_err(classify)?;
    }
    if no_author {
        let update = "UPDATE books SET author_key = '' \
                      WHERE author IS NULL AND author_key IS DISTINCT FROM ''";
        set += client.execute(update, &[]).await.map_err(classify)?;
    }
    Ok(set)
}

fn migration_failed(err: refinery::Error) -> DbError {
    DbError::Query(err.into())
}

fn book(row: &Row) -> Book {
    Book {
        isbn: row.get(0),
        author: row.get(1),
        title: row.get(2),
    }
}

/// A pooled connection and, talking to Postgres directly, its prepared statements: prepared on
/// first use, since `penny init-db` connects before the table they name exists.
pub struct Conn {
    client: Client,
    statements: OnceCell<Statements>,
    /// Set when a query was given up on: the pool drops the connection instead of reusing it.
    abandoned: AtomicBool,
    /// The pool's count of lost connections when this one was last known to work (see
    /// `Manager::is_valid`).
    checked: u64,
    shared: Arc<Shared>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.shared.open.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Statements {
    first: Statement,
    after: Statement,
    before: Statement,
    count: Statement,
}

impl Conn {
    /// Gives up on the query running on this connection: asks the server to cancel it, in the
    /// background, and marks the connection so that the pool closes it.
    fn abandon(&self, tls: MakeRustlsConnect) {
        self.abandoned.store(true, Ordering::Relaxed);
        let cancel = self.client.cancel_token();
        tokio::spawn(async move {
            if let Err(err) = cancel.cancel_query(tls).await {
                tracing::warn!(error = %err, "could not cancel a query that ran too long");
            }
        });
    }

    async fn statements(&self) -> Result<Option<&Statements>, tokio_postgres::Error> {
        if self.shared.unnamed.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let client = &self.client;
        let statements = self
            .statements
            .get_or_try_init(async || {
                Ok::<_, tokio_postgres::Error>(Statements {
                    first: client.prepare_typed(FIRST, &FIRST_TYPES).await?,
                    after: client.prepare_typed(AFTER, &CURSOR_TYPES).await?,
                    before: client.prepare_typed(BEFORE, &CURSOR_TYPES).await?,
                    count: client.prepare_typed(COUNT, &CURSOR_TYPES).await?,
                })
            })
            .await?;
        Ok(Some(statements))
    }

    async fn search(
        &self,
        range: &AuthorRange,
        position: &Position,
        limit: usize,
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        let limit = limit as i64;
        let (sql, cursor) = search_sql(position);
        let key = cursor.map(Cursor::key);
        let params = search_params(range, &limit, cursor.zip(key.as_ref()));
        match self.statements().await? {
            Some(prepared) => {
                let statement = match position {
                    Position::First => &prepared.first,
                    Position::After(_) => &prepared.after,
                    Position::Before(_) => &prepared.before,
                };
                let values: Vec<_> = params.iter().map(|(value, _)| *value).collect();
                self.client.query(statement, &values).await
            }
            None => self.client.query_typed(sql, &params).await,
        }
    }
}

impl Conn {
    async fn count(
        &self,
        range: &AuthorRange,
        from: &Cursor,
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        let limit = (super::COUNT_LIMIT + 1) as i64;
        let key = from.key();
        let params = search_params(range, &limit, Some((from, &key)));
        match self.statements().await? {
            Some(prepared) => {
                let values: Vec<_> = params.iter().map(|(value, _)| *value).collect();
                self.client.query(&prepared.count, &values).await
            }
            None => self.client.query_typed(COUNT, &params).await,
        }
    }
}

fn search_sql(position: &Position) -> (&'static str, Option<&Cursor>) {
    match position {
        Position::First => (FIRST, None),
        Position::After(cursor) => (AFTER, Some(cursor)),
        Position::Before(cursor) => (BEFORE, Some(cursor)),
    }
}

type Param<'a> = (&'a (dyn ToSql + Sync), Type);

/// The search's parameters with their types: $1 to $3, and $4 to $7 from the cursor and its
/// author's search key.
fn search_params<'a>(
    range: &'a AuthorRange,
    limit: &'a i64,
    cursor: Option<(&'a Cursor, &'a String)>,
) -> Vec<Param<'a>> {
    let mut params: Vec<Param<'a>> = vec![
        (&range.from, Type::TEXT),
        (&range.to, Type::TEXT),
        (limit, Type::INT8),
    ];
    if let Some((cursor, key)) = cursor {
        params.push((key, Type::TEXT));
        params.push((&cursor.author, Type::TEXT));
        params.push((&cursor.title, Type::TEXT));
        params.push((&cursor.isbn, Type::TEXT));
    }
    params
}

/// bb8-postgres's manager, plus the statements each new connection prepares.
struct Manager {
    inner: PostgresConnectionManager<MakeRustlsConnect>,
    /// The limit on the whole handshake, not only the TCP connect that tokio-postgres bounds:
    /// a server that accepts and never answers must not hold a pool slot forever.
    connect_timeout: Duration,
    shared: Arc<Shared>,
}

impl ManageConnection for Manager {
    type Connection = Conn;
    type Error = PoolError;

    async fn connect(&self) -> Result<Conn, PoolError> {
        let unavailable =
            |message: String| PoolError::Connect(DbError::Unavailable(message.into()));
        if let Some(wait) = self.shared.refusals.wait(self.connect_timeout) {
            return Err(unavailable(format!(
                "the database refused a new connection moments ago (too many connections); \
                 the next try is in {} ms",
                wait.as_millis()
            )));
        }
        self.shared.connecting.fetch_add(1, Ordering::Relaxed);
        let connected = tokio::time::timeout(self.connect_timeout, self.inner.connect()).await;
        if connected.as_ref().is_ok_and(Result::is_ok) {
            self.shared.open.fetch_add(1, Ordering::Relaxed);
        }
        self.shared.connecting.fetch_sub(1, Ordering::Relaxed);
        let client = match connected {
            Ok(Ok(client)) => client,
            Ok(Err(err)) => {
                if err.code() == Some(&SqlState::TOO_MANY_CONNECTIONS) {
                    self.shared.refused(&err);
                } else {
                    self.shared.refusals.over();
                }
                return Err(PoolError::Connect(DbError::Unavailable(err.into())));
            }
            Err(_) => {
                self.shared.refusals.over();
                let waited = self.connect_timeout;
                return Err(unavailable(format!(
                    "the database server did not answer within {waited:?}"
                )));
            }
        };
        self.shared.refusals.over();
        Ok(Conn {
            client,
            statements: OnceCell::new(),
            abandoned: AtomicBool::new(false),
            checked: self.shared.lost.load(Ordering::Relaxed),
            shared: self.shared.clone(),
        })
    }

    /// Checked on every checkout, so it costs no round trip while connections are fine: a
    /// connection the server closed is known locally. Once a query has found a connection cut
    /// off, each connection opened before that is asked an empty query on its next checkout,
    /// so that a retry does not land on another dead one.
    async fn is_valid(&self, conn: &mut Conn) -> Result<(), PoolError> {
        if conn.client.is_closed() {
            return Err(PoolError::Closed);
        }
        let lost = self.shared.lost.load(Ordering::Relaxed);
        if conn.checked < lost {
            let alive = tokio::time::timeout(self.connect_timeout, conn.client.batch_execute(""));
            match alive.await {
                Ok(Ok(())) => conn.checked = lost,
                _ => return Err(PoolError::Closed),
            }
        }
        Ok(())
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.client.is_closed() || *conn.abandoned.get_mut()
    }
}

/// What the pool's manager reports: a failed connect, or a pooled connection found closed on
/// checkout (which bb8 quietly replaces).
#[derive(Debug)]
enum PoolError {
    Connect(DbError),
    Closed,
}

/// What the pool, its manager and its connections share.
#[derive(Debug)]
struct Shared {
    failures: ConnectFailures,
    refusals: Refusals,
    /// How many times a query found its connection cut off; see `Manager::is_valid`.
    lost: AtomicU64,
    /// No named prepared statements: PgBouncer in transaction mode, said or found out.
    unnamed: AtomicBool,
    /// Connections open now, and being opened.
    open: AtomicU32,
    connecting: AtomicU32,
    /// The pool's size, for the log.
    size: u32,
}

impl Shared {
    fn new(pgbouncer: bool, size: u32) -> Shared {
        Shared {
            failures: ConnectFailures::default(),
            refusals: Refusals::default(),
            lost: AtomicU64::new(0),
            unnamed: AtomicBool::new(pgbouncer),
            open: AtomicU32::new(0),
            connecting: AtomicU32::new(0),
            size,
        }
    }

    /// The server refused a connection for want of slots (`max_connections`, or a pooler's
    /// limit). Connecting again at once would only be refused again, each try a process forked
    /// on the server: the pool waits, longer each time, and says once that it cannot grow.
    /// With no connection open at all this is an outage, which `Db` logs as such.
    fn refused(&self, err: &tokio_postgres::Error) {
        let open = self.open.load(Ordering::Relaxed);
        if self.refusals.refused(open > 0) {
            tracing::warn!(
                cause = cause_chain(err),
                open,
                size = self.size,
                "the database refuses more connections: the pool stays at the connections it \
                 has and tries for more at most every {} s. Lower PENNY_POOL_SIZE, or raise \
                 the database's max_connections (every process's pool counts against it)",
                MAX_REFUSAL_BACKOFF.as_secs()
            );
        }
    }
}

/// The shortest and the longest wait after the server refused a connection.
const MIN_REFUSAL_BACKOFF: Duration = Duration::from_millis(100);
const MAX_REFUSAL_BACKOFF: Duration = Duration::from_secs(5);

/// When the server last refused a connection for want of slots, and how long to wait before
/// the next try.
#[derive(Debug, Default)]
struct Refusals(Mutex<RefusalState>);

#[derive(Debug, Default)]
struct RefusalState {
    /// No connect before this. While refusals go on, one try at a time claims the slot by
    /// moving it on.
    until: Option<std::time::Instant>,
    backoff: Duration,
    /// When a refusal was last logged: at most once every `REFUSAL_LOG_EVERY`, however often
    /// refusals and successes take turns.
    logged: Option<std::time::Instant>,
}

const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(600);

impl Refusals {
    fn lock(&self) -> std::sync::MutexGuard<'_, RefusalState> {
        self.0
            .lock()
            .expect("the lock is never held across a panic")
    }

    /// How long a connect must still wait, or None when it may go ahead (and, while refusals
    /// go on, is the one try until `claim` from now).
    fn wait(&self, claim: Duration) -> Option<Duration> {
        let mut state = self.lock();
        let until = state.until?;
        let now = std::time::Instant::now();
        if now < until {
            return Some(until - now);
        }
        state.until = Some(now + claim);
        None
    }

    /// Records a refusal; true when it is to be logged (`worth_saying`, and not said lately).
    fn refused(&self, worth_saying: bool) -> bool {
        let mut state = self.lock();
        let now = std::time::Instant::now();
        state.backoff = (state.backoff * 2).clamp(MIN_REFUSAL_BACKOFF, MAX_REFUSAL_BACKOFF);
        state.until = Some(now + state.backoff);
        let say = worth_saying
            && state
                .logged
                .is_none_or(|logged| now.duration_since(logged) >= REFUSAL_LOG_EVERY);
        if say {
            state.logged = Some(now);
        }
        say
    }

    /// A connect got through, or failed for another reason: refusals are over.
    fn over(&self) {
        let mut state = self.lock();
        state.until = None;
        state.backoff = Duration::ZERO;
    }
}

/// The latest failure to connect, and a signal for the callers waiting on a connection.
#[derive(Debug)]
struct ConnectFailures {
    notify: watch::Sender<()>,
    last: Mutex<String>,
}

impl Default for ConnectFailures {
    fn default() -> Self {
        ConnectFailures {
            notify: watch::Sender::new(()),
            last: Mutex::new(String::new()),
        }
    }
}

impl ConnectFailures {
    fn last(&self) -> String {
        self.last
            .lock()
            .expect("the lock is never held across a panic")
            .clone()
    }
}

#[derive(Debug, Clone)]
struct Sink(Arc<Shared>);

impl ErrorSink<PoolError> for Sink {
    fn sink(&self, err: PoolError) {
        let PoolError::Connect(DbError::Unavailable(cause)) = err else {
            return;
        };
        let failures = &self.0.failures;
        *failures
            .last
            .lock()
            .expect("the lock is never held across a panic") = cause_chain(cause.as_ref());
        failures.notify.send_replace(());
    }

    fn boxed_clone(&self) -> Box<dyn ErrorSink<PoolError>> {
        Box::new(self.clone())
    }
}

/// Whether `err` means the connection is gone rather than that the statement failed.
fn connection_lost(err: &tokio_postgres::Error) -> bool {
    const LOST: [SqlState; 6] = [
        SqlState::CONNECTION_EXCEPTION,
        SqlState::CONNECTION_DOES_NOT_EXIST,
        SqlState::CONNECTION_FAILURE,
        SqlState::ADMIN_SHUTDOWN,
        SqlState::CRASH_SHUTDOWN,
        SqlState::CANNOT_CONNECT_NOW,
    ];
    err.is_closed() || err.code().is_some_and(|code| LOST.contains(code))
}

/// Whether a prepared statement failed to last from one query to the next, or clashed with
/// another client's: what PgBouncer in transaction mode does to named statements.
fn statements_not_kept(err: &tokio_postgres::Error) -> bool {
    let Some(db_error) = err.as_db_error() else {
        return false;
    };
    let code = db_error.code();
    *code == SqlState::INVALID_SQL_STATEMENT_NAME
        || *code == SqlState::DUPLICATE_PSTATEMENT
        || (*code == SqlState::PROTOCOL_VIOLATION
            && db_error.message().contains("prepared statement"))
}

/// What the server says when it cannot answer now, rather than that the statement is wrong:
/// the query was cancelled (a role's `statement_timeout`, `pg_cancel_backend`), a lock or a
/// transaction lost out to another session, the server is shutting down or starting, or it has
/// no slot for another connection. Like a lost connection, these are outages: a 503 with
/// Retry-After, logged when they start and end, not a 500 and a log line per request.
const OUTAGE: [SqlState; 8] = [
    SqlState::QUERY_CANCELED,
    SqlState::LOCK_NOT_AVAILABLE,
    SqlState::T_R_SERIALIZATION_FAILURE,
    SqlState::T_R_DEADLOCK_DETECTED,
    SqlState::ADMIN_SHUTDOWN,
    SqlState::CRASH_SHUTDOWN,
    SqlState::CANNOT_CONNECT_NOW,
    SqlState::TOO_MANY_CONNECTIONS,
];

/// Errors a retry may cure are "unavailable" (see OUTAGE); so is a database that lost its
/// books table or search key under a running Penny (logged once, like an outage, and over once
/// `penny init-db` has run).
fn classify(err: tokio_postgres::Error) -> DbError {
    if let Some(db_error) = err.as_db_error()
        && [SqlState::UNDEFINED_TABLE, SqlState::UNDEFINED_COLUMN].contains(db_error.code())
    {
        let message = format!(
            "{}: the database is not set up for Penny; run `penny init-db`",
            db_error.message()
        );
        return DbError::Unavailable(message.into());
    }
    let unavailable = connection_lost(&err)
        || err.as_db_error().is_none()
        || err.code().is_some_and(|code| OUTAGE.contains(code))
        || statements_not_kept(&err);
    if unavailable {
        DbError::Unavailable(err.into())
    } else {
        DbError::Query(err.into())
    }
}

/// The TLS set-up `sslmode` asks for. `prefer` and `require` encrypt without checking the
/// certificate (Heroku's are self-signed); `verify-ca` and `verify-full` check it against
/// PGSSLROOTCERT, or the system's CA certificates when that is unset.
fn tls(url: &PostgresUrl) -> Result<MakeRustlsConnect, DbError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports TLS 1.2 and 1.3");
    let verifier: Arc<dyn ServerCertVerifier> = match url.ssl_mode {
        SslMode::Disable | SslMode::Prefer | SslMode::Require => {
            Arc::new(Unverified(provider.signature_verification_algorithms))
        }
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let roots = root_certificates(url)?;
            let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|err| DbError::Setup(format!("cannot set up TLS: {err}")))?;
            if url.ssl_mode == SslMode::VerifyCa {
                Arc::new(AnyName(verifier))
            } else {
                verifier
            }
        }
    };
    let config = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// The most a CA file may hold: a bundle of every public CA is about 250 KiB.
const MAX_CA_FILE_BYTES: u64 = 4 << 20;

fn root_certificates(url: &PostgresUrl) -> Result<RootCertStore, DbError> {
    let mut roots = RootCertStore::empty();
    match &url.root_cert {
        Some(path) => {
            // The message names the setting, never the path: a password pasted into the URL in
            // the wrong place must not be printed.
            let unreadable = |err: &dyn std::fmt::Display| {
                DbError::Setup(format!(
                    "cannot read the CA certificates that sslrootcert (or PGSSLROOTCERT) names: \
                     {err}"
                ))
            };
            let pem = read_bounded(path, MAX_CA_FILE_BYTES).map_err(|err| unreadable(&err))?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|err| unreadable(&err))?;
                roots.add(cert).map_err(|err| unreadable(&err))?;
            }
            if roots.is_empty() {
                return Err(DbError::Setup(
                    "the file that sslrootcert (or PGSSLROOTCERT) names holds no CA certificate \
                     (no BEGIN CERTIFICATE block)"
                        .into(),
                ));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(DbError::Setup(
                    "sslmode verify-ca/verify-full needs CA certificates and the system has \
                     none; set PGSSLROOTCERT to a PEM file"
                        .into(),
                ));
            }
        }
    }
    Ok(roots)
}

/// The contents of the regular file at `path`, if it holds at most `limit` bytes. A path from
/// the environment may name anything: /dev/zero never ends, and a FIFO blocks the open itself.
fn read_bounded(path: &std::path::Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Error, ErrorKind, Read};
    if !std::fs::metadata(path)?.is_file() {
        return Err(Error::new(ErrorKind::InvalidInput, "not a regular file"));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(limit + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("larger than {} MiB", limit >> 20),
        ));
    }
    Ok(bytes)
}

/// Accepts any certificate, still checking that the server holds its key: encryption without
/// authentication, as libpq's `require` does.
#[derive(Debug)]
struct Unverified(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// verify-ca: a trusted chain is required, the name on it is not checked.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

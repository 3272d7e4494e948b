//! PostgreSQL through a bb8 pool of tokio-postgres connections, over rustls. Talking to
//! Postgres directly, each connection prepares the search once and reuses it; through PgBouncer
//! in transaction mode, every query is a single unnamed statement instead.

mod lanes;
mod pool;
mod tls;

use super::{
    AuthorRange, Book, Cursor, DbError, PAGE_SIZE, PoolStatus, Position, SCHEMA, SchemaChanges,
    Timing, synthetic,
};
use crate::config::{PoolConfig, PostgresUrl};
use crate::fold::fold;
use bb8::{Pool, PooledConnection, RunError};
use bb8_postgres::PostgresConnectionManager;
use futures_util::{FutureExt, SinkExt};
use lanes::{Lanes, Place, Seat};
use pool::{
    GENERIC_PLANS, Manager, PoolError, Shared, Sink, classify, connection_lost, statements_not_kept,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tls::tls;
use tokio::time::Instant;
use tokio_postgres::Client;
use tokio_postgres::types::{ToSql, Type};
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

/// A search's first page: the books whose search key is in [$1, $2), in the index's order, up to
/// $3 of them. Public (as `db::POSTGRES_FIRST_PAGE`) for the benchmarks, which must run the
/// very SQL Penny prepares.
pub const FIRST: &str = r#"SELECT coalesce(isbn, ''), coalesce(author, ''), coalesce(title, '')
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

/// The queries running at once, per connection in the pool (see `lanes`): 160 with the default
/// pool of 10, enough for 256 connections on this 2-core machine to keep PostgreSQL busy.
const LANE_DEPTH: u32 = 16;

/// The queries a connection carries before another is opened, while the pool has one left:
/// 16 requests at once share two connections. Measured on a 2-core machine against 2, 4 and 16:
/// fewer leaves one PostgreSQL process doing all the work; more, each query waits longer.
const LANE_SPREAD: u32 = 8;

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
        let mut deadline = None;
        loop {
            let asked = Instant::now();
            let $conn = $db.seat().await?;
            let seated = Instant::now();
            // Set once: a second try has what is left of the first one's time.
            let deadline = *deadline.get_or_insert_with(|| seated + $db.query_timeout);
            let answer = $db.within_deadline(&$conn, deadline, $query).await;
            Timing::add(seated - asked, seated.elapsed());
            match answer? {
                Err(err)
                    if !retried
                        && ($conn.cancelled_for_another(&err) || $db.worth_a_retry(&err)) =>
                {
                    retried = true
                }
                result => break result.map_err(classify),
            }
        }
    }};
}

/// A pool of PostgreSQL connections. Cheap to clone.
#[derive(Clone)]
pub struct PostgresDb {
    pool: Pool<Manager>,
    lanes: Arc<Lanes>,
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
        // Through PgBouncer in transaction mode, each query is a transaction of its own that
        // may go to any server connection: one query per connection at a time.
        let depth = if url.pgbouncer { 1 } else { LANE_DEPTH };
        Ok(PostgresDb {
            pool,
            lanes: Arc::new(Lanes::new(config.size, depth, LANE_SPREAD)),
            shared,
            checkout_timeout: config.checkout_timeout,
            query_timeout: config.query_timeout,
            tls,
            pgbouncer: url.pgbouncer,
        })
    }

    /// Runs `query` on `seat` until `deadline` (the query timeout from the first try). Past it, the server is asked to
    /// cancel the query (it may be waiting on a lock that another session holds), the
    /// connection is drained and left out of the pool (see `Seat::give_up`), and the caller gets
    /// `Unavailable`.
    fn within_deadline<'a, T>(
        &'a self,
        seat: &'a Seat<'_>,
        deadline: Instant,
        query: impl Future<Output = Result<T, tokio_postgres::Error>> + 'a,
    ) -> impl Future<Output = Result<Result<T, tokio_postgres::Error>, DbError>> + 'a {
        // A combinator, not an `async fn`: that would hold `query` twice, as its argument and
        // inside the timeout, and every request's future would carry (and copy) both.
        tokio::time::timeout_at(deadline, query).map(move |answer| {
            answer.map_err(|_| {
                seat.give_up(self.tls.clone(), self.query_timeout);
                let message = format!(
                    "a query ran for longer than {:?} and was cancelled",
                    self.query_timeout
                );
                DbError::Unavailable(message.into())
            })
        })
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
    async fn checkout(&self) -> Result<PooledConnection<'static, Manager>, DbError> {
        let mut failed = self.shared.failures.notify.subscribe();
        let get = self.pool.get_owned();
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

    /// A seat for one query on a connection: on one already carrying queries if it has room,
    /// else on one checked out of the pool. Waits for room at most the checkout timeout.
    async fn seat(&self) -> Result<Seat<'_>, DbError> {
        let room = match self.lanes.try_room() {
            Some(room) => room,
            None => tokio::time::timeout(self.checkout_timeout, self.lanes.room())
                .await
                .map_err(|_| {
                    let waited = self.checkout_timeout;
                    DbError::Unavailable(format!("no database connection within {waited:?}").into())
                })?,
        };
        // Once PgBouncer's transaction mode is found out, one query per connection again.
        let alone = self.shared.unnamed.load(Ordering::Relaxed);
        match self.lanes.place(room, alone) {
            Place::Seat(seat) => Ok(seat),
            // Boxed: opening a lane is rare, and its future is most of a search's size, which
            // every request's future would otherwise carry (and copy).
            Place::Open(opening) => Ok(opening.open(Box::pin(self.checkout()).await?)),
        }
    }

    /// Up to a page and one more row from `position` on, in the query's order (backwards for
    /// `Before`).
    pub async fn search_books(
        &self,
        range: AuthorRange,
        position: Position,
    ) -> Result<Vec<Book>, DbError> {
        with_connection!(self, |conn| conn.search(&range, &position, PAGE_SIZE + 1))
    }

    /// How many books of `range` there are from `from` on (`from` included), up to one more
    /// than COUNT_LIMIT.
    pub async fn count_books(&self, range: AuthorRange, from: Cursor) -> Result<u64, DbError> {
        let rows = with_connection!(self, |conn| conn.count(&range, &from))?;
        let count: i64 = rows.first().map_or(0, |row| row.get(0));
        Ok(count as u64)
    }

    pub async fn explain_search(
        &self,
        range: AuthorRange,
        position: Position,
    ) -> Result<Vec<String>, DbError> {
        let (sql, cursor) = search_sql(&position);
        let limit = (PAGE_SIZE + 1) as i64;
        let key = cursor.map(Cursor::key);
        let params = search_params(&range, &limit, cursor.zip(key.as_ref()));
        let mut values = vec![range.from.clone(), range.to.clone(), limit.to_string()];
        if let Some((cursor, key)) = cursor.zip(key.as_ref()) {
            values.extend([key, &cursor.author, &cursor.title, &cursor.isbn].map(String::clone));
        }
        // E'…' reads the same whatever standard_conforming_strings says.
        let literals: Vec<String> = values
            .iter()
            .map(|value| format!("E'{}'", value.replace('\\', "\\\\").replace('\'', "''")))
            .collect();
        let rows = with_connection!(self, |conn| conn.explain(sql, &params, &literals))?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    pub async fn add_books(&self, books: Vec<Book>) -> Result<(), DbError> {
        let isbns: Vec<&str> = books.iter().map(Book::isbn).collect();
        let authors: Vec<&str> = books.iter().map(Book::author).collect();
        let titles: Vec<&str> = books.iter().map(Book::title).collect();
        let keys: Vec<String> = books.iter().map(|book| fold(book.author())).collect();
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
    pub async fn load_synthetic(&self, count: u64, done: Arc<AtomicU64>) -> Result<(), DbError> {
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
                let key = fold(book.author());
                let line = format!(
                    "{}\t{}\t{}\t{key}\n",
                    book.isbn(),
                    book.author(),
                    book.title()
                );
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

    /// See `Db::pool_status`.
    pub fn pool_status(&self) -> PoolStatus {
        let state = self.pool.state();
        let closed = &state.statistics;
        let (queries, waiting) = self.lanes.queries();
        PoolStatus {
            database: "postgresql",
            size: self.lanes.size(),
            open: state.connections,
            in_use: state.connections - state.idle_connections,
            idle: state.idle_connections,
            queries,
            waiting,
            opened: closed.connections_created,
            closed: closed.connections_closed_broken
                + closed.connections_closed_invalid
                + closed.connections_closed_max_lifetime
                + closed.connections_closed_idle_timeout,
            ..PoolStatus::default()
        }
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

/// One PostgreSQL connection of its own, outside any pool, for `penny pooling`: what the
/// lecture's "new connection per call" and "one global connection" do, with Penny's TLS and
/// settings. Its only query is the search's first page, read-only.
pub struct LoneConnection {
    client: Client,
    /// The search, prepared once, as each of the pool's connections does; None through
    /// PgBouncer in transaction mode, where a statement does not last from one query to the
    /// next, and for a connection opened for one call, which would only pay a round trip more.
    statement: Option<tokio_postgres::Statement>,
    /// Drives the connection; ends once the client is dropped and the server told goodbye.
    connection: tokio::task::JoinHandle<()>,
}

impl LoneConnection {
    /// Connects to `url` within `connect_timeout` (or the URL's own connect_timeout). With
    /// `prepare`, the search is prepared for the calls to come (not through PgBouncer).
    pub async fn open(
        url: &PostgresUrl,
        connect_timeout: Duration,
        prepare: bool,
    ) -> Result<LoneConnection, DbError> {
        let limit = url
            .config
            .get_connect_timeout()
            .copied()
            .unwrap_or(connect_timeout);
        let connect = url.config.connect(tls(url)?);
        let (client, connection) = match tokio::time::timeout(limit, connect).await {
            Ok(connected) => connected.map_err(classify)?,
            Err(_) => {
                let message = format!("no connection to the database within {limit:?}");
                return Err(DbError::Unavailable(message.into()));
            }
        };
        let connection = tokio::spawn(async move {
            // Its error, if any, is the next query's.
            let _ = connection.await;
        });
        let statement = if prepare && !url.pgbouncer {
            // Planned once, as on the pool's connections.
            let _ = client.batch_execute(GENERIC_PLANS).await;
            let prepared = client.prepare_typed(FIRST, &FIRST_TYPES).await;
            Some(prepared.map_err(classify)?)
        } else {
            None
        };
        Ok(LoneConnection {
            client,
            statement,
            connection,
        })
    }

    /// How many books the first page of the search for `range` shows: the query
    /// `Db::search_books` runs first, without its count of the books past the page.
    pub async fn first_page(&self, range: &AuthorRange) -> Result<usize, DbError> {
        let limit = (PAGE_SIZE + 1) as i64;
        let rows = match &self.statement {
            Some(statement) => {
                let params: [&(dyn ToSql + Sync); 3] = [&range.from, &range.to, &limit];
                self.client.query(statement, &params).await
            }
            None => {
                let params = search_params(range, &limit, None);
                self.client.query_typed(FIRST, &params).await
            }
        }
        .map_err(classify)?;
        Ok(rows.len().min(PAGE_SIZE))
    }

    /// Closes the connection and waits until it is closed on this side: the server has been
    /// told, and its process ends with it.
    pub async fn close(self) {
        let LoneConnection {
            client,
            statement,
            connection,
        } = self;
        drop(statement);
        drop(client);
        let _ = connection.await;
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

fn search_sql(position: &Position) -> (&'static str, Option<&Cursor>) {
    match position {
        Position::First => (FIRST, None),
        Position::After(cursor) => (AFTER, Some(cursor)),
        Position::Before(cursor) => (BEFORE, Some(cursor)),
    }
}

pub(super) type Param<'a> = (&'a (dyn ToSql + Sync), Type);

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

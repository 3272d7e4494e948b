//! The connection pool's parts: the bb8 manager that connects (with back-off when the server
//! refuses), the pooled connection with its prepared statements, the state they share, and how a
//! tokio-postgres error is classified.

use super::{
    AFTER, BEFORE, COUNT, CURSOR_TYPES, FIRST, FIRST_TYPES, Param, search_params, search_sql,
};
use crate::db::{AuthorRange, Book, COUNT_LIMIT, Cursor, DbError, Position};
use crate::logging::cause_chain;
use bb8::{ErrorSink, ManageConnection};
use bb8_postgres::PostgresConnectionManager;
use futures_util::TryStreamExt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OnceCell, watch};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::{Client, Row, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

/// The log lines keep the target they had before this module was split out of `postgres`.
pub(super) const TARGET: &str = "penny::db::postgres";

/// A pooled connection and, talking to Postgres directly, its prepared statements: prepared on
/// first use, since `penny init-db` connects before the table they name exists.
pub struct Conn {
    pub(super) client: Client,
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

/// Penny's statements are each one range scan along one index, the best plan whatever their
/// values. PostgreSQL would plan every execution of them anew all the same (a "custom plan":
/// it keeps to those when a generic plan's estimate looks no cheaper), which on a million books
/// cost it as much CPU as running the search. Told to, it plans each statement once per
/// connection. Sent only on a connection that prepares statements, which through PgBouncer
/// (`pgbouncer=true`) none does: there a setting would stay on a server connection that other
/// clients go on to use.
pub(super) const GENERIC_PLANS: &str = "SET plan_cache_mode = force_generic_plan";

struct Statements {
    first: Statement,
    after: Statement,
    before: Statement,
    count: Statement,
}

impl Conn {
    /// Marks the connection so that it takes no new query and the pool closes it.
    pub(super) fn abandon(&self) {
        self.abandoned.store(true, Ordering::Relaxed);
    }

    /// Whether `err` is a cancel another query's deadline caused (see `lanes::Seat::give_up`):
    /// this query did not overrun, and is worth another try on another connection.
    pub(super) fn cancelled_for_another(&self, err: &tokio_postgres::Error) -> bool {
        self.abandoned.load(Ordering::Relaxed) && err.code() == Some(&SqlState::QUERY_CANCELED)
    }

    /// Whether a new query may use this connection: it is open, no query on it was given up
    /// on, and no query anywhere has found its connection cut off since this one was last
    /// known to work (see `Manager::is_valid`, which checks it when it is checked out again).
    pub(super) fn usable(&self) -> bool {
        !self.client.is_closed()
            && !self.abandoned.load(Ordering::Relaxed)
            && self.checked >= self.shared.lost.load(Ordering::Relaxed)
    }

    async fn statements(&self) -> Result<Option<&Statements>, tokio_postgres::Error> {
        if self.shared.unnamed.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let client = &self.client;
        let statements = self
            .statements
            // Boxed: this runs once per connection, and in place it would make every query's
            // future as big as four prepares.
            .get_or_try_init(|| {
                Box::pin(async {
                    // PostgreSQL before 12 has no such setting: it goes on planning each query.
                    let _ = client.batch_execute(GENERIC_PLANS).await;
                    // One after another: one that cannot be prepared (the table is locked, say)
                    // fails the query at once.
                    Ok::<_, tokio_postgres::Error>(Statements {
                        first: client.prepare_typed(FIRST, &FIRST_TYPES).await?,
                        after: client.prepare_typed(AFTER, &CURSOR_TYPES).await?,
                        before: client.prepare_typed(BEFORE, &CURSOR_TYPES).await?,
                        count: client.prepare_typed(COUNT, &CURSOR_TYPES).await?,
                    })
                })
            })
            .await?;
        Ok(Some(statements))
    }

    /// The plan PostgreSQL runs `sql` with on this connection, as EXPLAIN ANALYZE shows it.
    /// EXPLAIN of the statement itself would show a plan made for these values; a connection
    /// that prepares statements runs a generic one (see `GENERIC_PLANS`), so the statement is
    /// prepared here by name and its execution explained. EXECUTE takes no parameters of the
    /// query around it: the values come again as `literals`.
    pub(super) async fn explain(
        &self,
        sql: &str,
        params: &[Param<'_>],
        literals: &[String],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        const EXPLAIN: &str = "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)";
        if self.statements().await?.is_none() {
            return self
                .client
                .query_typed(&format!("{EXPLAIN} {sql}"), params)
                .await;
        }
        // Queries share connections: each explain's statement has a name of its own.
        static EXPLAINED: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "penny_explain_{}",
            EXPLAINED.fetch_add(1, Ordering::Relaxed)
        );
        let types: Vec<&str> = params.iter().map(|(_, ty)| ty.name()).collect();
        let prepare = format!("PREPARE {name} ({}) AS {sql}", types.join(", "));
        self.client.batch_execute(&prepare).await?;
        let explain = format!("{EXPLAIN} EXECUTE {name} ({})", literals.join(", "));
        let rows = self.client.query(&explain, &[]).await;
        let deallocated = self
            .client
            .batch_execute(&format!("DEALLOCATE {name}"))
            .await;
        let rows = rows?;
        deallocated?;
        Ok(rows)
    }

    pub(super) async fn search(
        &self,
        range: &AuthorRange,
        position: &Position,
        limit: usize,
    ) -> Result<Vec<Book>, tokio_postgres::Error> {
        let (sql, cursor) = search_sql(position);
        let key = cursor.map(Cursor::key);
        let rows_wanted = limit as i64;
        let params = search_params(range, &rows_wanted, cursor.zip(key.as_ref()));
        let rows = match self.statements().await? {
            Some(prepared) => {
                let statement = match position {
                    Position::First => &prepared.first,
                    Position::After(_) => &prepared.after,
                    Position::Before(_) => &prepared.before,
                };
                let values = params.iter().map(|(value, _)| *value);
                self.client.query_raw(statement, values).await?
            }
            None => self.client.query_typed_raw(sql, params).await?,
        };
        // Each row becomes a book as it comes, and goes: no Vec of rows.
        let mut rows = std::pin::pin!(rows);
        let mut books = Vec::with_capacity(limit);
        while let Some(row) = rows.try_next().await? {
            books.push(Book::new(
                row.get::<_, Text>(0).0,
                row.get::<_, Text>(1).0,
                row.get::<_, Text>(2).0,
            ));
        }
        Ok(books)
    }
}

impl Conn {
    pub(super) async fn count(
        &self,
        range: &AuthorRange,
        from: &Cursor,
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        let limit = (COUNT_LIMIT + 1) as i64;
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

/// A text value as PostgreSQL sent it, checked as UTF-8. `&str`'s own `FromSql` first compares
/// the type's name with those of three extension types, on every value: 150 times a page.
struct Text<'a>(&'a str);

impl<'a> FromSql<'a> for Text<'a> {
    fn from_sql(
        _: &Type,
        raw: &'a [u8],
    ) -> Result<Text<'a>, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Text(std::str::from_utf8(raw)?))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::TEXT
    }
}

/// bb8-postgres's manager, plus the statements each new connection prepares.
pub(super) struct Manager {
    pub(super) inner: PostgresConnectionManager<MakeRustlsConnect>,
    /// The limit on the whole handshake, not only the TCP connect that tokio-postgres bounds:
    /// a server that accepts and never answers must not hold a pool slot forever.
    pub(super) connect_timeout: Duration,
    pub(super) shared: Arc<Shared>,
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
pub(super) enum PoolError {
    Connect(DbError),
    Closed,
}

/// What the pool, its manager and its connections share.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) failures: ConnectFailures,
    refusals: Refusals,
    /// How many times a query found its connection cut off; see `Manager::is_valid`.
    pub(super) lost: AtomicU64,
    /// No named prepared statements: PgBouncer in transaction mode, said or found out.
    pub(super) unnamed: AtomicBool,
    /// Connections open now, and being opened.
    pub(super) open: AtomicU32,
    pub(super) connecting: AtomicU32,
    /// The pool's size, for the log.
    size: u32,
}

impl Shared {
    pub(super) fn new(pgbouncer: bool, size: u32) -> Shared {
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
                target: TARGET,
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
pub(super) struct ConnectFailures {
    pub(super) notify: watch::Sender<()>,
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
    pub(super) fn last(&self) -> String {
        self.last
            .lock()
            .expect("the lock is never held across a panic")
            .clone()
    }
}

#[derive(Debug, Clone)]
pub(super) struct Sink(pub(super) Arc<Shared>);

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
pub(super) fn connection_lost(err: &tokio_postgres::Error) -> bool {
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
pub(super) fn statements_not_kept(err: &tokio_postgres::Error) -> bool {
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

/// Errors a retry may cure are "unavailable" (see OUTAGE). A database with no books table or
/// search key (a new one, nobody has loaded penny.sql yet) is "not set up": logged once, like an
/// outage, and over once `penny init-db` or penny.sql has run.
pub(super) fn classify(err: tokio_postgres::Error) -> DbError {
    if let Some(db_error) = err.as_db_error()
        && [SqlState::UNDEFINED_TABLE, SqlState::UNDEFINED_COLUMN].contains(db_error.code())
    {
        let message = format!("{}; {}", db_error.message(), crate::db::HOW_TO_SET_UP);
        return DbError::NotSetUp(message.into());
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

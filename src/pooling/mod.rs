//! `penny pooling`: the lecture's lesson, measured on Penny's own search. The search's first
//! page, many times over: on a new connection per call, on one shared connection, through
//! Penny's pool, and through the pool from concurrent tasks; then a table and a chart of it.
//! Read-only, bounded in connections and time, so that it is safe to point at a real database.

mod chart;
mod table;

pub use chart::{LECTURE_BAR, PENNY_BAR, chart_svg};
pub use table::table;

use crate::config::{DatabaseUrl, PoolConfig, PostgresUrl};
use crate::db::{AuthorRange, Db, DbError, LoneConnection, Position};
use crate::logging::cause_chain;
use crate::views::Thousands;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// How many times the lecture called `get_books()` per row.
pub const LECTURE_CALLS: u64 = 10_000;

/// The lecture's table: Python, 10,000 calls each, in seconds.
pub const LECTURE: [(&str, f64); 4] = [
    ("a new connection per call", 236.9),
    ("one global connection", 3.2),
    ("psycopg's pool", 6.7),
    ("SQLAlchemy's pool", 12.2),
];

/// The most calls the new-connection row makes: each one is a server process started and a
/// password exchanged, and a few hundred tell its cost as well as ten thousand. Its time is
/// scaled to the other rows' count.
pub const MOST_NEW_CONNECTIONS: u64 = 500;

/// One way of calling the search: a row of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Way {
    /// Connect, query, close, every call.
    NewConnection,
    /// One connection opened once; the calls one after another on it.
    SharedConnection,
    /// Penny's pool (`Db`), the calls one after another.
    Pool,
    /// Penny's pool shared by this many concurrent tasks.
    PoolTasks(u64),
}

impl Way {
    /// The four rows, in the lecture's order and the order they run in.
    pub fn all(tasks: u64) -> [Way; 4] {
        [
            Way::NewConnection,
            Way::SharedConnection,
            Way::Pool,
            Way::PoolTasks(tasks),
        ]
    }

    pub fn name(&self) -> String {
        match self {
            Way::NewConnection => "a new connection per call".into(),
            Way::SharedConnection => "one shared connection".into(),
            Way::Pool => "Penny's pool, one call at a time".into(),
            Way::PoolTasks(tasks) => format!("Penny's pool, {tasks} tasks at once"),
        }
    }
}

/// Why a row ended before its last call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// Its share of the time budget ran out.
    Budget,
    /// Ctrl-C (or SIGTERM).
    Interrupted,
}

/// When the calls must stop: a deadline, an interruption, or both. Cheap to clone.
#[derive(Clone)]
pub struct Stop {
    deadline: Option<Instant>,
    interrupted: watch::Receiver<bool>,
}

impl Stop {
    /// Never: for a benchmark, which runs every call.
    pub fn never() -> Stop {
        let (_, interrupted) = watch::channel(false);
        Stop {
            deadline: None,
            interrupted,
        }
    }

    /// When `interrupted` turns true.
    pub fn on(interrupted: watch::Receiver<bool>) -> Stop {
        Stop {
            deadline: None,
            interrupted,
        }
    }

    /// The same, and at `deadline` too (or at this one's, if earlier).
    pub fn until(&self, deadline: Instant) -> Stop {
        Stop {
            deadline: Some(self.deadline.map_or(deadline, |own| own.min(deadline))),
            interrupted: self.interrupted.clone(),
        }
    }

    /// Whether the calls must stop now, and why.
    pub fn now(&self) -> Option<Cut> {
        if *self.interrupted.borrow() {
            Some(Cut::Interrupted)
        } else if self
            .deadline
            .is_some_and(|deadline| Instant::now() >= deadline)
        {
            Some(Cut::Budget)
        } else {
            None
        }
    }

    /// Completes when the calls must stop.
    pub async fn reached(&self) -> Cut {
        let mut interrupted = self.interrupted.clone();
        let interrupt = async move {
            loop {
                if *interrupted.borrow_and_update() {
                    return;
                }
                if interrupted.changed().await.is_err() {
                    // Nobody can interrupt any more.
                    std::future::pending::<()>().await;
                }
            }
        };
        let deadline = async {
            match self.deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = interrupt => Cut::Interrupted,
            () = deadline => Cut::Budget,
        }
    }
}

/// What one row's calls came to.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Measurement {
    /// Calls that ended, well or not.
    pub calls: u64,
    /// Calls that failed, or found another number of books than the first call did.
    pub failed: u64,
    /// From the first call to the end of the last.
    pub elapsed: Duration,
    /// The first failure, on one line.
    pub first_error: Option<String>,
    /// Why the row ended early, if it did.
    pub cut: Option<Cut>,
}

impl Measurement {
    fn count(&mut self, answer: Result<usize, String>, expected: usize) {
        self.calls += 1;
        let problem = match answer {
            Ok(found) if found == expected => return,
            Ok(found) => format!("a search found {found} books instead of {expected}"),
            Err(err) => err,
        };
        self.failed += 1;
        self.first_error.get_or_insert(problem);
    }

    /// This and `other`, run at once.
    fn merge(&mut self, other: Measurement) {
        self.calls += other.calls;
        self.failed += other.failed;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.cut = self.cut.or(other.cut);
    }

    /// The time per call; None before any call.
    pub fn per_call(&self) -> Option<Duration> {
        (self.calls > 0).then(|| self.elapsed.div_f64(self.calls as f64))
    }

    /// The seconds `calls` calls would take at this row's pace; None before any call.
    pub fn seconds_for(&self, calls: u64) -> Option<f64> {
        (self.calls > 0).then(|| self.elapsed.as_secs_f64() * calls as f64 / self.calls as f64)
    }
}

/// A `DbError` with its causes on one line (a server's DETAIL and HINT come on lines of
/// their own).
pub fn one_line(err: &DbError) -> String {
    cause_chain(err).lines().collect::<Vec<_>>().join("; ")
}

/// What every row asks, and where: the first page of the search for `author`, which finds
/// `expected` books.
#[derive(Clone, Debug)]
pub struct Target {
    pub url: PostgresUrl,
    pub pool: PoolConfig,
    pub author: String,
    pub expected: usize,
    range: AuthorRange,
}

impl Target {
    /// Asks the database once, on a connection of its own that is closed again: a wrong URL,
    /// an unreachable server or a missing table fails here, before any row, and the search's
    /// answer is learnt, for every later call to be checked against.
    pub async fn check(
        url: &PostgresUrl,
        pool: &PoolConfig,
        author: &str,
    ) -> Result<Target, DbError> {
        let mut target = Target {
            url: url.clone(),
            pool: pool.clone(),
            author: author.to_owned(),
            expected: 0,
            range: AuthorRange::starting_with(author),
        };
        let connection = LoneConnection::open(url, target.connect_timeout(), false).await?;
        let found = connection.first_page(&target.range).await;
        connection.close().await;
        target.expected = found?;
        Ok(target)
    }

    /// As long as Penny's pool gives a connect.
    fn connect_timeout(&self) -> Duration {
        self.pool.checkout_timeout
    }

    /// Penny's pool on this database, with the pool settings from the environment; it
    /// connects on its first call.
    pub async fn open_pool(&self) -> Result<Db, DbError> {
        Db::open(
            &DatabaseUrl::Postgres(Box::new(self.url.clone())),
            &self.pool,
        )
        .await
    }
}

/// Runs `call` one after another while `another` gives one more, until `stop`; counts each
/// in `done`.
async fn in_a_row<F, Fut>(
    mut another: impl FnMut() -> bool,
    expected: usize,
    stop: &Stop,
    done: &AtomicU64,
    mut call: F,
) -> Measurement
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<usize, String>>,
{
    let mut measured = Measurement::default();
    let started = Instant::now();
    while another() {
        if let Some(cut) = stop.now() {
            measured.cut = Some(cut);
            break;
        }
        tokio::select! {
            biased;
            cut = stop.reached() => {
                measured.cut = Some(cut);
                break;
            }
            answer = call() => measured.count(answer, expected),
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
    measured.elapsed = started.elapsed();
    measured
}

/// For `in_a_row`: `calls` calls, then no more.
fn up_to(calls: u64) -> impl FnMut() -> bool {
    let mut left = calls;
    move || {
        let more = left > 0;
        left = left.saturating_sub(1);
        more
    }
}

/// One call through Penny's pool: `Db::search_books`, the very code a search page runs.
async fn search_page(db: &Db, author: &str) -> Result<usize, String> {
    db.search_books(author, &Position::First)
        .await
        .map(|page| page.books.len())
        .map_err(|err| one_line(&err))
}

/// The lecture's first row: every call connects (TCP, TLS as the URL asks, the password), runs
/// the query once and closes the connection before the next call. At most one connection is
/// open at a time.
pub async fn new_connection_each_call(
    target: &Target,
    calls: u64,
    stop: &Stop,
    done: &AtomicU64,
) -> Measurement {
    in_a_row(up_to(calls), target.expected, stop, done, || async {
        let connection = LoneConnection::open(&target.url, target.connect_timeout(), false)
            .await
            .map_err(|err| one_line(&err))?;
        let found = connection.first_page(&target.range).await;
        connection.close().await;
        found.map_err(|err| one_line(&err))
    })
    .await
}

/// The lecture's "global connection": one connection, opened before the clock starts, the
/// search prepared on it once; the calls one after another. Closed before this returns. When
/// it is lost, every later call fails: nothing reconnects it.
pub async fn one_shared_connection(
    target: &Target,
    calls: u64,
    stop: &Stop,
    done: &AtomicU64,
) -> Measurement {
    let connection = match LoneConnection::open(&target.url, target.connect_timeout(), true).await {
        Ok(connection) => connection,
        Err(err) => {
            let mut failed = Measurement::default();
            failed.count(Err(one_line(&err)), target.expected);
            return failed;
        }
    };
    let measured = in_a_row(up_to(calls), target.expected, stop, done, || async {
        connection
            .first_page(&target.range)
            .await
            .map_err(|err| one_line(&err))
    })
    .await;
    connection.close().await;
    measured
}

/// Penny's pool, as a quiet Penny uses it: the calls one after another through
/// `Db::search_books`, the very code a search page runs.
/// (Any `Db`: the benchmarks run it on SQLite too.) `expected` is the books each call must find.
pub async fn pool_in_a_row(
    db: &Db,
    author: &str,
    expected: usize,
    calls: u64,
    stop: &Stop,
    done: &AtomicU64,
) -> Measurement {
    in_a_row(up_to(calls), expected, stop, done, || {
        search_page(db, author)
    })
    .await
}

/// Penny's pool as a busy Penny uses it: `tasks` tasks at once, each taking the next call until
/// `calls` have been taken. The pool opens as many connections as it needs, never more than its
/// size.
pub async fn pool_from_tasks(
    db: &Db,
    author: &str,
    expected: usize,
    calls: u64,
    tasks: u64,
    stop: &Stop,
    done: &Arc<AtomicU64>,
) -> Measurement {
    let taken = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks.max(1))
        .map(|_| {
            let (db, author) = (db.clone(), author.to_owned());
            let (stop, done, taken) = (stop.clone(), done.clone(), taken.clone());
            tokio::spawn(async move {
                // Each task takes the next call while there is one left.
                let another = || taken.fetch_add(1, Ordering::Relaxed) < calls;
                in_a_row(another, expected, &stop, &done, || {
                    search_page(&db, &author)
                })
                .await
            })
        })
        .collect();
    let mut measured = Measurement::default();
    for handle in handles {
        match handle.await {
            Ok(task) => measured.merge(task),
            Err(err) => {
                measured.failed += 1;
                measured
                    .first_error
                    .get_or_insert_with(|| format!("a task failed: {err}"));
            }
        }
    }
    measured.elapsed = started.elapsed();
    measured
}

/// What `penny pooling` is asked to do.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Calls per row (the new-connection row makes at most `MOST_NEW_CONNECTIONS`).
    pub calls: u64,
    /// Concurrent tasks in the last row.
    pub tasks: u64,
    /// The whole run's time; each row gets an equal share of what is left when it starts.
    pub budget: Duration,
}

/// One row as it ran.
#[derive(Clone, Debug)]
pub struct RowResult {
    pub way: Way,
    /// The calls it was to make.
    pub planned: u64,
    /// None when it never started (interrupted before).
    pub measured: Option<Measurement>,
}

/// The whole run: what was measured, and of what.
#[derive(Clone, Debug)]
pub struct Report {
    pub author: String,
    pub expected: usize,
    /// The calls each row stands for.
    pub calls: u64,
    /// "PostgreSQL database D on H:P as U": never the password.
    pub place: String,
    pub pgbouncer: bool,
    pub pool_size: u32,
    pub rows: Vec<RowResult>,
}

impl Report {
    /// Whether Ctrl-C stopped a row, or came between two (a row never started otherwise).
    pub fn interrupted(&self) -> bool {
        self.rows.iter().any(|row| match &row.measured {
            Some(measured) => measured.cut == Some(Cut::Interrupted),
            None => true,
        })
    }

    /// How many calls failed, in all.
    pub fn failed(&self) -> u64 {
        self.measured().map(|(_, m)| m.failed).sum()
    }

    /// The first failure of the first row with one.
    pub fn first_error(&self) -> Option<&str> {
        self.measured().find_map(|(_, m)| m.first_error.as_deref())
    }

    /// The rows that ran, with what they measured.
    pub fn measured(&self) -> impl Iterator<Item = (&RowResult, &Measurement)> {
        self.rows
            .iter()
            .filter_map(|row| Some((row, row.measured.as_ref()?)))
    }

    /// The seconds the new-connection row takes for `calls`, the yardstick of every speed-up.
    fn baseline(&self, calls: u64) -> Option<f64> {
        self.measured()
            .find(|(row, _)| row.way == Way::NewConnection)
            .and_then(|(_, m)| m.seconds_for(calls))
    }
}

/// Runs the four rows one after another, within `settings.budget` and until `stop`, each
/// row's connections closed before the next starts: at most the pool's size open at once
/// (and one more for a moment while a closed one's server process ends). Shows its progress
/// on stderr through `progress`.
pub async fn run(
    target: &Target,
    settings: &Settings,
    stop: &Stop,
    progress: &Progress,
) -> Result<Report, DbError> {
    let ways = Way::all(settings.tasks);
    let end = Instant::now() + settings.budget;
    let mut rows: Vec<RowResult> = ways
        .iter()
        .map(|&way| RowResult {
            way,
            planned: match way {
                Way::NewConnection => settings.calls.min(MOST_NEW_CONNECTIONS),
                _ => settings.calls,
            },
            measured: None,
        })
        .collect();
    // Opened once for its two rows, and only after the shared connection has closed.
    let mut db = None;
    let count = rows.len();
    for (index, row) in rows.iter_mut().enumerate() {
        if stop.now() == Some(Cut::Interrupted) {
            break;
        }
        // An equal share of the time left: a row that ends early leaves more to the next.
        let now = Instant::now();
        let share = end.saturating_duration_since(now) / (count - index) as u32;
        let row_stop = stop.until(now + share);
        let done = Arc::new(AtomicU64::new(0));
        let shown = progress.row(index + 1, count, &row.way.name(), row.planned, done.clone());
        let calls = row.planned;
        let measured = match row.way {
            Way::NewConnection => new_connection_each_call(target, calls, &row_stop, &done).await,
            Way::SharedConnection => one_shared_connection(target, calls, &row_stop, &done).await,
            Way::Pool | Way::PoolTasks(_) => {
                if db.is_none() {
                    db = Some(target.open_pool().await?);
                }
                let db = db.as_ref().expect("opened just above");
                let (author, expected) = (&target.author, target.expected);
                match row.way {
                    Way::PoolTasks(tasks) => {
                        pool_from_tasks(db, author, expected, calls, tasks, &row_stop, &done).await
                    }
                    _ => pool_in_a_row(db, author, expected, calls, &row_stop, &done).await,
                }
            }
        };
        shown.finish().await;
        row.measured = Some(measured);
    }
    Ok(Report {
        author: target.author.clone(),
        expected: target.expected,
        calls: settings.calls,
        place: target.url.describe(),
        pgbouncer: target.url.pgbouncer,
        pool_size: target.pool.size,
        rows,
    })
}

/// How the rows' progress is shown on stderr: a bar on a terminal, else a line when a row
/// starts and at every tenth of it (a log, or a test, reads those better).
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    terminal: bool,
}

impl Progress {
    /// A bar when stderr is a terminal.
    pub fn on_stderr() -> Progress {
        Progress {
            terminal: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        }
    }

    /// Shows row `index` of `count` until `RowProgress::finish`.
    fn row(
        &self,
        index: usize,
        count: usize,
        name: &str,
        calls: u64,
        done: Arc<AtomicU64>,
    ) -> RowProgress {
        let label = format!("row {index} of {count}, {name}");
        // Short enough for an 80-column terminal, Heroku's too.
        let short = format!("{index}/{count} {name}");
        let terminal = self.terminal;
        let task = tokio::spawn(async move {
            let tick = Duration::from_millis(100);
            if terminal {
                // Cleared when the row ends, so that the table stands alone.
                let bar = crate::progress::Bar::new(
                    calls,
                    "{msg} {bar:20} {human_pos}/{human_len} {elapsed}",
                );
                bar.set_message(short);
                loop {
                    bar.set_position(done.load(Ordering::Relaxed));
                    tokio::time::sleep(tick).await;
                }
            } else {
                let say = |line: String| {
                    let _ = writeln!(std::io::stderr(), "penny: {line}");
                };
                say(format!("{label}: {} calls", Thousands(calls)));
                let mut reported = 0;
                loop {
                    let calls_done = done.load(Ordering::Relaxed);
                    let tenths = calls_done * 10 / calls.max(1);
                    if tenths > reported && tenths < 10 {
                        reported = tenths;
                        say(format!("{label}: {} calls made", Thousands(calls_done)));
                    }
                    tokio::time::sleep(tick).await;
                }
            }
        });
        RowProgress { task }
    }
}

/// A row's progress on show.
struct RowProgress {
    task: tokio::task::JoinHandle<()>,
}

impl RowProgress {
    async fn finish(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Seconds in the unit that reads best: (236.9, "s"), (12.3, "ms"), (981.0, "µs").
fn in_unit(seconds: f64) -> (f64, &'static str) {
    if seconds >= 1.0 {
        (seconds, "s")
    } else if seconds >= 1e-3 {
        (seconds * 1e3, "ms")
    } else {
        (seconds * 1e6, "µs")
    }
}

/// A duration as a person reads it: 236.9 s, 3.20 s, 981 µs, 52.1 µs.
pub fn human_seconds(seconds: f64) -> String {
    let (value, unit) = in_unit(seconds);
    let decimals = if value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    format!("{value:.decimals$} {unit}")
}

/// Reads `--budget`: seconds, with an optional unit: `90`, `90s`, `1.5m`.
pub fn parse_budget(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.strip_suffix('m') {
        Some(minutes) => (minutes, 60.0),
        None => (text.strip_suffix('s').unwrap_or(text), 1.0),
    };
    let problem = || format!("{text:?} is not a time: write seconds, as 60, 60s or 1.5m");
    let seconds: f64 = number.trim().parse().map_err(|_| problem())?;
    if !(seconds.is_finite() && seconds > 0.0 && seconds * unit <= 86_400.0) {
        return Err(format!("{text:?} is not a time budget from 1 ms to a day"));
    }
    Duration::try_from_secs_f64(seconds * unit).map_err(|_| problem())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_is_seconds_or_minutes() {
        assert_eq!(parse_budget("60"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_budget(" 2.5s "), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_budget("1.5m"), Ok(Duration::from_secs(90)));
        for bad in ["", "s", "-1", "0", "NaN", "inf", "1h", "100000m"] {
            assert!(parse_budget(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(human_seconds(236.9), "237 s");
        assert_eq!(human_seconds(3.2), "3.20 s");
        assert_eq!(human_seconds(0.000_981), "981 µs");
        assert_eq!(human_seconds(0.012_34), "12.3 ms");
    }

    #[test]
    fn a_row_scales_its_time_to_the_calls_it_stands_for() {
        let measured = Measurement {
            calls: 500,
            elapsed: Duration::from_secs(5),
            ..Measurement::default()
        };
        assert_eq!(measured.seconds_for(10_000), Some(100.0));
        assert_eq!(measured.per_call(), Some(Duration::from_millis(10)));
        assert_eq!(Measurement::default().seconds_for(10), None);
    }

    #[test]
    fn a_wrong_answer_counts_as_a_failure() {
        let mut measured = Measurement::default();
        measured.count(Ok(2), 2);
        measured.count(Ok(1), 2);
        measured.count(Err("gone".into()), 2);
        assert_eq!((measured.calls, measured.failed), (3, 2));
        assert_eq!(
            measured.first_error.as_deref(),
            Some("a search found 1 books instead of 2")
        );
    }
}

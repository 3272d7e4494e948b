//! The `penny` command: parse the command line, then serve, search or load the schema.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use penny::clock::Clock;
use penny::config::{Config, DatabaseUrl, PoolConfig};
use penny::db::{Db, Position};
use penny::routes::App;
use penny::server::{self, ServerOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tracing_subscriber::EnvFilter;

/// What `penny --help` lists under its commands: every setting Penny reads, with its default.
const ENVIRONMENT: &str = "\
Environment:
  DATABASE_URL              postgres://user:password@host/db, sqlite:///abs/path.sqlite or
                            sqlite://relative.sqlite [unset: the bundled demo]
  PORT                      listen on 0.0.0.0:PORT [unset: 127.0.0.1:8000]
  PENNY_POOL_SIZE           most database connections per process [10]
  PENNY_POOL_TIMEOUT_SECS   longest wait for a free connection [3]
  PENNY_POOL_IDLE_SECS      an unused connection is closed after [300]
  PENNY_POOL_LIFETIME_SECS  every connection is replaced after [1800]
  PENNY_QUERY_TIMEOUT_SECS  longest a query may run or wait for a lock [5]
  PENNY_MAX_IN_FLIGHT       most requests handled at once; more get 503 [1024]
  PENNY_LOG_QUEUE_LINES     log lines held while stdout is slow [16384]
  PENNY_PGBOUNCER           true when DATABASE_URL leads to PgBouncer in transaction mode
  PENNY_HTTPS_ONLY          redirect http to https and send HSTS, behind a proxy that sets
                            X-Forwarded-Proto [true on Heroku (DYNO set), else false]
  PENNY_POOL_VIEW           show the connection pool's counts at /api/pool [true]
  PGSSLMODE, PGSSLROOTCERT  PostgreSQL TLS, as libpq reads them [prefer, the system's CAs]
  TZ                        the clock's time zone, by IANA name [the system's]
  RUST_LOG                  log level and filters [info]";

/// Penny: find books by author, on the bundled demo, a SQLite file or PostgreSQL.
#[derive(Parser)]
#[command(
    name = "penny",
    version,
    args_conflicts_with_subcommands = true,
    after_help = ENVIRONMENT
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the web app (what `penny` alone does).
    Serve(ServeArgs),
    /// Print the books whose author starts with AUTHOR, as the search page would list them.
    Books {
        /// The start of the author's name; case and accents are ignored.
        author: String,
    },
    /// Add COUNT synthetic books (the same ones every time) to the database DATABASE_URL names,
    /// for load tests. Books already there are kept.
    LoadSynthetic {
        /// How many books, e.g. 1000000.
        count: u64,
    },
    /// Set up the database DATABASE_URL names, or bring it up to date: penny.sql where there is
    /// no books table yet (a SQLite file is created if needed), the schema migrations where
    /// there is one, and the search key of every book added by hand. No book is lost.
    InitDb {
        /// Drop the books table and load penny.sql as it is, demo books and all.
        #[arg(long)]
        reset: bool,
    },
    /// The lecture's pooling table, timed on the PostgreSQL database DATABASE_URL names.
    ///
    /// The search's first page, with a new connection per call, on one shared connection,
    /// through Penny's pool, and through the pool from concurrent tasks: a table beside the
    /// lecture's Python figures. Read-only, at most PENNY_POOL_SIZE + 1 connections at once,
    /// within --budget; Ctrl-C prints the table so far. Exits 0 when every call succeeded.
    Pooling(PoolingArgs),
}

#[derive(Args)]
struct PoolingArgs {
    /// Whose books to search for: the start of an author's name.
    #[arg(long, default_value = "ker")]
    author: String,
    /// Calls per row (a new connection per call makes at most 500, its time scaled).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    calls: u64,
    /// Concurrent tasks sharing the pool in the last row.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    tasks: u64,
    /// The whole run's time, shared among the rows, in seconds (60, 60s, 1.5m); a row that
    /// runs out makes fewer calls and scales its time.
    #[arg(long, default_value = "60s", value_parser = penny::pooling::parse_budget)]
    budget: std::time::Duration,
    /// Also draw the table as a bar chart into FILE, an SVG.
    #[arg(long, value_name = "FILE")]
    svg: Option<std::path::PathBuf>,
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on [default: 0.0.0.0:$PORT when PORT is set, else 127.0.0.1:8000]
    #[arg(long, value_name = "ADDR")]
    bind: Option<SocketAddr>,
}

/// `println!` without its panic: a closed stdout (`penny serve | true`) is no reason for Penny
/// to stop, since what it says there only reports on its work.
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// Threads for blocking work beyond one per pooled connection: SQLite's calls run on the
/// blocking pool, on one thread per connection at most (see `db/sqlite/queue.rs`).
/// tokio's default allows 512; under 256 connections Penny ran 80, each with its own stack and
/// glibc arena, for no more requests a second.
const SPARE_BLOCKING_THREADS: usize = 4;

/// The settings from the environment, as read at start; each command reports an error in them.
type Settings = Result<Config, penny::config::ConfigError>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    limit_malloc_arenas();
    // Read once, here, since the runtime is sized by them; an error in them is reported by the
    // command that needs them, where it always was.
    let config = Config::from_env();
    let pool_size = config
        .as_ref()
        .map_or(PoolConfig::default().size, |config| config.pool.size);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(pool_size as usize + SPARE_BLOCKING_THREADS)
        .enable_all()
        .build()
        .expect("a tokio runtime can start on any supported OS");
    let result = runtime.block_on(async {
        match cli.command {
            None => serve(cli.serve, config).await,
            Some(Command::Serve(args)) => serve(args, config).await,
            Some(Command::Books { author }) => books(&author, config).await,
            Some(Command::InitDb { reset }) => init_db(reset, config).await,
            Some(Command::LoadSynthetic { count }) => load_synthetic(count, config).await,
            Some(Command::Pooling(args)) => return pooling(args, config).await,
        }
        .map(|()| ExitCode::SUCCESS)
    });
    // Every database call has ended by now (see `serve`); the blocking pool's threads are
    // idle, and are given a moment to end before the process does.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(code) => code,
        Err(err) => {
            // Not eprintln!: a closed stderr must not turn a failure into a panic.
            let _ = writeln!(std::io::stderr(), "penny: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// glibc gives each thread that allocates an arena of its own, up to eight per core, and each
/// keeps what it once held: under load that was a third of Penny's memory. Two arenas serve a
/// runtime of two worker threads as well (measured: the same requests a second).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    // SAFETY: mallopt only sets a parameter of the allocator, before any thread is started.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

async fn serve(args: ServeArgs, config: Settings) -> anyhow::Result<()> {
    let config = config?;
    // Log lines go through a bounded queue to a thread of their own, which writes whatever has
    // queued up in one system call: no request waits on stdout, and a busy server does not make
    // one write per line. See `penny::logging::LogWriter` for what happens when stdout stalls.
    // An unset RUST_LOG means info; one that cannot be read is said once, below.
    let filter = match std::env::var_os("RUST_LOG") {
        None => Ok(EnvFilter::new("info")),
        Some(_) => EnvFilter::try_from_default_env(),
    };
    let filter_problem = filter.as_ref().err().map(ToString::to_string);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let (log_writer, _flush_on_exit) =
        penny::logging::writer(std::io::stdout(), ansi, config.log_queue_lines)
            .context("cannot start the log writer")?;
    penny::logging::format(ansi)
        .with_env_filter(filter.unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(log_writer)
        .init();

    let (clock, clock_warning) = Clock::from_tz(std::env::var("TZ").ok().as_deref());
    let db = Db::open(&config.database, &config.pool).await?;
    let bind = args.bind.unwrap_or(config.bind);
    let listener = server::bind(bind).with_context(|| format!("cannot listen on {bind}"))?;
    let addr = listener
        .local_addr()
        .context("the listener has an address")?;
    let shutdown = shutdown_signal();
    say!(
        "Penny is serving {} on http://{addr}",
        config.database.describe()
    );
    if addr.ip().is_unspecified() {
        say!(
            "(every interface: from this machine, open http://localhost:{})",
            addr.port()
        );
    }
    // Logged after the banner, which stays the first line.
    if let Some(problem) = filter_problem {
        tracing::warn!("RUST_LOG is not a filter Penny can read ({problem}); logging at info");
    }
    if let Some(warning) = clock_warning {
        tracing::warn!("{warning}");
    }

    // Open the first connection now, so the first visitor does not wait for it and a database
    // that cannot be reached is reported in the log right away (Penny serves 503s meanwhile).
    // Then look out for books added by hand, which no search finds until `penny init-db`.
    if config.database != DatabaseUrl::Bundled {
        let db = db.clone();
        tokio::spawn(async move {
            let _ = db.ping().await;
            db.watch_unsearchable_books(UNSEARCHABLE_CHECK_INTERVAL)
                .await;
        });
    }
    let app = Arc::new(App {
        db: db.clone(),
        clock,
        https_only: config.https_only,
        pool_view: config.pool_view,
    });
    let options = ServerOptions {
        max_in_flight: config.max_in_flight,
        ..ServerOptions::default()
    };
    server::serve(listener, app, options, shutdown).await;
    // A call abandoned by its request (the client left, or the grace period ran out) may still
    // be running on the blocking pool, inside SQLite: let it end before the process does.
    // Each call is bounded by the checkout and query timeouts.
    let limit = config.pool.checkout_timeout + config.pool.query_timeout;
    if !db.close(limit).await {
        tracing::warn!(
            "database calls were still running {limit:?} after shutdown; exiting anyway"
        );
    }
    Ok(())
}

/// How often a server looks for books that have no search key.
const UNSEARCHABLE_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

/// Completes on the first SIGTERM (what Heroku and Docker send), SIGINT (Ctrl-C) or SIGHUP (a
/// closed terminal, or a process manager's reload). Each drains the same way: Penny has no
/// configuration to reload, and dying with requests in flight is never what is wanted. Later
/// signals are caught too, so a second one cannot cut the drain short. SIGQUIT keeps its
/// default, to stop a stuck Penny at once. The handlers are installed when this is called, not
/// when it is first awaited: called before the banner, a signal sent as soon as Penny says it
/// serves is a graceful shutdown, never a kill.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate =
        signal(SignalKind::terminate()).expect("a SIGTERM handler can be installed at start-up");
    let mut interrupt =
        signal(SignalKind::interrupt()).expect("a SIGINT handler can be installed at start-up");
    let mut hangup =
        signal(SignalKind::hangup()).expect("a SIGHUP handler can be installed at start-up");
    async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
            _ = interrupt.recv() => tracing::info!("SIGINT received"),
            _ = hangup.recv() => tracing::info!("SIGHUP received"),
        }
    }
}

/// The start of an author's name as a search takes it, or why it cannot be one.
fn checked_author(author: &str) -> anyhow::Result<&str> {
    let author = author.trim();
    anyhow::ensure!(
        !penny::fold::fold(author).is_empty(),
        "please give the start of an author's name"
    );
    anyhow::ensure!(
        author.chars().count() <= penny::input::MAX_AUTHOR_CHARS,
        "an author name can be at most {} characters long",
        penny::input::MAX_AUTHOR_CHARS
    );
    Ok(author)
}

async fn books(author: &str, config: Settings) -> anyhow::Result<()> {
    let author = checked_author(author)?;
    let config = config?;
    let db = Db::open(&config.database, &config.pool).await?;
    let mut out = std::io::stdout().lock();
    let mut position = Position::First;
    let mut printed = false;
    let written = loop {
        let page = db.search_books(author, &position).await?;
        let lines = page.books.iter().try_for_each(|book| {
            printed = true;
            writeln!(out, "{}\t{}\t{}", book.isbn(), book.author(), book.title())
        });
        match (lines, page.next) {
            (Ok(()), Some(last)) => position = Position::After(last),
            (result, _) => break result,
        }
    };
    let written = written.and_then(|()| {
        if printed {
            Ok(())
        } else {
            writeln!(out, "(None)")
        }
    });
    match written {
        // Piped into `head`, say: the reader has all it wants.
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        result => result.context("cannot write to stdout"),
    }
}

async fn load_synthetic(count: u64, config: Settings) -> anyhow::Result<()> {
    let config = config?;
    let db = Db::open_for_schema(&config.database, &config.pool).await?;
    let started = std::time::Instant::now();
    let done = Arc::new(AtomicU64::new(0));
    let progress = tokio::spawn(show_progress(count, done.clone()));
    let loaded = db.load_synthetic(count, done).await;
    progress.abort();
    let _ = progress.await;
    loaded?;
    say!(
        "{count} synthetic books are in {} ({:.1} s)",
        config.database.describe(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Shows on stderr how many of `count` books are `done`, until aborted: a progress bar on a
/// terminal, otherwise a plain line at every tenth (a log or CI reads those better).
async fn show_progress(count: u64, done: Arc<AtomicU64>) {
    let tick = std::time::Duration::from_millis(100);
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        // Cleared when this task is aborted, so the summary line stands alone.
        let bar = penny::progress::Bar::new(
            count,
            "{bar:40} {human_pos}/{human_len} books, {eta} left {msg}",
        );
        loop {
            let position = done.load(Ordering::Relaxed);
            bar.set_position(position);
            if position >= count {
                bar.set_message("(now the index and statistics)");
            }
            tokio::time::sleep(tick).await;
        }
    } else {
        let mut reported = 0;
        loop {
            let tenths = done.load(Ordering::Relaxed) * 10 / count.max(1);
            if tenths > reported {
                reported = tenths;
                let _ = writeln!(
                    std::io::stderr(),
                    "penny: {} of {count} books written{}",
                    done.load(Ordering::Relaxed).min(count),
                    if tenths >= 10 {
                        "; now the index and statistics"
                    } else {
                        ""
                    }
                );
            }
            tokio::time::sleep(tick).await;
        }
    }
}

async fn init_db(reset: bool, config: Settings) -> anyhow::Result<()> {
    let config = config?;
    if config.database == DatabaseUrl::Bundled {
        // Heroku's release phase runs this on the first deploy, before a database is attached:
        // the demo is what gets served then, and that is no failure.
        say!(
            "No DATABASE_URL is set, so there is nothing to set up: Penny serves its bundled \
             demo (set DATABASE_URL to a sqlite:// file or a PostgreSQL database to set one up)"
        );
        return Ok(());
    }
    let place = config.database.describe();
    let db = Db::open_for_schema(&config.database, &config.pool).await?;
    let changes = db.init_schema(reset).await?;
    if changes.loaded_penny_sql {
        say!("Loaded penny.sql into {place}");
    }
    for migration in &changes.migrations {
        say!("Applied migration {migration}");
    }
    if changes.keys_set > 0 {
        say!("Set the search key of {} books", changes.keys_set);
    }
    say!("The database is ready: {place}");
    Ok(())
}

/// `penny pooling`: exits 0 when every call succeeded, 1 when one failed (or the database
/// cannot be searched at all), 2 without PostgreSQL, 128 + the signal's number when Ctrl-C or
/// SIGTERM stopped it (after the table of what it had).
async fn pooling(args: PoolingArgs, config: Settings) -> anyhow::Result<ExitCode> {
    use penny::pooling::{Progress, Stop, Target};
    // First, so that a Ctrl-C at any moment is this command's to handle.
    let (stop, signal) = interruptions();
    let author = checked_author(&args.author)?;
    let config = config?;
    let DatabaseUrl::Postgres(url) = &config.database else {
        let _ = writeln!(
            std::io::stderr(),
            "penny: `penny pooling` needs PostgreSQL: set DATABASE_URL to a postgres:// URL \
             (it names {})",
            config.database.describe()
        );
        return Ok(ExitCode::from(2));
    };
    let stop = Stop::on(stop);
    let place = url.describe();
    let checked = tokio::select! {
        checked = Target::check(url, &config.pool, author) => checked,
        _ = stop.reached() => return Ok(ExitCode::from(signal.code())),
    };
    let target = match checked {
        Ok(target) => target,
        Err(err) => {
            let why = penny::pooling::one_line(&err);
            let _ = writeln!(std::io::stderr(), "penny: cannot search {place}: {why}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let settings = penny::pooling::Settings {
        calls: args.calls,
        tasks: args.tasks,
        budget: args.budget,
    };
    let report = penny::pooling::run(&target, &settings, &stop, &Progress::on_stderr()).await?;
    say!("{}", penny::pooling::table(&report));
    if let Some(path) = &args.svg {
        let svg = penny::pooling::chart_svg(&report).map_err(anyhow::Error::msg)?;
        std::fs::write(path, svg)
            .with_context(|| format!("cannot write the chart to {}", path.display()))?;
        let _ = writeln!(
            std::io::stderr(),
            "penny: the chart is in {}",
            path.display()
        );
    }
    if report.interrupted() {
        return Ok(ExitCode::from(signal.code()));
    }
    if let Some(first) = report.first_error() {
        let calls: u64 = report.measured().map(|(_, m)| m.calls).sum();
        let _ = writeln!(
            std::io::stderr(),
            "penny: {} of {} calls failed; the first: {first}",
            penny::views::Thousands(report.failed()),
            penny::views::Thousands(calls)
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Which signal stopped `penny pooling`, if one did.
#[derive(Clone, Default)]
struct Signal(Arc<std::sync::atomic::AtomicU8>);

impl Signal {
    /// The exit status for it: 130 for SIGINT, 143 for SIGTERM.
    fn code(&self) -> u8 {
        match self.0.load(Ordering::Relaxed) {
            0 => 130,
            signal => 128 + signal,
        }
    }
}

/// A switch that turns on at the first SIGINT or SIGTERM, and which of them it was.
fn interruptions() -> (tokio::sync::watch::Receiver<bool>, Signal) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt =
        signal(SignalKind::interrupt()).expect("a SIGINT handler can be installed at start-up");
    let mut terminate =
        signal(SignalKind::terminate()).expect("a SIGTERM handler can be installed at start-up");
    let (switch, stopped) = tokio::sync::watch::channel(false);
    let which = Signal::default();
    let seen = which.clone();
    tokio::spawn(async move {
        let number = tokio::select! {
            _ = interrupt.recv() => libc::SIGINT,
            _ = terminate.recv() => libc::SIGTERM,
        };
        seen.0.store(number as u8, Ordering::Relaxed);
        let _ = switch.send(true);
        // Later signals are caught too: the table of what was measured is still to come.
        loop {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        }
    });
    (stopped, which)
}

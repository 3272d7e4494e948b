//! The `penny` command: parse the command line, then serve, search or load the schema.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use penny::clock::Clock;
use penny::config::{Config, DatabaseUrl};
use penny::db::{Db, Position};
use penny::routes::App;
use penny::server::{self, ServerOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use tracing_subscriber::EnvFilter;

/// Penny: find books by author. Reads DATABASE_URL (unset: the bundled demo), PORT and RUST_LOG.
#[derive(Parser)]
#[command(name = "penny", version, args_conflicts_with_subcommands = true)]
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
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on [default: 0.0.0.0:$PORT when PORT is set, else 127.0.0.1:8000]
    #[arg(long, value_name = "ADDR")]
    bind: Option<SocketAddr>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime can start on any supported OS");
    let result = runtime.block_on(async {
        match cli.command {
            None => serve(cli.serve).await,
            Some(Command::Serve(args)) => serve(args).await,
            Some(Command::Books { author }) => books(&author).await,
            Some(Command::InitDb { reset }) => init_db(reset).await,
            Some(Command::LoadSynthetic { count }) => load_synthetic(count).await,
        }
    });
    // Blocking-pool threads idle in r2d2 must not hold the exit up.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("penny: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = Config::from_env()?;
    // Log lines go through a channel to a thread of their own, which writes whatever has queued
    // up in one system call: no request waits on stdout, and a busy server does not make one
    // write per line.
    let buffered_stdout = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout());
    let (log_writer, _flush_on_exit) = tracing_appender::non_blocking(buffered_stdout);
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(log_writer)
        .fmt_fields(penny::logging::fields())
        .with_timer(penny::logging::Timestamp)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();

    let (clock, clock_warning) = Clock::from_tz(std::env::var("TZ").ok().as_deref());
    let db = Db::open(&config.database, &config.pool).await?;
    let bind = args.bind.unwrap_or(config.bind);
    let listener = server::bind(bind).with_context(|| format!("cannot listen on {bind}"))?;
    let addr = listener
        .local_addr()
        .context("the listener has an address")?;
    let shutdown = shutdown_signal();
    println!(
        "Penny is serving {} on http://{addr}",
        config.database.describe()
    );
    if addr.ip().is_unspecified() {
        println!(
            "(every interface: from this machine, open http://localhost:{})",
            addr.port()
        );
    }
    // Logged after the banner, which stays the first line.
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
    let app = Arc::new(App { db, clock });
    let options = ServerOptions {
        max_in_flight: config.max_in_flight,
        ..ServerOptions::default()
    };
    server::serve(listener, app, options, shutdown).await;
    Ok(())
}

/// How often a server looks for books that have no search key.
const UNSEARCHABLE_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

/// Completes on the first SIGTERM (what Heroku and Docker send) or SIGINT (Ctrl-C). Later
/// signals are caught too, so a second SIGTERM cannot cut the drain short. The handlers are
/// installed when this is called, not when it is first awaited: called before the banner, a
/// signal sent as soon as Penny says it serves is a graceful shutdown, never a kill.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate =
        signal(SignalKind::terminate()).expect("a SIGTERM handler can be installed at start-up");
    let mut interrupt =
        signal(SignalKind::interrupt()).expect("a SIGINT handler can be installed at start-up");
    async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
            _ = interrupt.recv() => tracing::info!("SIGINT received"),
        }
    }
}

async fn books(author: &str) -> anyhow::Result<()> {
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
    let config = Config::from_env()?;
    let db = Db::open(&config.database, &config.pool).await?;
    let mut out = std::io::stdout().lock();
    let mut position = Position::First;
    let mut printed = false;
    let written = loop {
        let page = db.search_books(author, &position).await?;
        let lines = page.books.iter().try_for_each(|book| {
            printed = true;
            writeln!(out, "{}\t{}\t{}", book.isbn, book.author, book.title)
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

async fn load_synthetic(count: u64) -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let db = Db::open_for_schema(&config.database, &config.pool).await?;
    let started = std::time::Instant::now();
    db.load_synthetic(count).await?;
    println!(
        "{count} synthetic books are in {} ({:.1} s)",
        config.database.describe(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn init_db(reset: bool) -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let place = config.database.describe();
    let db = Db::open_for_schema(&config.database, &config.pool).await?;
    let changes = db.init_schema(reset).await?;
    if changes.loaded_penny_sql {
        println!("Loaded penny.sql into {place}");
    }
    for migration in &changes.migrations {
        println!("Applied migration {migration}");
    }
    if changes.keys_set > 0 {
        println!("Set the search key of {} books", changes.keys_set);
    }
    println!("The database is ready: {place}");
    Ok(())
}

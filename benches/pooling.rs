//! The lecture's table, for Penny: how long the author search takes 10,000 times in a row
//!
//! - (a) with a new tokio-postgres connection per call (connect, query, drop),
//! - (b) on one shared connection,
//! - (c) through Penny's bb8 pool (`penny::db::Db` on a postgres:// URL), new with one
//!   connection open; (c′) again once (e) has opened all its connections; (c″) as (c) on a
//!   current-thread runtime, to show what the multi-thread runtime's hops cost,
//! - (d) through Penny's SQLite pool (`Db` on a sqlite:// file),
//! - (e) the same 10,000 spread over 16 concurrent tasks on the bb8 pool,
//! - (f) pgbench running Penny's exact first-page query, with 1 and with 16 clients,
//!
//! and how (c) and (e) compare with (f). Everything but (c″) runs in tasks on a multi-thread
//! runtime, as Penny's handlers do. `bench/run.sh` runs it; so can `cargo bench --bench
//! pooling -- search --pg-url … --sqlite-url …`.
//!
//! Three modes, the first argument:
//! - `search` (the default): the table above. Needs `--pg-url` and `--sqlite-url`.
//! - `startup`: the time from spawning `penny` to its first 200 on `/`, `--runs` times.
//! - `table FILE`: renders the records that the other modes (and bench/run.sh) wrote to FILE
//!   as one markdown table: the median of each figure and its spread (min–max).
//!
//! Every option `--name VALUE` can be given as the environment variable `BENCH_NAME` instead
//! (upper case, `-` as `_`): `--new-conn-calls 500` or `BENCH_NEW_CONN_CALLS=500`.
//!
//! The modes print records, one a line, tab-separated, for `table` to read:
//! `row ID PART WHAT BACKEND` defines a line of the table (in order of first appearance),
//! `val ID METRIC VALUE` is one repeat's figure, `target ID METRIC le|ge THRESHOLD` a goal,
//! `meta TEXT` a line above the table. METRIC is one of `rate` (per second), `time_s`,
//! `time_ms`, `p50_ms`, `p99_ms`, `errors`, `rss_mib` and `ratio`.

use penny::config::{DatabaseUrl, PoolConfig};
use penny::db::{AuthorRange, Db, Position};
use penny::pooling::{Measurement, Stop, Target};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

type Error = Box<dyn std::error::Error + Send + Sync>;
type Result<T, E = Error> = std::result::Result<T, E>;

fn main() -> ExitCode {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(err) => {
            eprintln!("pooling: {err}");
            return ExitCode::from(2);
        }
    };
    let result = match args.mode.as_str() {
        "search" => search(&args),
        "startup" => startup(&args),
        "table" => table(&args),
        other => Err(format!("unknown mode {other:?} (search, startup or table)").into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("pooling: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The command line: a mode, positional arguments, and `--name value` options that fall back
/// on `BENCH_NAME` in the environment.
struct Args {
    mode: String,
    positional: Vec<String>,
    options: HashMap<String, String>,
}

impl Args {
    fn parse(raw: impl Iterator<Item = String>) -> Result<Args> {
        let mut positional = Vec::new();
        let mut options = HashMap::new();
        let mut raw = raw.peekable();
        while let Some(arg) = raw.next() {
            if arg == "--bench" {
                // What `cargo bench` adds.
                continue;
            }
            match arg.strip_prefix("--") {
                Some(name) => {
                    let value = raw.next().ok_or(format!("--{name} needs a value"))?;
                    options.insert(name.to_string(), value);
                }
                None => positional.push(arg),
            }
        }
        let mode = if positional.is_empty() {
            "search".to_string()
        } else {
            positional.remove(0)
        };
        Ok(Args {
            mode,
            positional,
            options,
        })
    }

    fn get(&self, name: &str) -> Option<String> {
        self.options.get(name).cloned().or_else(|| {
            let var = format!("BENCH_{}", name.to_ascii_uppercase().replace('-', "_"));
            std::env::var(var).ok().filter(|value| !value.is_empty())
        })
    }

    fn required(&self, name: &str) -> Result<String> {
        self.get(name).ok_or_else(|| {
            let var = format!("BENCH_{}", name.to_ascii_uppercase().replace('-', "_"));
            format!("--{name} (or {var}) is required").into()
        })
    }

    fn number(&self, name: &str, default: u64) -> Result<u64> {
        match self.get(name) {
            None => Ok(default),
            Some(value) => value
                .trim()
                .parse()
                .map_err(|_| format!("--{name} must be a whole number (it is {value:?})").into()),
        }
    }
}

/// Prints one record line for `table`.
fn record(fields: &[&str]) {
    let line = fields.join("\t");
    println!("{line}");
    let _ = std::io::stdout().flush();
}

fn value(id: &str, metric: &str, value: f64) {
    record(&["val", id, metric, &format!("{value}")]);
}

// ---------------------------------------------------------------------------------------------
// search: the lecture's table

struct SearchSettings {
    pg_url: String,
    sqlite_url: String,
    pgbench: Option<String>,
    prefix: String,
    iterations: u64,
    new_conn_calls: u64,
    tasks: u64,
    repeats: u64,
    warmup: u64,
}

fn search(args: &Args) -> Result<()> {
    let s = Arc::new(SearchSettings {
        pg_url: args.required("pg-url")?,
        sqlite_url: args.required("sqlite-url")?,
        pgbench: args.get("pgbench"),
        prefix: args.get("prefix").unwrap_or_else(|| "ker".into()),
        iterations: args.number("iterations", 10_000)?.max(1),
        new_conn_calls: args.number("new-conn-calls", 2_000)?.max(1),
        tasks: args.number("tasks", 16)?.max(1),
        repeats: args.number("repeats", 3)?.max(1),
        warmup: args.number("warmup", 200)?,
    });
    // Penny's own runtime: multi-threaded, one worker per core, every line in a spawned task
    // as Penny's request handlers are. Line (c″) repeats (c) on a single-threaded runtime, to
    // show what the hops between worker threads cost a sequential loop.
    let multi = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let single = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    define_rows(&s);

    let setup = Arc::new(in_task(&multi, Setup::open(s.clone()))?);
    eprintln!(
        "search {:?}: {} rows a call; {} calls a line, {} repeats",
        s.prefix, setup.expected, s.iterations, s.repeats
    );
    let n = s.iterations as f64;
    for repeat in 1..=s.repeats {
        eprintln!("repeat {repeat}/{}", s.repeats);
        let c_secs = in_task(&multi, sequential_lines(s.clone(), setup.clone()))?;
        let (e_secs, c_full_secs) = in_task(&multi, concurrent_line(s.clone(), setup.clone()))?;
        let c_single_secs = in_task(
            &single,
            fresh_pool_line("c-single", s.clone(), setup.expected),
        )?;
        // (f) pgbench, the yardstick, right after: the same query on the same server.
        if let Some(pgbench) = &s.pgbench {
            let script = pgbench_script(&setup.sql);
            let one = run_pgbench(pgbench, &setup, &script, 1, s.iterations)?;
            report("f1", n / one, one);
            let many = run_pgbench(pgbench, &setup, &script, 16, s.iterations)?;
            report("f16", n / many, many);
            value("c", "ratio", c_secs / (n / one));
            value("c-full", "ratio", c_full_secs / (n / one));
            value("c-single", "ratio", c_single_secs / (n / one));
            value("e", "ratio", (n / e_secs) / many);
        }
    }
    // The pools go before the runtimes their connections run on.
    drop(setup);
    Ok(())
}

/// Runs `future` as a task on `runtime` and waits for it.
fn in_task<T: Send + 'static>(
    runtime: &tokio::runtime::Runtime,
    future: impl Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    runtime.block_on(async {
        tokio::spawn(future)
            .await
            .map_err(|err| -> Error { format!("a benchmark task failed: {err}").into() })?
    })
}

fn define_rows(s: &SearchSettings) {
    let count = thousands(s.iterations as f64);
    let a_note = if s.new_conn_calls == s.iterations {
        format!("{count} calls")
    } else {
        format!(
            "ran {} calls; time ×{} for {count}",
            thousands(s.new_conn_calls as f64),
            significant(s.iterations as f64 / s.new_conn_calls as f64)
        )
    };
    let pool_size = pool_config().size;
    let tasks = s.tasks;
    let rows = [
        ("a", format!("(a) new connection per call, {a_note}")),
        ("b", format!("(b) one shared connection, {count} in a row")),
        (
            "c",
            format!(
                "(c) Penny's bb8 pool (`Db`, size {pool_size}, fresh: 1 connection open), \
                 {count} in a row"
            ),
        ),
        (
            "d",
            format!("(d) Penny's SQLite pool (`Db`), {count} in a row"),
        ),
        (
            "e",
            format!("(e) the bb8 pool (size {pool_size}), {count} over {tasks} tasks"),
        ),
        (
            "c-full",
            format!(
                "(c′) the same pool right after (e), all {pool_size} connections open, \
                 {count} in a row"
            ),
        ),
        (
            "c-single",
            format!(
                "(c″) as (c), fresh pool, on a current-thread runtime (for comparison), \
                 {count} in a row"
            ),
        ),
        (
            "f1",
            format!("(f) pgbench -M prepared, 1 client, {count} queries"),
        ),
        (
            "f16",
            format!("(f) pgbench -M prepared, 16 clients -j 2, {count} queries"),
        ),
    ];
    let part = "Pooling: the search (in Rust on tokio's multi-thread runtime, as Penny runs; \
                and pgbench)";
    for (id, what) in &rows {
        if id.starts_with('f') && s.pgbench.is_none() {
            continue;
        }
        let backend = if *id == "d" {
            "SQLite file (the demo books)"
        } else {
            "PostgreSQL (the demo books)"
        };
        record(&["row", id, part, what, backend]);
    }
    if s.pgbench.is_some() {
        record(&["target", "c", "ratio", "le", "1.15"]);
        record(&["target", "c-full", "ratio", "le", "1.15"]);
        record(&["target", "e", "ratio", "ge", "0.9"]);
    }
}

/// The databases and the query, opened on the runtime that will use them.
struct Setup {
    pg_db: Db,
    sqlite_db: Db,
    /// What lines (a) and (b) connect to, with Penny's own TLS and settings.
    target: Target,
    pg_config: tokio_postgres::Config,
    range: AuthorRange,
    sql: String,
    limit: i64,
    /// The answer every line must give: as many rows as Penny's own first page.
    expected: usize,
}

impl Setup {
    async fn open(s: Arc<SearchSettings>) -> Result<Setup> {
        let pool = pool_config();
        let pg_url = DatabaseUrl::parse(Some(&s.pg_url))?;
        let DatabaseUrl::Postgres(postgres_url) = &pg_url else {
            return Err("--pg-url must be a postgres:// URL".into());
        };
        let target = Target::check(postgres_url, &pool, &s.prefix).await?;
        let pg_db = Db::open(&pg_url, &pool).await?;
        let sqlite_db = Db::open(&DatabaseUrl::parse(Some(&s.sqlite_url))?, &pool).await?;
        let first = |db: Db| {
            let prefix = s.prefix.clone();
            async move { Ok::<_, Error>(db.search_books(&prefix, &Position::First).await?) }
        };
        let expected = first(pg_db.clone()).await?.books.len();
        if expected == 0 {
            return Err(format!("no author starts with {:?}: nothing to measure", s.prefix).into());
        }
        let sqlite_expected = first(sqlite_db.clone()).await?.books.len();
        if sqlite_expected != expected {
            return Err(format!(
                "SQLite finds {sqlite_expected} books for {:?}, PostgreSQL {expected}",
                s.prefix
            )
            .into());
        }
        Ok(Setup {
            pg_db,
            sqlite_db,
            target,
            pg_config: s.pg_url.parse()?,
            range: AuthorRange::starting_with(&s.prefix),
            sql: first_page_sql()?,
            limit: (penny::db::PAGE_SIZE + 1) as i64,
            expected,
        })
    }
}

/// Lines (a) to (d), one search after the other, each timed by `penny pooling`'s own code;
/// returns (c)'s seconds.
async fn sequential_lines(s: Arc<SearchSettings>, setup: Arc<Setup>) -> Result<f64> {
    let n = s.iterations as f64;
    let never = Stop::never();
    let done = AtomicU64::new(0);

    // (a) connect, query, close: every call pays the whole handshake (and SCRAM). One round
    // trip for the query itself, an unnamed statement: a new connection has nothing prepared.
    let calls = s.new_conn_calls;
    let measured =
        penny::pooling::new_connection_each_call(&setup.target, calls, &never, &done).await;
    let secs = checked(&measured)?;
    report("a", secs * n / calls as f64, calls as f64 / secs);

    // (b) one connection, the statement prepared once, as each of Penny's connections does.
    // Its warm-up is its first calls: a new connection's are no slower than the rest.
    let measured = penny::pooling::one_shared_connection(
        &setup.target,
        s.warmup + s.iterations,
        &never,
        &done,
    )
    .await;
    checked(&measured)?;
    let secs = measured.seconds_for(s.iterations).unwrap_or_default();
    report("b", secs, n / secs);

    // (c) and (d): Penny's `Db`.
    let c_secs = fresh_pool_line("c", s.clone(), setup.expected).await?;
    let d_secs = sequential(&setup.sqlite_db, &s, setup.expected).await?;
    report("d", d_secs, n / d_secs);
    Ok(c_secs)
}

/// Penny's `Db` on a new pool, which the warm-up leaves with one connection open, as a quiet
/// Penny has: the searches in a row. Returns the seconds.
async fn fresh_pool_line(id: &'static str, s: Arc<SearchSettings>, expected: usize) -> Result<f64> {
    let db = Db::open(&DatabaseUrl::parse(Some(&s.pg_url))?, &pool_config()).await?;
    let secs = sequential(&db, &s, expected).await?;
    report(id, secs, s.iterations as f64 / secs);
    Ok(secs)
}

/// Line (e): the searches over concurrent tasks sharing the pool, which opens all its
/// connections; then (c′): the searches in a row again on that full pool. Returns both times.
async fn concurrent_line(s: Arc<SearchSettings>, setup: Arc<Setup>) -> Result<(f64, f64)> {
    let secs = concurrent(&setup.pg_db, &s, setup.expected).await?;
    report("e", secs, s.iterations as f64 / secs);
    let full_secs = sequential(&setup.pg_db, &s, setup.expected).await?;
    report("c-full", full_secs, s.iterations as f64 / full_secs);
    Ok((secs, full_secs))
}

/// Penny's default pool, with PENNY_POOL_SIZE as Penny reads it.
fn pool_config() -> PoolConfig {
    let pool = PoolConfig::default();
    PoolConfig {
        size: std::env::var("PENNY_POOL_SIZE")
            .ok()
            .and_then(|size| size.trim().parse().ok())
            .unwrap_or(pool.size),
        ..pool
    }
}

fn report(id: &str, secs: f64, rate: f64) {
    eprintln!("  {id:>8}: {secs:8.3} s  {rate:10.0} queries/s");
    value(id, "time_s", secs);
    value(id, "rate", rate);
}

/// A line's seconds, if every call found the books it should.
fn checked(measured: &Measurement) -> Result<f64> {
    match &measured.first_error {
        None => Ok(measured.elapsed.as_secs_f64()),
        Some(err) => Err(format!("{} searches failed; the first: {err}", measured.failed).into()),
    }
}

/// `s.iterations` searches in a row through `db`, after a warm-up; the seconds they took.
async fn sequential(db: &Db, s: &SearchSettings, expected: usize) -> Result<f64> {
    let (never, done) = (Stop::never(), AtomicU64::new(0));
    let in_a_row =
        |calls| penny::pooling::pool_in_a_row(db, &s.prefix, expected, calls, &never, &done);
    checked(&in_a_row(s.warmup).await)?;
    checked(&in_a_row(s.iterations).await)
}

/// `s.iterations` searches spread over `s.tasks` tasks; the seconds until the last is done.
/// A concurrent warm-up first fills the pool, as pgbench's time leaves out its connecting.
async fn concurrent(db: &Db, s: &SearchSettings, expected: usize) -> Result<f64> {
    let (never, done) = (Stop::never(), Arc::new(AtomicU64::new(0)));
    let tasks = |calls| {
        penny::pooling::pool_from_tasks(db, &s.prefix, expected, calls, s.tasks, &never, &done)
    };
    checked(&tasks(s.warmup.max(s.tasks)).await)?;
    checked(&tasks(s.iterations).await)
}

/// Penny's first-page query, the very SQL it prepares: pgbench must run it, however it changes.
fn first_page_sql() -> Result<String> {
    let sql = penny::db::POSTGRES_FIRST_PAGE;
    for param in ["$1", "$2", "$3"] {
        if !sql.contains(param) {
            return Err(
                format!("Penny's first-page query has no {param}: update this bench").into(),
            );
        }
    }
    Ok(sql.to_string())
}

/// The query as a pgbench script: pgbench sends `:from`, `:to` and `:limit` as the parameters
/// of a prepared statement under `-M prepared`, as Penny does.
fn pgbench_script(sql: &str) -> String {
    let sql = sql
        .replace("$1", ":from")
        .replace("$2", ":to")
        .replace("$3", ":limit");
    // pgbench reads a statement up to its `;`, across lines.
    format!("{};\n", sql.trim())
}

/// Runs pgbench for `total` queries over `clients` clients; its rate (queries/s, without the
/// time spent connecting).
fn run_pgbench(
    pgbench: &str,
    setup: &Setup,
    script: &str,
    clients: u64,
    total: u64,
) -> Result<f64> {
    let Setup {
        pg_config: config,
        range,
        limit,
        ..
    } = setup;
    let path = std::env::temp_dir().join(format!("penny-bench-{}.sql", std::process::id()));
    std::fs::write(&path, script)?;
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        _ => return Err("--pg-url must name a TCP host".into()),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let password = config
        .get_password()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .unwrap_or_default();
    let ssl = match config.get_ssl_mode() {
        tokio_postgres::config::SslMode::Disable => "disable",
        tokio_postgres::config::SslMode::Require => "require",
        _ => "prefer",
    };
    let jobs = if clients > 1 { 2 } else { 1 };
    let per_client = total.div_ceil(clients);
    let mut command = Command::new(pgbench);
    command
        .args(["-n", "-M", "prepared", "-f"])
        .arg(&path)
        .args(["-c", &clients.to_string(), "-j", &jobs.to_string()])
        .args(["-t", &per_client.to_string()])
        .args(["-D", &format!("from={}", range.from)])
        .args(["-D", &format!("to={}", range.to)])
        .args(["-D", &format!("limit={limit}")])
        .env("PGHOST", host)
        .env("PGPORT", port.to_string())
        .env("PGUSER", config.get_user().unwrap_or("postgres"))
        .env("PGPASSWORD", password)
        .env("PGDATABASE", config.get_dbname().unwrap_or("postgres"))
        .env("PGSSLMODE", ssl)
        .stdin(Stdio::null());
    let output = command.output()?;
    let _ = std::fs::remove_file(&path);
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "pgbench failed ({}): {}{}",
            output.status,
            stdout,
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    let tps = stdout
        .lines()
        .find_map(|line| {
            let rest = line.trim().strip_prefix("tps = ")?;
            rest.split_whitespace().next()?.parse::<f64>().ok()
        })
        .ok_or_else(|| format!("no `tps = …` in pgbench's output: {stdout}"))?;
    let failed = stdout.lines().any(|line| {
        line.starts_with("number of failed transactions:")
            && !line.contains("failed transactions: 0 ")
    });
    if failed {
        return Err(format!("pgbench reports failed transactions: {stdout}").into());
    }
    Ok(tps)
}

// ---------------------------------------------------------------------------------------------
// startup: spawn to first 200

fn startup(args: &Args) -> Result<()> {
    let penny = args.required("penny")?;
    let id = args.required("row")?;
    let runs = args.number("runs", 10)?.max(1);
    let limit = Duration::from_secs(args.number("timeout-secs", 10)?);
    let mut times = Vec::new();
    for _ in 0..runs {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let started = Instant::now();
        let mut child = Command::new(&penny)
            .args(["--bind", &addr.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let first_200 = loop {
            if get_is_200(addr) {
                break Ok(started.elapsed());
            }
            if started.elapsed() > limit {
                break Err(format!("penny gave no 200 on / within {limit:?}"));
            }
            if let Some(status) = child.try_wait()? {
                break Err(format!("penny exited ({status}) before answering"));
            }
            std::thread::sleep(Duration::from_micros(100));
        };
        let _ = child.kill();
        let _ = child.wait();
        let elapsed = first_200?;
        times.push(elapsed.as_secs_f64() * 1000.0);
    }
    // One figure per repeat of bench/run.sh: the median of this run's starts.
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    eprintln!(
        "  startup {id}: median {median:.2} ms over {runs} starts ({:.2}–{:.2})",
        times[0],
        times[times.len() - 1]
    );
    value(&id, "time_ms", median);
    Ok(())
}

/// One `GET /` on a fresh connection with short timeouts: true on a 200.
fn get_is_200(addr: SocketAddr) -> bool {
    let attempt = || -> std::io::Result<bool> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(50))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_millis(500)))?;
        stream.set_write_timeout(Some(Duration::from_millis(500)))?;
        stream.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head)?;
        Ok(head.starts_with(b"HTTP/1.1 200"))
    };
    attempt().unwrap_or(false)
}

// ---------------------------------------------------------------------------------------------
// table: the report

const COLUMNS: [(&str, &str); 8] = [
    ("rate", "Rate (/s)"),
    ("time_s", "Time"),
    ("p50_ms", "p50"),
    ("p99_ms", "p99"),
    ("errors", "Errors"),
    ("rss_mib", "Peak RSS"),
    ("ratio", "vs pgbench"),
    ("time_ms", "Time"),
];

struct Row {
    id: String,
    part: String,
    what: String,
    backend: String,
    values: HashMap<String, Vec<f64>>,
    targets: Vec<(String, String, f64)>,
}

fn table(args: &Args) -> Result<()> {
    let path = args
        .positional
        .first()
        .ok_or("table needs the records file")?;
    let text = std::fs::read_to_string(path)?;
    let mut meta = Vec::new();
    let mut rows: Vec<Row> = Vec::new();
    let mut repeats = 0;
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let fields: Vec<&str> = line.split('\t').collect();
        let find = |rows: &mut Vec<Row>, id: &str| -> Result<usize> {
            rows.iter()
                .position(|row| row.id == id)
                .ok_or_else(|| format!("a record names the undefined row {id:?}").into())
        };
        match fields.as_slice() {
            ["meta", text] => meta.push(text.to_string()),
            ["row", id, part, what, backend] => {
                if !rows.iter().any(|row| row.id == *id) {
                    rows.push(Row {
                        id: id.to_string(),
                        part: part.to_string(),
                        what: what.to_string(),
                        backend: backend.to_string(),
                        values: HashMap::new(),
                        targets: Vec::new(),
                    });
                }
            }
            ["val", id, metric, number] => {
                let index = find(&mut rows, id)?;
                let number: f64 = number
                    .parse()
                    .map_err(|_| format!("not a number: {line:?}"))?;
                let values = rows[index].values.entry(metric.to_string()).or_default();
                values.push(number);
                repeats = repeats.max(values.len());
            }
            ["target", id, metric, op, threshold] => {
                let index = find(&mut rows, id)?;
                let threshold: f64 = threshold
                    .parse()
                    .map_err(|_| format!("not a number: {line:?}"))?;
                rows[index]
                    .targets
                    .push((metric.to_string(), op.to_string(), threshold));
            }
            _ => return Err(format!("a record this table cannot read: {line:?}").into()),
        }
    }

    let mut out = String::new();
    for line in &meta {
        out.push_str(line);
        out.push('\n');
    }
    if !meta.is_empty() {
        out.push('\n');
    }
    // Only the columns some row fills; both time columns share one header.
    let used: Vec<&(&str, &str)> = COLUMNS
        .iter()
        .filter(|(metric, _)| *metric != "time_ms")
        .filter(|(metric, _)| {
            rows.iter().any(|row| {
                row.values.contains_key(*metric)
                    || (*metric == "time_s" && row.values.contains_key("time_ms"))
            })
        })
        .collect();
    let mut header = vec!["Part", "What", "Backend"];
    header.extend(used.iter().map(|(_, title)| *title));
    header.push("Target");
    out.push_str(&format!("| {} |\n", header.join(" | ")));
    out.push_str(&format!("|{}\n", " --- |".repeat(header.len())));
    let mut last_part = String::new();
    for row in &rows {
        let part = if row.part == last_part {
            String::new()
        } else {
            row.part.clone()
        };
        last_part = row.part.clone();
        let mut cells = vec![part, row.what.clone(), row.backend.clone()];
        for (metric, _) in &used {
            let metric = if *metric == "time_s" && !row.values.contains_key("time_s") {
                "time_ms"
            } else {
                metric
            };
            cells.push(match row.values.get(metric) {
                Some(values) => cell(metric, values),
                None => String::new(),
            });
        }
        let targets: Vec<String> = row
            .targets
            .iter()
            .map(|(metric, op, threshold)| verdict(row, metric, op, *threshold))
            .collect();
        cells.push(targets.join("; "));
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out.push_str(&format!(
        "\nEach cell: the median of {repeats} repeat(s), then (min–max) when they differ.\n"
    ));
    print!("{out}");
    Ok(())
}

fn sorted(values: &[f64]) -> Vec<f64> {
    let mut values = values.to_vec();
    values.sort_by(f64::total_cmp);
    values
}

fn median(values: &[f64]) -> f64 {
    let values = sorted(values);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

fn cell(metric: &str, values: &[f64]) -> String {
    let values_sorted = sorted(values);
    let (min, max) = (values_sorted[0], values_sorted[values_sorted.len() - 1]);
    let mid = format_metric(metric, median(values), true);
    let (low, high) = (
        format_metric(metric, min, false),
        format_metric(metric, max, false),
    );
    if low == high {
        mid
    } else {
        format!("{mid} ({low}–{high})")
    }
}

fn format_metric(metric: &str, value: f64, unit: bool) -> String {
    let (number, suffix) = match metric {
        "rate" => (thousands(value), ""),
        "time_s" => (significant(value), " s"),
        "time_ms" | "p50_ms" | "p99_ms" => (significant(value), " ms"),
        "errors" => (thousands(value), ""),
        "rss_mib" => (format!("{value:.1}"), " MiB"),
        "ratio" => (format!("{value:.2}"), "×"),
        _ => (format!("{value}"), ""),
    };
    if unit {
        format!("{number}{suffix}")
    } else {
        number
    }
}

/// Three significant digits, without an exponent.
fn significant(value: f64) -> String {
    let magnitude = if value == 0.0 {
        0
    } else {
        value.abs().log10().floor() as i32
    };
    let decimals = (2 - magnitude).clamp(0, 6) as usize;
    format!("{value:.decimals$}")
}

fn thousands(value: f64) -> String {
    if value.abs() < 100.0 && value.fract() != 0.0 {
        return format!("{value:.1}");
    }
    let digits = format!("{:.0}", value.abs());
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    if value < 0.0 { format!("-{out}") } else { out }
}

/// "≤ 1.15×: met (3/3)" or "≥ 0.9×: MISSED (median 0.85×; 1/3 met)".
fn verdict(row: &Row, metric: &str, op: &str, threshold: f64) -> String {
    let Some(values) = row.values.get(metric) else {
        return format!("{metric}: no figure");
    };
    let meets = |value: f64| match op {
        "le" => value <= threshold,
        _ => value >= threshold,
    };
    let sign = if op == "le" { "≤" } else { "≥" };
    let goal = format!("{sign} {}", format_metric(metric, threshold, true));
    let mid = median(values);
    let met = values.iter().filter(|value| meets(**value)).count();
    let count = values.len();
    if meets(mid) {
        format!("{goal}: met ({met}/{count})")
    } else {
        format!("{goal}: **MISSED** ({met}/{count} met)")
    }
}

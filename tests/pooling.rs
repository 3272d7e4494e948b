//! `penny pooling`, the lecture's table as a command, run as a user runs it: the real binary
//! against the tests' PostgreSQL (and a real PgBouncer), watched from the server's side while
//! it runs, stopped by its budget and by Ctrl-C, and broken on purpose.

mod common;

use common::pgbouncer::{self, PgBouncer};
use common::postgres::{PASSWORD, PgServer, available, free_port, loaded_database};
use common::{assert_one_clear_line, run_penny, secrets, send_signal};
use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The rows the table must have, Penny's and the lecture's.
const ROWS: [&str; 4] = [
    "a new connection per call",
    "one shared connection",
    "Penny's pool, one call at a time",
    "Penny's pool, 4 tasks at once",
];
/// The lecture's time beside each of Penny's rows (its SQLAlchemy pool has a line of its own).
const LECTURE: [&str; 4] = ["236.9 s", "3.2 s", "6.7 s", "—"];

/// `penny pooling` running as a child process, its stdout and stderr collected as they come.
struct Pooling {
    child: Child,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
    started: Instant,
}

/// What it printed, once it has exited.
struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl Pooling {
    /// Starts `penny pooling ARGS` on `url`, with `env` besides.
    fn start(url: &str, args: &[&str], env: &[(&str, &str)]) -> Pooling {
        secrets::watch();
        secrets::register_url(url);
        let mut child = Command::new(env!("CARGO_BIN_EXE_penny"))
            .arg("pooling")
            .args(args)
            .env_remove("PENNY_POOL_SIZE")
            .env("DATABASE_URL", url)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("penny starts");
        let (stdout, out_reader) = collect(child.stdout.take().unwrap());
        let (stderr, err_reader) = collect(child.stderr.take().unwrap());
        Pooling {
            child,
            stdout,
            stderr,
            readers: vec![out_reader, err_reader],
            started: Instant::now(),
        }
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Waits up to `limit` for stderr (the progress lines) to hold `needle`.
    fn wait_for_progress(&mut self, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.stderr().contains(needle) {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "penny exited ({status}) before {needle:?}: {}",
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} within {limit:?}: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether it is still running.
    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits up to `limit` for it to exit (and fails the test if it does not); checks all it
    /// printed for passwords.
    fn finish(mut self, limit: Duration) -> Finished {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("penny pooling still ran after {limit:?}: {}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let took = self.started.elapsed();
        for reader in self.readers.drain(..) {
            reader.join().unwrap();
        }
        let stdout = String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned();
        let stderr = self.stderr();
        secrets::check(&stdout, "the stdout of penny pooling");
        secrets::check(&stderr, "the stderr of penny pooling");
        Finished {
            status,
            stdout,
            stderr,
            took,
        }
    }
}

impl Drop for Pooling {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn collect(mut stream: impl Read + Send + 'static) -> (Arc<Mutex<Vec<u8>>>, JoinHandle<()>) {
    let bytes = Arc::new(Mutex::new(Vec::new()));
    let sink = bytes.clone();
    let reader = std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = stream.read(&mut chunk) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    });
    (bytes, reader)
}

/// The line of the table that starts with `row`, its columns one space apart.
fn table_line(stdout: &str, row: &str) -> String {
    let line = stdout
        .lines()
        .find(|line| line.starts_with(row))
        .unwrap_or_else(|| panic!("no row {row:?} in the table: {stdout}"));
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A loaded database on the shared server, and its URL naming `application`, by which its
/// connections are told apart in pg_stat_activity.
fn database(application: &str) -> (String, String) {
    let (url, dbname) = loaded_database(PgServer::shared());
    (format!("{url}&application_name={application}"), dbname)
}

#[cfg_attr(
    not(penny_postgres),
    ignore = "needs PostgreSQL: apt-get install postgresql, brew install postgresql@15, or set PENNY_TEST_PG_BINDIR or PENNY_TEST_DATABASE_URL"
)]
#[test]
fn pooling_prints_every_row_beside_the_lecture_and_exits_0() {
    if !available() {
        return;
    }
    let (url, _) = database("pooling_rows");
    let run = Pooling::start(&url, &["--calls", "60", "--tasks", "4"], &[]);
    let done = run.finish(Duration::from_secs(120));
    assert!(done.status.success(), "{}{}", done.stdout, done.stderr);
    assert!(
        done.stdout
            .contains(r#"Penny's search for "ker" (2 books)"#),
        "{}",
        done.stdout
    );
    for (row, lecture) in ROWS.iter().zip(LECTURE) {
        let line = table_line(&done.stdout, row);
        assert!(line.starts_with(&format!("{row} 60 ")), "{line}");
        assert!(line.contains(lecture), "{line}");
    }
    assert!(done.stdout.contains("12.2 s"), "{}", done.stdout);
    assert!(
        done.stdout.contains("What each row teaches"),
        "{}",
        done.stdout
    );
    assert!(!done.stdout.contains("PgBouncer"), "{}", done.stdout);
    // Not a terminal: plain progress lines, one per row at least.
    for index in 1..=4 {
        assert!(
            done.stderr.contains(&format!("penny: row {index} of 4, ")),
            "{}",
            done.stderr
        );
    }
}

#[cfg_attr(
    not(penny_pgbouncer),
    ignore = "needs PgBouncer and PostgreSQL: apt-get install pgbouncer postgresql, brew install pgbouncer postgresql@15, or set PENNY_TEST_PGBOUNCER"
)]
#[test]
fn pooling_through_pgbouncer_says_so_and_succeeds() {
    if !pgbouncer::can_run() {
        return;
    }
    let server = PgServer::shared();
    let (_, dbname) = loaded_database(server);
    let bouncer = PgBouncer::start(server.port);
    let url = bouncer.url(&dbname, "pgbouncer=true&sslmode=disable");
    let run = Pooling::start(&url, &["--calls", "60", "--tasks", "4"], &[]);
    let done = run.finish(Duration::from_secs(120));
    assert!(done.status.success(), "{}{}", done.stdout, done.stderr);
    assert!(
        done.stdout
            .contains("Through PgBouncer in transaction mode (pgbouncer=true)"),
        "{}",
        done.stdout
    );
    for row in ROWS {
        assert!(table_line(&done.stdout, row).starts_with(&format!("{row} 60 ")));
    }
}

#[cfg_attr(
    not(penny_postgres),
    ignore = "needs PostgreSQL: apt-get install postgresql, brew install postgresql@15, or set PENNY_TEST_PG_BINDIR or PENNY_TEST_DATABASE_URL"
)]
#[test]
fn pooling_never_holds_more_connections_than_the_pool_size_and_one() {
    if !available() {
        return;
    }
    let (url, dbname) = database("pooling_bound");
    // Tasks enough to fill the pool many times over.
    let mut run = Pooling::start(
        &url,
        &["--calls", "3000", "--tasks", "64", "--budget", "8"],
        &[("PENNY_POOL_SIZE", "3")],
    );
    let count = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pooling_bound'";
    let (mut most, mut samples) = (0, Vec::new());
    while run.running() {
        let open: usize = PgServer::shared().psql(&dbname, count).parse().unwrap();
        most = most.max(open);
        samples.push(open);
        std::thread::sleep(Duration::from_millis(10));
    }
    let done = run.finish(Duration::from_secs(5));
    assert!(done.status.success(), "{}{}", done.stdout, done.stderr);
    assert!(
        most <= 4,
        "{most} connections at once (pool of 3): {samples:?}"
    );
    // The watch saw the run: a count of 0 throughout would prove nothing.
    assert!(most >= 1, "{samples:?}");
    assert!(
        done.stdout.contains("holds up to 3 connections"),
        "{}",
        done.stdout
    );
}

#[cfg_attr(
    not(penny_postgres),
    ignore = "needs PostgreSQL: apt-get install postgresql, brew install postgresql@15, or set PENNY_TEST_PG_BINDIR or PENNY_TEST_DATABASE_URL"
)]
#[test]
fn pooling_stops_at_its_time_budget_and_says_which_rows_were_cut_short() {
    if !available() {
        return;
    }
    let (url, _) = database("pooling_budget");
    let run = Pooling::start(&url, &["--calls", "100000000", "--budget", "4s"], &[]);
    let done = run.finish(Duration::from_secs(60));
    assert!(done.status.success(), "{}{}", done.stdout, done.stderr);
    // The budget, and slack for connecting and closing on a busy machine.
    assert!(done.took < Duration::from_secs(4 + 15), "{:?}", done.took);
    let cut = done
        .stdout
        .matches("cut short at its share of the time budget")
        .count();
    assert_eq!(cut, 4, "{}", done.stdout);
    for row in ROWS.map(|row| row.replace('4', "16")) {
        let line = table_line(&done.stdout, &row);
        assert!(
            line.contains("(×"),
            "a cut row says how it is scaled: {line}"
        );
    }
}

#[cfg_attr(
    not(penny_postgres),
    ignore = "needs PostgreSQL: apt-get install postgresql, brew install postgresql@15, or set PENNY_TEST_PG_BINDIR or PENNY_TEST_DATABASE_URL"
)]
#[test]
fn ctrl_c_prints_the_table_so_far_and_exits_130() {
    if !available() {
        return;
    }
    let (url, _) = database("pooling_interrupted");
    let mut run = Pooling::start(&url, &["--calls", "100000000", "--budget", "20"], &[]);
    run.wait_for_progress("row 2 of 4", Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(300));
    send_signal(run.child.id(), "INT");
    let done = run.finish(Duration::from_secs(15));
    assert_eq!(
        done.status.code(),
        Some(130),
        "{}{}",
        done.stdout,
        done.stderr
    );
    assert!(
        done.stdout
            .contains("one shared connection: stopped by Ctrl-C after"),
        "{}",
        done.stdout
    );
    assert!(
        done.stdout
            .contains("Penny's pool, one call at a time: not run (stopped by Ctrl-C)"),
        "{}",
        done.stdout
    );
    // The first row ran to its end (or its budget) and has its figures.
    assert!(
        table_line(&done.stdout, ROWS[0]).contains(" ms "),
        "{}",
        done.stdout
    );
}

#[cfg_attr(
    not(penny_postgres),
    ignore = "needs PostgreSQL: apt-get install postgresql, brew install postgresql@15, or set PENNY_TEST_PG_BINDIR or PENNY_TEST_DATABASE_URL"
)]
#[test]
fn a_failing_call_is_counted_and_exits_1_with_the_first_error_on_one_line() {
    if !available() {
        return;
    }
    let server = PgServer::shared();
    let (url, dbname) = loaded_database(server);
    // A role that may read the books until, mid-run, it may not.
    let role = format!("reader_{dbname}");
    let password = "reader-pw-7Qx2";
    secrets::register(password);
    server.psql(
        &dbname,
        &format!("CREATE ROLE {role} LOGIN PASSWORD '{password}'; GRANT SELECT ON books TO {role}"),
    );
    let url = url.replace(
        &format!("postgres:{PASSWORD}"),
        &format!("{role}:{password}"),
    );
    let mut run = Pooling::start(&url, &["--calls", "100000000", "--budget", "8"], &[]);
    run.wait_for_progress("row 2 of 4", Duration::from_secs(60));
    server.psql(&dbname, &format!("REVOKE SELECT ON books FROM {role}"));
    let done = run.finish(Duration::from_secs(60));
    assert_eq!(
        done.status.code(),
        Some(1),
        "{}{}",
        done.stdout,
        done.stderr
    );
    let last = done.stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("penny: "), "{}", done.stderr);
    assert!(last.contains("calls failed; the first: "), "{last}");
    assert!(last.contains("permission denied"), "{last}");
    assert!(
        done.stdout.contains("calls failed; the first: "),
        "{}",
        done.stdout
    );
    assert!(!done.stderr.contains("panicked"), "{}", done.stderr);
}

#[cfg_attr(
    not(penny_postgres),
    ignore = "needs PostgreSQL: apt-get install postgresql, brew install postgresql@15, or set PENNY_TEST_PG_BINDIR or PENNY_TEST_DATABASE_URL"
)]
#[test]
fn a_database_without_books_or_a_wrong_password_fails_in_one_line_without_it() {
    if !available() {
        return;
    }
    let server = PgServer::shared();
    let empty = server.url(&server.create_database(), "sslmode=disable");
    let output = run_penny(&["pooling"], &[("DATABASE_URL", &empty)], None);
    let err = assert_one_clear_line(&output, &["penny: cannot search", "not set up"]);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(output.stdout.is_empty(), "no table without a search");

    let wrong = loaded_database(server).0.replace(PASSWORD, "Wrong-pw-81x");
    let output = run_penny(&["pooling"], &[("DATABASE_URL", &wrong)], None);
    let err = assert_one_clear_line(&output, &["password authentication failed"]);
    assert!(!err.contains("Wrong-pw-81x"), "{err}");
}

#[test]
fn an_unreachable_server_fails_in_one_line_without_the_password() {
    let url = format!("postgres://u:unused-pw-5521@127.0.0.1:{}/d", free_port());
    let started = Instant::now();
    let output = run_penny(&["pooling"], &[("DATABASE_URL", &url)], None);
    assert!(started.elapsed() < Duration::from_secs(10));
    let err = assert_one_clear_line(&output, &["penny: cannot search", "unavailable"]);
    assert!(!err.contains("unused-pw-5521"), "{err}");
}

#[test]
fn pooling_without_postgresql_says_it_needs_it() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("penny.sqlite").display());
    for env in [vec![], vec![("DATABASE_URL", sqlite.as_str())]] {
        let output = run_penny(&["pooling"], &env, None);
        let err = assert_one_clear_line(&output, &["needs PostgreSQL"]);
        assert_eq!(output.status.code(), Some(2), "{err}");
    }
    let output = run_penny(&["pooling", "--budget", "soon"], &[], None);
    assert_eq!(output.status.code(), Some(2));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("is not a time"), "{err}");
}

#[cfg_attr(
    not(penny_postgres),
    ignore = "needs PostgreSQL: apt-get install postgresql, brew install postgresql@15, or set PENNY_TEST_PG_BINDIR or PENNY_TEST_DATABASE_URL"
)]
#[test]
fn the_chart_is_svg_with_a_bar_for_each_row_and_each_of_the_lectures() {
    if !available() {
        return;
    }
    let (url, _) = database("pooling_chart");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pooling.svg");
    let args = [
        "--calls",
        "40",
        "--tasks",
        "4",
        "--svg",
        path.to_str().unwrap(),
    ];
    let done = Pooling::start(&url, &args, &[]).finish(Duration::from_secs(120));
    assert!(done.status.success(), "{}{}", done.stdout, done.stderr);
    let svg = std::fs::read_to_string(&path).expect("the chart is written");
    let document = roxmltree::Document::parse(&svg).expect("the chart is well-formed XML");
    assert_eq!(document.root_element().tag_name().name(), "svg");
    let fill = |colour: plotters::style::RGBColor| {
        let hex = format!("#{:02X}{:02X}{:02X}", colour.0, colour.1, colour.2);
        document
            .descendants()
            .filter(|node| node.has_tag_name("rect"))
            .filter(|node| {
                node.attribute("fill")
                    .is_some_and(|f| f.eq_ignore_ascii_case(&hex))
            })
            .count()
    };
    assert_eq!(fill(penny::pooling::PENNY_BAR), 4, "{svg}");
    assert_eq!(fill(penny::pooling::LECTURE_BAR), 4, "{svg}");
    let texts: Vec<&str> = document
        .descendants()
        .filter(|node| node.has_tag_name("text"))
        .filter_map(|node| node.text())
        .map(str::trim)
        .collect();
    for label in [
        "Penny: a new connection per call",
        "lecture: SQLAlchemy's pool",
        "Penny: pool, 4 tasks at once",
    ] {
        assert!(texts.contains(&label), "no label {label:?} in {texts:?}");
    }
}

#[cfg_attr(
    not(penny_postgres),
    ignore = "needs PostgreSQL: apt-get install postgresql, brew install postgresql@15, or set PENNY_TEST_PG_BINDIR or PENNY_TEST_DATABASE_URL"
)]
#[test]
fn pooling_connects_with_pennys_tls_as_sslmode_asks() {
    if !available() || std::env::var_os("PENNY_TEST_DATABASE_URL").is_some() {
        // An external server's TLS set-up and CA are not the tests' to know.
        return;
    }
    let server = PgServer::shared();
    let (_, dbname) = loaded_database(server);
    let ca = server.ca_cert();
    // The test CA signed the server's certificate for "localhost" only; hostaddr keeps the
    // connection on 127.0.0.1 whatever else localhost resolves to.
    let on = |host: &str| {
        server
            .url(
                &dbname,
                &format!(
                    "sslmode=verify-full&hostaddr=127.0.0.1&sslrootcert={}",
                    ca.display()
                ),
            )
            .replacen("@127.0.0.1:", &format!("@{host}:"), 1)
    };
    let run = Pooling::start(&on("localhost"), &["--calls", "20", "--tasks", "2"], &[]);
    let done = run.finish(Duration::from_secs(120));
    assert!(done.status.success(), "{}{}", done.stdout, done.stderr);
    // The name checked is the URL's host: 127.0.0.1 is not on the certificate.
    let output = run_penny(&["pooling"], &[("DATABASE_URL", &on("127.0.0.1"))], None);
    assert_one_clear_line(&output, &["penny: cannot search", "certificate"]);
}

//! The `penny` binary as a user runs it: its commands, its start-up errors, its signals and its
//! log lines.

mod common;

use common::{RunningPenny, assert_one_clear_line, run_penny};
use hyper::StatusCode;
use std::time::{Duration, Instant};

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn help_lists_every_command() {
    let output = run_penny(&["--help"], &[], None);
    assert!(output.status.success());
    let help = stdout(&output);
    for command in ["serve", "books", "init-db", "--bind"] {
        assert!(help.contains(command), "{help}");
    }
}

#[test]
fn help_lists_every_setting_penny_reads_from_the_environment() {
    let help = stdout(&run_penny(&["--help"], &[], None));
    let source: String = ["config.rs", "main.rs", "clock.rs", "logging.rs"]
        .iter()
        .map(|file| std::fs::read_to_string(format!("src/{file}")).unwrap())
        .collect();
    // Every quoted variable name the sources read.
    let names: std::collections::BTreeSet<&str> = source
        .split('"')
        .filter(|word| {
            (word.starts_with("PENNY_") || word.starts_with("PG"))
                && word.chars().all(|c| c.is_ascii_uppercase() || c == '_')
        })
        .chain(["DATABASE_URL", "PORT", "TZ", "RUST_LOG"])
        .collect();
    assert!(names.len() > 10, "{names:?}");
    for name in names {
        assert!(help.contains(name), "{name} missing from --help:\n{help}");
    }
}

#[tokio::test]
async fn an_unreadable_rust_log_is_said_once_and_penny_logs_at_info() {
    let penny = RunningPenny::start(
        &["--bind", "127.0.0.1:0"],
        &[("RUST_LOG", "penny=loud[")],
        None,
    );
    assert_eq!(
        common::get(penny.addr, "/", &[]).await.status,
        StatusCode::OK
    );
    let log = penny.wait_for_log("request method=GET", Duration::from_secs(5));
    assert_eq!(log.matches("RUST_LOG is not a filter").count(), 1, "{log}");
    assert!(log.contains(" INFO "), "at info: {log}");
    assert!(!log.contains(" DEBUG "), "{log}");
}

#[test]
fn books_prints_the_matching_books_from_the_demo() {
    let output = run_penny(&["books", "KER"], &[], None);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "234\tKernighan\tThe C Programming Language\n123\tKernighan\tThe Practice of Programming\n"
    );
    let output = run_penny(&["books", "knuth"], &[], None);
    assert_eq!(stdout(&output), "(None)\n");
    assert_one_clear_line(&run_penny(&["books", " "], &[], None), &["author"]);
    assert_one_clear_line(&run_penny(&["books", "\u{301}"], &[], None), &["author"]);
}

#[test]
fn books_ignores_case_and_accents_as_the_pages_do() {
    for (author, expected) in [
        (
            "GÖDEL",
            "456\tGödel\tOn Formally Undecidable Propositions\n",
        ),
        ("garcia", "567\tGarcía Márquez\tCien años de soledad\n"),
        ("ØRSTED", "789\tØrsted\tSelected Scientific Works\n"),
        (
            "ДОСТОЕВСКИЙ",
            "923\tДостоевский\tПреступление и наказание\n",
        ),
    ] {
        let output = run_penny(&["books", author], &[], None);
        assert!(output.status.success(), "{}", stderr(&output));
        assert_eq!(stdout(&output), expected, "{author}");
    }
}

#[test]
fn init_db_creates_a_sqlite_file_and_never_adds_or_removes_a_book_after() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("DATABASE_URL", "sqlite://penny.sqlite")];
    let output = run_penny(&["init-db"], &env, Some(dir.path()));
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).starts_with("Loaded penny.sql into SQLite file penny.sqlite\n"),
        "{}",
        stdout(&output)
    );
    let file = dir.path().join("penny.sqlite");
    assert!(file.exists());

    let conn = rusqlite::Connection::open(&file).unwrap();
    conn.execute_batch(
        "INSERT INTO books (isbn, author, title) VALUES ('999', 'Knuth', 'TAOCP'); \
         DELETE FROM books WHERE isbn = '345';",
    )
    .unwrap();
    let output = run_penny(&["init-db"], &env, Some(dir.path()));
    assert!(output.status.success(), "{}", stderr(&output));
    let listed = stdout(&run_penny(&["books", "k"], &env, Some(dir.path())));
    assert!(
        listed.contains("Knuth"),
        "init-db kept the added book and made it searchable: {listed}"
    );
    let listed = stdout(&run_penny(&["books", "s"], &env, Some(dir.path())));
    assert_eq!(listed, "(None)\n", "init-db left the deleted book out");

    let output = run_penny(&["init-db", "--reset"], &env, Some(dir.path()));
    assert!(output.status.success(), "{}", stderr(&output));
    let listed = stdout(&run_penny(&["books", "k"], &env, Some(dir.path())));
    assert!(
        !listed.contains("Knuth"),
        "--reset reloaded penny.sql: {listed}"
    );
    let listed = stdout(&run_penny(&["books", "s"], &env, Some(dir.path())));
    assert!(listed.contains("Sedgewick"), "{listed}");
}

/// Heroku's release phase runs `penny init-db` on the first deploy, before the lecture attaches
/// a database: it must succeed, saying what is served.
#[test]
fn init_db_without_database_url_succeeds_in_one_line_saying_the_demo_is_served() {
    let output = run_penny(&["init-db"], &[], None);
    assert!(output.status.success(), "{output:?}");
    let said = stdout(&output);
    assert_eq!(said.lines().count(), 1, "{said}");
    assert!(said.contains("bundled demo"), "{said}");
    assert!(said.contains("DATABASE_URL"), "{said}");
    assert!(output.stderr.is_empty(), "{output:?}");
}

#[test]
fn serve_stops_with_one_line_when_the_sqlite_file_is_unusable() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.sqlite");
    std::fs::write(&garbage, vec![b'x'; 4096]).unwrap();
    let empty = dir.path().join("empty.sqlite");
    rusqlite::Connection::open(&empty)
        .unwrap()
        .execute_batch("CREATE TABLE other (x)")
        .unwrap();
    let cases = [
        (
            format!("sqlite://{}/missing.sqlite", dir.path().display()),
            "does not exist: run `penny init-db`",
        ),
        (format!("sqlite://{}", garbage.display()), "not a database"),
        (
            format!("sqlite://{}", empty.display()),
            "has no books table",
        ),
        (
            format!("sqlite://{}", dir.path().display()),
            "is a directory",
        ),
    ];
    for (url, reason) in cases {
        let started = Instant::now();
        let output = run_penny(
            &["serve", "--bind", "127.0.0.1:0"],
            &[("DATABASE_URL", &url)],
            None,
        );
        assert_one_clear_line(&output, &[reason]);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{url} took {:?}",
            started.elapsed()
        );
        let output = run_penny(&["books", "ker"], &[("DATABASE_URL", &url)], None);
        assert_one_clear_line(&output, &[reason]);
    }
}

#[test]
fn a_bad_database_url_is_refused_without_repeating_it() {
    for (url, reason) in [
        (
            "mysql://admin:s3cr3t-pw@db.example/penny",
            "DATABASE_URL must start with",
        ),
        ("s3cr3t-pw", "has no scheme"),
        ("/srv/s3cr3t-pw.sqlite", "sqlite:///absolute/path.sqlite"),
    ] {
        let output = run_penny(&["serve"], &[("DATABASE_URL", url)], None);
        assert_one_clear_line(&output, &[reason]);
        assert!(
            !stderr(&output).contains("s3cr3t-pw"),
            "{}",
            stderr(&output)
        );
    }
}

#[test]
fn a_sqlite_file_penny_may_not_write_is_a_permission_error_that_says_what_to_do() {
    // As the image's user finds a directory mounted from the host: owned by someone else.
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/penny.sqlite", dir.path().display());
    let root = std::fs::metadata("/proc/self")
        .map(|meta| std::os::unix::fs::MetadataExt::uid(&meta) == 0)
        .unwrap_or(false);
    let output = if root {
        // Root may write anywhere: run Penny as nobody, in a directory only root may write.
        let mode = std::os::unix::fs::PermissionsExt::from_mode(0o755);
        std::fs::set_permissions(dir.path(), mode).unwrap();
        std::process::Command::new("runuser")
            .args(["-u", "nobody", "--", env!("CARGO_BIN_EXE_penny"), "init-db"])
            .env("DATABASE_URL", &url)
            .output()
            .expect("runuser runs")
    } else {
        let mode = std::os::unix::fs::PermissionsExt::from_mode(0o555);
        std::fs::set_permissions(dir.path(), mode).unwrap();
        run_penny(&["init-db"], &[("DATABASE_URL", &url)], None)
    };
    assert_one_clear_line(&output, &["permission denied"]);
    let err = stderr(&output);
    assert!(err.contains("--user"), "{err}");
    assert!(!err.contains("unable to open"), "{err}");
}

#[tokio::test]
async fn the_binary_alone_in_an_empty_directory_serves_the_demo() {
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("penny");
    std::fs::copy(env!("CARGO_BIN_EXE_penny"), &binary).unwrap();
    let penny =
        RunningPenny::start_binary(&binary, &["--bind", "127.0.0.1:0"], &[], Some(dir.path()));
    assert!(penny.banner.contains("bundled demo"), "{}", penny.banner);
    let page = common::get(penny.addr, "/searchresults?author=ker", &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.table_rows().len(), 2);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "nothing written beside it"
    );
}

#[tokio::test]
async fn port_makes_it_listen_on_every_interface() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let penny = RunningPenny::start(&[], &[("PORT", &port.to_string())], None);
    assert!(
        penny.banner.ends_with(&format!("http://0.0.0.0:{port}")),
        "{}",
        penny.banner
    );
    assert_eq!(
        common::get(penny.addr, "/", &[]).await.status,
        StatusCode::OK
    );

    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let bind = other.local_addr().unwrap().to_string();
    drop(other);
    let penny = RunningPenny::start(
        &["serve", "--bind", &bind],
        &[("PORT", &port.to_string())],
        None,
    );
    assert!(
        penny.banner.ends_with(&format!("http://{bind}")),
        "--bind wins: {}",
        penny.banner
    );
}

#[tokio::test]
async fn each_request_is_logged_with_method_path_status_and_request_id() {
    let penny = RunningPenny::start(&["--bind", "127.0.0.1:0"], &[], None);
    common::get(
        penny.addr,
        "/searchresults?author=ker",
        &[("x-request-id", "req-42")],
    )
    .await;
    common::get(penny.addr, "/nope", &[]).await;
    let log = penny.wait_for_log("/nope", Duration::from_secs(5));
    let line = log
        .lines()
        .find(|line| line.contains("req-42"))
        .expect(&log);
    for part in [
        "method=GET",
        "path=/searchresults ",
        "status=200",
        "micros=",
    ] {
        assert!(line.contains(part), "{part} missing from {line}");
    }
    assert!(
        !line.contains("author=ker"),
        "queries stay out of the log: {line}"
    );
    assert!(log.contains("status=404"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "no colour codes when stdout is not a terminal"
    );
}

/// How many times Penny's log writer thread has gone to sleep and been woken so far.
#[cfg(target_os = "linux")]
fn log_writer_wake_ups(pid: u32) -> u64 {
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if name.trim() == "penny-log" {
            let status = std::fs::read_to_string(task.path().join("status")).unwrap();
            return status
                .lines()
                .find_map(|line| line.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|count| count.trim().parse().ok())
                .unwrap_or_else(|| panic!("no switch count in {status}"));
        }
    }
    panic!("Penny {pid} has no penny-log thread");
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_log_writer_sleeps_while_there_is_nothing_to_log_and_a_line_still_comes_out() {
    let penny = RunningPenny::start(&["--bind", "127.0.0.1:0"], &[], None);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = log_writer_wake_ups(penny.child.id());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = log_writer_wake_ups(penny.child.id()) - before;
    // Looking for lines every 5 ms, it woke about 200 times a second.
    assert!(idle <= 5, "{idle} wake-ups in a second with nothing to log");
    common::get(penny.addr, "/nope", &[]).await;
    let log = penny.wait_for_log("path=/nope", Duration::from_secs(5));
    assert!(log.contains("status=404"), "{log}");
}

#[tokio::test]
async fn a_database_error_logs_the_cause_and_shows_only_a_generic_page() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("penny.sqlite");
    let url = format!("sqlite://{}", file.display());
    assert!(
        run_penny(&["init-db"], &[("DATABASE_URL", &url)], None)
            .status
            .success()
    );
    let penny = RunningPenny::start(&["--bind", "127.0.0.1:0"], &[("DATABASE_URL", &url)], None);
    // A row Penny cannot read, put there by hand: an author that is bytes, not text.
    rusqlite::Connection::open(&file)
        .unwrap()
        .execute_batch("INSERT INTO books VALUES ('1', X'FFFE', 'Bytes', 'kernighan')")
        .unwrap();
    let page = common::get(penny.addr, "/searchresults?author=ker", &[]).await;
    assert_eq!(page.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!page.body.contains("Blob"), "{}", page.body);
    let log = penny.wait_for_log("Invalid column type Blob", Duration::from_secs(5));
    assert!(log.contains("ERROR"), "{log}");
}

#[tokio::test]
async fn a_books_table_dropped_under_penny_is_an_outage_logged_once_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("penny.sqlite");
    let url = format!("sqlite://{}", file.display());
    common::init_db(&url);
    let penny = RunningPenny::start(&["--bind", "127.0.0.1:0"], &[("DATABASE_URL", &url)], None);
    rusqlite::Connection::open(&file)
        .unwrap()
        .execute_batch("DROP TABLE books")
        .unwrap();
    for path in [
        "/searchresults?author=ker",
        "/api/books?author=k",
        "/healthz",
    ] {
        for _ in 0..3 {
            let page = common::get(penny.addr, path, &[]).await;
            assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
            assert_eq!(page.header("retry-after"), "1");
            assert!(!page.body.contains("no such table"), "{}", page.body);
        }
    }
    let log = penny.wait_for_log("no such table: books", Duration::from_secs(5));
    assert_eq!(log.matches("run `penny init-db`").count(), 1, "{log}");
    common::init_db(&url);
    let page = common::get(penny.addr, "/searchresults?author=ker", &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    penny.wait_for_log("reachable again", Duration::from_secs(5));
}

#[tokio::test]
async fn sigterm_lets_the_request_in_flight_finish_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("penny.sqlite");
    let url = format!("sqlite://{}", file.display());
    assert!(
        run_penny(&["init-db"], &[("DATABASE_URL", &url)], None)
            .status
            .success()
    );
    let mut penny =
        RunningPenny::start(&["--bind", "127.0.0.1:0"], &[("DATABASE_URL", &url)], None);

    let lock = rusqlite::Connection::open(&file).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let in_flight = tokio::spawn(common::get(penny.addr, "/searchresults?author=ker", &[]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    penny.signal("TERM");
    tokio::time::sleep(Duration::from_millis(200)).await;
    penny.signal("TERM");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        penny.child.try_wait().unwrap().is_none(),
        "penny waits for the request"
    );
    lock.execute_batch("COMMIT").unwrap();

    let page = in_flight.await.unwrap();
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.table_rows().len(), 2);
    let status = penny
        .wait_for_exit(Duration::from_secs(10))
        .expect("penny exits");
    assert!(status.success(), "{status:?}");
}

#[test]
fn sigint_on_an_idle_server_exits_zero_at_once() {
    let mut penny = RunningPenny::start(&["--bind", "127.0.0.1:0"], &[], None);
    penny.signal("INT");
    let status = penny
        .wait_for_exit(Duration::from_secs(2))
        .expect("penny exits");
    assert!(status.success(), "{status:?}");
}

/// The footer's "Today is …" sentence on `penny`'s home page, and the page's heading.
async fn today_and_greeting(penny: &RunningPenny) -> (String, String) {
    let text = common::get(penny.addr, "/", &[]).await.text();
    let today = text[text.find("Today is ").unwrap_or_else(|| panic!("{text}"))..].to_string();
    let greeting = text
        .split(" and welcome")
        .next()
        .unwrap()
        .rsplit("Good ")
        .next()
        .unwrap()
        .to_string();
    (today, greeting)
}

#[tokio::test]
async fn tz_sets_the_zone_of_the_clock_and_the_greeting() {
    let penny = RunningPenny::start(
        &["--bind", "127.0.0.1:0"],
        &[("TZ", "America/New_York")],
        None,
    );
    let (today, greeting) = today_and_greeting(&penny).await;
    assert!(today.ends_with(" (America/New_York)."), "{today}");
    assert!(
        today.contains(" EST ") || today.contains(" EDT "),
        "{today}"
    );
    // The greeting goes by New York's hour, whatever the machine's zone.
    let new_york = jiff::tz::TimeZone::get("America/New_York").unwrap();
    let hour = jiff::Timestamp::now().to_zoned_datetime(new_york).hour();
    let expected = if hour < 12 { "morning" } else { "afternoon" };
    assert_eq!(greeting, expected, "{today}");
    assert!(!penny.stdout().contains("WARN"), "{}", penny.stdout());
}

#[tokio::test]
async fn a_tz_that_names_no_zone_gets_one_warning_and_utc_and_never_a_hang() {
    for tz in [
        "Mars/Olympus_Mons",
        "/dev/zero",
        "not a zone: hunter2hunter2",
    ] {
        let penny = RunningPenny::start(&["--bind", "127.0.0.1:0"], &[("TZ", tz)], None);
        let started = Instant::now();
        for _ in 0..3 {
            let (today, _) = today_and_greeting(&penny).await;
            assert!(today.ends_with(" UTC."), "{tz}: {today}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{tz}: pages waited"
        );
        let log = penny.wait_for_log("time zone", Duration::from_secs(5));
        assert_eq!(log.matches("WARN").count(), 1, "{tz}: {log}");
        assert!(!log.contains("hunter2"), "{log}");
    }
}

/// A `penny` child process, killed if the test ends before it exits.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Child {
    fn signal(&self, name: &str) {
        common::send_signal(self.0.id(), name);
    }

    /// Waits up to 10 s for the process to exit.
    fn wait_for_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "penny did not exit within 10 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `penny serve` with `args` and `env` at the default log level, no DATABASE_URL unless given.
fn penny_serve(args: &[&str], env: &[(&str, &str)]) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_penny"));
    command
        .arg("serve")
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("PORT")
        .env("RUST_LOG", "info")
        .envs(env.iter().copied());
    command
}

/// Reads `stream` to its end on a thread of its own.
fn read_to_end(mut stream: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stream.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Sends `count` GETs of `path` one after the other on one keep-alive connection; returns
/// their statuses.
async fn get_in_turn(
    addr: std::net::SocketAddr,
    path: &'static str,
    count: usize,
) -> Vec<StatusCode> {
    use http_body_util::BodyExt;
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let mut statuses = Vec::new();
    for _ in 0..count {
        let request = hyper::Request::get(path)
            .header("host", addr.to_string())
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        statuses.push(response.status());
        response.into_body().collect().await.unwrap();
    }
    statuses
}

/// The total of the "N log lines were dropped" lines in `log`.
fn reported_dropped(log: &str) -> usize {
    log.lines()
        .filter(|line| line.contains(" dropped: "))
        .filter_map(|line| line.split_once(" log line"))
        .map(|(start, _)| start.rsplit(' ').next().unwrap().parse::<usize>().unwrap())
        .sum()
}

#[tokio::test]
async fn with_stdout_not_read_every_request_line_is_written_or_counted_and_no_error_is_lost() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("penny.sqlite");
    let url = format!("sqlite://{}", file.display());
    common::init_db(&url);
    // A row Penny cannot read, so that a search for it is a 500 and an ERROR line.
    rusqlite::Connection::open(&file)
        .unwrap()
        .execute_batch("INSERT INTO books VALUES ('1', X'FFFE', 'Bytes', 'kernighan')")
        .unwrap();
    let mut penny = Child(
        penny_serve(
            &["--bind", "127.0.0.1:0"],
            &[("DATABASE_URL", &url), ("PENNY_LOG_QUEUE_LINES", "1000")],
        )
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap(),
    );
    let mut stdout = std::io::BufReader::new(penny.0.stdout.take().unwrap());
    let mut banner = String::new();
    stdout.read_line(&mut banner).unwrap();
    let addr: std::net::SocketAddr = banner
        .rsplit("http://")
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    // Nobody reads stdout now: its pipe fills, then Penny's queue of 1000 lines.
    const CONNECTIONS: usize = 16;
    const EACH: usize = 750;
    let clients: Vec<_> = (0..CONNECTIONS)
        .map(|_| tokio::spawn(get_in_turn(addr, "/robots.txt", EACH)))
        .collect();
    for client in clients {
        let statuses = client.await.unwrap();
        assert!(statuses.iter().all(|status| *status == StatusCode::OK));
    }
    // ERROR lines wait for room, and their requests with them, until stdout is read again.
    const FAILING: usize = 8;
    let failing: Vec<_> = (0..FAILING)
        .map(|_| tokio::spawn(common::get(addr, "/searchresults?author=ker", &[])))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = read_to_end(stdout);
    for request in failing {
        assert_eq!(
            request.await.unwrap().status,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
    penny.signal("TERM");
    let status = penny.wait_for_exit();
    assert!(status.success(), "{status:?}");

    let log = log.join().unwrap();
    let requests = CONNECTIONS * EACH + FAILING;
    let logged = log
        .lines()
        .filter(|line| line.contains(" request method="))
        .count();
    let dropped = reported_dropped(&log);
    println!("{requests} requests: {logged} logged, {dropped} reported dropped");
    assert!(
        dropped > 0,
        "no line says how many were dropped: {logged} of {requests} logged"
    );
    assert_eq!(
        logged + dropped,
        requests,
        "{logged} logged, {dropped} reported dropped"
    );
    let errors = log
        .lines()
        .filter(|line| line.contains("ERROR"))
        .collect::<Vec<_>>();
    assert_eq!(errors.len(), FAILING, "{errors:#?}");
    assert!(
        errors.iter().all(|line| line.contains("request failed")),
        "{errors:#?}"
    );
    assert!(
        log.contains("WARN penny::logging: ") && log.contains("stdout was not being read"),
        "{log}"
    );
}

/// A pipe whose reading end is already closed, as in `penny serve | true`: every write to it
/// fails with EPIPE.
fn closed_pipe() -> std::io::PipeWriter {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    writer
}

#[tokio::test]
async fn a_closed_stdout_or_stderr_neither_stops_penny_nor_makes_it_panic() {
    for closed in ["stdout", "stderr"] {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = free.local_addr().unwrap();
        drop(free);
        let mut command = penny_serve(&["--bind", &addr.to_string()], &[]);
        if closed == "stdout" {
            command
                .stdout(closed_pipe())
                .stderr(std::process::Stdio::piped());
        } else {
            command
                .stderr(closed_pipe())
                .stdout(std::process::Stdio::piped());
        }
        let mut penny = Child(command.spawn().unwrap());
        let open = match closed {
            "stdout" => read_to_end(penny.0.stderr.take().unwrap()),
            _ => read_to_end(penny.0.stdout.take().unwrap()),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            if let Some(status) = penny.0.try_wait().unwrap() {
                panic!(
                    "{closed} closed: penny stopped, {status:?}: {}",
                    open.join().unwrap()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{closed} closed: penny never listened"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for _ in 0..3 {
            let health = common::get(addr, "/healthz", &[]).await;
            assert_eq!(health.status, StatusCode::OK, "{closed} closed");
        }
        penny.signal("TERM");
        let status = penny.wait_for_exit();
        let open = open.join().unwrap();
        assert_eq!(status.code(), Some(0), "{closed} closed: {open}");
        assert!(!open.contains("panicked"), "{closed} closed: {open}");
    }

    // An error from main, with nowhere to say it: a plain failure, not a panic's 101.
    let output = penny_serve(&[], &[("DATABASE_URL", "mysql://db.example/penny")])
        .stderr(closed_pipe())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    // The other commands' output, with nowhere to go: the work is done all the same.
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("penny.sqlite").display());
    for args in [&["init-db"][..], &["books", "ker"]] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_penny"))
            .args(args)
            .env("DATABASE_URL", &url)
            .stdout(closed_pipe())
            .output()
            .unwrap();
        if args[0] == "init-db" {
            assert!(dir.path().join("penny.sqlite").exists());
        }
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(!stderr(&output).contains("panicked"), "{}", stderr(&output));
    }
}

#[test]
fn load_synthetic_says_how_far_it_is_in_plain_lines_when_not_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/penny.sqlite", dir.path().display());
    let env = [("DATABASE_URL", url.as_str())];
    assert!(run_penny(&["init-db"], &env, None).status.success());
    let output = run_penny(&["load-synthetic", "30000"], &env, None);
    assert!(output.status.success(), "{}", stderr(&output));
    let progress = stderr(&output);
    let lines: Vec<&str> = progress.lines().collect();
    assert!(!lines.is_empty(), "no progress at all");
    assert!(
        lines.iter().all(|line| line.starts_with("penny: ")
            && line.contains(" of 30000 books written")
            && !line.contains('\r')),
        "{progress}"
    );
    assert!(stdout(&output).contains("30000 synthetic books are in"));
}

//! The test harness: Penny's real server on 127.0.0.1:0 over a real database, and a small HTTP
//! client. Each backend gets a fresh database per test. Everything Penny sends or logs through
//! the harness is checked for the tests' database passwords (see `secrets`).
#![allow(dead_code, unused_macros)] // each test binary uses its own part of the harness

pub mod load;
pub mod pgbouncer;
pub mod postgres;
pub mod secrets;
pub mod tools;

/// Runs each listed test fn (taking a `Backend`) against each backend, as `backend::test_name`:
/// the bundled demo, a fresh SQLite file and a fresh PostgreSQL database. Tests that add books
/// skip the read-only demo. The test file must have `Backend` and `common` in scope.
macro_rules! suite {
    (read_only: [$($read:ident),* $(,)?], writable: [$($write:ident),* $(,)?] $(,)?) => {
        mod bundled {
            $(#[tokio::test] async fn $read() { super::$read(super::Backend::Bundled).await })*
        }
        mod sqlite_file {
            $(#[tokio::test] async fn $read() { super::$read(super::Backend::SqliteFile).await })*
            $(#[tokio::test] async fn $write() { super::$write(super::Backend::SqliteFile).await })*
        }
        mod postgres {
            use super::common::postgres::available;
            $(#[tokio::test]
            #[cfg_attr(not(penny_postgres), ignore = "needs PostgreSQL: apt-get install postgresql, brew install postgresql@15, or set PENNY_TEST_PG_BINDIR or PENNY_TEST_DATABASE_URL")]
            async fn $read() {
                if available() { super::$read(super::Backend::Postgres).await }
            })*
            $(#[tokio::test]
            #[cfg_attr(not(penny_postgres), ignore = "needs PostgreSQL: apt-get install postgresql, brew install postgresql@15, or set PENNY_TEST_PG_BINDIR or PENNY_TEST_DATABASE_URL")]
            async fn $write() {
                if available() { super::$write(super::Backend::Postgres).await }
            })*
        }
    };
}

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::HeaderMap;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use penny::config::{DatabaseUrl, PoolConfig};
use penny::db::{Book, Db};
use penny::routes::App;
use penny::server::{self, ServerOptions};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Where a test's books live.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    /// The read-only demo database inside the binary.
    Bundled,
    /// A fresh SQLite file, loaded by `penny init-db`'s code path.
    SqliteFile,
    /// A fresh database on the tests' PostgreSQL server, loaded the same way.
    Postgres,
}

/// A database made for one test, kept alive (and its files) as long as the value lives.
pub struct TestDb {
    pub url: DatabaseUrl,
    pub db: Db,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn create(backend: Backend) -> TestDb {
        secrets::watch();
        match backend {
            Backend::Bundled => TestDb {
                url: DatabaseUrl::Bundled,
                db: secrets::expect(
                    Db::open(&DatabaseUrl::Bundled, &PoolConfig::default()).await,
                    "opening the bundled database",
                ),
                _dir: None,
            },
            Backend::SqliteFile => {
                let dir = tempfile::tempdir().expect("a temp dir");
                let url = DatabaseUrl::Sqlite(dir.path().join("penny.sqlite"));
                TestDb::load(url, Some(dir)).await
            }
            Backend::Postgres => {
                let url = tokio::task::spawn_blocking(|| {
                    let server = postgres::PgServer::shared();
                    server.url(&server.create_database(), "")
                })
                .await
                .unwrap();
                let url = secrets::expect(DatabaseUrl::parse(Some(&url)), "parsing the URL");
                TestDb::load(url, None).await
            }
        }
    }

    /// Sets up the database at `url` the way `penny init-db` does, and opens it.
    pub async fn load(url: DatabaseUrl, dir: Option<tempfile::TempDir>) -> TestDb {
        secrets::watch();
        let schema = secrets::expect(
            Db::open_for_schema(&url, &PoolConfig::default()).await,
            "opening the database for penny init-db",
        );
        secrets::expect(schema.init_schema(false).await, "setting up the database");
        TestDb::open_url(url, &PoolConfig::default(), dir).await
    }

    /// Opens the database at `url` (a DATABASE_URL) as it is, with `pool`.
    pub async fn open(url: &str, pool: &PoolConfig) -> TestDb {
        secrets::watch();
        let url = secrets::expect(DatabaseUrl::parse(Some(url)), "parsing the URL");
        TestDb::open_url(url, pool, None).await
    }

    async fn open_url(url: DatabaseUrl, pool: &PoolConfig, dir: Option<tempfile::TempDir>) -> Self {
        let db = secrets::expect(Db::open(&url, pool).await, "opening the database");
        TestDb { url, db, _dir: dir }
    }

    /// The SQLite file behind this database, if it is one.
    pub fn sqlite_path(&self) -> Option<&std::path::Path> {
        match &self.url {
            DatabaseUrl::Sqlite(path) => Some(path),
            _ => None,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            secrets::assert_no_logged_secret();
        }
    }
}

/// A database with nothing in it yet: a file in a temp dir, or a fresh database on the tests'
/// PostgreSQL server. SQL runs on it directly, the way sqlite3 or psql would, not through Penny.
pub struct EmptyDb {
    /// Its DATABASE_URL.
    pub url: String,
    place: EmptyPlace,
}

enum EmptyPlace {
    Sqlite(std::path::PathBuf, tempfile::TempDir),
    Postgres(String),
}

impl EmptyDb {
    /// A new empty database on `backend` (a SQLite file or PostgreSQL; the demo has no room).
    pub fn new(backend: Backend) -> EmptyDb {
        match backend {
            Backend::Bundled => panic!("the bundled demo cannot be emptied"),
            Backend::SqliteFile => {
                let dir = tempfile::tempdir().expect("a temp dir");
                let path = dir.path().join("penny.sqlite");
                EmptyDb {
                    url: format!("sqlite://{}", path.display()),
                    place: EmptyPlace::Sqlite(path, dir),
                }
            }
            Backend::Postgres => {
                let server = postgres::PgServer::shared();
                let dbname = server.create_database();
                EmptyDb {
                    url: server.url(&dbname, "sslmode=disable"),
                    place: EmptyPlace::Postgres(dbname),
                }
            }
        }
    }

    /// Runs `script`, one or more statements.
    pub fn run(&self, script: &str) {
        match &self.place {
            EmptyPlace::Sqlite(path, _) => rusqlite::Connection::open(path)
                .and_then(|conn| conn.execute_batch(script))
                .unwrap_or_else(|err| panic!("{script}: {err}")),
            EmptyPlace::Postgres(dbname) => {
                postgres::PgServer::shared().psql(dbname, script);
            }
        }
    }

    /// Loads an SQL file as the lecture does: `psql -f FILE` (the real psql), or what
    /// `sqlite3 FILE.sqlite < FILE` runs.
    pub fn run_file(&self, file: &std::path::Path) {
        match &self.place {
            EmptyPlace::Sqlite(..) => self.run(&std::fs::read_to_string(file).unwrap()),
            EmptyPlace::Postgres(dbname) => postgres::PgServer::shared().psql_file(dbname, file),
        }
    }

    /// The rows of `query`, one line each, fields joined by `|` and NULL empty, as `psql -tA`
    /// prints them.
    pub fn query(&self, query: &str) -> String {
        match &self.place {
            EmptyPlace::Sqlite(path, _) => {
                let conn = rusqlite::Connection::open(path).unwrap();
                let mut statement = conn.prepare(query).unwrap();
                let columns = statement.column_count();
                let rows = statement
                    .query_map([], |row| {
                        (0..columns)
                            .map(|i| {
                                use rusqlite::types::ValueRef;
                                Ok(match row.get_ref(i)? {
                                    ValueRef::Null => String::new(),
                                    ValueRef::Integer(n) => n.to_string(),
                                    ValueRef::Real(x) => x.to_string(),
                                    ValueRef::Text(t) | ValueRef::Blob(t) => {
                                        String::from_utf8_lossy(t).into_owned()
                                    }
                                })
                            })
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .unwrap();
                rows.map(|row| row.unwrap().join("|"))
                    .collect::<Vec<_>>()
                    .join("\n")
            }
            EmptyPlace::Postgres(dbname) => postgres::PgServer::shared().psql(dbname, query),
        }
    }
}

/// What this thread logs, at debug level, from `start` until the value is dropped, kept for the
/// test to read (instead of going to the harness's own subscriber); each line is still checked
/// for passwords. Under `#[tokio::test]` that covers the tasks the test spawns.
pub struct CapturedLog {
    lines: Arc<std::sync::Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

impl CapturedLog {
    pub fn start() -> CapturedLog {
        secrets::watch();
        let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
            .with_ansi(false)
            .with_writer(move || LogSink(sink.clone()))
            .finish();
        CapturedLog {
            lines,
            _guard: tracing::subscriber::set_default(subscriber),
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.lines.lock().unwrap()).into_owned()
    }

    /// Waits up to `limit` for the log to hold `needle`, then returns it; fails the test if it
    /// never does.
    pub async fn wait_for(&self, needle: &str, limit: Duration) -> String {
        let deadline = tokio::time::Instant::now() + limit;
        while !self.text().contains(needle) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {needle:?} in the log within {limit:?}: {}",
                self.text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.text()
    }
}

struct LogSink(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        secrets::record(&String::from_utf8_lossy(bytes));
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `penny init-db` on `url`, which must succeed; returns what it printed.
pub fn init_db(url: &str) -> String {
    let output = run_penny(&["init-db"], &[("DATABASE_URL", url)], None);
    assert!(
        output.status.success(),
        "penny init-db failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Penny serving a test database on 127.0.0.1:0.
pub struct TestApp {
    pub addr: SocketAddr,
    pub db: TestDb,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestApp {
    pub async fn start(backend: Backend) -> TestApp {
        TestApp::serve(TestDb::create(backend).await, ServerOptions::default()).await
    }

    pub async fn serve(db: TestDb, options: ServerOptions) -> TestApp {
        secrets::watch();
        let listener = server::bind(([127, 0, 0, 1], 0).into()).unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Arc::new(App {
            db: db.db.clone(),
            clock: penny::clock::Clock::utc(),
            https_only: false,
            pool_view: true,
        });
        let (shutdown, stop) = oneshot::channel();
        let task = tokio::spawn(server::serve(listener, app, options, async {
            let _ = stop.await;
        }));
        TestApp {
            addr,
            db,
            shutdown: Some(shutdown),
            task: Some(task),
        }
    }

    /// Adds books to this test's database.
    pub async fn add_books(&self, books: &[(&str, &str, &str)]) {
        let books = books
            .iter()
            .map(|(isbn, author, title)| Book::new(isbn, author, title))
            .collect();
        secrets::expect(self.db.db.add_books(books).await, "adding books");
    }

    pub async fn get(&self, path: &str) -> TestResponse {
        self.send(Request::get(path).body(Empty::new()).unwrap())
            .await
    }

    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> TestResponse {
        let mut request = Request::get(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request.body(Empty::new()).unwrap()).await
    }

    pub async fn send(&self, request: Request<Empty<Bytes>>) -> TestResponse {
        send(self.addr, request).await
    }

    /// Writes `request` as raw bytes and returns everything the server sends back until it
    /// closes the connection (or 5 s pass).
    pub async fn raw(&self, request: &[u8]) -> String {
        raw(self.addr, request).await
    }

    /// Stops accepting and waits for the server to drain, as on SIGTERM.
    pub async fn stop(mut self) {
        self.shutdown.take().unwrap().send(()).ok();
        self.task.take().unwrap().await.unwrap();
        secrets::assert_no_logged_secret();
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
        if !std::thread::panicking() {
            secrets::assert_no_logged_secret();
        }
    }
}

/// GET `path` from the server at `addr`, with extra headers.
pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> TestResponse {
    let mut request = Request::get(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(addr, request.body(Empty::new()).unwrap()).await
}

/// `count` GETs of `path` sent at once: each answer, and how long it took.
pub async fn get_at_once(
    addr: SocketAddr,
    path: &'static str,
    count: usize,
) -> Vec<(TestResponse, Duration)> {
    let requests: Vec<_> = (0..count)
        .map(|_| {
            tokio::spawn(async move {
                let started = std::time::Instant::now();
                let response = get(addr, path, &[]).await;
                (response, started.elapsed())
            })
        })
        .collect();
    let mut answers = Vec::new();
    for request in requests {
        answers.push(request.await.unwrap());
    }
    answers
}

/// Sends `request` on a new connection (with Host the server's address, unless it has one)
/// and reads the whole response, which must hold no password, nor must any log line so far.
pub async fn send(addr: SocketAddr, mut request: Request<Empty<Bytes>>) -> TestResponse {
    secrets::watch();
    let what = format!("{} {}", request.method(), request.uri());
    if !request.headers().contains_key("host") {
        request
            .headers_mut()
            .insert("host", addr.to_string().parse().unwrap());
    }
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
        .await
        .expect("Penny answers within 10 s");
    // A log line with a password, not the failure it may have caused, is the news.
    secrets::assert_no_logged_secret();
    let (parts, body) = response.expect("Penny answers").into_parts();
    if let Some(reason) = parts.extensions.get::<hyper::ext::ReasonPhrase>() {
        secrets::check_bytes(reason.as_bytes(), &format!("the status line of {what}"));
    }
    let body = body.collect().await.unwrap().to_bytes();
    let response = TestResponse {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        bytes: body,
    };
    response.check_for_secrets(&format!("the response to {what}"));
    secrets::assert_no_logged_secret();
    response
}

/// Writes raw bytes to the server at `addr` and returns everything it sends back until it
/// closes the connection (or 5 s pass). What comes back must hold no password, nor must any
/// log line so far.
pub async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    secrets::watch();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response)).await;
    let shown: String = secrets::mask(&String::from_utf8_lossy(request))
        .chars()
        .take(60)
        .collect();
    secrets::check_bytes(&response, &format!("the raw answer to {shown:?}"));
    secrets::assert_no_logged_secret();
    String::from_utf8_lossy(&response).into_owned()
}

pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The body as text (lossy for binary bodies); `bytes` is exact.
    pub body: String,
    pub bytes: Bytes,
}

impl TestResponse {
    /// Fails the test if the status line, a header or the body holds a password.
    pub fn check_for_secrets(&self, place: &str) {
        secrets::check(
            &self.status.to_string(),
            &format!("the status line of {place}"),
        );
        for (name, value) in &self.headers {
            let line = format!("{name}: {}", String::from_utf8_lossy(value.as_bytes()));
            secrets::check(&line, &format!("a header of {place}"));
        }
        secrets::check_bytes(&self.bytes, &format!("the body of {place}"));
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
            .to_str()
            .unwrap()
    }

    /// The body with tags removed and whitespace collapsed: the text a reader sees.
    pub fn text(&self) -> String {
        let mut text = String::new();
        let mut in_tag = false;
        for c in self.body.chars() {
            match c {
                '<' => {
                    in_tag = true;
                    text.push(' ');
                }
                '>' => in_tag = false,
                c if !in_tag => text.push(c),
                _ => {}
            }
        }
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    /// The rows of the results table, each as its cells' text.
    pub fn table_rows(&self) -> Vec<Vec<String>> {
        let Some(tbody) = self.body.split("<tbody>").nth(1) else {
            return Vec::new();
        };
        let tbody = tbody.split("</tbody>").next().unwrap();
        tbody
            .split("<tr>")
            .skip(1)
            .map(|row| {
                row.split("<td")
                    .skip(1)
                    .map(|cell| {
                        let cell = &cell[cell.find('>').unwrap() + 1..];
                        cell.split("</td>").next().unwrap().to_string()
                    })
                    .collect()
            })
            .collect()
    }

    /// The text of the results' summary: "Books by Ker: 2 books."
    pub fn summary(&self) -> String {
        let start = self
            .body
            .find(r#"<p class="summary""#)
            .unwrap_or_else(|| panic!("no summary in {}", self.body));
        let end = start + self.body[start..].find("</p>").unwrap();
        let html = &self.body[start..end];
        let mut text = String::new();
        let mut in_tag = false;
        for c in html.chars() {
            match c {
                '<' => in_tag = true,
                '>' => in_tag = false,
                c if !in_tag => text.push(c),
                _ => {}
            }
        }
        text
    }
}

/// The `penny` binary running as a child process, its stdout and stderr collected line by
/// line. Killed when dropped, so a failing test never leaves it behind; everything it printed
/// is then checked for passwords.
pub struct RunningPenny {
    pub child: std::process::Child,
    pub addr: SocketAddr,
    pub banner: String,
    stdout: Lines,
    stderr: Lines,
    readers: Vec<std::thread::JoinHandle<()>>,
}

type Lines = Arc<std::sync::Mutex<Vec<String>>>;

/// Reads `stream` line by line into a list on a thread of its own, so that the pipe never
/// fills up and blocks Penny. Bytes that are not UTF-8 are kept, replaced.
fn collect_lines(
    mut stream: impl std::io::BufRead + Send + 'static,
) -> (Lines, std::thread::JoinHandle<()>) {
    let lines = Lines::default();
    let sink = lines.clone();
    let reader = std::thread::spawn(move || {
        let mut line = Vec::new();
        while matches!(stream.read_until(b'\n', &mut line), Ok(n) if n > 0) {
            let text = String::from_utf8_lossy(&line);
            let text = text.strip_suffix('\n').unwrap_or(&text);
            sink.lock().unwrap().push(text.to_owned());
            line.clear();
        }
    });
    (lines, reader)
}

impl RunningPenny {
    /// Starts `penny` with `args` and `env` (DATABASE_URL and PORT removed unless given;
    /// RUST_LOG=debug unless given, so that every line Penny can log is checked) and waits for
    /// the line that says where it serves.
    pub fn start(
        args: &[&str],
        env: &[(&str, &str)],
        dir: Option<&std::path::Path>,
    ) -> RunningPenny {
        RunningPenny::start_binary(
            std::path::Path::new(env!("CARGO_BIN_EXE_penny")),
            args,
            env,
            dir,
        )
    }

    pub fn start_binary(
        binary: &std::path::Path,
        args: &[&str],
        env: &[(&str, &str)],
        dir: Option<&std::path::Path>,
    ) -> RunningPenny {
        use std::io::BufRead;
        secrets::watch();
        secrets::register_env(env);
        let mut command = std::process::Command::new(binary);
        command
            .args(args)
            .env_remove("DATABASE_URL")
            .env_remove("PORT")
            .env("RUST_LOG", "debug")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        if let Some(dir) = dir {
            command.current_dir(dir);
        }
        let mut child = command.spawn().expect("penny starts");
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut banner = String::new();
        if !matches!(stdout.read_line(&mut banner), Ok(n) if n > 0) {
            let output = child.wait_with_output().unwrap();
            secrets::check_bytes(&output.stderr, "the stderr of penny, which exited at start");
            panic!("penny exited: {}", String::from_utf8_lossy(&output.stderr));
        }
        let banner = banner.trim_end().to_owned();
        secrets::check(&banner, "penny's banner");
        let url = banner
            .rsplit("http://")
            .next()
            .expect("the banner has a URL");
        let mut addr: SocketAddr = url.trim().parse().expect("the banner ends with ip:port");
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let (stdout, stdout_reader) = collect_lines(stdout);
        let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let (stderr, stderr_reader) = collect_lines(stderr);
        RunningPenny {
            child,
            addr,
            banner,
            stdout,
            stderr,
            readers: vec![stdout_reader, stderr_reader],
        }
    }

    /// Everything penny has printed to stdout after its banner so far (its log), checked for
    /// passwords.
    pub fn stdout(&self) -> String {
        let text = self.stdout.lock().unwrap().join("\n");
        secrets::check(&text, "penny's stdout");
        text
    }

    /// Penny's log once it holds `needle`, waiting up to `limit`; fails the test if it never
    /// does.
    pub fn wait_for_log(&self, needle: &str, limit: Duration) -> String {
        let found = postgres::wait_until(limit, || self.stdout().contains(needle));
        let log = self.stdout();
        assert!(
            found,
            "no {needle:?} in penny's log within {limit:?}: {log}"
        );
        log
    }

    /// Everything penny has printed to stderr so far, checked for passwords.
    pub fn stderr(&self) -> String {
        let text = self.stderr.lock().unwrap().join("\n");
        secrets::check(&text, "penny's stderr");
        text
    }

    /// Sends a signal by name (TERM, INT) to the process.
    pub fn signal(&self, name: &str) {
        send_signal(self.child.id(), name);
    }

    /// Waits up to `limit` for the process to exit. Once it has, `stdout` and `stderr` hold
    /// all it printed.
    pub fn wait_for_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                self.finish_reading();
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Waits for the readers to reach the end of the pipes: the process has exited.
    fn finish_reading(&mut self) {
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }
}

impl Drop for RunningPenny {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.finish_reading();
        if !std::thread::panicking() {
            self.stdout();
            self.stderr();
        }
    }
}

/// A failure a user can read: penny exited unsuccessfully with one line on stderr, starting
/// `penny: ` and holding each of `expected`, with no panic, no backtrace, no password and the
/// outage not said twice. Returns the line.
pub fn assert_one_clear_line(output: &std::process::Output, expected: &[&str]) -> String {
    let err = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !output.status.success(),
        "exit status {:?}: {err}",
        output.status
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("penny: "), "{err}");
    for word in expected {
        assert!(err.contains(word), "expected {word:?} in {err}");
    }
    let lower = err.to_lowercase();
    assert!(
        !lower.contains("panicked") && !lower.contains("backtrace"),
        "{err}"
    );
    assert!(lower.matches("unavailable").count() <= 1, "{err}");
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(
        !err.contains(postgres::PASSWORD) && !out.contains(postgres::PASSWORD),
        "{err}"
    );
    secrets::check_output(output, "penny, which failed");
    err
}

/// Runs `penny` to completion with `args` and `env` (no DATABASE_URL unless given); what it
/// printed is checked for passwords.
pub fn run_penny(
    args: &[&str],
    env: &[(&str, &str)],
    dir: Option<&std::path::Path>,
) -> std::process::Output {
    secrets::watch();
    secrets::register_env(env);
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_penny"));
    command
        .args(args)
        .env_remove("DATABASE_URL")
        .envs(env.iter().copied());
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let output = command.output().expect("penny runs");
    secrets::check_output(&output, &args.join(" "));
    output
}

/// Sends the signal `name` (TERM, INT, HUP, STOP, CONT) to process `pid`, with kill(2) itself:
/// a machine without procps has no kill command.
pub fn send_signal(pid: u32, name: &str) {
    let signal = match name {
        "TERM" => libc::SIGTERM,
        "INT" => libc::SIGINT,
        "HUP" => libc::SIGHUP,
        "STOP" => libc::SIGSTOP,
        "CONT" => libc::SIGCONT,
        "KILL" => libc::SIGKILL,
        other => panic!("no signal SIG{other} in the tests' list"),
    };
    let pid = libc::pid_t::try_from(pid).expect("a process id fits a pid_t");
    // SAFETY: kill(2) takes any pid and signal number and touches no memory of ours.
    let sent = unsafe { libc::kill(pid, signal) };
    assert_eq!(
        sent,
        0,
        "kill -{name} {pid}: {}",
        std::io::Error::last_os_error()
    );
}

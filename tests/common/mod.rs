//! The test harness: Penny's real server on 127.0.0.1:0 over a real database, and a small HTTP
//! client. Each backend gets a fresh database per test.
#![allow(dead_code, unused_macros)] // each test binary uses its own part of the harness

pub mod postgres;

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
            $(#[tokio::test] async fn $read() {
                if available() { super::$read(super::Backend::Postgres).await }
            })*
            $(#[tokio::test] async fn $write() {
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
use tokio::net::{TcpListener, TcpStream};
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
        match backend {
            Backend::Bundled => TestDb {
                url: DatabaseUrl::Bundled,
                db: Db::open(&DatabaseUrl::Bundled, &PoolConfig::default())
                    .await
                    .expect("the bundled database opens"),
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
                TestDb::load(DatabaseUrl::parse(Some(&url)).unwrap(), None).await
            }
        }
    }

    /// Loads penny.sql into the database at `url` the way `penny init-db` does, and opens it.
    pub async fn load(url: DatabaseUrl, dir: Option<tempfile::TempDir>) -> TestDb {
        let schema = Db::open_for_schema(&url, &PoolConfig::default())
            .await
            .unwrap();
        schema.load_schema(false).await.expect("penny.sql loads");
        let db = Db::open(&url, &PoolConfig::default()).await.unwrap();
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
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Arc::new(App { db: db.db.clone() });
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
            .map(|(isbn, author, title)| Book {
                isbn: isbn.to_string(),
                author: author.to_string(),
                title: title.to_string(),
            })
            .collect();
        self.db.db.add_books(books).await.expect("books are added");
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
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
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

/// Sends `request` on a new connection and reads the whole response.
pub async fn send(addr: SocketAddr, mut request: Request<Empty<Bytes>>) -> TestResponse {
    request
        .headers_mut()
        .insert("host", addr.to_string().parse().unwrap());
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
        .await
        .expect("Penny answers within 10 s")
        .expect("Penny answers");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    TestResponse {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        bytes: body,
    }
}

/// Writes raw bytes to the server at `addr` and returns everything it sends back until it
/// closes the connection (or 5 s pass).
pub async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response)).await;
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
                row.split("<td>")
                    .skip(1)
                    .map(|cell| cell.split("</td>").next().unwrap().to_string())
                    .collect()
            })
            .collect()
    }
}

/// The `penny` binary running as a child process, its stdout collected line by line. Killed
/// when dropped, so a failing test never leaves it behind.
pub struct RunningPenny {
    pub child: std::process::Child,
    pub addr: SocketAddr,
    pub banner: String,
    stdout: Arc<std::sync::Mutex<Vec<String>>>,
}

impl RunningPenny {
    /// Starts `penny` with `args` and `env` (DATABASE_URL and PORT removed unless given) and
    /// waits for the line that says where it serves.
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
        let mut command = std::process::Command::new(binary);
        command
            .args(args)
            .env_remove("DATABASE_URL")
            .env_remove("PORT")
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        if let Some(dir) = dir {
            command.current_dir(dir);
        }
        let mut child = command.spawn().expect("penny starts");
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let banner = match lines.next() {
            Some(Ok(line)) => line,
            _ => {
                let output = child.wait_with_output().unwrap();
                panic!("penny exited: {}", String::from_utf8_lossy(&output.stderr));
            }
        };
        let url = banner
            .rsplit("http://")
            .next()
            .expect("the banner has a URL");
        let mut addr: SocketAddr = url.trim().parse().expect("the banner ends with ip:port");
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let stdout = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = stdout.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        RunningPenny {
            child,
            addr,
            banner,
            stdout,
        }
    }

    /// Everything penny has printed after its banner so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().join("\n")
    }

    /// Sends a signal by name (TERM, INT) to the process.
    pub fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_for_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for RunningPenny {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `penny` to completion with `args` and `env` (no DATABASE_URL unless given).
pub fn run_penny(
    args: &[&str],
    env: &[(&str, &str)],
    dir: Option<&std::path::Path>,
) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_penny"));
    command
        .args(args)
        .env_remove("DATABASE_URL")
        .envs(env.iter().copied());
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    command.output().expect("penny runs")
}

//! A throwaway PostgreSQL for the tests, from the machine's own server binaries: a temp
//! directory, a free port on 127.0.0.1, TLS with a test CA, password authentication, run as the
//! `postgres` OS user when the tests run as root. A watchdog process stops it and removes its
//! files when the test binary exits, however it exits.
//!
//! PENNY_TEST_DATABASE_URL points the shared server at an existing PostgreSQL instead (tests
//! that stop or restart a server still need the binaries). Without either, Postgres tests print
//! a loud SKIPPED notice; under CI=true they fail instead.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The superuser's password, in every Postgres test's DATABASE_URL: the harness checks that it
/// never shows up anywhere (see `secrets`).
pub const PASSWORD: &str = "pw-Zq7-never-shown";

/// A PostgreSQL server for tests.
pub struct PgServer {
    /// `postgres://postgres:…@127.0.0.1:PORT` without a database name or parameters.
    base_url: String,
    pub port: u16,
    /// The directory holding the data, the log and the TLS files; None for an external server.
    dir: Option<PathBuf>,
}

/// Where the server binaries are, if this machine has them.
fn bindir() -> Option<PathBuf> {
    super::tools::postgres_bindir()
}

/// True when Postgres tests can run; otherwise says so loudly (and fails under CI=true).
pub fn available() -> bool {
    if std::env::var_os("PENNY_TEST_DATABASE_URL").is_some() || bindir().is_some() {
        return true;
    }
    skip(
        "no PostgreSQL server binaries (see tests/common/tools.rs) and no PENNY_TEST_DATABASE_URL",
    );
    false
}

/// True when this machine can start its own servers (needed to stop and restart one).
pub fn can_start_servers() -> bool {
    if bindir().is_some() {
        return true;
    }
    skip("no PostgreSQL server binaries (see tests/common/tools.rs) to start a server with");
    false
}

fn skip(why: &str) {
    let message = format!(
        "SKIPPED: PostgreSQL tests: {why} ({})",
        super::tools::INSTALL_POSTGRES
    );
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{message}");
    }
    static BANNER: std::sync::Once = std::sync::Once::new();
    BANNER.call_once(|| {
        let rule = "=".repeat(78);
        let _ = writeln!(std::io::stderr(), "\n{rule}\n{message}\n{rule}");
    });
}

static SHARED: OnceLock<PgServer> = OnceLock::new();

impl PgServer {
    /// The server shared by this test binary's tests: each test gets its own database on it.
    pub fn shared() -> &'static PgServer {
        SHARED.get_or_init(|| match std::env::var("PENNY_TEST_DATABASE_URL") {
            Ok(url) => {
                let base_url = url.split('?').next().unwrap();
                let base_url = base_url[..base_url.rfind('/').unwrap()].to_string();
                PgServer {
                    base_url,
                    port: 0,
                    dir: None,
                }
            }
            Err(_) => PgServer::start(),
        })
    }

    /// A server of this test's own, to stop and start at will.
    pub fn start() -> PgServer {
        let bin = bindir().expect("PostgreSQL server binaries");
        let dir = make_dir("pg");
        let data = dir.join("data");
        std::fs::write(dir.join("pwfile"), PASSWORD).unwrap();
        make_certificates(&dir);
        chown_to_postgres(&dir);
        run(as_postgres(&bin.join("initdb"))
            .args(["-D", data.to_str().unwrap(), "-U", "postgres", "-E", "UTF8"])
            .args([
                "--locale=C.UTF-8",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .arg(format!("--pwfile={}", dir.join("pwfile").display())));
        let port = free_port();
        let conf = format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{dir}'\n\
             fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 200\n\
             ssl = on\nssl_cert_file = '{dir}/server.crt'\nssl_key_file = '{dir}/server.key'\n\
             log_line_prefix = '%m [%p] db=%d '\nlogging_collector = off\n",
            dir = dir.display()
        );
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        file.write_all(conf.as_bytes()).unwrap();
        watch_over(&bin, &dir);
        let server = PgServer {
            base_url: format!("postgres://postgres:{PASSWORD}@127.0.0.1:{port}"),
            port,
            dir: Some(dir),
        };
        server.start_again();
        server
    }

    /// A URL for `dbname` on this server, with `params` (e.g. "sslmode=disable") appended.
    pub fn url(&self, dbname: &str, params: &str) -> String {
        let separator = if params.is_empty() { "" } else { "?" };
        format!("{}/{dbname}{separator}{params}", self.base_url)
    }

    /// Creates a fresh, empty database and returns its name. It sorts text as English does
    /// (ICU's en-US, where the server has ICU), as Heroku's databases do (en_US.UTF-8), not by
    /// bytes: Penny must not depend on the database's collation.
    pub fn create_database(&self) -> String {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "penny_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let english = format!(
            "CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' \
             LOCALE 'C.UTF-8'"
        );
        if self.try_psql("postgres", &english).is_err() {
            self.psql("postgres", &format!("CREATE DATABASE {name}"));
        }
        name
    }

    /// Runs SQL through psql, failing the test if it fails; returns what psql printed.
    pub fn psql(&self, dbname: &str, sql: &str) -> String {
        self.try_psql(dbname, sql)
            .unwrap_or_else(|err| panic!("psql failed on {sql}: {err}"))
    }

    /// Runs SQL through psql: what it printed, or its error.
    pub fn try_psql(&self, dbname: &str, sql: &str) -> Result<String, String> {
        let output = Command::new("psql")
            .arg(self.url(dbname, "sslmode=disable"))
            .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .expect("psql runs");
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).into_owned());
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    }

    /// Loads an SQL file with `psql -f`, as the lecture does, failing the test if it fails.
    pub fn psql_file(&self, dbname: &str, file: &Path) {
        let output = Command::new("psql")
            .arg(self.url(dbname, "sslmode=disable"))
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f"])
            .arg(file)
            .output()
            .expect("psql runs");
        assert!(
            output.status.success(),
            "psql -f {} failed: {}",
            file.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Stops the server at once, closing every connection (as a Heroku maintenance does).
    pub fn stop(&self) {
        self.pg_ctl(&["stop", "-m", "fast", "-w"]);
    }

    /// Starts the server again and waits until it accepts connections.
    pub fn start_again(&self) {
        let dir = self.dir();
        let log = dir.join("server.log");
        self.pg_ctl(&["start", "-w", "-t", "30", "-l", log.to_str().unwrap()]);
    }

    /// Changes the superuser's password (a credential rotation). The new one must never show up
    /// anywhere either.
    pub fn set_password(&self, password: &str) {
        super::secrets::register(password);
        self.psql(
            "postgres",
            &format!("ALTER USER postgres PASSWORD '{password}'"),
        );
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("server.log")).unwrap_or_default()
    }

    /// The test CA's certificate (PEM), which signed the server's certificate for "localhost".
    pub fn ca_cert(&self) -> PathBuf {
        self.dir().join("ca.crt")
    }

    fn dir(&self) -> &Path {
        self.dir
            .as_deref()
            .expect("this test needs a server it started itself")
    }

    fn pg_ctl(&self, args: &[&str]) {
        let bin = bindir().unwrap();
        let data = self.dir().join("data");
        run(as_postgres(&bin.join("pg_ctl"))
            .args(["-D", data.to_str().unwrap()])
            .args(args));
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let bin = bindir().unwrap();
            let _ = as_postgres(&bin.join("pg_ctl"))
                .args([
                    "-D",
                    dir.join("data").to_str().unwrap(),
                    "stop",
                    "-m",
                    "immediate",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.starts_with(b"0\n"))
}

/// `program` as a command run by the `postgres` OS user when the tests run as root.
fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn run(command: &mut Command) {
    let output = command.output().expect("the command starts");
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A fresh, empty directory `penny-{name}-{pid}-{n}` in the temp dir, unique in this process.
pub fn make_dir(name: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "penny-{name}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn chown_to_postgres(dir: &Path) {
    if is_root() {
        run(Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir));
    }
}

/// A test CA, and a certificate it signed for the name "localhost" only (not for 127.0.0.1),
/// so that verify-full can be shown to check the name and verify-ca not to.
fn make_certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        run(Command::new("openssl").current_dir(dir).args(args));
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=Penny Test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(dir.join("san.ext"), "subjectAltName=DNS:localhost\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.crt",
    ]);
    let mut permissions = std::fs::metadata(dir.join("server.key"))
        .unwrap()
        .permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o600);
    std::fs::set_permissions(dir.join("server.key"), permissions).unwrap();
}

/// A process that outlives nothing: once the test binary has exited, it stops the server and
/// removes its directory.
fn watch_over(bin: &Path, dir: &Path) {
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; \
         {stop} -D '{data}' stop -m immediate >/dev/null 2>&1; rm -rf '{dir}'",
        pid = std::process::id(),
        stop = if is_root() {
            format!("runuser -u postgres -- {}", bin.join("pg_ctl").display())
        } else {
            bin.join("pg_ctl").display().to_string()
        },
        data = dir.join("data").display(),
        dir = dir.display(),
    );
    start_watchdog(&script);
}

/// Runs `script` (which waits for this process to exit, then cleans up) in the background.
#[allow(clippy::zombie_processes)] // it must outlive the test binary, so nothing waits for it
pub fn start_watchdog(script: &str) {
    Command::new("sh")
        .args(["-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the watchdog starts");
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A psql session holding `LOCK TABLE books IN ACCESS EXCLUSIVE MODE` for `seconds`, or until
/// `release`. Killed when dropped.
pub struct TableLock {
    psql: Child,
}

impl TableLock {
    pub fn take(server: &PgServer, dbname: &str, seconds: f64) -> TableLock {
        let sql = format!(
            "BEGIN; LOCK TABLE books IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep({seconds}); COMMIT;"
        );
        let psql = Command::new("psql")
            .arg(server.url(dbname, "sslmode=disable&application_name=locker"))
            .args(["-X", "-q", "-c", &sql])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("psql starts");
        let granted = wait_until(Duration::from_secs(10), || {
            server.psql(
                dbname,
                "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
                 WHERE c.relname = 'books' AND l.mode = 'AccessExclusiveLock' AND l.granted",
            ) == "1"
        });
        assert!(granted, "the lock is taken");
        TableLock { psql }
    }

    /// Ends the locking session, which rolls its transaction back and frees the table. Only
    /// this database's: tests running at once on the shared server each lock their own.
    pub fn release(mut self, server: &PgServer, dbname: &str) {
        server.psql(
            dbname,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = 'locker' AND datname = current_database()",
        );
        let _ = self.psql.wait();
    }
}

impl Drop for TableLock {
    fn drop(&mut self) {
        let _ = self.psql.kill();
        let _ = self.psql.wait();
    }
}

/// Waits up to `limit` for `check` to hold, polling.
pub fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    check()
}

/// A database with penny.sql loaded by `penny init-db`, on `server`; returns its URL (plain
/// TCP) and its name.
pub fn loaded_database(server: &PgServer) -> (String, String) {
    let dbname = server.create_database();
    let url = server.url(&dbname, "sslmode=disable");
    let output = super::run_penny(&["init-db"], &[("DATABASE_URL", &url)], None);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    (url, dbname)
}

//! A PgBouncer of a test's own, in transaction mode in front of the tests' PostgreSQL, as on
//! Heroku with the PgBouncer buildpack. PgBouncer refuses to run as root, so when the tests run
//! as root it runs as the `postgres` OS user.

use super::postgres::{self, PASSWORD, free_port};
use std::collections::HashMap;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// PgBouncer, wherever it is installed (see tests/common/tools.rs).
pub fn pgbouncer() -> Option<PathBuf> {
    super::tools::pgbouncer()
}

/// PgBouncer's server connections per database and user: fewer than the pennies' clients.
pub const SERVER_POOL: usize = 2;

/// True when these tests can run; otherwise says why, loudly.
pub fn can_run() -> bool {
    if !postgres::available() {
        return false;
    }
    if std::env::var_os("PENNY_TEST_DATABASE_URL").is_some() {
        // Not a failure under CI: the tests need the port and the log of a server they started.
        banner(
            "SKIPPED: PgBouncer tests: they need the tests' own PostgreSQL (its port and its log), \
             not the one PENNY_TEST_DATABASE_URL names",
        );
        return false;
    }
    if pgbouncer().is_none() {
        let message = format!(
            "SKIPPED: PgBouncer tests: no pgbouncer ({})",
            super::tools::INSTALL_PGBOUNCER
        );
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{message}");
        }
        banner(&message);
        return false;
    }
    true
}

pub fn banner(message: &str) {
    static BANNER: std::sync::Once = std::sync::Once::new();
    BANNER.call_once(|| {
        let rule = "=".repeat(78);
        let _ = writeln!(std::io::stderr(), "\n{rule}\n{message}\n{rule}");
    });
}

/// A PgBouncer of one test's own, in the foreground as a child process, in a directory of its
/// own. Dropping it kills the process and removes the directory, also when the test fails; a
/// watchdog does the same if the test binary dies without unwinding.
pub struct PgBouncer {
    child: Child,
    pub port: u16,
    dir: PathBuf,
}

impl PgBouncer {
    /// Starts PgBouncer in transaction mode in front of the server on 127.0.0.1:`server_port`,
    /// for every database on it, with `SERVER_POOL` server connections per database.
    pub fn start(server_port: u16) -> PgBouncer {
        let mut attempts = 0;
        loop {
            attempts += 1;
            match PgBouncer::try_start(server_port) {
                Ok(bouncer) => return bouncer,
                // The free port may have been taken in between: try another.
                Err(log) if attempts < 3 => eprintln!("PgBouncer did not start, again: {log}"),
                Err(log) => panic!("PgBouncer did not start: {log}"),
            }
        }
    }

    fn try_start(server_port: u16) -> Result<PgBouncer, String> {
        let dir = postgres::make_dir("pgbouncer");
        let port = free_port();
        // PgBouncer checks clients' passwords against this list, and logs in to the server with
        // the same password (SCRAM). Clients log in to it with MD5: a password login all the
        // same, without the thousands of hash rounds of SCRAM that ten connects at once in a
        // debug build cost on a busy machine (long enough to hit Penny's connect timeout).
        std::fs::write(
            dir.join("userlist.txt"),
            format!("\"postgres\" \"{PASSWORD}\"\n"),
        )
        .unwrap();
        let ini = format!(
            "[databases]\n\
             * = host=127.0.0.1 port={server_port}\n\
             \n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = md5\n\
             auth_file = {dir}/userlist.txt\n\
             admin_users = postgres\n\
             pool_mode = transaction\n\
             default_pool_size = {SERVER_POOL}\n\
             min_pool_size = 0\n\
             reserve_pool_size = 0\n\
             max_client_conn = 100\n\
             server_tls_sslmode = disable\n\
             log_connections = 1\n\
             log_disconnections = 1\n\
             logfile = {dir}/pgbouncer.log\n\
             pidfile = {dir}/pgbouncer.pid\n",
            dir = dir.display()
        );
        std::fs::write(dir.join("pgbouncer.ini"), ini).unwrap();
        let user = postgres_user();
        if let Some((uid, gid)) = user {
            let status = Command::new("chown")
                .args(["-R", &format!("{uid}:{gid}")])
                .arg(&dir)
                .status()
                .unwrap();
            assert!(status.success(), "chown {}", dir.display());
        }
        let mut command = Command::new(pgbouncer().expect("can_run found PgBouncer"));
        command
            .arg(dir.join("pgbouncer.ini"))
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some((uid, gid)) = user {
            // The child is PgBouncer itself (not runuser), so killing it by its id is exact.
            std::os::unix::process::CommandExt::uid(&mut command, uid);
            std::os::unix::process::CommandExt::gid(&mut command, gid);
        }
        let child = command.spawn().expect("pgbouncer starts");
        let mut bouncer = PgBouncer { child, port, dir };
        bouncer.watch_over();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = bouncer.child.try_wait().unwrap() {
                return Err(format!("exited with {status}: {}", bouncer.log()));
            }
            if TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).is_ok() {
                return Ok(bouncer);
            }
            if Instant::now() > deadline {
                return Err(format!("not listening after 10 s: {}", bouncer.log()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A URL for `dbname` through this PgBouncer, with `params` appended.
    pub fn url(&self, dbname: &str, params: &str) -> String {
        let separator = if params.is_empty() { "" } else { "?" };
        format!(
            "postgres://postgres:{PASSWORD}@127.0.0.1:{port}/{dbname}{separator}{params}",
            port = self.port
        )
    }

    /// SHOW POOLS for `dbname`: (client connections, server connections) at this moment.
    pub fn pool(&self, dbname: &str) -> (usize, usize) {
        pool(self.port, dbname)
    }

    /// The most server connections to `dbname` PgBouncer ever had open at once, and how many it
    /// opened in all, from its log of opening and closing them.
    pub fn server_connections(&self, dbname: &str) -> (usize, usize) {
        let (mut open, mut most, mut opened) = (0usize, 0usize, 0usize);
        let tag = format!(": {dbname}/");
        for line in self.log().lines().filter(|line| line.contains(&tag)) {
            if !line.contains(" S-") {
                continue;
            }
            if line.contains("new connection to server") {
                open += 1;
                opened += 1;
                most = most.max(open);
            } else if line.contains("closing because") {
                open = open.saturating_sub(1);
            }
        }
        (most, opened)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }

    /// Once the test binary has gone, however it went, kills this PgBouncer (if its pidfile is
    /// still there) and removes its directory.
    fn watch_over(&self) {
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; \
             [ -f '{dir}/pgbouncer.pid' ] && kill -9 {child} 2>/dev/null; rm -rf '{dir}'",
            pid = std::process::id(),
            child = self.child.id(),
            dir = self.dir.display(),
        );
        postgres::start_watchdog(&script);
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The `postgres` OS user's uid and gid when the tests run as root; None otherwise.
pub fn postgres_user() -> Option<(u32, u32)> {
    let id = |args: &[&str]| -> String {
        let output = Command::new("id").args(args).output().expect("id runs");
        assert!(output.status.success(), "id {args:?}");
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    };
    if id(&["-u"]) != "0" {
        return None;
    }
    Some((
        id(&["-u", "postgres"]).parse().unwrap(),
        id(&["-g", "postgres"]).parse().unwrap(),
    ))
}

/// Runs a SHOW command on the admin console of the PgBouncer on `port`; each row maps column
/// names to values.
pub fn show(port: u16, what: &str) -> Vec<HashMap<String, String>> {
    let output = Command::new("psql")
        .arg(format!(
            "postgres://postgres:{PASSWORD}@127.0.0.1:{port}/pgbouncer?sslmode=disable"
        ))
        .args(["-X", "-q", "-A", "-F", "|", "-P", "footer=off"])
        .args(["-c", &format!("SHOW {what}")])
        .output()
        .expect("psql runs");
    assert!(
        output.status.success(),
        "SHOW {what} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    let mut lines = text.lines();
    let columns: Vec<&str> = lines.next().unwrap_or_default().split('|').collect();
    lines
        .map(|line| {
            columns
                .iter()
                .zip(line.split('|'))
                .map(|(column, value)| (column.to_string(), value.to_string()))
                .collect()
        })
        .collect()
}

/// SHOW POOLS on the PgBouncer on `port`, for `dbname`: (client connections, server
/// connections) at this moment, in every state.
pub fn pool(port: u16, dbname: &str) -> (usize, usize) {
    let count = |row: &HashMap<String, String>, prefix: &str| -> usize {
        row.iter()
            .filter(|(column, _)| column.starts_with(prefix))
            .filter_map(|(_, value)| value.parse::<usize>().ok())
            .sum()
    };
    show(port, "POOLS")
        .iter()
        .filter(|row| row.get("database").map(String::as_str) == Some(dbname))
        .map(|row| (count(row, "cl_"), count(row, "sv_")))
        .fold((0, 0), |(cl, sv), (c, s)| (cl + c, sv + s))
}

//! Penny's `sslmode`s against a real PostgreSQL that offers TLS with a certificate signed by a
//! test CA for the name "localhost" only (not for 127.0.0.1). Whether a connection is encrypted
//! is asked of the server itself (pg_stat_ssl), not taken on trust.

mod common;

use common::postgres::{PASSWORD, PgServer};
use common::{RunningPenny, TestDb, get};
use hyper::StatusCode;
use penny::config::{DatabaseUrl, PoolConfig};
use penny::db::Position;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const KERNIGHAN: &str =
    "234\tKernighan\tThe C Programming Language\n123\tKernighan\tThe Practice of Programming\n";

/// The server these tests talk to: the shared one, unless that is an external server
/// (PENNY_TEST_DATABASE_URL), whose TLS set-up and CA these tests cannot know; then one of
/// their own. None (after a loud notice) when no server can be started.
fn server() -> Option<&'static PgServer> {
    if std::env::var_os("PENNY_TEST_DATABASE_URL").is_none() {
        return Some(PgServer::shared());
    }
    if !common::postgres::can_start_servers() {
        return None;
    }
    static OWN: OnceLock<PgServer> = OnceLock::new();
    Some(OWN.get_or_init(PgServer::start))
}

/// A fresh database holding penny.sql, loaded over a plain connection under another
/// application_name, so that it never counts among Penny's connections.
async fn database(server: &PgServer) -> String {
    let dbname = server.create_database();
    let url = server.url(&dbname, "sslmode=disable&application_name=penny-setup");
    TestDb::load(DatabaseUrl::parse(Some(&url)).unwrap(), None).await;
    dbname
}

/// The URL of `dbname` on `server` with `host` in place of 127.0.0.1.
fn url_on(server: &PgServer, host: &str, dbname: &str, params: &str) -> String {
    server
        .url(dbname, params)
        .replacen("@127.0.0.1:", &format!("@{host}:"), 1)
}

/// `pg_stat_ssl.ssl` ("t" or "f") for each of Penny's connections to `dbname`, as the server
/// sees them.
fn penny_connections_tls(server: &PgServer, dbname: &str) -> Vec<String> {
    let answer = server.psql(
        "postgres",
        &format!(
            "SELECT ssl FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
             WHERE application_name = 'penny' AND datname = '{dbname}'"
        ),
    );
    answer.lines().map(str::to_owned).collect()
}

/// Penny has a connection open to `dbname`, and every one it has shows `ssl` ("t" or "f"). A
/// connection of a pool dropped just before may linger a moment on the server: it is held to
/// the same rule, so that it can never hide a wrong one.
fn assert_every_connection(server: &PgServer, dbname: &str, ssl: &str, what: &str) {
    let seen = penny_connections_tls(server, dbname);
    assert!(
        !seen.is_empty() && seen.iter().all(|s| s == ssl),
        "{what}: expected ssl = {ssl} on every Penny connection, the server shows {seen:?}"
    );
}

/// Opens `url` in-process, searches, and (while the connection stays open in the pool) checks
/// with the server that it is, or is not, TLS.
async fn search_and_check_tls(server: &PgServer, dbname: &str, url: &str, ssl: &str) {
    let db = TestDb::open(url, &PoolConfig::default()).await;
    let books = db
        .db
        .search_books("ker", &Position::First)
        .await
        .expect("the search works")
        .books;
    assert_eq!(books.len(), 2, "{books:?}");
    assert!(books.iter().all(|book| book.author() == "Kernighan"));
    assert_every_connection(server, dbname, ssl, url);
    drop(db);
}

/// Runs `penny` with `args`, none of the PostgreSQL settings of the environment the tests run
/// in, and `env`; kills it if it has not exited after 10 s. Returns its output (checked for
/// passwords) and how long it ran.
fn penny(args: &[&str], env: &[(&str, &str)]) -> (Output, Duration) {
    common::secrets::register_env(env);
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_penny"))
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("PGSSLMODE")
        .env_remove("PGSSLROOTCERT")
        .env_remove("PENNY_PGBOUNCER")
        .env_remove("PORT")
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("penny starts");
    while child.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let elapsed = started.elapsed();
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    common::secrets::check_output(&output, &args.join(" "));
    (output, elapsed)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `penny books ker` printed the two Kernighan books.
fn assert_found_kernighan(run: &(Output, Duration)) {
    let output = &run.0;
    assert!(output.status.success(), "{}", stderr(output));
    assert_eq!(stdout(output), KERNIGHAN, "{}", stderr(output));
}

/// Penny failed within 5 s, with one clear line (see `common::assert_one_clear_line`) holding
/// each of `expected`.
fn assert_quick_clear_failure(run: &(Output, Duration), expected: &[&str]) {
    let (output, elapsed) = run;
    assert!(
        *elapsed < Duration::from_secs(5),
        "took {elapsed:?}: {}",
        stderr(output)
    );
    common::assert_one_clear_line(output, expected);
}

/// A CA of nobody's: a well-formed PEM certificate that did not sign the server's.
fn unrelated_ca(dir: &Path) -> PathBuf {
    let output = Command::new("openssl")
        .current_dir(dir)
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=Some Other CA", "-keyout", "other.key"])
        .args(["-out", "other.crt"])
        .output()
        .expect("openssl runs");
    assert!(output.status.success(), "{}", stderr(&output));
    dir.join("other.crt")
}

#[cfg_attr(
    not(penny_postgres),
    ignore = "needs PostgreSQL: apt-get install postgresql, brew install postgresql@15, or set PENNY_TEST_PG_BINDIR or PENNY_TEST_DATABASE_URL"
)]
#[tokio::test]
async fn require_encrypts_without_checking_the_certificate() {
    if !common::postgres::available() {
        return;
    }
    let Some(server) = server() else { return };
    let dbname = database(server).await;
    // 127.0.0.1 is not a name on the certificate, and nothing says which CA to trust.
    let url = server.url(&dbname, "sslmode=require");
    search_and_check_tls(server, &dbname, &url, "t").await;
    assert_found_kernighan(&penny(
        &["books", "ker"],
        &[
            ("DATABASE_URL", &url),
            ("PGSSLROOTCERT", "/nonexistent/ca.pem"),
        ],
    ));
    // PGSSLMODE says the same when the URL says nothing.
    assert_found_kernighan(&penny(
        &["books", "ker"],
        &[
            ("DATABASE_URL", &server.url(&dbname, "")),
            ("PGSSLMODE", "require"),
        ],
    ));
}

#[cfg_attr(
    not(penny_postgres),
    ignore = "needs PostgreSQL: apt-get install postgresql, brew install postgresql@15, or set PENNY_TEST_PG_BINDIR or PENNY_TEST_DATABASE_URL"
)]
#[tokio::test]
async fn prefer_uses_tls_when_the_server_offers_it() {
    if !common::postgres::available() {
        return;
    }
    let Some(server) = server() else { return };
    let dbname = database(server).await;
    for params in ["", "sslmode=prefer", "sslmode=allow"] {
        search_and_check_tls(server, &dbname, &server.url(&dbname, params), "t").await;
    }
}

#[cfg_attr(
    not(penny_postgres),
    ignore = "needs PostgreSQL: apt-get install postgresql, brew install postgresql@15, or set PENNY_TEST_PG_BINDIR or PENNY_TEST_DATABASE_URL"
)]
#[tokio::test]
async fn disable_never_uses_tls() {
    if !common::postgres::available() {
        return;
    }
    let Some(server) = server() else { return };
    let dbname = database(server).await;
    let url = server.url(&dbname, "sslmode=disable");
    search_and_check_tls(server, &dbname, &url, "f").await;
    assert_found_kernighan(&penny(
        &["books", "ker"],
        &[
            ("DATABASE_URL", &server.url(&dbname, "")),
            ("PGSSLMODE", "disable"),
        ],
    ));
}

#[cfg_attr(
    not(penny_postgres),
    ignore = "needs PostgreSQL: apt-get install postgresql, brew install postgresql@15, or set PENNY_TEST_PG_BINDIR or PENNY_TEST_DATABASE_URL"
)]
#[tokio::test]
async fn verify_full_refuses_a_certificate_from_an_unknown_ca_with_a_clear_message() {
    if !common::postgres::available() {
        return;
    }
    let Some(server) = server() else { return };
    let dbname = database(server).await;
    // hostaddr: the name checked is "localhost", but only 127.0.0.1 is tried, so that a refused
    // ::1 tried after it (where localhost has both) cannot take the certificate error's place.
    let url = url_on(
        server,
        "localhost",
        &dbname,
        "sslmode=verify-full&hostaddr=127.0.0.1",
    );
    // No PGSSLROOTCERT: the system's CA certificates, which never signed the test CA's.
    if rustls_native_certs::load_native_certs().certs.is_empty() {
        eprintln!("NOTE: this machine has no system CA certificates; that case is not tried");
    } else {
        let run = penny(&["books", "ker"], &[("DATABASE_URL", &url)]);
        assert_quick_clear_failure(&run, &["certificate", "UnknownIssuer"]);
    }
    // A CA certificate, but not the one that signed the server's.
    let dir = tempfile::tempdir().unwrap();
    let other = unrelated_ca(dir.path());
    let run = penny(
        &["books", "ker"],
        &[
            ("DATABASE_URL", &url),
            ("PGSSLROOTCERT", other.to_str().unwrap()),
        ],
    );
    assert_quick_clear_failure(&run, &["certificate", "UnknownIssuer"]);
}

#[cfg_attr(
    not(penny_postgres),
    ignore = "needs PostgreSQL: apt-get install postgresql, brew install postgresql@15, or set PENNY_TEST_PG_BINDIR or PENNY_TEST_DATABASE_URL"
)]
#[tokio::test]
async fn verify_full_connects_with_the_right_root_certificate() {
    if !common::postgres::available() {
        return;
    }
    let Some(server) = server() else { return };
    let dbname = database(server).await;
    let ca = server.ca_cert();
    let ca = ca.to_str().unwrap();
    // PGSSLROOTCERT names the CA.
    let url = url_on(server, "localhost", &dbname, "sslmode=verify-full");
    assert_found_kernighan(&penny(
        &["books", "ker"],
        &[("DATABASE_URL", &url), ("PGSSLROOTCERT", ca)],
    ));
    // So does sslrootcert in the URL, and it comes before PGSSLROOTCERT.
    let url = url_on(
        server,
        "localhost",
        &dbname,
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    assert_found_kernighan(&penny(&["books", "ker"], &[("DATABASE_URL", &url)]));
    assert_found_kernighan(&penny(
        &["books", "ker"],
        &[
            ("DATABASE_URL", &url),
            ("PGSSLROOTCERT", "/nonexistent/ca.pem"),
        ],
    ));
    // The connection is TLS, as the server sees it.
    search_and_check_tls(server, &dbname, &url, "t").await;
    // PGSSLMODE=verify-full works as the URL's sslmode does.
    let url = url_on(server, "localhost", &dbname, "");
    assert_found_kernighan(&penny(
        &["books", "ker"],
        &[
            ("DATABASE_URL", &url),
            ("PGSSLMODE", "verify-full"),
            ("PGSSLROOTCERT", ca),
        ],
    ));
}

#[cfg_attr(
    not(penny_postgres),
    ignore = "needs PostgreSQL: apt-get install postgresql, brew install postgresql@15, or set PENNY_TEST_PG_BINDIR or PENNY_TEST_DATABASE_URL"
)]
#[tokio::test]
async fn verify_full_checks_the_host_name_and_verify_ca_does_not() {
    if !common::postgres::available() {
        return;
    }
    let Some(server) = server() else { return };
    let dbname = database(server).await;
    let ca = server.ca_cert();
    let ca = ca.to_str().unwrap();
    // The certificate is for "localhost" only; the URL says 127.0.0.1.
    let url = server.url(&dbname, &format!("sslmode=verify-full&sslrootcert={ca}"));
    let run = penny(&["books", "ker"], &[("DATABASE_URL", &url)]);
    assert_quick_clear_failure(&run, &["certificate", "not valid for name", "127.0.0.1"]);
    // verify-ca checks the chain only.
    let url = server.url(&dbname, &format!("sslmode=verify-ca&sslrootcert={ca}"));
    assert_found_kernighan(&penny(&["books", "ker"], &[("DATABASE_URL", &url)]));
    search_and_check_tls(server, &dbname, &url, "t").await;
    // But it still refuses a chain from a CA it was not told to trust.
    let dir = tempfile::tempdir().unwrap();
    let other = unrelated_ca(dir.path());
    let url = server.url(
        &dbname,
        &format!("sslmode=verify-ca&sslrootcert={}", other.display()),
    );
    let run = penny(&["books", "ker"], &[("DATABASE_URL", &url)]);
    assert_quick_clear_failure(&run, &["certificate", "UnknownIssuer"]);
}

#[cfg_attr(
    not(penny_postgres),
    ignore = "needs PostgreSQL: apt-get install postgresql, brew install postgresql@15, or set PENNY_TEST_PG_BINDIR or PENNY_TEST_DATABASE_URL"
)]
#[tokio::test]
async fn the_web_server_serves_pages_over_a_verified_connection() {
    if !common::postgres::available() {
        return;
    }
    let Some(server) = server() else { return };
    let dbname = database(server).await;
    let url = url_on(
        server,
        "localhost",
        &dbname,
        &format!(
            "sslmode=verify-full&sslrootcert={}",
            server.ca_cert().display()
        ),
    );
    let penny = RunningPenny::start(&["--bind", "127.0.0.1:0"], &[("DATABASE_URL", &url)], None);
    assert!(!penny.banner.contains(PASSWORD), "{}", penny.banner);
    let page = get(penny.addr, "/searchresults?author=ker", &[]).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let rows = page.table_rows();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(
        rows.iter()
            .all(|row| row.iter().any(|cell| cell == "Kernighan")),
        "{rows:?}"
    );
    let health = get(penny.addr, "/healthz", &[]).await;
    assert_eq!(health.status, StatusCode::OK, "{}", health.body);
    assert_every_connection(server, &dbname, "t", "penny serve");
    assert!(!penny.stdout().contains(PASSWORD));
}

#[cfg_attr(
    not(penny_postgres),
    ignore = "needs PostgreSQL: apt-get install postgresql, brew install postgresql@15, or set PENNY_TEST_PG_BINDIR or PENNY_TEST_DATABASE_URL"
)]
#[tokio::test]
async fn a_bad_root_certificate_file_is_a_clear_start_up_error() {
    if !common::postgres::available() {
        return;
    }
    let Some(server) = server() else { return };
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let garbled = dir.path().join("garbled.pem");
    std::fs::write(
        &garbled,
        "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    // A file that never ends, and one whose open blocks until someone writes: both refused
    // at once, never read.
    let fifo = dir.path().join("fifo.pem");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.unwrap().success(), "mkfifo");
    let endless = PathBuf::from("/dev/zero");
    // Penny never gets as far as connecting, so no database is needed.
    let url = url_on(server, "localhost", "penny_unused", "sslmode=verify-full");
    for file in [
        &missing,
        &garbled,
        &dir.path().to_path_buf(),
        &fifo,
        &endless,
    ] {
        let path = file.to_str().unwrap();
        let with_param = format!("{url}&sslrootcert={path}");
        for env in [
            vec![("DATABASE_URL", url.as_str()), ("PGSSLROOTCERT", path)],
            vec![("DATABASE_URL", with_param.as_str())],
        ] {
            let run = penny(&["serve", "--bind", "127.0.0.1:0"], &env);
            assert!(!stdout(&run.0).contains("Penny is serving"), "{env:?}");
            // The setting is named; its value, which might be a misplaced password, is not.
            assert_quick_clear_failure(&run, &["CA certificates", "sslrootcert"]);
            assert!(!stderr(&run.0).contains(path), "{path} echoed");
        }
    }
}

#[test]
fn settings_in_the_wrong_shape_are_named_never_echoed() {
    let secret = "hunter2-pasted-here";
    for url in [
        format!("postgres://u@localhost/d?sslmode={secret}"),
        format!("postgres://u@localhost/d?pgbouncer={secret}"),
    ] {
        let run = penny(
            &["serve", "--bind", "127.0.0.1:0"],
            &[("DATABASE_URL", &url)],
        );
        let err = stderr(&run.0);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains("sslmode") || err.contains("pgbouncer"),
            "{err}"
        );
        assert!(!err.contains(secret), "echoed: {err}");
    }
    let run = penny(
        &["serve", "--bind", "127.0.0.1:0"],
        &[
            ("DATABASE_URL", "postgres://u@localhost/d"),
            ("PGSSLMODE", secret),
        ],
    );
    let err = stderr(&run.0);
    assert!(err.contains("PGSSLMODE") && !err.contains(secret), "{err}");
}

/// A file that holds no certificate at all (plain text, or a PEM private key) is as much a
/// mistake as a missing one, and the message must name the setting (not its value).
#[cfg_attr(
    not(penny_postgres),
    ignore = "needs PostgreSQL: apt-get install postgresql, brew install postgresql@15, or set PENNY_TEST_PG_BINDIR or PENNY_TEST_DATABASE_URL"
)]
#[tokio::test]
async fn a_root_certificate_file_without_certificates_is_named_in_the_error() {
    if !common::postgres::available() {
        return;
    }
    let Some(server) = server() else { return };
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "this is not a certificate\n").unwrap();
    let key = dir.path().join("other.key");
    unrelated_ca(dir.path());
    let url = url_on(server, "localhost", "penny_unused", "sslmode=verify-full");
    for file in [&text, &key] {
        let path = file.to_str().unwrap();
        let run = penny(
            &["serve", "--bind", "127.0.0.1:0"],
            &[("DATABASE_URL", &url), ("PGSSLROOTCERT", path)],
        );
        assert_quick_clear_failure(&run, &["PGSSLROOTCERT", "no CA certificate"]);
        assert!(!stderr(&run.0).contains(path), "{path} echoed");
    }
}

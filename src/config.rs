//! Settings from the environment, read once at start-up. DATABASE_URL is parsed here into a
//! typed value, so nothing else ever handles the raw string (which may hold a password).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Which database Penny talks to, picked once from DATABASE_URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// No DATABASE_URL: the read-only demo database built into the binary.
    Bundled,
    /// `sqlite:///abs/path.sqlite` or `sqlite://relative.sqlite`.
    Sqlite(PathBuf),
    /// `postgres://…` or `postgresql://…`.
    Postgres(Box<PostgresUrl>),
}

/// A PostgreSQL URL, split into what tokio-postgres understands and Penny's own settings. Its
/// Debug output hides the password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostgresUrl {
    pub config: tokio_postgres::Config,
    pub ssl_mode: SslMode,
    /// The CA certificates (PEM) that `verify-ca` and `verify-full` trust instead of the
    /// system's: `sslrootcert` in the URL, else PGSSLROOTCERT.
    pub root_cert: Option<PathBuf>,
    /// Talking to PgBouncer in transaction mode: no named prepared statements.
    pub pgbouncer: bool,
}

/// libpq's `sslmode`, from the URL or PGSSLMODE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    /// Never TLS.
    Disable,
    /// TLS when the server offers it, certificate unchecked (libpq's default, and `allow`).
    Prefer,
    /// TLS always, certificate unchecked: what Heroku Postgres needs.
    Require,
    /// TLS with a certificate signed by a trusted CA, whatever name it carries.
    VerifyCa,
    /// TLS with a trusted certificate for the host connected to.
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Option<SslMode> {
        Some(match value {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }
}

/// A DATABASE_URL that Penny cannot use. The message never repeats the URL itself.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error(
        "DATABASE_URL must start with postgres://, postgresql:// or sqlite:// (it starts with {scheme:?})"
    )]
    UnknownScheme { scheme: String },
    #[error(
        "DATABASE_URL has no scheme: write postgres://user:password@host/dbname, or for a SQLite \
         file sqlite:///absolute/path.sqlite (three slashes) or sqlite://relative/path.sqlite"
    )]
    NoScheme,
    #[error("DATABASE_URL is not a PostgreSQL URL Penny can use: {0}")]
    BadPostgresUrl(String),
    /// The value is not repeated: a password pasted into the wrong place must not be shown.
    #[error(
        "sslmode (in DATABASE_URL or PGSSLMODE) must be disable, allow, prefer, require, \
         verify-ca or verify-full"
    )]
    BadSslMode,
    /// The value is not repeated, as for sslmode.
    #[error("pgbouncer (in DATABASE_URL or PENNY_PGBOUNCER) must be true or false")]
    BadPgBouncer,
    #[error("DATABASE_URL names no SQLite file (expected sqlite:///abs/path or sqlite://relative)")]
    EmptySqlitePath,
    #[error("{name} must be {expected} (it is {value:?})")]
    BadNumber {
        name: &'static str,
        expected: &'static str,
        value: String,
    },
    #[error("{name} must be true or false (it is {value:?})")]
    BadSwitch { name: &'static str, value: String },
    #[error("PORT must be a port number (it is {0:?})")]
    BadPort(String),
}

impl DatabaseUrl {
    /// Parses DATABASE_URL alone, as if no PG* variable were set; `None` or an empty value means
    /// the bundled demo.
    pub fn parse(url: Option<&str>) -> Result<DatabaseUrl, ConfigError> {
        DatabaseUrl::parse_with(url, &|_| None)
    }

    /// Parses DATABASE_URL, reading PGSSLMODE, PGSSLROOTCERT and PENNY_PGBOUNCER through
    /// `lookup` for what the URL leaves out.
    pub fn parse_with(
        url: Option<&str>,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<DatabaseUrl, ConfigError> {
        let Some(url) = url.map(str::trim).filter(|url| !url.is_empty()) else {
            return Ok(DatabaseUrl::Bundled);
        };
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return PostgresUrl::parse(url, lookup).map(|pg| DatabaseUrl::Postgres(Box::new(pg)));
        }
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(ConfigError::EmptySqlitePath);
            }
            return Ok(DatabaseUrl::Sqlite(PathBuf::from(path)));
        }
        // Only a plausible scheme is echoed: anything else might be a secret pasted by mistake.
        let scheme = match url.split_once("://") {
            Some((scheme, _)) if !scheme.is_empty() => scheme,
            _ => return Err(ConfigError::NoScheme),
        };
        let plausible = scheme.len() <= 16 && scheme.chars().all(|c| c.is_ascii_alphanumeric());
        Err(ConfigError::UnknownScheme {
            scheme: if plausible { scheme.into() } else { "?".into() },
        })
    }

    /// A description for logs: the kind of database and where, never a password.
    pub fn describe(&self) -> String {
        match self {
            DatabaseUrl::Bundled => "the bundled demo database (read-only)".into(),
            DatabaseUrl::Sqlite(path) => format!("SQLite file {}", path.display()),
            DatabaseUrl::Postgres(pg) => pg.describe(),
        }
    }
}

impl PostgresUrl {
    fn parse(
        url: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<PostgresUrl, ConfigError> {
        // Penny's own parameters are taken out; tokio-postgres refuses names it does not know.
        // The query starts after the credentials, which end at the first `@` (as tokio-postgres
        // reads them): a `?` in a password is part of the password.
        let after_credentials = url.find('@').map_or(0, |at| at + 1);
        let (base, query) = match url[after_credentials..].find('?') {
            Some(mark) => {
                let (base, query) = url.split_at(after_credentials + mark);
                (base, &query[1..])
            }
            None => (url, ""),
        };
        let mut ssl_mode = None;
        let mut root_cert = None;
        let mut pgbouncer = None;
        let mut rest = Vec::new();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_encoding::percent_decode_str(value).decode_utf8_lossy();
            match key {
                "sslmode" => ssl_mode = Some(value.into_owned()),
                "sslrootcert" => root_cert = Some(PathBuf::from(value.as_ref())),
                "pgbouncer" => pgbouncer = Some(value.into_owned()),
                _ => rest.push(pair),
            }
        }
        let ssl_mode = ssl_mode.or_else(|| lookup("PGSSLMODE"));
        let ssl_mode = match ssl_mode.as_deref().map(str::trim) {
            None | Some("") => SslMode::Prefer,
            Some(mode) => SslMode::parse(mode).ok_or(ConfigError::BadSslMode)?,
        };
        // Empty means unset, and "system" means the system's CAs, as libpq reads them.
        let root_cert = root_cert
            .or_else(|| lookup("PGSSLROOTCERT").map(PathBuf::from))
            .filter(|path| !path.as_os_str().is_empty() && path.as_os_str() != "system");
        let pgbouncer = pgbouncer.or_else(|| lookup("PENNY_PGBOUNCER"));
        let pgbouncer = match pgbouncer.as_deref().map(on_or_off) {
            None | Some(Ok(None)) => false,
            Some(Ok(Some(on))) => on,
            Some(Err(())) => return Err(ConfigError::BadPgBouncer),
        };
        let url = if rest.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", rest.join("&"))
        };
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|err: tokio_postgres::Error| ConfigError::BadPostgresUrl(err.to_string()))?;
        if config.get_application_name().is_none() {
            config.application_name("penny");
        }
        config.ssl_mode(match ssl_mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        });
        Ok(PostgresUrl {
            config,
            ssl_mode,
            root_cert,
            pgbouncer,
        })
    }

    /// "PostgreSQL database D on H:P as U": never the password.
    pub fn describe(&self) -> String {
        let host = match self.config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
            Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
            None => "localhost".into(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        let user = self.config.get_user().unwrap_or("(default user)");
        let dbname = self.config.get_dbname().unwrap_or(user);
        let via = if self.pgbouncer {
            " through PgBouncer"
        } else {
            ""
        };
        format!("PostgreSQL database {dbname} on {host}:{port} as {user}{via}")
    }
}

/// Connection pool settings, the same knobs for every backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    /// Most connections open at once (PENNY_POOL_SIZE; by default 10 on PostgreSQL and
    /// `SQLITE_POOL_SIZE` on SQLite). Heroku's Essential-0 plan allows 20 connections in all,
    /// and each dyno has its own pool.
    pub size: u32,
    /// How long a request waits for a free connection (PENNY_POOL_TIMEOUT_SECS, default 3),
    /// also the limit on opening one. Well under Heroku's 30 s router timeout.
    pub checkout_timeout: Duration,
    /// An unused connection is closed after this (PENNY_POOL_IDLE_SECS, default 300).
    pub idle_timeout: Duration,
    /// Every connection is replaced after this (PENNY_POOL_LIFETIME_SECS, default 1800), so
    /// rotated credentials and server-side changes reach every connection.
    pub max_lifetime: Duration,
    /// The longest one query may run (PENNY_QUERY_TIMEOUT_SECS, default 5): past it PostgreSQL
    /// is told to cancel it, and SQLite stops waiting for a lock. Either way the request gets a
    /// 503 instead of hanging on a lock another session holds.
    pub query_timeout: Duration,
}

/// The default pool on SQLite. Each connection's calls run on a thread of tokio's blocking
/// pool, so more connections than a small machine has cores only add threads and memory:
/// measured on 2 cores under 256 connections on a million books, 4 served as many requests a
/// second as 10, in 19.9 MiB against 21.8.
pub const SQLITE_POOL_SIZE: u32 = 4;

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            size: 10,
            checkout_timeout: Duration::from_secs(3),
            idle_timeout: Duration::from_secs(300),
            max_lifetime: Duration::from_secs(1800),
            query_timeout: Duration::from_secs(5),
        }
    }
}

/// Everything Penny reads from its environment.
#[derive(Clone, Debug)]
pub struct Config {
    pub database: DatabaseUrl,
    pub pool: PoolConfig,
    /// PORT set (Heroku, Docker): 0.0.0.0:$PORT. Unset: 127.0.0.1:8000.
    pub bind: SocketAddr,
    /// The most requests handled at once (PENNY_MAX_IN_FLIGHT, default 1024); any more get an
    /// immediate 503 rather than a place in an ever longer queue.
    pub max_in_flight: usize,
    /// How many log lines may wait for stdout (PENNY_LOG_QUEUE_LINES, default 16384); past
    /// that, lines are dropped and counted until stdout takes them again (see `logging`).
    pub log_queue_lines: usize,
    /// Whether visitors must use HTTPS (PENNY_HTTPS_ONLY; by default, only on Heroku, where
    /// DYNO is set): a GET or HEAD that the router received over http is redirected to https,
    /// and answers over https carry Strict-Transport-Security. Only a request whose
    /// X-Forwarded-Proto says http is redirected, so a plain local run never is.
    pub https_only: bool,
    /// Whether /api/pool shows the connection pool (PENNY_POOL_VIEW, default on): counts only,
    /// for a lesson to watch the pool fill up under load.
    pub pool_view: bool,
}

const DEFAULT_MAX_IN_FLIGHT: usize = 1024;

/// A quarter of a second of a busy server's log (the writer takes lines every 5 ms). The queue
/// is made whole at start: tracing-appender's 128,000 lines were 3.5 MiB of Penny's memory
/// before it had served anything, and a stalled stdout loses lines either way, counted.
const DEFAULT_LOG_QUEUE_LINES: usize = 16_384;

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let database = DatabaseUrl::parse_with(lookup("DATABASE_URL").as_deref(), &lookup)?;
        let defaults = PoolConfig::default();
        let pool = PoolConfig {
            size: number(
                &lookup,
                "PENNY_POOL_SIZE",
                "a whole number from 1 to 1000",
                1..=1000,
            )?
            .unwrap_or(match database {
                DatabaseUrl::Postgres(_) => defaults.size,
                DatabaseUrl::Bundled | DatabaseUrl::Sqlite(_) => SQLITE_POOL_SIZE,
            }),
            checkout_timeout: seconds(&lookup, "PENNY_POOL_TIMEOUT_SECS", 60)?
                .unwrap_or(defaults.checkout_timeout),
            idle_timeout: seconds(&lookup, "PENNY_POOL_IDLE_SECS", 86_400)?
                .unwrap_or(defaults.idle_timeout),
            max_lifetime: seconds(&lookup, "PENNY_POOL_LIFETIME_SECS", 86_400)?
                .unwrap_or(defaults.max_lifetime),
            query_timeout: seconds(&lookup, "PENNY_QUERY_TIMEOUT_SECS", 60)?
                .unwrap_or(defaults.query_timeout),
        };
        let max_in_flight = number(
            &lookup,
            "PENNY_MAX_IN_FLIGHT",
            "a whole number from 1 to 100000",
            1..=100_000,
        )?
        .map_or(DEFAULT_MAX_IN_FLIGHT, |n| n as usize);
        let log_queue_lines = number(
            &lookup,
            "PENNY_LOG_QUEUE_LINES",
            "a whole number from 1 to 1000000",
            1..=1_000_000,
        )?
        .map_or(DEFAULT_LOG_QUEUE_LINES, |n| n as usize);
        let bind = match lookup("PORT") {
            Some(port) => {
                let port = port
                    .trim()
                    .parse()
                    .map_err(|_| ConfigError::BadPort(port))?;
                SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))
            }
            None => SocketAddr::from((Ipv4Addr::LOCALHOST, 8000)),
        };
        let https_only =
            switch(&lookup, "PENNY_HTTPS_ONLY")?.unwrap_or_else(|| lookup("DYNO").is_some());
        let pool_view = switch(&lookup, "PENNY_POOL_VIEW")?.unwrap_or(true);
        Ok(Config {
            database,
            pool,
            bind,
            max_in_flight,
            log_queue_lines,
            https_only,
            pool_view,
        })
    }
}

/// A setting that is on or off, from the environment (see `on_or_off`); `None` when unset or
/// blank.
fn switch(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<Option<bool>, ConfigError> {
    let Some(value) = lookup(name) else {
        return Ok(None);
    };
    on_or_off(&value).map_err(|()| ConfigError::BadSwitch {
        name,
        value: value.trim().to_owned(),
    })
}

/// `true`, `1`, `yes`, `on` or `false`, `0`, `no`, `off`, spaces aside; `None` when blank.
fn on_or_off(value: &str) -> Result<Option<bool>, ()> {
    match value.trim() {
        "" => Ok(None),
        "1" | "true" | "yes" | "on" => Ok(Some(true)),
        "0" | "false" | "no" | "off" => Ok(Some(false)),
        _ => Err(()),
    }
}

fn seconds(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    max: u32,
) -> Result<Option<Duration>, ConfigError> {
    let seconds = number(
        lookup,
        name,
        "a whole number of seconds, at least 1",
        1..=max,
    )?;
    Ok(seconds.map(|secs| Duration::from_secs(secs.into())))
}

fn number(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    expected: &'static str,
    range: std::ops::RangeInclusive<u32>,
) -> Result<Option<u32>, ConfigError> {
    let Some(value) = lookup(name) else {
        return Ok(None);
    };
    match value.trim().parse() {
        Ok(n) if range.contains(&n) => Ok(Some(n)),
        _ => Err(ConfigError::BadNumber {
            name,
            expected,
            value,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_database_url_means_the_bundled_demo() {
        assert_eq!(DatabaseUrl::parse(None), Ok(DatabaseUrl::Bundled));
        assert_eq!(DatabaseUrl::parse(Some("  ")), Ok(DatabaseUrl::Bundled));
    }

    #[test]
    fn sqlite_urls_name_absolute_and_relative_files() {
        assert_eq!(
            DatabaseUrl::parse(Some("sqlite:///var/data/penny.sqlite")),
            Ok(DatabaseUrl::Sqlite("/var/data/penny.sqlite".into()))
        );
        assert_eq!(
            DatabaseUrl::parse(Some("sqlite://penny.sqlite")),
            Ok(DatabaseUrl::Sqlite("penny.sqlite".into()))
        );
        assert_eq!(
            DatabaseUrl::parse(Some("sqlite://")),
            Err(ConfigError::EmptySqlitePath)
        );
    }

    #[test]
    fn an_unknown_scheme_is_named_but_nothing_else_is_repeated() {
        let err = DatabaseUrl::parse(Some("mysql://root:hunter2@db/penny")).unwrap_err();
        assert!(
            err.to_string().ends_with("(it starts with \"mysql\")"),
            "{err}"
        );
        let err = DatabaseUrl::parse(Some("hunter2-is-my-password")).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn a_path_or_a_word_without_a_scheme_gets_the_sqlite_form_suggested() {
        for url in ["garbage", "/srv/penny/books.sqlite", "books.sqlite", "://x"] {
            let err = DatabaseUrl::parse(Some(url)).unwrap_err();
            assert_eq!(err, ConfigError::NoScheme, "{url}");
            assert!(err.to_string().contains("sqlite:///"), "{err}");
            assert!(!err.to_string().contains(url), "{err}");
        }
    }

    fn postgres(url: &str, env: &[(&str, &str)]) -> Result<PostgresUrl, ConfigError> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        match DatabaseUrl::parse_with(Some(url), &lookup)? {
            DatabaseUrl::Postgres(pg) => Ok(*pg),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn heroku_urls_are_postgres_and_prefer_tls_by_default() {
        let pg = postgres(
            "postgres://u7:p4ss@ec2-1-2-3-4.compute.amazonaws.com:5432/d8x",
            &[],
        )
        .unwrap();
        assert_eq!(pg.ssl_mode, SslMode::Prefer);
        assert_eq!(pg.config.get_dbname(), Some("d8x"));
        assert_eq!(pg.config.get_password(), Some(&b"p4ss"[..]));
        assert_eq!(pg.config.get_application_name(), Some("penny"));
        assert!(!pg.pgbouncer);
        assert_eq!(
            pg.describe(),
            "PostgreSQL database d8x on ec2-1-2-3-4.compute.amazonaws.com:5432 as u7"
        );
        assert!(postgres("postgresql://localhost/penny", &[]).is_ok());
    }

    #[test]
    fn sslmode_comes_from_the_url_before_pgsslmode() {
        let url = "postgres://u@h/d?sslmode=verify-full&sslrootcert=/ca.pem&connect_timeout=2";
        let pg = postgres(url, &[("PGSSLMODE", "disable")]).unwrap();
        assert_eq!(pg.ssl_mode, SslMode::VerifyFull);
        assert_eq!(pg.root_cert, Some(PathBuf::from("/ca.pem")));
        assert_eq!(
            pg.config.get_connect_timeout(),
            Some(&Duration::from_secs(2))
        );
        let pg = postgres(
            "postgres://u@h/d",
            &[("PGSSLMODE", "require"), ("PGSSLROOTCERT", "/r")],
        )
        .unwrap();
        assert_eq!(pg.ssl_mode, SslMode::Require);
        assert_eq!(pg.root_cert, Some(PathBuf::from("/r")));
        for unset in ["", "system"] {
            let pg = postgres("postgres://u@h/d", &[("PGSSLROOTCERT", unset)]).unwrap();
            assert_eq!(pg.root_cert, None, "{unset:?}");
        }
        let err = postgres("postgres://u@h/d?sslmode=verify-mostly", &[]).unwrap_err();
        assert_eq!(err, ConfigError::BadSslMode);
    }

    #[test]
    fn pgbouncer_mode_is_an_explicit_setting() {
        assert!(
            postgres("postgres://u@h/d?pgbouncer=true", &[])
                .unwrap()
                .pgbouncer
        );
        assert!(
            postgres("postgres://u@h/d", &[("PENNY_PGBOUNCER", "1")])
                .unwrap()
                .pgbouncer
        );
        assert!(
            !postgres(
                "postgres://u@h/d?pgbouncer=false",
                &[("PENNY_PGBOUNCER", "1")]
            )
            .unwrap()
            .pgbouncer
        );
    }

    #[test]
    fn postgres_errors_and_debug_output_never_show_the_password() {
        let pg = postgres("postgres://u:hunter2@h/d", &[]).unwrap();
        assert!(!format!("{pg:?}").contains("hunter2"), "{pg:?}");
        assert!(!pg.describe().contains("hunter2"));
        for bad in [
            "postgres://u:hunter2@h:notaport/d",
            "postgres://u:hunter2@h/d?bogus=1",
        ] {
            let err = postgres(bad, &[]).unwrap_err();
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn a_question_mark_in_the_password_starts_no_parameters() {
        let pg = postgres("postgres://u:x?pgbouncer=maybe@h/d", &[]).unwrap();
        assert_eq!(pg.config.get_password(), Some(&b"x?pgbouncer=maybe"[..]));
        assert!(!pg.pgbouncer);
        let url = "postgres://u:a?sslmode=disable&b@h/d?sslmode=require&pgbouncer=1";
        let pg = postgres(url, &[]).unwrap();
        assert_eq!(pg.config.get_password(), Some(&b"a?sslmode=disable&b"[..]));
        assert_eq!(pg.ssl_mode, SslMode::Require);
        assert!(pg.pgbouncer);
    }

    #[test]
    fn port_binds_every_interface_and_its_absence_only_loopback() {
        let config = Config::from_lookup(|name| (name == "PORT").then(|| "5000".into())).unwrap();
        assert_eq!(config.bind, "0.0.0.0:5000".parse().unwrap());
        let config = Config::from_lookup(|_| None).unwrap();
        assert_eq!(config.bind, "127.0.0.1:8000".parse().unwrap());
        let pool = PoolConfig {
            size: SQLITE_POOL_SIZE,
            ..PoolConfig::default()
        };
        assert_eq!(config.pool, pool);
    }

    #[test]
    fn bad_numbers_are_refused_with_the_setting_named() {
        let err = Config::from_lookup(|name| (name == "PENNY_POOL_SIZE").then(|| "0".into()))
            .unwrap_err();
        assert!(
            err.to_string().starts_with("PENNY_POOL_SIZE must be"),
            "{err}"
        );
        let err = Config::from_lookup(|name| (name == "PORT").then(|| "http".into())).unwrap_err();
        assert_eq!(err, ConfigError::BadPort("http".into()));
        for name in [
            "PENNY_QUERY_TIMEOUT_SECS",
            "PENNY_MAX_IN_FLIGHT",
            "PENNY_LOG_QUEUE_LINES",
        ] {
            let err = Config::from_lookup(|n| (n == name).then(|| "0".into())).unwrap_err();
            assert!(err.to_string().starts_with(name), "{err}");
        }
    }

    #[test]
    fn the_query_timeout_the_request_limit_and_the_log_queue_come_from_the_environment() {
        let defaults = Config::from_lookup(|_| None).unwrap();
        assert_eq!(defaults.pool.query_timeout, Duration::from_secs(5));
        assert_eq!(defaults.max_in_flight, 1024);
        assert_eq!(defaults.log_queue_lines, 16_384);
        let config = Config::from_lookup(|name| match name {
            "PENNY_QUERY_TIMEOUT_SECS" => Some("12".into()),
            "PENNY_MAX_IN_FLIGHT" => Some(" 64 ".into()),
            "PENNY_LOG_QUEUE_LINES" => Some("1000".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(config.pool.query_timeout, Duration::from_secs(12));
        assert_eq!(config.max_in_flight, 64);
        assert_eq!(config.log_queue_lines, 1000);
    }

    #[test]
    fn the_pool_is_smaller_on_sqlite_unless_set() {
        let size = |url: Option<&str>, set: Option<&str>| {
            let config = Config::from_lookup(|name| match name {
                "DATABASE_URL" => url.map(String::from),
                "PENNY_POOL_SIZE" => set.map(String::from),
                _ => None,
            });
            config.unwrap().pool.size
        };
        let postgres = Some("postgres://penny@db.example/books");
        assert_eq!(size(None, None), SQLITE_POOL_SIZE);
        assert_eq!(size(Some("sqlite:///tmp/p.sqlite"), None), SQLITE_POOL_SIZE);
        assert_eq!(size(postgres, None), 10);
        assert_eq!(size(None, Some("7")), 7);
        assert_eq!(size(postgres, Some("7")), 7);
    }
}

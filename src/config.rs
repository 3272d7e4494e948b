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
}

/// A DATABASE_URL that Penny cannot use. The message never repeats the URL itself.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("DATABASE_URL must start with sqlite:// (it starts with {scheme:?})")]
    UnknownScheme { scheme: String },
    #[error("DATABASE_URL names no SQLite file (expected sqlite:///abs/path or sqlite://relative)")]
    EmptySqlitePath,
    #[error("{name} must be {expected} (it is {value:?})")]
    BadNumber {
        name: &'static str,
        expected: &'static str,
        value: String,
    },
    #[error("PORT must be a port number (it is {0:?})")]
    BadPort(String),
}

impl DatabaseUrl {
    /// Parses DATABASE_URL; `None` or an empty value means the bundled demo.
    pub fn parse(url: Option<&str>) -> Result<DatabaseUrl, ConfigError> {
        let Some(url) = url.map(str::trim).filter(|url| !url.is_empty()) else {
            return Ok(DatabaseUrl::Bundled);
        };
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(ConfigError::EmptySqlitePath);
            }
            return Ok(DatabaseUrl::Sqlite(PathBuf::from(path)));
        }
        let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
        // Only a plausible scheme is echoed: anything else might be a secret pasted by mistake.
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
        }
    }
}

/// Connection pool settings, the same knobs for every backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    /// Most connections open at once (PENNY_POOL_SIZE, default 10).
    pub size: u32,
    /// How long a request waits for a free connection (PENNY_POOL_TIMEOUT_SECS, default 3).
    pub checkout_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            size: 10,
            checkout_timeout: Duration::from_secs(3),
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
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let database = DatabaseUrl::parse(lookup("DATABASE_URL").as_deref())?;
        let defaults = PoolConfig::default();
        let pool = PoolConfig {
            size: number(
                &lookup,
                "PENNY_POOL_SIZE",
                "a whole number from 1 to 1000",
                1..=1000,
            )?
            .unwrap_or(defaults.size),
            checkout_timeout: number(
                &lookup,
                "PENNY_POOL_TIMEOUT_SECS",
                "a number of seconds from 1 to 60",
                1..=60,
            )?
            .map_or(defaults.checkout_timeout, |secs| {
                Duration::from_secs(secs.into())
            }),
        };
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
        Ok(Config {
            database,
            pool,
            bind,
        })
    }
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
        assert_eq!(
            err.to_string(),
            "DATABASE_URL must start with sqlite:// (it starts with \"mysql\")"
        );
        let err = DatabaseUrl::parse(Some("hunter2-is-my-password")).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn port_binds_every_interface_and_its_absence_only_loopback() {
        let config = Config::from_lookup(|name| (name == "PORT").then(|| "5000".into())).unwrap();
        assert_eq!(config.bind, "0.0.0.0:5000".parse().unwrap());
        let config = Config::from_lookup(|_| None).unwrap();
        assert_eq!(config.bind, "127.0.0.1:8000".parse().unwrap());
        assert_eq!(config.pool, PoolConfig::default());
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
    }
}

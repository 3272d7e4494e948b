//! Where the programs the tests drive are found: PostgreSQL's server binaries, PgBouncer,
//! Chromium and chromedriver. Shared by build.rs, which marks the tests that need a missing one
//! as ignored (so cargo's summary says they did not run), and by the tests, which start them.
//! Each is looked for, in order: an explicit setting, then PATH, then where Debian puts it.
//! Only std here: build.rs compiles this file too.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The settings that name each program, for messages and for build.rs to watch.
pub const SETTINGS: [&str; 4] = [
    "PENNY_TEST_PG_BINDIR",
    "PENNY_TEST_PGBOUNCER",
    "PENNY_TEST_CHROMIUM",
    "PENNY_TEST_CHROMEDRIVER",
];

/// How to install what the tests need, for the ignore reasons and skip messages.
pub const INSTALL_POSTGRES: &str = "apt-get install postgresql / brew install postgresql@15, \
     or set PENNY_TEST_PG_BINDIR";
pub const INSTALL_PGBOUNCER: &str =
    "apt-get install pgbouncer / brew install pgbouncer, or set PENNY_TEST_PGBOUNCER";
pub const INSTALL_BROWSER: &str = "apt-get install chromium chromium-driver / brew install \
     --cask chromium chromedriver, or set PENNY_TEST_CHROMIUM and PENNY_TEST_CHROMEDRIVER";

/// A directory holding PostgreSQL's `initdb`, `pg_ctl` and `postgres`: PENNY_TEST_PG_BINDIR,
/// else `pg_config --bindir`, else the directory of `initdb` on PATH, else the newest
/// /usr/lib/postgresql/*/bin (Debian keeps the server binaries off PATH).
pub fn postgres_bindir() -> Option<PathBuf> {
    let is_server = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|b| dir.join(b).is_file())
    };
    if let Some(dir) = std::env::var_os("PENNY_TEST_PG_BINDIR") {
        return Some(PathBuf::from(dir)).filter(|dir| is_server(dir));
    }
    let from_pg_config = std::process::Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()));
    if let Some(dir) = from_pg_config.filter(|dir| is_server(dir)) {
        return Some(dir);
    }
    let beside_initdb = on_path("initdb").and_then(|initdb| Some(initdb.parent()?.to_path_buf()));
    if let Some(dir) = beside_initdb.filter(|dir| is_server(dir)) {
        return Some(dir);
    }
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| Some(entry.ok()?.path().join("bin")))
        .filter(|dir| is_server(dir))
        .collect();
    debian.sort();
    debian.pop()
}

/// PgBouncer: PENNY_TEST_PGBOUNCER, else on PATH, else Debian's /usr/sbin/pgbouncer.
pub fn pgbouncer() -> Option<PathBuf> {
    program(
        "PENNY_TEST_PGBOUNCER",
        &["pgbouncer"],
        &["/usr/sbin/pgbouncer"],
    )
}

/// Chromium (or Chrome): PENNY_TEST_CHROMIUM, else on PATH.
pub fn chromium() -> Option<PathBuf> {
    program(
        "PENNY_TEST_CHROMIUM",
        &["chromium", "chromium-browser", "google-chrome", "chrome"],
        &["/usr/bin/chromium"],
    )
}

/// chromedriver: PENNY_TEST_CHROMEDRIVER, else on PATH.
pub fn chromedriver() -> Option<PathBuf> {
    program(
        "PENNY_TEST_CHROMEDRIVER",
        &["chromedriver"],
        &["/usr/bin/chromedriver"],
    )
}

/// The program `setting` names (if set, it must exist), else the first of `names` on PATH,
/// else the first of `fallbacks` that exists.
fn program(setting: &str, names: &[&str], fallbacks: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(setting) {
        return Some(PathBuf::from(path)).filter(|path| path.is_file());
    }
    names.iter().find_map(|name| on_path(name)).or_else(|| {
        fallbacks
            .iter()
            .map(PathBuf::from)
            .find(|path| path.is_file())
    })
}

/// `name` in one of PATH's directories.
pub fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

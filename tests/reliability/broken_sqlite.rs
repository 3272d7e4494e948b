//! The SQLite file broken under a running server: generic error pages, and no crash.

use crate::common::load::{Load, Outcome, Sample, describe};
use crate::helpers::{DATABASE_PATHS, SqliteFile, is_generic_error, is_running, serve};
use hyper::StatusCode;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
enum Breakage {
    Truncated,
    OverwrittenWithGarbage,
    Removed,
    ReplacedByADirectory,
    MadeUnreadable,
}

impl Breakage {
    fn apply(self, path: &std::path::Path) {
        use std::os::unix::fs::PermissionsExt;
        match self {
            Breakage::Truncated => std::fs::write(path, b"").unwrap(),
            Breakage::OverwrittenWithGarbage => std::fs::write(path, vec![0x5a; 8192]).unwrap(),
            Breakage::Removed => std::fs::remove_file(path).unwrap(),
            Breakage::ReplacedByADirectory => {
                std::fs::remove_file(path).unwrap();
                std::fs::create_dir(path).unwrap();
            }
            Breakage::MadeUnreadable => {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o000)).unwrap()
            }
        }
    }

    fn repair(self, path: &std::path::Path, good: &[u8]) {
        use std::os::unix::fs::PermissionsExt;
        match self {
            Breakage::ReplacedByADirectory => std::fs::remove_dir(path).unwrap(),
            Breakage::MadeUnreadable => {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap()
            }
            _ => {}
        }
        std::fs::write(path, good).unwrap();
    }
}

/// What a breakage did: the answers while broken and after the file was put back.
struct BreakageFigures {
    broken: Vec<Sample>,
    repaired: Vec<Sample>,
    log: String,
    alive: bool,
}

/// Serves a fresh SQLite file under load, breaks it, then puts the original bytes back.
async fn break_under_load(breakage: Breakage) -> BreakageFigures {
    let file = SqliteFile::create();
    let good = std::fs::read(&file.path).unwrap();
    let mut penny = serve(&[("DATABASE_URL", &file.url)]);
    // More clients than the pool has connections, so the pool opens all of them first.
    let clock = Instant::now();
    let warm = Load::start(penny.addr, 16, &DATABASE_PATHS, clock);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let warm = warm.finish().await;
    assert!(warm.iter().all(|s| s.is(StatusCode::OK)));

    breakage.apply(&file.path);
    let mut paths = DATABASE_PATHS.to_vec();
    paths.extend(["/", "/static/penny.css"]);
    let load = Load::start(penny.addr, 16, paths.leak(), clock);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let broken = load.finish().await;
    breakage.repair(&file.path, &good);
    let load = Load::start(penny.addr, 16, &DATABASE_PATHS, clock);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let repaired = load.finish().await;
    BreakageFigures {
        broken,
        repaired,
        log: penny.stdout(),
        alive: is_running(&mut penny),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sqlite_file_broken_under_a_running_server_gives_generic_error_pages_and_no_crash() {
    println!("The SQLite file broken under a running server (16 keep-alive clients):");
    for breakage in [
        Breakage::Truncated,
        Breakage::OverwrittenWithGarbage,
        Breakage::Removed,
        Breakage::ReplacedByADirectory,
        Breakage::MadeUnreadable,
    ] {
        let figures = break_under_load(breakage).await;
        let on = |path: &str| -> Vec<&Sample> {
            figures.broken.iter().filter(|s| s.path == path).collect()
        };
        let database: Vec<&Sample> = figures
            .broken
            .iter()
            .filter(|s| DATABASE_PATHS.contains(&s.path))
            .collect();
        println!("  {breakage:?}:");
        for path in [
            "/searchresults?author=ker",
            "/healthz",
            "/",
            "/static/penny.css",
        ] {
            println!("    {path:<27} {}", describe(&on(path)));
        }
        println!(
            "    after the file was put back: {}",
            describe(&figures.repaired.iter().collect::<Vec<_>>())
        );

        assert!(figures.alive, "{breakage:?}: no crash");
        for sample in &figures.broken {
            let Outcome::Answered { status, body } = &sample.outcome else {
                panic!("{breakage:?}: every request is answered: {sample:?}");
            };
            assert!(sample.took < Duration::from_secs(2), "{sample:?}");
            if !DATABASE_PATHS.contains(&sample.path) {
                assert_eq!(*status, StatusCode::OK, "{breakage:?}: {sample:?}");
            } else if let Some(body) = body {
                assert!(status.is_server_error(), "{breakage:?}: {sample:?}");
                assert!(is_generic_error(body), "{breakage:?}: {body}");
            }
        }
        match breakage {
            Breakage::Truncated => {
                // An empty file is an empty database: the table is gone. The pages say what
                // /healthz says (503, come back later), and the log says it once.
                assert!(
                    database
                        .iter()
                        .all(|s| s.is(StatusCode::SERVICE_UNAVAILABLE)),
                    "{}",
                    describe(&database)
                );
                assert_eq!(
                    figures.log.matches("no such table: books").count(),
                    1,
                    "{}",
                    figures.log
                );
            }
            Breakage::OverwrittenWithGarbage => {
                assert!(
                    database
                        .iter()
                        .all(|s| s.is(StatusCode::SERVICE_UNAVAILABLE)),
                    "{}",
                    describe(&database)
                );
                assert!(
                    figures.log.contains("file is not a database"),
                    "{}",
                    figures.log
                );
            }
            // The pool's open connections keep reading the file they opened, whatever now
            // lives at its path: the answers above are 200s or error pages, never a crash.
            Breakage::Removed | Breakage::ReplacedByADirectory | Breakage::MadeUnreadable => {}
        }
        // A connection that read the file while it was empty keeps SQLite's empty schema, so
        // after a truncation each pooled connection may fail once more; a connection whose
        // statement failed is closed, never reused, so that is all (the pool holds 10).
        let failed_after_repair = figures
            .repaired
            .iter()
            .filter(|s| !s.is(StatusCode::OK))
            .count();
        let allowed = match breakage {
            Breakage::Truncated => 10,
            _ => 0,
        };
        assert!(
            failed_after_repair <= allowed,
            "{breakage:?}: served again once the file is back: {}",
            describe(&figures.repaired.iter().collect::<Vec<_>>())
        );
    }
}

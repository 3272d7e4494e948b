//! A credential rotation: PostgreSQL restarted with a new password, and Penny restarted with the
//! new URL.

use crate::common;
use crate::common::load::{Load, Outcome, Sample, describe, time_until_ok, warm_up};
use crate::common::postgres::{PASSWORD, PgServer, can_start_servers, loaded_database};
use crate::helpers::{DATABASE_PAGES, blocking, is_generic_error, is_running, serve};
use hyper::StatusCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[cfg_attr(
    not(penny_postgres_server),
    ignore = "needs PostgreSQL server binaries to start servers with: apt-get install postgresql, brew install postgresql@15, or set PENNY_TEST_PG_BINDIR"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_postgres_password_gives_503s_and_one_clear_log_line_and_the_new_url_serves_after_a_restart()
 {
    if !can_start_servers() {
        return;
    }
    const ROTATED: &str = "pw-rotated-Kx93";
    let server = Arc::new(blocking(PgServer::start).await);
    let (url, _) = {
        let server = server.clone();
        blocking(move || loaded_database(&server)).await
    };
    let mut penny = serve(&[("DATABASE_URL", &url), ("PENNY_POOL_SIZE", "4")]);
    warm_up(penny.addr, 16).await;

    // Pages only: the log must name the refused password without a monitor polling /healthz.
    let pages: &'static [&str] = &DATABASE_PAGES;
    let clock = Instant::now();
    let load = Load::start(penny.addr, 8, pages, clock);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rotating = clock.elapsed();
    blocking({
        let server = server.clone();
        move || {
            server.set_password(ROTATED);
            server.stop();
            server.start_again();
        }
    })
    .await;
    let restarted = clock.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let samples = load.finish().await;

    let before: Vec<&Sample> = samples.iter().filter(|s| s.done() < rotating).collect();
    let after: Vec<&Sample> = samples.iter().filter(|s| s.sent >= restarted).collect();
    let log = penny.wait_for_log("password authentication failed", Duration::from_secs(5));
    let complaints: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("password authentication failed"))
        .collect();
    let outage: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("the database is unavailable"))
        .filter(|line| !line.contains("health check failed"))
        .collect();
    println!("PostgreSQL restarted with a new password (8 keep-alive clients):");
    println!("  before:          {}", describe(&before));
    println!("  after restart:   {}", describe(&after));
    println!("  outage logged:   {outage:?}");
    println!(
        "  lines naming the password failure: {} (e.g. {:?})",
        complaints.len(),
        complaints.first()
    );

    assert!(
        before.iter().all(|s| s.is(StatusCode::OK)),
        "{}",
        describe(&before)
    );
    for path in pages {
        assert!(after.iter().any(|s| s.path == *path), "{path} was asked");
    }
    for sample in &after {
        assert!(
            sample.is(StatusCode::SERVICE_UNAVAILABLE),
            "a 503 with the old password: {sample:?}"
        );
        // Each attempt to connect is bounded by two thirds of the checkout timeout (3 s).
        assert!(sample.took < Duration::from_secs(4), "no hang: {sample:?}");
        if let Outcome::Answered {
            body: Some(body), ..
        } = &sample.outcome
        {
            assert!(is_generic_error(body), "{body}");
        }
    }
    assert_eq!(outage.len(), 1, "the outage is logged once: {outage:?}");
    assert_eq!(
        complaints.len(),
        1,
        "the log says once that the password was refused: {complaints:?}"
    );
    // A monitor polling /healthz hears 503 and adds nothing to the log.
    for _ in 0..20 {
        assert_eq!(
            common::get(penny.addr, "/healthz", &[]).await.status,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    let log = penny.stdout();
    assert!(!log.contains("health check failed"), "{log}");
    assert!(
        !log.contains(PASSWORD) && !log.contains(ROTATED),
        "no password in the log: {log}"
    );
    assert!(is_running(&mut penny), "no crash");

    penny.signal("TERM");
    let status = blocking(move || penny.wait_for_exit(Duration::from_secs(10)))
        .await
        .expect("penny exits on SIGTERM");
    assert!(status.success(), "{status:?}");

    let rotated_url = url.replace(PASSWORD, ROTATED);
    assert_ne!(rotated_url, url);
    let penny = serve(&[("DATABASE_URL", &rotated_url)]);
    let took = time_until_ok(
        penny.addr,
        "/searchresults?author=ker",
        Duration::from_secs(5),
    )
    .await;
    println!("  restarted with the new URL: first 200 after {took:?}");
    assert!(took.is_some(), "the new URL serves");
    let page = common::get(penny.addr, "/searchresults?author=ker", &[]).await;
    assert_eq!(page.table_rows().len(), 2);
    assert_eq!(
        common::get(penny.addr, "/healthz", &[]).await.status,
        StatusCode::OK
    );
}

//! PostgreSQL stopped and started again under load: 503s within 2 s of the outage, 200s within
//! 2 s of its end.

use crate::common::load::{Load, Outcome, Sample, describe, ms, secs, warm_up};
use crate::common::postgres::{PgServer, can_start_servers, loaded_database};
use crate::helpers::{DATABASE_PATHS, blocking, is_generic_error, is_running, serve};
use hyper::StatusCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[cfg_attr(
    not(penny_postgres_server),
    ignore = "needs PostgreSQL server binaries to start servers with: apt-get install postgresql, brew install postgresql@15, or set PENNY_TEST_PG_BINDIR"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_stopped_under_load_gives_503s_within_2_s_and_200s_resume_within_2_s_of_its_return()
 {
    if !can_start_servers() {
        return;
    }
    let server = Arc::new(blocking(PgServer::start).await);
    let (url, _) = {
        let server = server.clone();
        blocking(move || loaded_database(&server)).await
    };
    // A small pool: in a debug build each new connection's SCRAM handshake costs about a third
    // of a second of CPU, and the figure is about noticing the database is back, not about how
    // many handshakes two cores manage at once.
    let mut penny = serve(&[("DATABASE_URL", &url), ("PENNY_POOL_SIZE", "4")]);
    warm_up(penny.addr, 32).await;

    let clock = Instant::now();
    let load = Load::start(penny.addr, 32, &DATABASE_PATHS, clock);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stopping = clock.elapsed();
    blocking({
        let server = server.clone();
        move || server.stop()
    })
    .await;
    let stopped = clock.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let starting = clock.elapsed();
    blocking({
        let server = server.clone();
        move || server.start_again()
    })
    .await;
    let started = clock.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let samples = load.finish().await;

    let all: Vec<&Sample> = samples.iter().collect();
    let before: Vec<&Sample> = all
        .iter()
        .copied()
        .filter(|s| s.done() < stopping)
        .collect();
    let outage: Vec<&Sample> = all
        .iter()
        .copied()
        .filter(|s| s.sent >= stopped && s.done() <= starting)
        .collect();
    let unavailable: Vec<&Sample> = all
        .iter()
        .copied()
        .filter(|s| s.is(StatusCode::SERVICE_UNAVAILABLE))
        .collect();
    let first_ok_after = all
        .iter()
        .filter(|s| s.sent >= started && s.is(StatusCode::OK))
        .map(|s| s.done())
        .min()
        .expect("some request succeeds after PostgreSQL is back");
    let recovered = all
        .iter()
        .copied()
        .filter(|s| s.sent >= started + Duration::from_secs(2))
        .collect::<Vec<_>>();
    let window_start = unavailable.iter().map(|s| s.sent).min().unwrap_or_default();
    let window_end = unavailable
        .iter()
        .map(|s| s.done())
        .max()
        .unwrap_or_default();

    println!("PostgreSQL stopped under load (32 keep-alive clients on {DATABASE_PATHS:?}):");
    println!(
        "  pg_ctl stop from {} to {}, start from {} to {} (test clock)",
        secs(stopping),
        secs(stopped),
        secs(starting),
        secs(started)
    );
    println!("  all:          {}", describe(&all));
    println!("  before:       {}", describe(&before));
    println!("  while down:   {}", describe(&outage));
    println!("  503s:         {}", describe(&unavailable));
    println!(
        "  error window: {} (503s from {} to {}; PostgreSQL down for {})",
        secs(window_end.saturating_sub(window_start)),
        secs(window_start),
        secs(window_end),
        secs(started - stopping)
    );
    println!(
        "  first 200 {} after PostgreSQL accepted connections again; from 2 s on: {}",
        ms(first_ok_after.saturating_sub(started)),
        describe(&recovered)
    );

    for sample in &all {
        let Outcome::Answered { status, body } = &sample.outcome else {
            panic!("every request is answered: {sample:?}");
        };
        assert!(
            sample.took < Duration::from_secs(2),
            "every answer within 2 s: {sample:?}"
        );
        assert!(
            *status == StatusCode::OK || *status == StatusCode::SERVICE_UNAVAILABLE,
            "only 200 or 503: {sample:?}"
        );
        if let Some(body) = body {
            assert!(
                is_generic_error(body),
                "the 503 page shows no cause: {body}"
            );
        }
    }
    assert!(
        before.iter().all(|s| s.is(StatusCode::OK)),
        "{}",
        describe(&before)
    );
    assert!(
        outage.iter().all(|s| s.is(StatusCode::SERVICE_UNAVAILABLE)),
        "every request while PostgreSQL is down gets a 503: {}",
        describe(&outage)
    );
    for path in DATABASE_PATHS {
        assert!(
            outage.iter().any(|s| s.path == path),
            "{path} was asked while PostgreSQL was down"
        );
    }
    assert!(
        first_ok_after - started < Duration::from_secs(2),
        "200s resume within 2 s: {}",
        ms(first_ok_after - started)
    );
    assert!(
        !recovered.is_empty() && recovered.iter().all(|s| s.is(StatusCode::OK)),
        "every request 2 s after PostgreSQL is back succeeds: {}",
        describe(&recovered)
    );
    assert!(is_running(&mut penny), "the same penny served throughout");
}

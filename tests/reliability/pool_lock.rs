//! The PostgreSQL pool held up by a lock another session holds: 503s within the checkout and
//! query timeouts, and the pool whole afterwards.

use crate::common;
use crate::common::load::{Load, Sample, describe, ms, secs, time_until_ok, timed_get};
use crate::common::postgres::{PgServer, TableLock, available, loaded_database};
use crate::helpers::{DATABASE_PATHS, blocking, is_running, serve};
use hyper::StatusCode;
use std::time::{Duration, Instant};

/// Penny's connections to `dbname` in `state`-ish terms: (all, waiting on a lock).
fn penny_backends(server: &PgServer, dbname: &str) -> (u32, u32) {
    let counts = server.psql(
        dbname,
        &format!(
            "SELECT count(*), count(*) FILTER (WHERE wait_event_type = 'Lock') \
             FROM pg_stat_activity WHERE datname = '{dbname}' AND application_name = 'penny'"
        ),
    );
    let (all, waiting) = counts.split_once('|').expect("two counts");
    (all.parse().unwrap(), waiting.parse().unwrap())
}

#[cfg_attr(
    not(penny_postgres),
    ignore = "needs PostgreSQL: apt-get install postgresql, brew install postgresql@15, or set PENNY_TEST_PG_BINDIR or PENNY_TEST_DATABASE_URL"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pool_held_up_by_a_lock_answers_503_within_the_checkout_and_query_timeouts_and_is_whole_afterwards()
 {
    if !available() {
        return;
    }
    const POOL: u32 = 4;
    let (pool_timeout, query_timeout) = (Duration::from_secs(1), Duration::from_secs(2));
    let (url, dbname) = blocking(|| loaded_database(PgServer::shared())).await;
    let mut penny = serve(&[
        ("DATABASE_URL", &url),
        ("PENNY_POOL_SIZE", &POOL.to_string()),
        (
            "PENNY_POOL_TIMEOUT_SECS",
            &pool_timeout.as_secs().to_string(),
        ),
        (
            "PENNY_QUERY_TIMEOUT_SECS",
            &query_timeout.as_secs().to_string(),
        ),
    ]);
    assert!(
        time_until_ok(penny.addr, "/healthz", Duration::from_secs(5))
            .await
            .is_some()
    );

    let lock = {
        let dbname = dbname.clone();
        blocking(move || TableLock::take(PgServer::shared(), &dbname, 60.0)).await
    };
    let clock = Instant::now();
    let mut paths = DATABASE_PATHS.to_vec();
    paths.push("/");
    let paths: &'static [&'static str] = paths.leak();
    let load = Load::start(penny.addr, 24, paths, clock);
    tokio::time::sleep(Duration::from_secs(1)).await;
    // One request beside the load, for the headers of its 503.
    let probe = common::get(penny.addr, "/searchresults?author=ker", &[]).await;
    tokio::time::sleep(Duration::from_secs(5).saturating_sub(clock.elapsed())).await;
    let samples = load.finish().await;
    // Every request has its answer: none of penny's queries may still wait on the lock.
    let still_waiting = {
        let dbname = dbname.clone();
        blocking(move || {
            let server = PgServer::shared();
            common::postgres::wait_until(Duration::from_secs(1), || {
                penny_backends(server, &dbname).1 == 0
            });
            penny_backends(server, &dbname).1
        })
        .await
    };
    let released = Instant::now();
    {
        let dbname = dbname.clone();
        blocking(move || lock.release(PgServer::shared(), &dbname)).await;
    }
    let recovered = time_until_ok(
        penny.addr,
        "/searchresults?author=ker",
        Duration::from_secs(5),
    )
    .await
    .map(|_| released.elapsed());

    let database: Vec<&Sample> = samples.iter().filter(|s| s.path != "/").collect();
    let home: Vec<&Sample> = samples.iter().filter(|s| s.path == "/").collect();
    let bound = pool_timeout + query_timeout;
    println!(
        "Pool of {POOL} held up by a lock (24 keep-alive clients for 5 s; checkout timeout {}, query timeout {}):",
        secs(pool_timeout),
        secs(query_timeout)
    );
    println!("  database pages: {}", describe(&database));
    println!("  home page:      {}", describe(&home));
    println!("  penny queries still waiting on the lock afterwards: {still_waiting}");
    println!("  200 again {recovered:?} after the lock was released");

    for sample in &database {
        assert!(
            sample.is(StatusCode::SERVICE_UNAVAILABLE),
            "a 503 while the table is locked: {sample:?}"
        );
        assert!(
            sample.took < bound + Duration::from_secs(1),
            "waited at most the checkout and query timeouts ({bound:?}): {sample:?}"
        );
    }
    assert_eq!(probe.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        probe.header("retry-after"),
        "1",
        "the client is told when to retry"
    );
    for sample in &home {
        assert!(sample.is(StatusCode::OK), "{sample:?}");
    }
    assert_eq!(
        still_waiting, 0,
        "timed-out queries are cancelled on the server"
    );
    let log = penny.stdout();
    assert!(log.contains("was cancelled"), "the log says why: {log}");
    assert!(
        recovered.expect("searches succeed once the lock is gone") < Duration::from_secs(2),
        "{recovered:?}"
    );

    // The pool is whole. Searches enough to fill every connection (a connection carries 8
    // before Penny opens another) wait on a lock shorter than the query timeout: Penny opens
    // all POOL connections again (a cancelled query's connection is replaced), each is in use,
    // and every search succeeds. A connection lost to the cancellations would leave some of
    // them without room, and they would get a 503 after the checkout timeout.
    const PER_CONNECTION: u32 = 8;
    let reopening = Instant::now();
    let lock = {
        let dbname = dbname.clone();
        blocking(move || TableLock::take(PgServer::shared(), &dbname, 1.5)).await
    };
    let searches: Vec<_> = (0..POOL * PER_CONNECTION)
        .map(|_| tokio::spawn(timed_get(penny.addr, "/searchresults?author=ker")))
        .collect();
    let (open, waiting) = {
        let dbname = dbname.clone();
        blocking(move || {
            let server = PgServer::shared();
            common::postgres::wait_until(Duration::from_millis(1200), || {
                penny_backends(server, &dbname).1 == POOL
            });
            penny_backends(server, &dbname)
        })
        .await
    };
    let mut statuses = Vec::new();
    for search in searches {
        let (result, took) = search.await.unwrap();
        statuses.push((result.map(|(status, _)| status), took));
    }
    drop(lock);
    println!(
        "  afterwards: {open} connections open again after {}, {waiting} waiting on a second lock; the {} searches: {statuses:?}",
        ms(reopening.elapsed()),
        statuses.len()
    );
    assert_eq!(open, POOL, "the pool opens all its connections again");
    assert_eq!(
        waiting, POOL,
        "every connection of the pool is in use at once"
    );
    for (status, _) in &statuses {
        assert_eq!(status.as_ref().ok(), Some(&StatusCode::OK), "{statuses:?}");
    }
    assert!(is_running(&mut penny));
}

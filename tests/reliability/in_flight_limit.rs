//! The limit on requests in flight: the requests past it get an immediate 503 with Retry-After.

use crate::common;
use crate::common::load::{ms, percentile, timed_get};
use crate::helpers::{MIXED_PATHS, SqliteFile, is_running, serve};
use hyper::StatusCode;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_beyond_the_in_flight_limit_get_an_immediate_503_with_retry_after() {
    const LIMIT: usize = 8;
    let file = SqliteFile::create();
    let mut penny = serve(&[
        ("DATABASE_URL", &file.url),
        ("PENNY_MAX_IN_FLIGHT", &LIMIT.to_string()),
    ]);
    let addr = penny.addr;
    let lock = file.lock();
    let held: Vec<_> = (0..LIMIT)
        .map(|_| tokio::spawn(timed_get(addr, "/searchresults?author=ker")))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let paths = MIXED_PATHS.iter().chain(&["/healthz"]).copied().cycle();
    let refused: Vec<_> = paths
        .take(40)
        .map(|path| {
            tokio::spawn(async move {
                let started = Instant::now();
                let response = common::get(addr, path, &[]).await;
                (path, response, started.elapsed())
            })
        })
        .collect();
    let mut answers = Vec::new();
    for request in refused {
        answers.push(request.await.unwrap());
    }
    lock.execute_batch("COMMIT").unwrap();
    let mut held_statuses = Vec::new();
    for request in held {
        held_statuses.push(request.await.unwrap().0.map(|(status, _)| status));
    }
    let after: Vec<_> = (0..LIMIT)
        .map(|_| tokio::spawn(timed_get(addr, "/searchresults?author=ker")))
        .collect();
    let mut after_statuses = Vec::new();
    for request in after {
        after_statuses.push(request.await.unwrap().0.map(|(status, _)| status));
    }

    let times: Vec<Duration> = answers.iter().map(|(_, _, took)| *took).collect();
    println!("In-flight limit {LIMIT}, {LIMIT} searches held by a lock, 40 more requests:");
    println!(
        "  statuses {:?}, p50 {}, max {}",
        answers
            .iter()
            .map(|(_, response, _)| response.status.as_u16())
            .collect::<BTreeSet<_>>(),
        ms(percentile(&times, 50.0)),
        ms(*times.iter().max().unwrap())
    );
    println!(
        "  the held searches: {held_statuses:?}; {LIMIT} at once afterwards: {after_statuses:?}"
    );

    for (path, response, took) in &answers {
        assert_eq!(
            response.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{path}: {}",
            response.body
        );
        assert_eq!(response.header("retry-after"), "1", "{path}");
        assert!(
            *took < Duration::from_secs(1),
            "{path} refused at once, not queued: {took:?}"
        );
        assert!(
            !response.body.to_lowercase().contains("sqlite"),
            "{}",
            response.body
        );
        assert!(response.text().contains("try again"), "{}", response.text());
    }
    for status in held_statuses.iter().chain(&after_statuses) {
        assert_eq!(status.as_ref().ok(), Some(&StatusCode::OK));
    }
    assert!(is_running(&mut penny));
}

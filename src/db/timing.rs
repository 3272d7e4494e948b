//! Where a request's database time went: waiting for a connection (the pool's part) and
//! running queries on it. The backends add to it as they go; `routes` reads it for the
//! `Server-Timing` header, which shows it in a browser's developer tools.
//!
//! It lives in a task-local value set around one request (`Timing::record`), so no
//! signature between the handler and the query has to carry it, and a call outside such a scope
//! (a command, a background check) records nothing.

use std::cell::Cell;
use std::future::Future;
use std::time::Duration;

/// The database time of one request so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timing {
    /// Waiting for a connection (or a seat on one, on PostgreSQL; a thread and a connection,
    /// on SQLite).
    pub wait: Duration,
    /// Running the queries, from the moment there was a connection.
    pub query: Duration,
}

tokio::task_local! {
    static CURRENT: Cell<Timing>;
}

impl Timing {
    /// Runs `request` with a record of its database time, which `Timing::so_far` reads. The
    /// request's future is held as it is, not moved into another, so that it is not copied
    /// again on every poll's way in (a results page's future is several KiB).
    pub fn record<F: Future>(request: F) -> impl Future<Output = F::Output> {
        CURRENT.scope(Cell::new(Timing::default()), request)
    }

    /// The database time of the current request so far; zero outside `record`.
    pub fn so_far() -> Timing {
        CURRENT.try_with(Cell::get).unwrap_or_default()
    }

    /// Adds one call's times to the current request's, if there is one.
    pub(super) fn add(wait: Duration, query: Duration) {
        let _ = CURRENT.try_with(|current| {
            let mut timing = current.get();
            timing.wait += wait;
            timing.query += query;
            current.set(timing);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn calls_within_a_record_add_up_and_calls_outside_record_nothing() {
        Timing::add(Duration::from_secs(1), Duration::from_secs(1));
        assert_eq!(Timing::so_far(), Timing::default());
        let timing = Timing::record(async {
            Timing::add(Duration::from_millis(1), Duration::from_millis(2));
            tokio::task::yield_now().await;
            Timing::add(Duration::from_millis(3), Duration::from_millis(4));
            Timing::so_far()
        })
        .await;
        assert_eq!(
            timing,
            Timing {
                wait: Duration::from_millis(4),
                query: Duration::from_millis(6),
            }
        );
        assert_eq!(Timing::so_far(), Timing::default());
    }
}

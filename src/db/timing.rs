//! Where a request's database time went: waiting for a connection (the pool's part) and
//! running queries on it. The backends add to it as they go; `routes` reads it for the
//! `Server-Timing` header, which shows it in a browser's developer tools.
//!
//! It lives in a task-local value set around the calls of one request (`Timing::of`), so no
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
    /// Runs `calls`, and returns what they gave with the database time they took.
    pub async fn of<T>(calls: impl Future<Output = T>) -> (T, Timing) {
        CURRENT
            .scope(Cell::new(Timing::default()), async {
                let given = calls.await;
                (given, CURRENT.with(Cell::get))
            })
            .await
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
    async fn calls_within_a_scope_add_up_and_calls_outside_record_nothing() {
        Timing::add(Duration::from_secs(1), Duration::from_secs(1));
        let ((), timing) = Timing::of(async {
            Timing::add(Duration::from_millis(1), Duration::from_millis(2));
            tokio::task::yield_now().await;
            Timing::add(Duration::from_millis(3), Duration::from_millis(4));
        })
        .await;
        assert_eq!(
            timing,
            Timing {
                wait: Duration::from_millis(4),
                query: Duration::from_millis(6),
            }
        );
    }
}

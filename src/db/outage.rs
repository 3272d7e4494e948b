//! The outage log: an outage is logged when it starts and when it ends, and each different
//! cause once in between, not once per request.

use super::DbError;
use crate::logging::cause_chain;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The log lines keep the target they had before this module was split out of `db`.
const TARGET: &str = "penny::db";

/// Enough different causes for one outage; beyond that they are not logged.
const MAX_OUTAGE_CAUSES: usize = 8;

/// What the outage log knows, shared by every clone of a `Db`.
#[derive(Debug)]
pub(super) struct Outages {
    /// Whether the last attempt to reach the database worked.
    reachable: AtomicBool,
    /// The causes logged during the current outage: each different one is logged once, so a
    /// restart that turns into a refused password says so.
    causes: Mutex<Vec<String>>,
    /// Outages since start.
    started: AtomicU64,
}

impl Outages {
    /// No outage yet: the database counts as reachable until a query finds otherwise.
    pub(super) fn new() -> Outages {
        Outages {
            reachable: AtomicBool::new(true),
            causes: Mutex::new(Vec::new()),
            started: AtomicU64::new(0),
        }
    }

    /// How many outages there have been, and whether the database is reachable now.
    pub(super) fn so_far(&self) -> (u64, bool) {
        (
            self.started.load(Ordering::Relaxed),
            self.reachable.load(Ordering::Relaxed),
        )
    }

    /// Logs the start and the end of an outage, and each different cause once in between.
    /// Only failures touch the lock, and never wait for it; a working database costs one atomic
    /// load.
    pub(super) fn observe<T>(&self, result: Result<T, DbError>) -> Result<T, DbError> {
        match &result {
            Err(err @ (DbError::Unavailable(cause) | DbError::NotSetUp(cause))) => {
                // In an outage every request comes here: none waits for another's log line.
                // One that finds the lock taken skips it; the next with its cause logs it.
                let Ok(mut causes) = self.causes.try_lock() else {
                    return result;
                };
                let cause = cause_chain(cause.as_ref());
                if self.reachable.swap(false, Ordering::Relaxed) {
                    self.started.fetch_add(1, Ordering::Relaxed);
                    causes.clear();
                    if matches!(err, DbError::NotSetUp(_)) {
                        tracing::error!(target: TARGET, cause, "the database is not set up for Penny");
                    } else {
                        tracing::error!(target: TARGET, cause, "the database is unavailable");
                    }
                    causes.push(cause);
                } else if causes.len() < MAX_OUTAGE_CAUSES && !causes.contains(&cause) {
                    tracing::error!(target: TARGET, cause, "the database is still unavailable");
                    causes.push(cause);
                }
            }
            Ok(_) => {
                if !self.reachable.load(Ordering::Relaxed)
                    && !self.reachable.swap(true, Ordering::Relaxed)
                {
                    tracing::info!(target: TARGET, "the database is reachable again");
                }
            }
            Err(_) => {}
        }
        result
    }
}

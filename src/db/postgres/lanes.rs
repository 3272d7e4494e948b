//! Connections that several queries use at once. tokio-postgres sends a query on a connection
//! while earlier ones are still running there, and PostgreSQL answers them in order: a
//! connection carrying a few queries costs the server and Penny fewer reads, writes and
//! wake-ups per query than one query at a time on each of many connections, and a burst needs
//! fewer connections (each counts against the database's limit; on Heroku that is 20 in all).
//!
//! A lane is a connection checked out of the bb8 pool; it goes back to the pool when its last
//! query ends. A query joins the least busy lane, unless that one already carries `spread`
//! queries and the pool has a connection left for another lane. The queries running at once
//! are bounded (the pool's size times `depth`); past that, a query waits in line for room.
//! A connection found closed, or one whose query was given up on, takes no new query and goes
//! back to the pool (which closes it) once its queries are over.
//!
//! A query given up on at its deadline may have others queued behind it on its connection, and
//! PostgreSQL cancels only whichever query is running. So the connection is drained: cancel
//! after cancel, until an empty query sent after the overrun one comes back. A query that was
//! cancelled for another's sake is tried again on another connection (see
//! `Conn::cancelled_for_another`): only the query that overran fails.

use super::pool::TARGET;
use super::pool::{Conn, Manager};
use bb8::PooledConnection;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres_rustls::MakeRustlsConnect;

/// A bound on a drain's cancels once its empty query is sent, each for a query queued before
/// it: more than a lane carries but for a pool whose other connections all broke at once.
const LANE_MOST: u32 = 64;

/// How long a drain waits for its empty query after each cancel.
const DRAIN_STEP: Duration = Duration::from_millis(50);

/// The lanes checked out now, and the room left on them and on the pool.
pub(super) struct Lanes {
    state: Mutex<State>,
    /// One permit per query that may run: the pool's size times `depth`, first come first
    /// served.
    room: Arc<Semaphore>,
    /// Queries waiting in line for room now.
    waiting: AtomicU32,
    depth: u32,
    spread: u32,
    size: u32,
}

struct State {
    open: Vec<Arc<Lane>>,
    /// Lanes whose connection is being checked out of the pool.
    opening: u32,
}

struct Lane {
    conn: PooledConnection<'static, Manager>,
    /// Queries on this lane now. Raised only under the state's lock.
    queries: AtomicU32,
    /// Whether a task is cancelling what runs on this lane (see `Seat::give_up`).
    draining: AtomicBool,
}

/// Where a query with room goes: a seat on a lane, or a new lane it is to open.
pub(super) enum Place<'a> {
    Seat(Seat<'a>),
    Open(Opening<'a>),
}

/// A query's seat on a lane. Dereferences to the lane's connection.
pub(super) struct Seat<'a> {
    lane: Arc<Lane>,
    lanes: &'a Lanes,
    _room: OwnedSemaphorePermit,
}

/// The right to open one lane, held while its connection is checked out of the pool.
pub(super) struct Opening<'a> {
    lanes: &'a Lanes,
    room: Option<OwnedSemaphorePermit>,
}

impl Lanes {
    /// Lanes for a pool of `size` connections, `depth` queries per connection on average.
    pub(super) fn new(size: u32, depth: u32, spread: u32) -> Lanes {
        Lanes {
            state: Mutex::new(State {
                open: Vec::with_capacity(size as usize),
                opening: 0,
            }),
            room: Arc::new(Semaphore::new((size * depth) as usize)),
            waiting: AtomicU32::new(0),
            depth,
            spread,
            size,
        }
    }

    /// The room for one more query, if there is some now.
    pub(super) fn try_room(&self) -> Option<OwnedSemaphorePermit> {
        self.room.clone().try_acquire_owned().ok()
    }

    /// The room for one more query, waiting in line for it.
    pub(super) async fn room(&self) -> OwnedSemaphorePermit {
        /// Counts a query in line while it is (also when its request is dropped).
        struct InLine<'a>(&'a AtomicU32);
        impl Drop for InLine<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let _in_line = InLine(&self.waiting);
        self.room
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }

    /// The most connections the lanes take from the pool: its size.
    pub(super) fn size(&self) -> u32 {
        self.size
    }

    /// Queries seated on lanes now (running on the server, or queued there behind another), and
    /// queries waiting: for room, or for a lane's connection to open.
    pub(super) fn queries(&self) -> (u32, u32) {
        let room = (self.size * self.depth) as usize;
        let holding = room.saturating_sub(self.room.available_permits()) as u32;
        let opening = self.lock().opening;
        (
            holding.saturating_sub(opening),
            self.waiting.load(Ordering::Relaxed) + opening,
        )
    }

    /// Where the query holding `room` goes; `alone`, only on a lane with no other query.
    pub(super) fn place(&self, room: OwnedSemaphorePermit, alone: bool) -> Place<'_> {
        let mut state = self.lock();
        let least = state
            .open
            .iter()
            .filter(|lane| lane.conn.usable())
            .min_by_key(|lane| lane.queries.load(Ordering::Relaxed));
        let may_open = state.open.len() + (state.opening as usize) < self.size as usize;
        let spread = if alone { 1 } else { self.spread };
        match least {
            Some(lane) if lane.queries.load(Ordering::Relaxed) < spread || !(may_open || alone) => {
                lane.queries.fetch_add(1, Ordering::Relaxed);
                Place::Seat(Seat {
                    lane: lane.clone(),
                    lanes: self,
                    _room: room,
                })
            }
            // With no lane to join and none to open, every connection is on a lane that takes
            // no more queries (or, `alone`, has one already): this one waits for the pool.
            _ => {
                state.opening += 1;
                Place::Open(Opening {
                    lanes: self,
                    room: Some(room),
                })
            }
        }
    }

    /// The last query on `lane` ended: unless another joined meanwhile, the lane's connection
    /// goes back to the pool.
    fn leave_if_idle(&self, lane: &Arc<Lane>) {
        let mut state = self.lock();
        if lane.queries.load(Ordering::Acquire) == 0
            && let Some(at) = state.open.iter().position(|open| Arc::ptr_eq(open, lane))
        {
            state.open.swap_remove(at);
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<'a> Opening<'a> {
    /// Opens the lane on `conn`, just checked out of the pool, with a seat on it.
    pub(super) fn open(mut self, conn: PooledConnection<'static, Manager>) -> Seat<'a> {
        let lane = Arc::new(Lane {
            conn,
            queries: AtomicU32::new(1),
            draining: AtomicBool::new(false),
        });
        let mut state = self.lanes.lock();
        state.open.push(lane.clone());
        state.opening -= 1;
        drop(state);
        let room = self.room.take().expect("a lane is opened once");
        Seat {
            lane,
            lanes: self.lanes,
            _room: room,
        }
    }
}

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        // Not opened: the checkout failed.
        if self.room.is_some() {
            self.lanes.lock().opening -= 1;
        }
    }
}

impl Seat<'_> {
    /// Gives up on this seat's query, past its deadline: the connection takes no new query,
    /// and unless one is at it already, a task cancels what runs there until it is drained,
    /// then lets the pool close it. Drained means: the other queries on the lane are over
    /// (each ends by its own deadline at the latest, `query_timeout`), and an empty query sent
    /// after them has come back, so that nothing they sent still runs on the server.
    pub(super) fn give_up(&self, tls: MakeRustlsConnect, query_timeout: Duration) {
        self.lane.conn.abandon();
        if self.lane.draining.swap(true, Ordering::AcqRel) {
            return;
        }
        let lane = self.lane.clone();
        tokio::spawn(async move {
            let cancel = lane.conn.client.cancel_token();
            let cancel = async || {
                let cancelled = cancel.cancel_query(tls.clone()).await;
                if let Err(err) = &cancelled {
                    tracing::warn!(target: TARGET, error = %err, "could not cancel a query that ran too long");
                }
                cancelled.is_ok()
            };
            let others_over = tokio::time::Instant::now() + query_timeout + DRAIN_STEP;
            // The seat giving up leaves just after this; the others by their deadlines.
            while lane.queries.load(Ordering::Acquire) > 0
                && tokio::time::Instant::now() < others_over
            {
                if !cancel().await {
                    break;
                }
                tokio::time::sleep(DRAIN_STEP).await;
            }
            let drained = lane.conn.client.batch_execute("");
            tokio::pin!(drained);
            for _ in 0..2 * (LANE_MOST + 1) {
                if !cancel().await || tokio::time::timeout(DRAIN_STEP, &mut drained).await.is_ok() {
                    break;
                }
            }
            lane.draining.store(false, Ordering::Release);
        });
    }
}

impl std::ops::Deref for Seat<'_> {
    type Target = Conn;

    fn deref(&self) -> &Conn {
        &self.lane.conn
    }
}

impl Drop for Seat<'_> {
    fn drop(&mut self) {
        if self.lane.queries.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.lanes.leave_if_idle(&self.lane);
        }
    }
}

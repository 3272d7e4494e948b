//! The SQLite calls waiting for a connection, and the blocking tasks that run them: at most one
//! task per pooled connection, each taking every call queued when it looks. Under load one
//! wake-up of a blocking thread serves many calls, and the reads among them share one read
//! transaction, so the file's lock is taken and its header checked once for them all.

use super::{Conn, Manager, no_connection, yield_to_the_runtime_when_woken};
use crate::db::DbError;
use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, oneshot};

/// The most calls a task takes at once, and so the most one read transaction serves: 64
/// searches of a million books hold the file's shared lock for about 2 ms (30 µs each), which
/// a writer in another process waits out.
const BATCH: usize = 64;

/// A call's claim: queued until a task takes it to run, or its caller stops waiting first.
const QUEUED: u8 = 0;
const TAKEN: u8 = 1;
const GIVEN_UP: u8 = 2;

/// What a call sends back: its result, and when it got its connection.
type Answer<T> = (Result<T, DbError>, Instant);

/// A call waiting for a connection.
pub(super) struct Call {
    read_only: bool,
    claim: Arc<AtomicU8>,
    work: Box<dyn Work>,
}

/// A call's work, whatever its result's type: run once, then answered.
trait Work: Send {
    /// Runs the caller's function, or takes the reason there is no connection to run it on.
    fn run(&mut self, conn: Result<&mut Conn, DbError>);
    /// Lets the caller's permit go and sends the answer (none if the function panicked).
    fn answer(self: Box<Self>);
}

struct Job<T, F> {
    f: Option<F>,
    answer: Option<Answer<T>>,
    send: oneshot::Sender<Answer<T>>,
    permit: OwnedSemaphorePermit,
}

impl<T, F> Work for Job<T, F>
where
    T: Send,
    F: FnOnce(&mut rusqlite::Connection) -> Result<T, DbError> + Send,
{
    fn run(&mut self, conn: Result<&mut Conn, DbError>) {
        let got = Instant::now();
        if let Some(f) = self.f.take() {
            self.answer = Some((conn.and_then(|conn| conn.run(f)), got));
        }
    }

    fn answer(self: Box<Self>) {
        let Job {
            answer,
            send,
            permit,
            ..
        } = *self;
        drop(permit);
        if let Some(answer) = answer {
            let _ = send.send(answer);
        }
    }
}

/// The caller's side of a queued call.
pub(super) struct Pending<T> {
    claim: Arc<AtomicU8>,
    answer: oneshot::Receiver<Answer<T>>,
}

impl Call {
    /// `f` as a call, and where its answer will come. `read_only` calls may share a read
    /// transaction with the calls queued beside them, so they must not write.
    pub(super) fn new<T, F>(
        read_only: bool,
        permit: OwnedSemaphorePermit,
        f: F,
    ) -> (Call, Pending<T>)
    where
        T: Send + 'static,
        F: FnOnce(&mut rusqlite::Connection) -> Result<T, DbError> + Send + 'static,
    {
        let claim = Arc::new(AtomicU8::new(QUEUED));
        let (send, answer) = oneshot::channel();
        let job = Job {
            f: Some(f),
            answer: None,
            send,
            permit,
        };
        let call = Call {
            read_only,
            claim: claim.clone(),
            work: Box::new(job),
        };
        (call, Pending { claim, answer })
    }

    /// True if this task is to run the call: its caller is still waiting, and from now on
    /// will wait for the answer.
    fn take(&self) -> bool {
        self.claim
            .compare_exchange(QUEUED, TAKEN, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

impl<T> Pending<T> {
    /// The call's answer, or None if no task took the call within `wait`: it then never runs.
    /// A call taken in time is waited for to its end (its own query timeout bounds it).
    pub(super) async fn answer(mut self, wait: Duration) -> Option<Answer<T>> {
        let answer = match tokio::time::timeout(wait, &mut self.answer).await {
            Ok(answer) => answer,
            Err(_) => {
                let given_up = self.claim.compare_exchange(
                    QUEUED,
                    GIVEN_UP,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
                if given_up.is_ok() {
                    return None;
                }
                self.answer.await
            }
        };
        // The answer is dropped unsent only if the call panicked.
        Some(answer.unwrap_or_else(|_| {
            let err = DbError::Query("the SQLite call panicked".into());
            (Err(err), Instant::now())
        }))
    }
}

/// The queue of one pool's calls. Shared by the callers and the tasks serving it.
pub(super) struct Queue {
    state: Mutex<State>,
    pool: r2d2::Pool<Manager>,
    checkout_timeout: Duration,
}

#[derive(Default)]
struct State {
    calls: VecDeque<Call>,
    /// Tasks serving the queue, at most one per pooled connection.
    tasks: u32,
    /// Of those, the ones yet to take their first calls: while one is on its way, a call
    /// queued waits for it instead of starting another task (which would only find the queue
    /// emptied, on a busy core).
    starting: u32,
}

impl Queue {
    pub(super) fn new(pool: r2d2::Pool<Manager>, checkout_timeout: Duration) -> Queue {
        Queue {
            state: Mutex::default(),
            pool,
            checkout_timeout,
        }
    }

    /// Queues `call`, starting a task on the blocking pool to serve the queue if none is on
    /// its way and a connection is left for one.
    pub(super) fn push(self: &Arc<Queue>, call: Call) {
        let start = {
            let mut state = self.lock();
            state.calls.push_back(call);
            let start = state.starting == 0 && state.tasks < self.pool.max_size();
            if start {
                state.tasks += 1;
                state.starting += 1;
            }
            start
        };
        if start {
            let queue = self.clone();
            tokio::task::spawn_blocking(move || queue.serve());
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A call runs outside the lock, so a panic cannot leave the state half-changed.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A task: takes the queued calls, up to BATCH, and runs them on one connection checked
    /// out for them, until it finds the queue empty. Every call it takes was queued before its
    /// transaction began, so each read sees every write made before the read was asked for.
    fn serve(&self) {
        yield_to_the_runtime_when_woken();
        let limit = self.checkout_timeout;
        let mut batch = Vec::with_capacity(BATCH);
        let mut ran = Vec::with_capacity(BATCH);
        let mut first = true;
        loop {
            {
                let mut state = self.lock();
                if first {
                    state.starting -= 1;
                    first = false;
                }
                if state.calls.is_empty() {
                    state.tasks -= 1;
                    return;
                }
                let taken = state.calls.len().min(BATCH);
                batch.extend(state.calls.drain(..taken));
            }
            match self.pool.get_timeout(limit) {
                Ok(mut conn) => run_batch(&mut conn, &mut batch, &mut ran),
                Err(_) => {
                    for mut call in batch.drain(..).filter(Call::take) {
                        call.work.run(Err(no_connection(limit)));
                        ran.push(call.work);
                    }
                }
            }
            // With the connection back in the pool.
            answer(&mut ran);
        }
    }
}

/// Runs the calls of `batch` whose callers still wait, into `ran`: the reads in one
/// transaction where there are several; a write ends it first and runs on its own. What ran is
/// answered before a call that may wait for another process's lock (a write, or a read that
/// starts a transaction) and otherwise after the batch, once the transaction has ended: a
/// caller with its answer holds no lock on the file.
fn run_batch(conn: &mut Conn, batch: &mut Vec<Call>, ran: &mut Vec<Box<dyn Work>>) {
    let together = batch.iter().filter(|call| call.read_only).count() > 1;
    let mut in_transaction = false;
    for mut call in batch.drain(..).filter(Call::take) {
        if !(call.read_only && in_transaction) {
            if in_transaction {
                end_transaction(conn);
                in_transaction = false;
            }
            answer(ran);
            if call.read_only && together {
                // BEGIN takes no lock yet: this read takes the shared lock, after every call
                // in the batch was queued. Only it can wait for another process.
                in_transaction = conn.connection.execute_batch("BEGIN").is_ok();
            }
        }
        if catch_unwind(AssertUnwindSafe(|| call.work.run(Ok(&mut *conn)))).is_err() {
            conn.failed = true;
        }
        ran.push(call.work);
    }
    if in_transaction {
        end_transaction(conn);
    }
}

fn answer(ran: &mut Vec<Box<dyn Work>>) {
    for work in ran.drain(..) {
        work.answer();
    }
}

/// Ends a read transaction, if a failed read has not already: it changed nothing.
fn end_transaction(conn: &mut Conn) {
    let connection = &conn.connection;
    if !connection.is_autocommit() && connection.execute_batch("COMMIT").is_err() {
        let _ = connection.execute_batch("ROLLBACK");
    }
}

#[cfg(test)]
mod tests {
    use super::super::SqliteDb;
    use super::super::tests::{books_path, empty_books_file};
    use crate::config::PoolConfig;
    use crate::db::DbError;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, mpsc};
    use std::time::{Duration, Instant};
    use tokio::task::JoinHandle;

    /// A pool of one connection on a new file (in WAL mode with `wal`) with an empty books
    /// table.
    async fn one_connection(
        dir: &tempfile::TempDir,
        checkout_timeout: Duration,
        wal: bool,
    ) -> SqliteDb {
        let config = PoolConfig {
            size: 1,
            checkout_timeout,
            ..PoolConfig::default()
        };
        empty_books_file(dir, &config, wal).await
    }

    /// Waits until `ready` holds, for up to 5 s.
    async fn until(ready: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !ready() {
            assert!(Instant::now() < deadline, "timed out");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until `calls` calls are queued behind the connection's current one.
    async fn queued(db: &SqliteDb, calls: u32) {
        until(|| db.pool_status().waiting == calls).await;
    }

    /// Takes the pool's only connection with a write that ends when the sender is used.
    async fn hold(db: &SqliteDb) -> (mpsc::Sender<()>, JoinHandle<Result<(), DbError>>) {
        let (release, wait) = mpsc::channel::<()>();
        let holder = db.clone();
        let held = tokio::spawn(async move {
            holder
                .run(move |_| {
                    let _ = wait.recv();
                    Ok(())
                })
                .await
        });
        until(|| db.pool_status().in_use == 1).await;
        (release, held)
    }

    fn count(conn: &rusqlite::Connection) -> Result<i64, DbError> {
        Ok(conn.query_row("SELECT count(*) FROM books", [], |row| row.get(0))?)
    }

    #[tokio::test]
    async fn reads_queued_together_share_a_transaction_and_a_write_runs_outside_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = one_connection(&dir, Duration::from_secs(3), false).await;
        let (release, held) = hold(&db).await;
        let in_transaction = |read_only: bool| {
            let db = db.clone();
            tokio::spawn(async move {
                db.call(read_only, |conn| Ok(!conn.is_autocommit()))
                    .await
                    .unwrap()
            })
        };
        let first = in_transaction(true);
        queued(&db, 1).await;
        let second = in_transaction(true);
        queued(&db, 2).await;
        let write = in_transaction(false);
        queued(&db, 3).await;
        release.send(()).unwrap();
        held.await.unwrap().unwrap();
        assert!(first.await.unwrap(), "the first read");
        assert!(second.await.unwrap(), "the second read");
        assert!(!write.await.unwrap(), "the write");
        // Answered once the transaction has ended and the connection is back in the pool.
        assert_eq!(db.pool_status().in_use, 0);
        let other = rusqlite::Connection::open(books_path(&dir)).unwrap();
        other.busy_timeout(Duration::ZERO).unwrap();
        other.execute_batch("BEGIN EXCLUSIVE; COMMIT").unwrap();
        let alone = db.read(|conn| Ok(!conn.is_autocommit())).await.unwrap();
        assert!(!alone, "a read on its own needs no transaction");
    }

    #[tokio::test]
    async fn a_read_sees_every_write_made_before_it_was_queued() {
        // In WAL mode another connection can write while a read transaction is open.
        let dir = tempfile::tempdir().unwrap();
        let db = one_connection(&dir, Duration::from_secs(3), true).await;
        let (release, held) = hold(&db).await;
        let (running, is_running) = mpsc::channel();
        let (go_on, wait) = mpsc::channel::<()>();
        let reader = db.clone();
        let first = tokio::spawn(async move {
            reader
                .read(move |conn| {
                    let books = count(conn)?;
                    running.send(()).unwrap();
                    let _ = wait.recv();
                    Ok(books)
                })
                .await
        });
        queued(&db, 1).await;
        let reader = db.clone();
        let second = tokio::spawn(async move { reader.read(|conn| count(conn)).await });
        queued(&db, 2).await;
        release.send(()).unwrap();
        held.await.unwrap().unwrap();
        tokio::task::spawn_blocking(move || is_running.recv())
            .await
            .unwrap()
            .unwrap();

        // With the first two reads' transaction open, a book is added and a third read asked.
        let writer = rusqlite::Connection::open(books_path(&dir)).unwrap();
        writer
            .execute("INSERT INTO books VALUES ('1', 'Ann', 'A', 'ann')", [])
            .unwrap();
        let reader = db.clone();
        let third = tokio::spawn(async move { reader.read(|conn| count(conn)).await });
        queued(&db, 2).await;
        go_on.send(()).unwrap();
        assert_eq!(first.await.unwrap().unwrap(), 0);
        assert_eq!(
            second.await.unwrap().unwrap(),
            0,
            "read in the first one's snapshot"
        );
        assert_eq!(
            third.await.unwrap().unwrap(),
            1,
            "asked for after the write"
        );
    }

    #[tokio::test]
    async fn a_call_still_queued_at_the_checkout_timeout_is_a_503_and_never_runs() {
        let dir = tempfile::tempdir().unwrap();
        let limit = Duration::from_millis(200);
        let db = one_connection(&dir, limit, false).await;
        let (release, held) = hold(&db).await;
        let ran = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let late = db
            .read({
                let ran = ran.clone();
                move |_| {
                    ran.store(true, Ordering::SeqCst);
                    Ok(())
                }
            })
            .await;
        let waited = started.elapsed();
        assert!(matches!(late, Err(DbError::Unavailable(_))), "{late:?}");
        assert!(waited >= limit && waited < limit * 5, "{waited:?}");
        release.send(()).unwrap();
        held.await.unwrap().unwrap();
        assert_eq!(db.read(|conn| count(conn)).await.unwrap(), 0);
        assert!(!ran.load(Ordering::SeqCst), "the call given up on ran");
        assert_eq!(db.pool_status().waiting, 0);
    }

    #[tokio::test]
    async fn a_call_that_panics_is_an_error_and_its_connection_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let db = one_connection(&dir, Duration::from_secs(3), false).await;
        let crashed = db
            .read(|_| -> Result<(), DbError> { panic!("a bug in a call") })
            .await;
        assert!(matches!(crashed, Err(DbError::Query(_))), "{crashed:?}");
        assert_eq!(db.read(|conn| count(conn)).await.unwrap(), 0);
        let status = db.pool_status();
        assert_eq!((status.closed, status.waiting), (1, 0), "{status:?}");
    }
}

//! The HTTP server: an accept loop that hands each connection to hyper, logs one line per
//! request, closes connections that stall, and on shutdown stops accepting, lets in-flight
//! requests finish and closes idle keep-alive connections.

use crate::error::AppError;
use crate::request_id::{self, X_REQUEST_ID};
use crate::routes::{self, App};
use hyper::body::Incoming;
use hyper::header::{HOST, TRANSFER_ENCODING};
use hyper::server::conn::http1;
use hyper::service::{HttpService, service_fn};
use hyper::{Request, Version};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Semaphore, watch};

/// Limits that protect the server from slow or greedy clients.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// A client must send a request's headers within this time or be dropped.
    pub header_timeout: Duration,
    /// The largest request head (request line and headers) accepted; larger gets a 431.
    pub max_header_bytes: usize,
    /// How long shutdown waits for in-flight requests before giving up on them.
    pub shutdown_grace: Duration,
    /// The most requests handled at once; any more are answered 503 at once.
    pub max_in_flight: usize,
    /// A connection on which no byte moves either way for this long, while none of its requests
    /// is being handled, is closed: a client that stops reading its answers (or sending) must
    /// not keep a descriptor and the kernel's buffers for ever. Once shutdown has begun the
    /// bound is `SHUTDOWN_STALL_TIMEOUT`, if shorter.
    pub stall_timeout: Duration,
}

/// The stall bound once shutdown has begun: a connection that moves nothing for this long is
/// not going to finish within the grace period either.
pub const SHUTDOWN_STALL_TIMEOUT: Duration = Duration::from_secs(1);

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            header_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            shutdown_grace: Duration::from_secs(9),
            max_in_flight: 1024,
            stall_timeout: Duration::from_secs(10),
        }
    }
}

/// How many connections the kernel may queue before Penny accepts them; it caps this at
/// net.core.somaxconn. The 128 of `TcpListener::bind` made a burst of connects wait out SYN
/// retransmits (a second and more) while Penny had the capacity to take them.
pub const LISTEN_BACKLOG: u32 = 1024;

/// Listens on `addr` with a backlog of `LISTEN_BACKLOG`. Must be called within a tokio runtime.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As TcpListener::bind does: a restarted Penny can listen while old connections linger.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves `app` on `listener` until `shutdown` completes, then drains connections. Returns once
/// every connection has closed or the grace period is over.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    options: ServerOptions,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(options.header_timeout)
        .max_header_size(options.max_header_bytes)
        .max_buf_size(options.max_header_bytes.max(8192) * 2);
    // Shutdown is announced to every connection's task through this; once every task has ended
    // (each owns a receiver), `closed` completes.
    let (stop, stopped) = watch::channel(false);
    // Requests being handled now, against the limit: past it a request is refused at once
    // rather than queued, since waiting longer only adds to a backlog.
    let in_flight = Arc::new(Semaphore::new(options.max_in_flight));
    let mut shutdown = std::pin::pin!(shutdown);
    let mut failing = AcceptFailures::default();

    // Serves one accepted connection on a task of its own, until it ends, stalls, or (after
    // shutdown began) has answered the request it was accepted for.
    let start = |stream: TcpStream, peer: SocketAddr| {
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::default());
        let app = app.clone();
        let in_flight = in_flight.clone();
        let service_activity = activity.clone();
        let service = service_fn(move |req: Request<Incoming>| {
            let app = app.clone();
            let request_id = request_id::of(req.headers());
            // Held until the request's future is dropped, also when the client goes away.
            let admitted = in_flight.clone().try_acquire_owned().ok();
            let handling = Handling::start(&service_activity);
            async move {
                let _handling = handling;
                let started = Instant::now();
                let mut response = match (check_framing(&req), admitted) {
                    (Err(err), _) => routes::refused(&app, &req, &request_id, &err),
                    (Ok(()), Some(_admitted)) => routes::handle(&app, &req, &request_id).await,
                    (Ok(()), None) => routes::overloaded(&app, &req, &request_id),
                };
                tracing::info!(
                    method = %req.method(),
                    // Display, not Debug: a path is printable ASCII (hyper refuses anything
                    // else), so there is nothing to escape.
                    path = %req.uri().path(),
                    status = response.status().as_u16(),
                    micros = started.elapsed().as_micros() as u64,
                    request_id = request_id.to_str().ok(),
                    "request"
                );
                response.headers_mut().insert(X_REQUEST_ID, request_id);
                Ok::<_, Infallible>(response)
            }
        });
        let io = TokioIo::new(Watched {
            stream,
            activity: activity.clone(),
        });
        let watch = Watch {
            activity,
            stall_timeout: options.stall_timeout,
            stop: stopped.clone(),
            peer,
        };
        tokio::spawn(watch.run(http.serve_connection(io, service)));
    };

    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    failing.failed(&err);
                    // Usually out of file descriptors: wait a little instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        failing.accepted();
        start(stream, peer);
    }

    failing.stopped();
    // Connections the kernel completed before the listener closes wait in its backlog; closing
    // it would reset them unanswered (a load balancer sees a request sent and no answer). Take
    // them first: each is served its request like any other, then closed.
    // The listener is non-blocking: accept returns WouldBlock once the backlog is empty.
    if let Ok(listener) = listener.into_std() {
        while let Ok((stream, peer)) = listener.accept() {
            let stream = stream
                .set_nonblocking(true)
                .and_then(|()| TcpStream::from_std(stream));
            if let Ok(stream) = stream {
                start(stream, peer);
            }
        }
    }
    tracing::info!("shutting down: finishing requests in flight");
    stop.send_replace(true);
    drop(stopped);
    tokio::select! {
        () = stop.closed() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(options.shutdown_grace) => {
            tracing::warn!("shutdown grace period over; closing the remaining connections");
        }
    }
}

/// A run of failed accepts (usually: out of file descriptors), logged once when it starts and
/// once when it ends, not 20 times a second while it lasts.
#[derive(Default)]
struct AcceptFailures {
    /// When the run began and how many accepts have failed in it; `None` while accepting works.
    run: Option<(Instant, u64)>,
}

impl AcceptFailures {
    fn failed(&mut self, err: &std::io::Error) {
        match &mut self.run {
            Some((_, count)) => *count += 1,
            None => {
                tracing::warn!(error = %err, "accept failed; retrying every 50 ms");
                self.run = Some((Instant::now(), 1));
            }
        }
    }

    /// Accepting works again: says how long it did not.
    fn accepted(&mut self) {
        if let Some((since, count)) = self.run.take() {
            tracing::warn!(
                failed = count,
                millis = since.elapsed().as_millis() as u64,
                "accepting connections again"
            );
        }
    }

    /// The server stops accepting with accepts still failing.
    fn stopped(&mut self) {
        if let Some((since, count)) = self.run.take() {
            tracing::warn!(
                failed = count,
                millis = since.elapsed().as_millis() as u64,
                "accepts were still failing at shutdown"
            );
        }
    }
}

/// What drives a connection: its activity, how long it may stall, and the shutdown signal.
struct Watch {
    activity: Arc<Activity>,
    stall_timeout: Duration,
    stop: watch::Receiver<bool>,
    peer: SocketAddr,
}

/// How often a connection checks whether it has stalled (more often if the bound is shorter).
const STALL_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// How often, once shutdown has begun, a connection that has not yet read anything looks for
/// the request it was accepted for.
const FIRST_BYTES_CHECK_INTERVAL: Duration = Duration::from_millis(10);

impl Watch {
    /// Runs `connection` to its end, and logs how it ended. It is closed (the task drops it)
    /// once no byte has moved on it for the stall timeout while none of its requests was being
    /// handled, or for `SHUTDOWN_STALL_TIMEOUT` once shutdown has begun; a request being
    /// handled is never cut, however long it waits on the database (the bound counts from the
    /// last check that saw it in flight). When shutdown begins it is told to finish: at once if
    /// it has read or written anything, since hyper then answers the request under way and
    /// closes; a connection that has read nothing yet is told only once its first bytes are in,
    /// because hyper closes an untouched connection at once, request waiting in the socket or
    /// not.
    async fn run<S, B>(self, connection: http1::Connection<TokioIo<Watched>, S>)
    where
        S: HttpService<Incoming, ResBody = B>,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        B: hyper::body::Body + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let Watch {
            activity,
            stall_timeout,
            mut stop,
            peer,
        } = self;
        let mut connection = std::pin::pin!(connection);
        let mut stopping = *stop.borrow();
        let mut told = false;
        let mut progress = activity.progress.load(Ordering::Relaxed);
        let mut quiet_since = tokio::time::Instant::now();
        loop {
            let tick = if stopping && !told {
                FIRST_BYTES_CHECK_INTERVAL
            } else {
                stall_timeout.min(STALL_CHECK_INTERVAL)
            };
            tokio::select! {
                biased;
                ended = connection.as_mut() => {
                    if let Err(err) = ended {
                        log_connection_error(&err, peer, &activity);
                    }
                    return;
                }
                // An error means the server is gone: as good as a stop.
                _ = stop.changed(), if !stopping => stopping = true,
                () = tokio::time::sleep(tick) => {}
            }
            let now = tokio::time::Instant::now();
            let seen = activity.progress.load(Ordering::Relaxed);
            if stopping && !told && seen > 0 {
                connection.as_mut().graceful_shutdown();
                told = true;
            }
            if seen != progress || activity.handling.load(Ordering::Relaxed) > 0 {
                progress = seen;
                quiet_since = now;
                continue;
            }
            let bound = if stopping {
                stall_timeout.min(SHUTDOWN_STALL_TIMEOUT)
            } else {
                stall_timeout
            };
            if now.duration_since(quiet_since) >= bound {
                tracing::info!(%peer, "closed a connection on which nothing moved");
                return;
            }
        }
    }
}

/// Refuses what hyper lets through but HTTP/1.1 forbids (RFC 9112): a request without a Host
/// (HTTP/1.0 may omit it) or with two, and a transfer coding other than one `chunked`.
fn check_framing<B>(req: &Request<B>) -> Result<(), AppError> {
    let headers = req.headers();
    let mut hosts = headers.get_all(HOST).iter();
    match (hosts.next(), hosts.next()) {
        (None, _) if req.version() == Version::HTTP_11 => return Err(AppError::NoHost),
        (Some(_), Some(_)) => return Err(AppError::ManyHosts),
        _ => {}
    }
    let mut codings = headers.get_all(TRANSFER_ENCODING).iter();
    match (codings.next(), codings.next()) {
        (None, _) => Ok(()),
        (Some(coding), None) if coding.as_bytes().eq_ignore_ascii_case(b"chunked") => Ok(()),
        _ => Err(AppError::TransferEncoding),
    }
}

/// What one connection is doing, shared by its socket (which counts the bytes that move), its
/// service (which counts the requests being handled) and the task that closes it if it stalls.
/// Touched with relaxed atomics only: it is read once a second, and a count a little stale
/// only moves a close by a second.
#[derive(Default)]
struct Activity {
    /// Goes up on every read or write that moves at least a byte; only compared with itself.
    progress: AtomicU64,
    /// Requests of this connection being handled now.
    handling: AtomicUsize,
    /// Bytes have arrived since the last ones went out: a request has begun that has not been
    /// answered (or one came with the previous, pipelined, which this cannot tell).
    unanswered: AtomicBool,
}

/// A request being handled on a connection, counted in its `Activity` until dropped.
struct Handling(Arc<Activity>);

impl Handling {
    fn start(activity: &Arc<Activity>) -> Handling {
        activity.handling.fetch_add(1, Ordering::Relaxed);
        Handling(activity.clone())
    }
}

impl Drop for Handling {
    fn drop(&mut self) {
        self.0.handling.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection's socket that counts, in `activity`, every read and write that moves bytes.
/// Nothing else: no clock is read and no timer reset here, on the path of every request.
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl Watched {
    fn read_some(&self) {
        self.activity.progress.fetch_add(1, Ordering::Relaxed);
        self.activity.unanswered.store(true, Ordering::Relaxed);
    }

    fn wrote_some(&self) {
        self.activity.progress.fetch_add(1, Ordering::Relaxed);
        self.activity.unanswered.store(false, Ordering::Relaxed);
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.read_some();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(written)) if written > 0) {
            self.wrote_some();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(written)) if written > 0) {
            self.wrote_some();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Logs how a connection ended with an error. A request hyper refused before Penny saw it gets
/// the access log's line, with the status hyper answered; a request head that did not arrive
/// within the header timeout gets a line that says it was not answered. The rest (a client that
/// went away, an idle keep-alive connection timing out) is routine, and only debug.
fn log_connection_error(err: &hyper::Error, peer: SocketAddr, activity: &Activity) {
    if let Some(status) = refused_status(err) {
        tracing::info!(status, error = %err, "request");
    } else if err.is_timeout() && activity.unanswered.load(Ordering::Relaxed) {
        tracing::info!(
            error = %err,
            "request not answered: its head was not complete within the header timeout"
        );
    } else {
        tracing::debug!(%peer, error = %err, "connection ended with an error");
    }
}

/// The status hyper answers a request it cannot parse with, as its HTTP/1 server decides in
/// `on_error` (hyper 1.x, src/proto/h1/role.rs): 431 for a head over the size limit, 414 for a
/// URI over 64 KiB, 400 for any other bad request line or header. `None` when it answers
/// nothing: an HTTP/2 preface, and its own internal errors.
fn refused_status(err: &hyper::Error) -> Option<u16> {
    if !err.is_parse() || err.is_parse_version_h2() || err.is_parse_status() {
        return None;
    }
    // hyper tells these apart only in its message; an error is rare enough to format one.
    let message = err.to_string();
    if err.is_parse_too_large() {
        Some(if message == "URI too long" { 414 } else { 431 })
    } else if message.starts_with("internal error") {
        None
    } else {
        Some(400)
    }
}

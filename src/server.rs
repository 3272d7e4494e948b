//! The HTTP server: an accept loop that hands each connection to hyper, logs one line per
//! request, and on shutdown stops accepting, lets in-flight requests finish and closes idle
//! keep-alive connections.

use crate::routes::{self, App};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Semaphore;

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
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            header_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            shutdown_grace: Duration::from_secs(9),
            max_in_flight: 1024,
        }
    }
}

/// How many connections the kernel may queue before Penny accepts them; it caps this at
/// net.core.somaxconn. The standard library's 128 made a burst of connects wait out SYN
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
    let graceful = GracefulShutdown::new();
    // Requests being handled now, against the limit: past it a request is refused at once
    // rather than queued, since waiting longer only adds to a backlog.
    let in_flight = Arc::new(Semaphore::new(options.max_in_flight));
    let mut shutdown = std::pin::pin!(shutdown);
    let mut failing = AcceptFailures::default();

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
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let in_flight = in_flight.clone();
        let service = service_fn(move |req| {
            let app = app.clone();
            // Held until the request's future is dropped, also when the client goes away.
            let admitted = in_flight.clone().try_acquire_owned().ok();
            async move {
                let started = Instant::now();
                let response = match admitted {
                    Some(_admitted) => routes::handle(&app, &req).await,
                    None => routes::overloaded(&app, &req),
                };
                tracing::info!(
                    method = %req.method(),
                    // Display, not Debug: a path is printable ASCII (hyper refuses anything
                    // else), so there is nothing to escape.
                    path = %req.uri().path(),
                    status = response.status().as_u16(),
                    micros = started.elapsed().as_micros() as u64,
                    request_id = req.headers().get("x-request-id").and_then(|id| id.to_str().ok()),
                    "request"
                );
                Ok::<_, Infallible>(response)
            }
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%peer, error = %err, "connection ended with an error");
            }
        });
    }

    failing.stopped();
    drop(listener);
    tracing::info!("shutting down: finishing requests in flight");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
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

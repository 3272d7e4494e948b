//! A load generator for the tests: client tasks sending requests one after another, each
//! answer recorded as a `Sample`, and the figures (percentiles, one-line summaries) drawn from
//! them. Also single timed probes, for outages and their ends.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// How long a client waits for any answer before it counts the request as hung.
pub const CLIENT_LIMIT: Duration = Duration::from_secs(15);

/// One request a load client sent and what became of it. Times are from the test's clock.
#[derive(Clone, Debug)]
pub struct Sample {
    /// Unique per request, sent as X-Request-Id so the server's log can be matched to it.
    pub id: String,
    pub path: &'static str,
    pub sent: Duration,
    pub took: Duration,
    pub outcome: Outcome,
}

#[derive(Clone, Debug)]
pub enum Outcome {
    /// A whole response arrived; the body is kept for anything but a 200.
    Answered {
        status: StatusCode,
        body: Option<String>,
    },
    /// The connection failed before a response: refused, closed or reset.
    Failed(String),
    /// No answer within `CLIENT_LIMIT`.
    Hung,
}

impl Sample {
    pub fn status(&self) -> Option<StatusCode> {
        match &self.outcome {
            Outcome::Answered { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn done(&self) -> Duration {
        self.sent + self.took
    }

    pub fn is(&self, status: StatusCode) -> bool {
        self.status() == Some(status)
    }
}

/// An HTTP/1.1 client on one connection, kept alive from request to request unless `churn`,
/// and opened again whenever the server closes it.
pub struct Client {
    addr: SocketAddr,
    churn: bool,
    sender: Option<SendRequest<Empty<Bytes>>>,
}

impl Client {
    pub fn new(addr: SocketAddr, churn: bool) -> Client {
        Client {
            addr,
            churn,
            sender: None,
        }
    }

    pub async fn get(&mut self, path: &str, id: &str) -> Result<(StatusCode, String), String> {
        let reusable = self.sender.as_ref().is_some_and(|s| !s.is_closed());
        if !reusable || self.churn {
            let stream = TcpStream::connect(self.addr)
                .await
                .map_err(|err| format!("connect: {err}"))?;
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|err| format!("handshake: {err}"))?;
            tokio::spawn(connection);
            self.sender = Some(sender);
        }
        let sender = self.sender.as_mut().expect("a connection was just opened");
        let request = Request::get(path)
            .header("host", self.addr.to_string())
            .header("x-request-id", id)
            .body(Empty::new())
            .expect("a valid request");
        let result = async {
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, String::from_utf8_lossy(&body).into_owned()))
        }
        .await;
        result.map_err(|err| {
            self.sender = None;
            format!("request: {err}")
        })
    }
}

/// Client tasks, each sending `paths` in turn, one request at a time, until `finish`.
pub struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<Vec<Sample>>>,
}

impl Load {
    pub fn start(
        addr: SocketAddr,
        clients: usize,
        paths: &'static [&'static str],
        clock: Instant,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..clients)
            .map(|task| {
                let stop = stop.clone();
                tokio::spawn(async move {
                    let mut client = Client::new(addr, false);
                    let mut samples = Vec::new();
                    for turn in 0.. {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let path = paths[(task + turn) % paths.len()];
                        let id = format!("c{task}-{turn}");
                        let sent = clock.elapsed();
                        let outcome =
                            match tokio::time::timeout(CLIENT_LIMIT, client.get(path, &id)).await {
                                Ok(Ok((status, body))) => Outcome::Answered {
                                    status,
                                    body: (status != StatusCode::OK).then_some(body),
                                },
                                Ok(Err(err)) => Outcome::Failed(err),
                                Err(_) => Outcome::Hung,
                            };
                        let failed = !matches!(outcome, Outcome::Answered { .. });
                        samples.push(Sample {
                            id,
                            path,
                            sent,
                            took: clock.elapsed() - sent,
                            outcome,
                        });
                        if failed {
                            // Start again on a new connection; a refused one fails at once, so
                            // do not spin on it.
                            client.sender = None;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                    samples
                })
            })
            .collect();
        Load { stop, tasks }
    }

    /// Stops the clients after their current request and returns every sample, in send order.
    pub async fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        let mut samples = Vec::new();
        for task in self.tasks {
            samples.extend(task.await.expect("a load client does not panic"));
        }
        samples.sort_by_key(|sample| sample.sent);
        samples
    }
}

/// The `p`th percentile (0 to 100) of `times`, or zero for none.
pub fn percentile(times: &[Duration], p: f64) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    match sorted.len() {
        0 => Duration::ZERO,
        n => sorted[((p / 100.0) * (n - 1) as f64).round() as usize],
    }
}

pub fn latencies<'a>(samples: impl IntoIterator<Item = &'a Sample>) -> Vec<Duration> {
    samples.into_iter().map(|sample| sample.took).collect()
}

pub fn ms(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
}

pub fn secs(duration: Duration) -> String {
    format!("{:.2} s", duration.as_secs_f64())
}

/// A one-line account of `samples`: count, statuses, p50, p99 and the slowest.
pub fn describe(samples: &[&Sample]) -> String {
    let mut statuses = std::collections::BTreeMap::new();
    for sample in samples {
        let key = match &sample.outcome {
            Outcome::Answered { status, .. } => status.as_u16().to_string(),
            Outcome::Failed(why) => format!("failed: {why}"),
            Outcome::Hung => "hung".into(),
        };
        *statuses.entry(key).or_insert(0) += 1;
    }
    let times = latencies(samples.iter().copied());
    format!(
        "{} requests {statuses:?}, p50 {}, p99 {}, max {}",
        samples.len(),
        ms(percentile(&times, 50.0)),
        ms(percentile(&times, 99.0)),
        ms(times.iter().max().copied().unwrap_or_default()),
    )
}

/// GETs `path` on a new connection: the status and body (checked for passwords) and how long
/// it took, or why it failed.
pub async fn timed_get(
    addr: SocketAddr,
    path: &str,
) -> (Result<(StatusCode, String), String>, Duration) {
    let started = Instant::now();
    let result = match tokio::time::timeout(
        CLIENT_LIMIT,
        Client::new(addr, true).get(path, "probe"),
    )
    .await
    {
        Ok(result) => result,
        Err(_) => Err("no answer".into()),
    };
    if let Ok((_, body)) = &result {
        super::secrets::check(body, &format!("the response to GET {path}"));
    }
    (result, started.elapsed())
}

/// Polls `path` until it answers 200, for at most `limit`; returns how long that took.
pub async fn time_until_ok(addr: SocketAddr, path: &str, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let (Ok((StatusCode::OK, _)), _) = timed_get(addr, path).await {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

/// Sends `clients` searches at once and checks each succeeds, so that the pool has opened its
/// connections before the figures start.
pub async fn warm_up(addr: SocketAddr, clients: usize) {
    let searches: Vec<_> = (0..clients)
        .map(|_| tokio::spawn(timed_get(addr, "/searchresults?author=ker")))
        .collect();
    for search in searches {
        let (result, _) = search.await.unwrap();
        assert_eq!(result.map(|(status, _)| status), Ok(StatusCode::OK));
    }
}

//! The upstream pool actor. `awc::Client` is `!Send` (an `Rc`-based pool), so each proxy
//! worker starts its own actors in its app factory: the upstream call stays on the thread
//! that accepted the request — no cross-thread hop, no channel per response.
//!
//! One `UpstreamPool` per provider per worker holds that provider's clients, one per
//! connect timeout (awc sets the connect timeout on the connector), each bounded to
//! `MAX_CONNECTIONS_PER_CLIENT` concurrent connections. The read timeout is per request.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use std::net::SocketAddr;

use actix::{Actor, Context, Handler, Message, ResponseFuture};
use actix_tls::connect::{Connector as TcpConnector, Resolve, Resolver};
use futures::StreamExt;
use futures::future::LocalBoxFuture;

use crate::admin::validate::is_private_ip;
use awc::error::{PayloadError, SendRequestError};
use bytes::Bytes;

/// Concurrent upstream connections per worker, provider and connect timeout.
pub const MAX_CONNECTIONS_PER_CLIENT: usize = 256;

/// One upstream call, fully described (the translator built URL, headers and body).
pub struct Forward {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    /// Larger upstream bodies are an error, never buffered.
    pub max_response_bytes: usize,
}

/// The upstream's answer, read in full (non-streaming).
#[derive(Debug)]
pub struct UpstreamReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// From sending the request to the last body byte.
    pub latency: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamFailure {
    #[error("upstream unreachable: {0}")]
    Unreachable(String),
    #[error("upstream did not answer within {0} ms")]
    Timeout(u128),
    #[error("upstream connection failed mid-response: {0}")]
    Broken(String),
    #[error("upstream response is larger than {0} bytes")]
    TooLarge(usize),
}

impl Message for Forward {
    type Result = Result<UpstreamReply, UpstreamFailure>;
}

/// A streamed upstream call: the answer's head now, its body through a bounded channel.
pub struct ForwardStream {
    pub request: Forward,
    /// Longest silence allowed between two pieces of the body (and before the head).
    pub idle_timeout: Duration,
}

/// Pieces of a streamed body in flight between the reader task and the proxy: enough to
/// absorb bursts, small enough that a slow client slows the upstream read (backpressure).
pub const STREAM_CHANNEL_DEPTH: usize = 16;

/// The head of a streamed answer; the body arrives on `body` as the upstream sends it.
/// Dropping `body` cancels the upstream request: the reader task notices the closed
/// channel, drops the response, and with it the upstream connection.
#[derive(Debug)]
pub struct UpstreamStream {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: tokio::sync::mpsc::Receiver<Result<Bytes, UpstreamFailure>>,
    /// From sending the request to the response head.
    pub latency: Duration,
}

impl Message for ForwardStream {
    type Result = Result<UpstreamStream, UpstreamFailure>;
}

pub struct UpstreamPool {
    provider: &'static str,
    allow_private: bool,
    clients: HashMap<Duration, awc::Client>,
}

/// Resolves upstream host names and, unless private upstreams are allowed, refuses names
/// that resolve to loopback, private, link-local or metadata addresses (spec §3.3: the
/// admin API checks literal addresses at write time; DNS can change, so the resolved
/// address is checked again here, at connect time).
struct GuardedResolver {
    allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn lookup<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> LocalBoxFuture<'a, Result<Vec<SocketAddr>, Box<dyn std::error::Error>>> {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
            if !allow_private && addrs.iter().any(|a| is_private_ip(a.ip())) {
                return Err(format!(
                    "{host} resolves to a private or loopback address; set TOLLGATE_ALLOW_PRIVATE_UPSTREAMS=true to allow it"
                )
                .into());
            }
            Ok(addrs)
        })
    }
}

impl UpstreamPool {
    pub fn new(provider: &'static str, allow_private: bool) -> Self {
        UpstreamPool {
            provider,
            allow_private,
            clients: HashMap::new(),
        }
    }

    fn client(&mut self, connect_timeout: Duration) -> awc::Client {
        let allow_private = self.allow_private;
        self.clients
            .entry(connect_timeout)
            .or_insert_with(|| {
                let resolver = Resolver::custom(GuardedResolver { allow_private });
                let connector = awc::Connector::new()
                    .connector(TcpConnector::new(resolver).service())
                    .timeout(connect_timeout)
                    .limit(MAX_CONNECTIONS_PER_CLIENT);
                awc::Client::builder()
                    .connector(connector)
                    // Per-request read timeouts replace the client-wide default.
                    .disable_timeout()
                    .finish()
            })
            .clone()
    }
}

fn send_error(e: SendRequestError, timeout_ms: u128) -> UpstreamFailure {
    match e {
        SendRequestError::Timeout => UpstreamFailure::Timeout(timeout_ms),
        SendRequestError::Connect(e) => UpstreamFailure::Unreachable(e.to_string()),
        other => UpstreamFailure::Broken(other.to_string()),
    }
}

fn payload_error(e: PayloadError, timeout_ms: u128, limit: usize) -> UpstreamFailure {
    match e {
        PayloadError::Overflow => UpstreamFailure::TooLarge(limit),
        PayloadError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
            UpstreamFailure::Timeout(timeout_ms)
        }
        other => UpstreamFailure::Broken(other.to_string()),
    }
}

fn header_pairs(headers: &actix_web::http::header::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect()
}

impl Actor for UpstreamPool {
    type Context = Context<Self>;
}

impl Handler<Forward> for UpstreamPool {
    type Result = ResponseFuture<Result<UpstreamReply, UpstreamFailure>>;

    fn handle(&mut self, msg: Forward, _: &mut Context<Self>) -> Self::Result {
        let client = self.client(msg.connect_timeout);
        let provider = self.provider;
        Box::pin(async move {
            let started = Instant::now();
            let mut request = client.post(&msg.url).timeout(msg.read_timeout);
            for (name, value) in &msg.headers {
                request = request.insert_header((name.as_str(), value.as_str()));
            }
            let timeout_ms = msg.read_timeout.as_millis();
            let mut response = request
                .send_body(msg.body)
                .await
                .map_err(|e| send_error(e, timeout_ms))?;
            let status = response.status().as_u16();
            let headers = header_pairs(response.headers());
            let body = response
                .body()
                .limit(msg.max_response_bytes)
                .await
                .map_err(|e| payload_error(e, timeout_ms, msg.max_response_bytes))?;
            tracing::debug!(provider, status, bytes = body.len(), "upstream answered");
            Ok(UpstreamReply {
                status,
                headers,
                body,
                latency: started.elapsed(),
            })
        })
    }
}

impl Handler<ForwardStream> for UpstreamPool {
    type Result = ResponseFuture<Result<UpstreamStream, UpstreamFailure>>;

    fn handle(&mut self, msg: ForwardStream, _: &mut Context<Self>) -> Self::Result {
        let ForwardStream {
            request: msg,
            idle_timeout,
        } = msg;
        let client = self.client(msg.connect_timeout);
        let provider = self.provider;
        Box::pin(async move {
            let started = Instant::now();
            // No request-wide timeout: awc would apply it to the whole body, and a stream
            // may legitimately last longer than the read timeout. Silence is bounded instead.
            let mut request = client.post(&msg.url);
            for (name, value) in &msg.headers {
                request = request.insert_header((name.as_str(), value.as_str()));
            }
            let timeout_ms = idle_timeout.as_millis();
            let mut response = tokio::time::timeout(idle_timeout, request.send_body(msg.body))
                .await
                .map_err(|_| UpstreamFailure::Timeout(timeout_ms))?
                .map_err(|e| send_error(e, timeout_ms))?;
            let status = response.status().as_u16();
            let headers = header_pairs(response.headers());
            let latency = started.elapsed();
            let (tx, rx) = tokio::sync::mpsc::channel(STREAM_CHANNEL_DEPTH);
            let limit = msg.max_response_bytes;
            // The reader stays on this worker's thread (the response is `!Send`).
            actix::spawn(async move {
                let mut read = 0usize;
                loop {
                    let next = tokio::select! {
                        // The proxy dropped the stream (client gone): stop reading; dropping
                        // the response closes the upstream connection.
                        () = tx.closed() => break,
                        next = tokio::time::timeout(idle_timeout, response.next()) => next,
                    };
                    let item = match next {
                        Err(_) => Err(UpstreamFailure::Timeout(timeout_ms)),
                        Ok(None) => break,
                        Ok(Some(Ok(bytes))) => {
                            read += bytes.len();
                            if read > limit {
                                Err(UpstreamFailure::TooLarge(limit))
                            } else {
                                Ok(bytes)
                            }
                        }
                        Ok(Some(Err(e))) => Err(payload_error(e, timeout_ms, limit)),
                    };
                    let failed = item.is_err();
                    if tx.send(item).await.is_err() || failed {
                        break;
                    }
                }
                tracing::debug!(provider, status, bytes = read, "upstream stream ended");
            });
            Ok(UpstreamStream {
                status,
                headers,
                body: rx,
                latency,
            })
        })
    }
}

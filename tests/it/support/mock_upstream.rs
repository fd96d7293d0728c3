//! A mock LLM provider on a real loopback listener: records every request it receives and
//! answers with a scripted behaviour (a provider's wire-format body, an error page, a hang,
//! a connection cut mid-body).

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::Value;

#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("upstream body is JSON")
    }
}

#[derive(Debug, Clone)]
pub enum Behaviour {
    /// Status, content type and body.
    Reply(u16, &'static str, Vec<u8>),
    /// Never answers (for read timeouts).
    Hang,
    /// Promises a long body, sends a little, then drops the connection.
    CutMidBody,
    /// A streamed 200: each frame flushed on its own, `gap` apart, then `tail`.
    Stream {
        content_type: &'static str,
        frames: Vec<Vec<u8>>,
        gap: Duration,
        tail: Tail,
    },
    /// A redirect: `status` with `Location: location` and a small body.
    Redirect { status: u16, location: String },
    /// `inner`, its answer carrying these headers too (a provider's rate-limit headers).
    WithHeaders(Vec<(&'static str, String)>, Box<Behaviour>),
    /// `streamed` when the request body says `"stream": true`, else `whole`.
    ByStream {
        whole: Box<Behaviour>,
        streamed: Box<Behaviour>,
    },
}

/// How a streamed answer ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    /// The body ends normally.
    End,
    /// The upstream goes silent and keeps the connection open.
    Hang,
    /// The connection is reset mid-stream.
    Reset,
}

/// What happened to one streamed answer on the mock's side.
#[derive(Debug, Clone, Copy)]
pub struct StreamRecord {
    pub frames_sent: usize,
    /// When the mock's body was dropped: the end, or the connection closing under it.
    pub dropped_at: std::time::Instant,
    pub completed: bool,
}

impl Behaviour {
    pub fn json(status: u16, body: Value) -> Behaviour {
        Behaviour::Reply(
            status,
            "application/json",
            serde_json::to_vec(&body).expect("json"),
        )
    }
}

#[derive(Clone)]
struct Shared {
    received: Arc<Mutex<Vec<Received>>>,
    behaviour: Arc<Mutex<Behaviour>>,
    streams: Arc<Mutex<Vec<StreamRecord>>>,
}

pub struct MockUpstream {
    pub base: String,
    shared: Shared,
    handle: actix_web::dev::ServerHandle,
}

impl MockUpstream {
    pub async fn start(behaviour: Behaviour) -> MockUpstream {
        let shared = Shared {
            received: Arc::new(Mutex::new(Vec::new())),
            behaviour: Arc::new(Mutex::new(behaviour)),
            streams: Arc::new(Mutex::new(Vec::new())),
        };
        let data = shared.clone();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind mock");
        let addr = listener.local_addr().expect("addr");
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(data.clone()))
                .app_data(web::PayloadConfig::new(64 * 1024 * 1024))
                .default_service(web::to(answer))
        })
        .workers(1)
        .listen(listener)
        .expect("listen")
        .disable_signals()
        .run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        MockUpstream {
            base: format!("http://{addr}"),
            shared,
            handle,
        }
    }

    pub fn set(&self, behaviour: Behaviour) {
        *self.shared.behaviour.lock().unwrap() = behaviour;
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// The streamed answers that have ended (completed or cut by the other side).
    pub fn streams(&self) -> Vec<StreamRecord> {
        self.shared.streams.lock().unwrap().clone()
    }

    pub fn last(&self) -> Received {
        self.received().pop().expect("the mock received a request")
    }

    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }
}

async fn answer(req: HttpRequest, body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    shared.received.lock().unwrap().push(Received {
        path: req.path().to_string(),
        query: req.query_string().to_string(),
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
        body: body.to_vec(),
    });
    let mut behaviour = shared.behaviour.lock().unwrap().clone();
    let mut extra = Vec::new();
    if let Behaviour::WithHeaders(headers, inner) = behaviour {
        extra = headers;
        behaviour = *inner;
    }
    if let Behaviour::ByStream { whole, streamed } = behaviour {
        let wants_stream = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|b| b.get("stream").and_then(Value::as_bool))
            .unwrap_or(false);
        behaviour = if wants_stream { *streamed } else { *whole };
    }
    let mut response = respond(behaviour, &shared).await;
    for (name, value) in extra {
        response.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static(name),
            actix_web::http::header::HeaderValue::from_str(&value).unwrap(),
        );
    }
    response
}

async fn respond(behaviour: Behaviour, shared: &Shared) -> HttpResponse {
    match behaviour {
        Behaviour::ByStream { .. } | Behaviour::WithHeaders(..) => {
            HttpResponse::InternalServerError().finish()
        }
        Behaviour::Reply(status, content_type, body) => {
            HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
                .content_type(content_type)
                .insert_header(("set-cookie", "provider-session=abc"))
                .insert_header(("x-ratelimit-remaining-requests", "99"))
                .body(body)
        }
        Behaviour::Redirect { status, location } => {
            HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
                .insert_header(("location", location))
                .content_type("text/plain")
                .body("moved")
        }
        Behaviour::Hang => {
            actix_web::rt::time::sleep(Duration::from_secs(3600)).await;
            HttpResponse::Ok().finish()
        }
        Behaviour::Stream {
            content_type,
            frames,
            gap,
            tail,
        } => {
            let body = MockStream {
                frames: frames.into_iter().map(web::Bytes::from).collect(),
                next: 0,
                gap,
                tail,
                sleep: None,
                streams: shared.streams.clone(),
            };
            HttpResponse::Ok()
                .content_type(content_type)
                .insert_header(("x-ratelimit-remaining-requests", "98"))
                .streaming(body)
        }
        Behaviour::CutMidBody => {
            let chunks = futures::stream::iter(vec![
                Ok::<_, std::io::Error>(web::Bytes::from_static(b"{\"id\":\"cut")),
                Err(std::io::Error::other("connection cut")),
            ]);
            HttpResponse::Ok()
                .content_type("application/json")
                .no_chunking(10_000)
                .streaming(chunks)
        }
    }
}

/// A scripted streamed body that records when it is dropped (the connection closed).
struct MockStream {
    frames: std::collections::VecDeque<web::Bytes>,
    next: usize,
    gap: Duration,
    tail: Tail,
    sleep: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    streams: Arc<Mutex<Vec<StreamRecord>>>,
}

impl futures::Stream for MockStream {
    type Item = Result<web::Bytes, std::io::Error>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let this = self.get_mut();
        if this.next > 0 || this.frames.is_empty() {
            let gap = if this.frames.is_empty() && this.tail == Tail::Hang {
                Duration::from_secs(3600)
            } else {
                this.gap
            };
            let sleep = this
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(gap)));
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.sleep = None;
        }
        match this.frames.pop_front() {
            Some(frame) => {
                this.next += 1;
                Poll::Ready(Some(Ok(frame)))
            }
            None => match this.tail {
                Tail::End => Poll::Ready(None),
                Tail::Reset => Poll::Ready(Some(Err(std::io::Error::other("reset")))),
                Tail::Hang => Poll::Pending,
            },
        }
    }
}

impl Drop for MockStream {
    fn drop(&mut self) {
        self.streams.lock().unwrap().push(StreamRecord {
            frames_sent: self.next,
            dropped_at: std::time::Instant::now(),
            completed: self.frames.is_empty() && self.tail == Tail::End,
        });
    }
}

/// A bare TCP listener on loopback that records every connection and every byte it
/// receives and never answers: where nothing may arrive (a redirect's target, a refused
/// destination), it proves that nothing did — not even a connection.
pub struct RecordingListener {
    pub base: String,
    pub port: u16,
    connections: Arc<Mutex<usize>>,
    bytes: Arc<Mutex<Vec<u8>>>,
    task: actix_web::rt::task::JoinHandle<()>,
}

impl RecordingListener {
    pub async fn start() -> RecordingListener {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind recording listener");
        let port = listener.local_addr().expect("addr").port();
        let connections = Arc::new(Mutex::new(0));
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let (seen, data) = (connections.clone(), bytes.clone());
        let task = actix_web::rt::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                *seen.lock().unwrap() += 1;
                let data = data.clone();
                actix_web::rt::spawn(async move {
                    let mut buf = [0u8; 4096];
                    while socket.readable().await.is_ok() {
                        match socket.try_read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => data.lock().unwrap().extend_from_slice(&buf[..n]),
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                            Err(_) => break,
                        }
                    }
                });
            }
        });
        RecordingListener {
            base: format!("http://127.0.0.1:{port}"),
            port,
            connections,
            bytes,
            task,
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        *self.connections.lock().unwrap()
    }

    /// Everything received so far, on all connections.
    pub fn received(&self) -> Vec<u8> {
        self.bytes.lock().unwrap().clone()
    }
}

impl Drop for RecordingListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

//! A mock LLM provider on a real loopback listener: records every request it receives and
//! answers with a scripted behaviour (a provider's wire-format body, an error page, a hang,
//! a connection cut mid-body).

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
    let behaviour = shared.behaviour.lock().unwrap().clone();
    match behaviour {
        Behaviour::Reply(status, content_type, body) => {
            HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
                .content_type(content_type)
                .insert_header(("set-cookie", "provider-session=abc"))
                .insert_header(("x-ratelimit-remaining-requests", "99"))
                .body(body)
        }
        Behaviour::Hang => {
            actix_web::rt::time::sleep(Duration::from_secs(3600)).await;
            HttpResponse::Ok().finish()
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

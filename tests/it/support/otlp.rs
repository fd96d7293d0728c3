//! A real OTLP http/protobuf receiver on port 0 (actix-web on its own thread, since
//! `Otel::flush` blocks the caller until the exporters' threads have posted), decoding
//! what it receives with `opentelemetry-proto`.

use std::sync::{Arc, Mutex};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

#[derive(Default)]
pub struct Received {
    pub traces: Vec<ExportTraceServiceRequest>,
    pub metrics: Vec<ExportMetricsServiceRequest>,
}

type Shared = Arc<Mutex<Received>>;

pub struct Receiver {
    pub url: String,
    pub received: Shared,
    handle: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        futures::executor::block_on(self.handle.stop(false));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn is_protobuf(req: &HttpRequest) -> bool {
    req.headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "application/x-protobuf")
}

async fn traces(req: HttpRequest, body: web::Bytes, data: web::Data<Shared>) -> HttpResponse {
    if !is_protobuf(&req) {
        return HttpResponse::UnsupportedMediaType().finish();
    }
    match ExportTraceServiceRequest::decode(body) {
        Ok(decoded) => {
            data.lock().unwrap().traces.push(decoded);
            HttpResponse::Ok()
                .content_type("application/x-protobuf")
                .body(ExportTraceServiceResponse::default().encode_to_vec())
        }
        Err(e) => HttpResponse::BadRequest().body(e.to_string()),
    }
}

async fn metrics(req: HttpRequest, body: web::Bytes, data: web::Data<Shared>) -> HttpResponse {
    if !is_protobuf(&req) {
        return HttpResponse::UnsupportedMediaType().finish();
    }
    match ExportMetricsServiceRequest::decode(body) {
        Ok(decoded) => {
            data.lock().unwrap().metrics.push(decoded);
            HttpResponse::Ok()
                .content_type("application/x-protobuf")
                .body(ExportMetricsServiceResponse::default().encode_to_vec())
        }
        Err(e) => HttpResponse::BadRequest().body(e.to_string()),
    }
}

pub fn start_receiver() -> Receiver {
    let received = Shared::default();
    let shared = received.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let result = actix_web::rt::System::new().block_on(async move {
            let data = web::Data::new(shared);
            let server = HttpServer::new(move || {
                App::new()
                    .app_data(data.clone())
                    .app_data(web::PayloadConfig::new(16 * 1024 * 1024))
                    .route("/v1/traces", web::post().to(traces))
                    .route("/v1/metrics", web::post().to(metrics))
            })
            .workers(1)
            .disable_signals()
            .bind(("127.0.0.1", 0))?;
            let addr = server.addrs()[0];
            let server = server.run();
            let _ = tx.send((addr, server.handle()));
            server.await
        });
        if let Err(e) = result {
            eprintln!("OTLP receiver: {e}");
        }
    });
    let (addr, handle) = rx.recv().expect("receiver started");
    Receiver {
        url: format!("http://{addr}"),
        received,
        handle,
        thread: Some(thread),
    }
}

pub fn all_spans(received: &Received) -> Vec<Span> {
    received
        .traces
        .iter()
        .flat_map(|r| &r.resource_spans)
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| s.spans.clone())
        .collect()
}

//! A real OTLP http/protobuf receiver on port 0 (actix-web on its own thread, since
//! `Otel::flush` blocks the caller until the exporters' threads have posted), decoding
//! what it receives with `opentelemetry-proto`, plain or over TLS with a certificate
//! from a CA made up for the test ([`Pki`]).

use std::sync::{Arc, Mutex};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
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
    pub logs: Vec<ExportLogsServiceRequest>,
    /// Every request's path and headers (lower-case names), in arrival order.
    pub requests: Vec<(String, Vec<(String, String)>)>,
}

impl Received {
    /// The values of header `name` on the requests to `path`.
    pub fn header_values(&self, path: &str, name: &str) -> Vec<String> {
        self.requests
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, headers)| {
                headers
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            })
            .collect()
    }
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

/// Notes the request's path and headers.
fn note(req: &HttpRequest, data: &Shared) {
    let headers = req
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                v.to_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    data.lock()
        .unwrap()
        .requests
        .push((req.path().to_string(), headers));
}

fn is_protobuf(req: &HttpRequest) -> bool {
    req.headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "application/x-protobuf")
}

/// Decodes an export request of type `M` into `Received` (by `store`) and answers with
/// the empty response `R`.
fn receive<M: Message + Default, R: Message + Default>(
    req: &HttpRequest,
    body: web::Bytes,
    data: &Shared,
    store: impl FnOnce(&mut Received, M),
) -> HttpResponse {
    note(req, data);
    if !is_protobuf(req) {
        return HttpResponse::UnsupportedMediaType().finish();
    }
    match M::decode(body) {
        Ok(decoded) => {
            store(&mut data.lock().unwrap(), decoded);
            HttpResponse::Ok()
                .content_type("application/x-protobuf")
                .body(R::default().encode_to_vec())
        }
        Err(e) => HttpResponse::BadRequest().body(e.to_string()),
    }
}

async fn traces(req: HttpRequest, body: web::Bytes, data: web::Data<Shared>) -> HttpResponse {
    receive::<_, ExportTraceServiceResponse>(&req, body, &data, |r, m| r.traces.push(m))
}

async fn metrics(req: HttpRequest, body: web::Bytes, data: web::Data<Shared>) -> HttpResponse {
    receive::<_, ExportMetricsServiceResponse>(&req, body, &data, |r, m| r.metrics.push(m))
}

async fn logs(req: HttpRequest, body: web::Bytes, data: web::Data<Shared>) -> HttpResponse {
    receive::<_, ExportLogsServiceResponse>(&req, body, &data, |r, m| r.logs.push(m))
}

pub fn start_receiver() -> Receiver {
    start_receiver_with(None)
}

/// A receiver on `https://127.0.0.1:<port>` presenting `tls`'s certificate.
pub fn start_tls_receiver(tls: rustls::ServerConfig) -> Receiver {
    start_receiver_with(Some(tls))
}

fn start_receiver_with(tls: Option<rustls::ServerConfig>) -> Receiver {
    let scheme = if tls.is_some() { "https" } else { "http" };
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
                    .route("/v1/logs", web::post().to(logs))
            })
            .workers(1)
            .disable_signals();
            let server = match tls {
                Some(tls) => server.bind_rustls_0_23(("127.0.0.1", 0), tls)?,
                None => server.bind(("127.0.0.1", 0))?,
            };
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
        url: format!("{scheme}://{addr}"),
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

/// A CA made up for the test, a server certificate for 127.0.0.1 and a client certificate,
/// both signed by it (ECDSA P-256, ring).
pub struct Pki {
    pub ca_pem: String,
    pub client_cert_pem: String,
    pub client_key_pem: String,
    server_cert: rustls::pki_types::CertificateDer<'static>,
    server_key: Vec<u8>,
    ca_der: rustls::pki_types::CertificateDer<'static>,
}

impl Pki {
    pub fn new(name: &str) -> Pki {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose,
        };
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca.distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);

        let server_key = KeyPair::generate().unwrap();
        let mut server = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server.signed_by(&server_key, &issuer).unwrap();

        let client_key = KeyPair::generate().unwrap();
        let mut client = CertificateParams::new(Vec::<String>::new()).unwrap();
        client
            .distinguished_name
            .push(DnType::CommonName, "tollgate exporter");
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_cert = client.signed_by(&client_key, &issuer).unwrap();

        Pki {
            ca_pem: ca_cert.pem(),
            client_cert_pem: client_cert.pem(),
            client_key_pem: client_key.serialize_pem(),
            server_cert: server_cert.der().clone(),
            server_key: server_key.serialize_der(),
            ca_der: ca_cert.der().clone(),
        }
    }

    /// The receiver's TLS: its certificate, and when `client_auth`, a client certificate
    /// from this CA is required.
    pub fn server_config(&self, client_auth: bool) -> rustls::ServerConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = if client_auth {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(self.ca_der.clone()).unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        builder
            .with_single_cert(
                vec![self.server_cert.clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(self.server_key.clone().into()),
            )
            .unwrap()
    }
}

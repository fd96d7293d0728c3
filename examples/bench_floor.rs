//! The framework floor for `bench/run` (target `floor`): the least a proxy built on the
//! gateway's fixed crates can do per request — an actix-web server whose one handler reads
//! the body and sends it with awc to the upstream, then answers with the upstream's status,
//! content type and body. No key, no route, no JSON, no usage, no log.
//!
//! What it measures: the CPU per request that actix-web (server side) and awc (client side)
//! cost on their own, with the same worker count as the gateway (one per core) and one awc
//! client per worker, as the gateway's upstream pools have. The gateway's own work is what
//! its rows cost above this one (bench/README.md, "The framework floor").
//!
//! Usage: `bench_floor PORT UPSTREAM_URL [WORKERS]` (binds 127.0.0.1 only; workers default
//! to the number of cores). Every request is forwarded to `UPSTREAM_URL` as a `POST`.

use actix_web::http::header::CONTENT_TYPE;
use actix_web::{App, HttpResponse, HttpServer, web};
use bytes::Bytes;

/// One worker's upstream client and the upstream's address.
struct Upstream {
    client: awc::Client,
    url: String,
}

async fn forward(upstream: web::Data<Upstream>, body: Bytes) -> HttpResponse {
    let sent = upstream
        .client
        .post(&upstream.url)
        .insert_header((CONTENT_TYPE, "application/json"))
        .send_body(body)
        .await;
    let mut answer = match sent {
        Ok(answer) => answer,
        Err(e) => return HttpResponse::BadGateway().body(e.to_string()),
    };
    let body = match answer.body().limit(1 << 20).await {
        Ok(body) => body,
        Err(e) => return HttpResponse::BadGateway().body(e.to_string()),
    };
    let mut response = HttpResponse::build(answer.status());
    if let Some(ct) = answer.headers().get(CONTENT_TYPE) {
        response.insert_header((CONTENT_TYPE, ct.clone()));
    }
    response.body(body)
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: bench_floor PORT UPSTREAM_URL [WORKERS]";
    let port: u16 = args
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| std::io::Error::other(usage))?;
    let url = args.next().ok_or_else(|| std::io::Error::other(usage))?;
    let workers = args
        .next()
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    HttpServer::new(move || {
        // Built per worker, like the gateway's per-worker upstream pools.
        let upstream = Upstream {
            client: awc::Client::builder().disable_redirects().finish(),
            url: url.clone(),
        };
        App::new()
            .app_data(web::Data::new(upstream))
            .default_service(web::to(forward))
    })
    .workers(workers)
    .bind(("127.0.0.1", port))?
    .run()
    .await
}

//! The admin UI under `/ui/`: static files from `admin-ui/` embedded into the binary
//! (docs/architecture.md, "Admin UI"). A release build carries them; a debug build reads
//! them from the checkout, so editing a page needs no rebuild.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "admin-ui/"]
struct Assets;

/// Everything the UI loads comes from this origin; no inline script or style, no framing.
/// The UI talks to the admin API with `fetch` (same origin) and a bearer token it keeps in
/// memory, so no cookie exists for a forged request to ride on.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

/// Serves `/ui/{path}`: `index.html` for the bare prefix, the named file otherwise, 404
/// for a file that does not exist (pages are `#/…` fragments, never paths).
pub async fn serve(req: HttpRequest) -> HttpResponse {
    let path = req.match_info().query("path").trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    let Some(file) = Assets::get(path) else {
        return with_security_headers(HttpResponse::NotFound()).finish();
    };
    let hash: String = file.metadata.sha256_hash()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let etag = format!("\"{hash}\"");
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    // `no-cache` revalidates every time: assets have fixed names, so an upgraded gateway
    // must never leave a browser on stale scripts; the ETag keeps revalidation cheap.
    if fresh {
        return with_security_headers(HttpResponse::NotModified())
            .insert_header((header::ETAG, etag))
            .finish();
    }
    let mut content_type = file.metadata.mimetype().to_string();
    if content_type.starts_with("text/") || content_type == "application/javascript" {
        content_type.push_str("; charset=utf-8");
    }
    with_security_headers(HttpResponse::Ok())
        .insert_header((header::ETAG, etag))
        .content_type(content_type)
        .body(file.data.into_owned())
}

fn with_security_headers(
    mut builder: actix_web::HttpResponseBuilder,
) -> actix_web::HttpResponseBuilder {
    builder
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::CACHE_CONTROL, "no-cache"));
    builder
}

pub async fn redirect_to_ui() -> HttpResponse {
    HttpResponse::Found()
        .insert_header(("Location", "/ui/"))
        .finish()
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/ui", web::get().to(redirect_to_ui))
        .route("/ui/{path:.*}", web::get().to(serve));
}

//! The static admin UI under `/ui/` (embedded into the binary) and the offline Swagger UI
//! under `/docs/`.

use actix_web::{HttpRequest, HttpResponse, web};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "admin-ui/"]
struct Assets;

/// Serves `/ui/{path}`; unknown paths fall back to `index.html` (single-page app).
pub async fn serve(req: HttpRequest) -> HttpResponse {
    let path = req.match_info().query("path").trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    let file = Assets::get(path).or_else(|| Assets::get("index.html"));
    match file {
        Some(f) => HttpResponse::Ok()
            .content_type(f.metadata.mimetype())
            .insert_header(("x-content-type-options", "nosniff"))
            .body(f.data.into_owned()),
        None => HttpResponse::NotFound().finish(),
    }
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

//! The admin UI (docs/behaviour.md, "Admin UI"): its files as the admin listener serves
//! them, and the whole story in a real browser.
//!
//! The browser test needs `TOLLGATE_UI_CHROMIUM` (Debian's `chromium`) and
//! `TOLLGATE_UI_NODE_MODULES` (a `node_modules` with `playwright-core`), which `.ci/run`
//! installs and sets; it is `#[ignore]`d so a plain `cargo test` lists it as ignored, and
//! run without them it fails.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::support::mock_upstream::{Behaviour, MockUpstream};
use crate::support::proxy::{UPSTREAM_SECRET, openai_completion};
use crate::support::script::run_to_end;
use crate::support::{ADMIN_PASSWORD, required_env, required_tool, spawn_app};

/// The story takes about half a minute on a quiet machine.
const STORY_TIMEOUT: Duration = Duration::from_secs(240);

fn header<'a>(r: &'a crate::support::Reply, name: &str) -> &'a str {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header"))
}

#[actix_web::test]
async fn ui_files_are_served_with_their_types_a_strict_csp_and_etags() {
    let app = spawn_app().await;
    for (path, content_type) in [
        ("/ui/", "text/html; charset=utf-8"),
        ("/ui/app.css", "text/css; charset=utf-8"),
        ("/ui/js/app.js", "text/javascript; charset=utf-8"),
        (
            "/ui/vendor/chart.umd.min.js",
            "text/javascript; charset=utf-8",
        ),
    ] {
        let r = app.send("GET", path, None, None).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(header(&r, "content-type"), content_type, "{path}");
        let csp = header(&r, "content-security-policy");
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
        assert_eq!(header(&r, "x-content-type-options"), "nosniff");
        assert_eq!(header(&r, "cache-control"), "no-cache");

        // Revalidation: the same ETag answers 304 without a body.
        let etag = header(&r, "etag").to_string();
        let mut again = app
            .client
            .get(format!("{}{path}", app.admin))
            .insert_header(("If-None-Match", etag.as_str()))
            .send()
            .await
            .expect("request");
        assert_eq!(again.status().as_u16(), 304, "{path}");
        assert!(again.body().await.expect("body").is_empty());
    }
    // Pages are `#/…` fragments: a path that names no file is 404, never index.html
    // served as a script.
    for path in [
        "/ui/js/nope.js",
        "/ui/../Cargo.toml",
        "/ui/%2e%2e/Cargo.toml",
    ] {
        let r = app.send("GET", path, None, None).await;
        assert_eq!(r.status, 404, "{path}: {}", r.text);
    }
}

/// What the CSP and the session rules forbid, checked in the files themselves: no inline
/// script or style, no markup built from strings, no token kept in browser storage.
#[test]
fn ui_sources_have_no_inline_code_no_html_strings_and_no_browser_storage() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("admin-ui");
    let index = std::fs::read_to_string(root.join("index.html")).unwrap();
    for script in index.split("<script").skip(1) {
        let tag = &script[..script.find('>').unwrap()];
        assert!(tag.contains("src="), "inline <script{tag}>");
    }
    assert!(!index.contains("<style") && !index.contains("style="));
    let mut checked = 0;
    for entry in std::fs::read_dir(root.join("js")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for banned in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "localStorage",
            "sessionStorage",
            "document.cookie",
            "eval(",
            "new Function",
            ".style.",
        ] {
            assert!(!text.contains(banned), "{} uses {banned}", path.display());
        }
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} scripts found");
}

#[actix_web::test]
#[ignore = "needs chromium and playwright-core (TOLLGATE_UI_CHROMIUM, TOLLGATE_UI_NODE_MODULES)"]
async fn the_admin_ui_story_in_a_real_browser() {
    let chromium = required_env("TOLLGATE_UI_CHROMIUM", "Debian's chromium executable");
    let node_modules = required_env(
        "TOLLGATE_UI_NODE_MODULES",
        "a node_modules directory holding playwright-core",
    );
    required_tool("node", &["--version"]);
    assert!(
        Path::new(&node_modules).join("playwright-core").is_dir(),
        "no playwright-core in TOLLGATE_UI_NODE_MODULES={node_modules}"
    );
    let upstream = MockUpstream::start(Behaviour::json(200, openai_completion())).await;
    let app = spawn_app().await;
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ui-screenshots");
    let _ = std::fs::remove_dir_all(&shots);

    let mut command = Command::new("node");
    command
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ui/story.mjs"))
        .env("TOLLGATE_UI_ADMIN_URL", &app.admin)
        .env("TOLLGATE_UI_PROXY_URL", &app.proxy)
        .env(
            "TOLLGATE_UI_UPSTREAM_URL",
            format!("{}/v1/chat/completions", upstream.base),
        )
        .env("TOLLGATE_UI_PASSWORD", ADMIN_PASSWORD)
        .env("TOLLGATE_UI_SECRET", UPSTREAM_SECRET)
        .env("TOLLGATE_UI_NODE_MODULES", &node_modules)
        .env("TOLLGATE_UI_CHROMIUM", &chromium)
        .env("TOLLGATE_UI_SCREENSHOTS", &shots)
        // Node's fetch must reach the gateway directly.
        .env("NO_PROXY", "*")
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY");
    let out = run_to_end(
        command,
        "the browser story (tests/ui/story.mjs)",
        STORY_TIMEOUT,
    )
    .await;
    let summary: Value = serde_json::from_str(out.trim().lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("the story's last line is not JSON ({e}): {out}"));

    // What the browser configured is what the gateway serves: the credential the form
    // stored went upstream, with the two proxied calls that reached the provider (the
    // third was refused by the prompt guard the story attached).
    let received = upstream.received();
    assert_eq!(received.len(), 2, "upstream calls");
    for call in &received {
        assert_eq!(
            call.header("authorization"),
            Some(format!("Bearer {UPSTREAM_SECRET}").as_str())
        );
    }
    let key = summary["key"].as_str().unwrap();
    assert!(key.starts_with("tg-"), "{summary}");
    // Each page at both widths.
    let taken = std::fs::read_dir(&shots).unwrap().count();
    assert!(taken >= 30, "{taken} screenshots in {}", shots.display());
    assert_eq!(summary["screenshots"].as_u64(), Some(taken as u64));
}

//! The README's first session, as a newcomer runs it: `tollgate mock-upstream` (the real
//! binary), `tollgate serve` allowed to call it, then the README's script block — taken
//! from README.md itself, so the README cannot drift from what works — run by bash with
//! curl and jq. It must end with the chat answer and the recorded usage; with a wrong
//! password it must stop at the login, saying so, and create nothing.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::process::{self, BIN, Env};
use crate::support::{fresh_database_url, required_tool};

const PASSWORD: &str = "first-session-password-0014";
const MARKER: &str = "<!-- first-session:";
const DEADLINE: Duration = Duration::from_secs(90);

/// The bash block that follows the marker comment in README.md.
fn readme_script() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let at = readme
        .find(MARKER)
        .unwrap_or_else(|| panic!("README.md has no `{MARKER}` marker"));
    let rest = &readme[at..];
    let start = rest
        .find("```bash\n")
        .expect("a ```bash block after the marker")
        + 8;
    let end = rest[start..].find("\n```").expect("the block's end") + start;
    rest[start..end].to_string()
}

/// Kills the child when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `tollgate mock-upstream --listen 127.0.0.1:0`, and the base URL it announces.
fn start_mock(cwd: &Path) -> (Guard, String) {
    let mut child = Guard(
        Command::new(BIN)
            .args(["mock-upstream", "--listen", "127.0.0.1:0"])
            .current_dir(cwd)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tollgate mock-upstream"),
    );
    let mut stderr = BufReader::new(child.0.stderr.take().expect("stderr"));
    let mut line = String::new();
    stderr
        .read_line(&mut line)
        .expect("read the mock's first line");
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in the mock's line: {line:?}"))
        .to_string();
    // Keep draining, so the mock never blocks on a full pipe.
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut stderr.into_inner(), &mut std::io::sink());
    });
    (child, base)
}

/// Runs the script with bash and the given environment (plus `PATH`).
async fn run_script(
    script: &Path,
    vars: Vec<(&'static str, String)>,
) -> (ExitStatus, String, String) {
    let mut command = Command::new("bash");
    command
        .arg(script)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(vars);
    process::run_program(command, DEADLINE).await
}

#[actix_web::test]
#[ignore = "needs bash, curl and jq"]
async fn the_readme_first_session_works_against_the_mock_upstream_and_stops_on_a_failed_login() {
    for (tool, probe) in [
        ("bash", "--version"),
        ("curl", "--version"),
        ("jq", "--version"),
    ] {
        required_tool(tool, &[probe]);
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let script = dir.path().join("first-session.sh");
    std::fs::write(&script, readme_script()).unwrap();

    let (_mock, upstream) = start_mock(dir.path());
    let server = Env::new(dir.path())
        .set("TOLLGATE_DATA_DIR", data.display().to_string())
        .set("TOLLGATE_DATABASE_URL", fresh_database_url(&data).await)
        .set("TOLLGATE_ADMIN_LISTEN", "127.0.0.1:0")
        .set("TOLLGATE_PROXY_LISTEN", "127.0.0.1:0")
        .set("TOLLGATE_PROXY_WORKERS", "1")
        .set("TOLLGATE_DRAIN_TIMEOUT", "1s")
        .set("TOLLGATE_ADMIN_PASSWORD", PASSWORD)
        .set("TOLLGATE_ALLOW_PRIVATE_UPSTREAMS", "true")
        .serve();
    let vars = |password: &str| {
        vec![
            ("ADMIN", server.admin.clone()),
            ("PROXY", server.proxy.clone()),
            ("UPSTREAM", upstream.clone()),
            ("TOLLGATE_ADMIN_PASSWORD", password.to_string()),
        ]
    };

    // A wrong password: the script stops at the login, says why, and creates nothing.
    let (status, stdout, stderr) = run_script(&script, vars("not-the-password")).await;
    assert!(!status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stderr.contains("first-session: login failed"),
        "stderr: {stderr}"
    );
    assert_eq!(stdout, "", "nothing may run after a failed login");
    let client = process::client();
    let token = process::login(&client, &server.admin, "admin", PASSWORD).await;
    let (code, _, text) = process::call(
        &client,
        &server.admin,
        "GET",
        "/tenants/acme",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(code, 404, "{text}");

    // The right one: the whole session, ending with the answer and the recorded usage.
    let (status, stdout, stderr) = run_script(&script, vars(PASSWORD)).await;
    assert!(
        status.success(),
        "{status}\nstdout: {stdout}\nstderr: {stderr}"
    );
    let mut lines = stdout.lines().filter(|l| !l.trim().is_empty());
    let chat: Value = serde_json::from_str(lines.next().expect("the chat answer"))
        .unwrap_or_else(|e| panic!("the chat answer is not JSON ({e}): {stdout}"));
    assert_eq!(
        chat["choices"][0]["message"]["content"],
        "Hello from Tollgate's mock upstream! You said: Hello",
        "{stdout}"
    );
    assert_eq!(chat["model"], "mock-model", "{stdout}");
    // "Hello" is 1 word; the answer 8.
    let usage = json!({"prompt_tokens": 1, "completion_tokens": 8, "total_tokens": 9});
    assert_eq!(chat["usage"], usage, "{stdout}");
    let rest: String = lines.collect::<Vec<_>>().join("\n");
    let report: Value = serde_json::from_str(&rest)
        .unwrap_or_else(|e| panic!("the usage report is not JSON ({e}): {stdout}"));
    let rows = report["data"].as_array().expect("data");
    assert_eq!(rows.len(), 1, "{report}");
    let row = &rows[0];
    assert_eq!(row["tenant"], "acme", "{report}");
    assert_eq!(row["requests"], 1, "{report}");
    assert_eq!(row["errors"], 0, "{report}");
    assert_eq!(row["prompt_tokens"], 1, "{report}");
    assert_eq!(row["completion_tokens"], 8, "{report}");
    // 1 × $3 + 8 × $15 per million tokens.
    let cost = row["cost"].as_f64().expect("cost");
    assert!((cost - 0.000_123).abs() < 1e-9, "{report}");

    let (status, output) = server.stop_async().await;
    assert!(status.success(), "{status}:\n{output}");
}

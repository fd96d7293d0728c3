//! The admin API against its own `/openapi.json`, checked by schemathesis (docs/behaviour.md,
//! "The OpenAPI document"): every check, the examples, coverage, fuzzing and stateful phases
//! (following the document's links), a fixed seed and a bounded number of examples per
//! operation, as an admin. It must report no failure.
//!
//! `POST /auth/logout-all` is left out: it revokes every token of the caller, the run's own
//! included, so every later request would answer 401 (its own tests are in
//! tests/it/admin_security.rs).
//!
//! One setting departs from schemathesis's defaults, and only as docs/behaviour.md ("Admin
//! conventions") documents the statuses: a schema-valid request that a rule the document
//! cannot state refuses (fields valid each on their own but not together, a time already
//! past, a policy configuration that does not fit its type) is 422, declared on every
//! operation with a body, so `positive_data_acceptance` accepts 422 besides its defaults
//! (which already include 409, the answer to a reference to an object that does not exist).
//! Every check stays on.
//!
//! Needs `TOLLGATE_SCHEMATHESIS`: the `schemathesis` CLI, pinned (`.ci/run` sets it):
//!
//! ```sh
//! python3 -m venv target/schemathesis-venv
//! target/schemathesis-venv/bin/pip install schemathesis==4.32.5
//! TOLLGATE_SCHEMATHESIS=target/schemathesis-venv/bin/schemathesis \
//!   cargo test --test it schemathesis:: -- --ignored --nocapture
//! ```

use std::process::Command;
use std::time::Duration;

use crate::support::process::run_program;
use crate::support::{required_env, spawn_app};

/// The seed of every run: a failure reproduces.
const SEED: &str = "20261207";
/// Test cases per operation and phase.
const MAX_EXAMPLES: &str = "25";
/// schemathesis's default statuses for `positive_data_acceptance`, plus 422 (see above).
const CONFIG: &str = r#"
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]
"#;
const DEADLINE: Duration = Duration::from_secs(300);

#[actix_web::test]
#[ignore = "needs schemathesis (TOLLGATE_SCHEMATHESIS; see the header of tests/it/schemathesis.rs)"]
async fn schemathesis_finds_no_failure_in_the_admin_api() {
    let schemathesis = required_env(
        "TOLLGATE_SCHEMATHESIS",
        "the schemathesis CLI (see the header of tests/it/schemathesis.rs)",
    );
    let app = spawn_app().await;
    // A token minted as `tollgate admin token` does, bound to no admin user: the run reads
    // admin ids from the answers and may well change or delete every admin user, which
    // revokes that user's tokens.
    let token = app.token_for("admin", None);
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("schemathesis.toml");
    std::fs::write(&config, CONFIG).unwrap();

    let mut command = Command::new(&schemathesis);
    command
        .current_dir(work.path())
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(format!("{}/openapi.json", app.admin))
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--checks", "all"])
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        .args(["--seed", SEED, "--max-examples", MAX_EXAMPLES])
        .args(["--exclude-path", "/auth/logout-all"])
        .args(["--generation-database", "none", "--request-timeout", "10"])
        .args(["--no-color", "--output-truncate", "false"])
        .env("NO_PROXY", "*")
        .env("SCHEMATHESIS_TELEMETRY", "false");
    let (status, stdout, stderr) = run_program(command, DEADLINE).await;
    let summary: String = stdout
        .lines()
        .skip_while(|l| !l.contains("SUMMARY"))
        .collect::<Vec<_>>()
        .join("\n");
    println!("{summary}");
    assert!(
        status.success(),
        "schemathesis reported failures ({status}):\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("Tested:") && !stdout.contains("Tested: 0"),
        "schemathesis tested nothing:\n{stdout}"
    );
}

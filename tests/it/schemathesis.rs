//! The admin API against its own `/openapi.json`, checked by schemathesis (docs/behaviour.md,
//! "The OpenAPI document"): every check, the examples, coverage, fuzzing and stateful phases
//! (following the document's links), a fixed seed and a bounded number of examples per
//! operation, as an admin. It must report no failure.
//!
//! `POST /auth/logout-all` is left out: it revokes every token of the caller, the run's own
//! included, so every later request would answer 401 (its own tests are in
//! tests/it/admin_security.rs).
//!
//! Needs `TOLLGATE_SCHEMATHESIS`: the `schemathesis` CLI, pinned:
//!
//! ```sh
//! python3 -m venv target/schemathesis-venv
//! target/schemathesis-venv/bin/pip install schemathesis==4.32.5
//! TOLLGATE_SCHEMATHESIS=target/schemathesis-venv/bin/schemathesis \
//!   cargo test --test it schemathesis:: -- --ignored --nocapture
//! ```
//!
//! Not yet run by `.ci/run`: with this seed it still reports 14 schema-valid requests the
//! server refuses with 400 (schemathesis 4.32.5, ST202): POST/PUT of routes and services
//! naming objects that do not exist, POST/PUT of policies (configuration by type, one
//! scope), POST/PATCH of admins and POST/PUT of credentials (the coverage phase ignores the
//! schema's conditional rules: `tenant` only for tenant_admin, the credential's groups),
//! PATCH of a route with control characters in a policy configuration's keys, a key whose
//! `expires_at` is past, and PUT of tenants and admins addressed by a UUID.

use std::process::Command;
use std::time::Duration;

use crate::support::process::run_program;
use crate::support::spawn_app;

/// The seed of every run: a failure reproduces.
const SEED: &str = "20261207";
/// Test cases per operation and phase.
const MAX_EXAMPLES: &str = "25";
const DEADLINE: Duration = Duration::from_secs(300);

#[actix_web::test]
#[ignore = "needs schemathesis (TOLLGATE_SCHEMATHESIS; see the header of tests/it/schemathesis.rs)"]
async fn schemathesis_finds_no_failure_in_the_admin_api() {
    // Not `required_env`: .ci/run does not set this one yet.
    let schemathesis = std::env::var("TOLLGATE_SCHEMATHESIS")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| {
            panic!(
                "TOLLGATE_SCHEMATHESIS is unset: this test needs the schemathesis CLI \
                 (see the header of tests/it/schemathesis.rs)"
            )
        });
    let app = spawn_app().await;
    // A token minted as `tollgate admin token` does, bound to no admin user: the run reads
    // admin ids from the answers and may well change or delete every admin user, which
    // revokes that user's tokens.
    let token = app.token_for("admin", None);
    let work = tempfile::tempdir().unwrap();

    let mut command = Command::new(&schemathesis);
    command
        .current_dir(work.path())
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

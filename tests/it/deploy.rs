//! The deployment files cannot be run here (no Docker engine), so they are checked
//! statically: the compose file parses, its services and ports are what the README says,
//! every Tollgate variable it sets is one the gateway reads, and the Dockerfile copies
//! only paths that exist.

use std::path::Path;

use tollgate::config::ENV_KEYS;

fn repo_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn compose_file_runs_tollgate_on_postgres() {
    let compose: serde_yaml::Value =
        serde_yaml::from_str(&repo_file("docker-compose.yml")).unwrap();
    let services = compose["services"].as_mapping().expect("services");
    let names: Vec<&str> = services.keys().filter_map(|k| k.as_str()).collect();
    assert!(
        names.contains(&"tollgate") && names.contains(&"postgres"),
        "{names:?}"
    );

    let tollgate = &compose["services"]["tollgate"];
    assert_eq!(
        tollgate["build"].as_str(),
        Some("."),
        "tollgate is built from this repository"
    );
    assert_eq!(
        tollgate["depends_on"]["postgres"]["condition"].as_str(),
        Some("service_healthy")
    );
    let env = tollgate["environment"].as_mapping().expect("environment");
    for key in env.keys().filter_map(|k| k.as_str()) {
        let known = ENV_KEYS.iter().any(|(var, _)| *var == key) || key == "RUST_LOG";
        assert!(
            known,
            "docker-compose.yml sets {key}, which Tollgate does not read"
        );
    }
    let db_url = env
        .get("TOLLGATE_DATABASE_URL")
        .and_then(|v| v.as_str())
        .expect("database url");
    assert!(
        db_url.starts_with("postgres://") && db_url.contains("@postgres:5432/"),
        "{db_url}"
    );
    let ports: Vec<&str> = tollgate["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|p| p.as_str())
        .collect();
    assert!(ports.contains(&"8080:8080"), "{ports:?}");
    assert!(
        ports.contains(&"127.0.0.1:8081:8081"),
        "admin port must stay on loopback: {ports:?}"
    );
}

#[test]
fn dockerfile_copies_existing_paths_and_runs_serve() {
    let dockerfile = repo_file("Dockerfile");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for line in dockerfile
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let parts: Vec<&str> = line.split_whitespace().collect();
        for src in &parts[1..parts.len() - 1] {
            assert!(
                root.join(src).exists(),
                "Dockerfile copies missing path {src}"
            );
        }
    }
    assert!(dockerfile.contains("CMD [\"serve\"]"));
    assert!(
        dockerfile.contains("USER tollgate"),
        "the image must not run as root"
    );
}

#[test]
fn example_configuration_is_valid_and_complete() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tollgate.example.toml");
    let settings = tollgate::config::Settings::load_from(Some(&path), &[]).expect("example parses");
    assert_eq!(settings.admin_listen, "127.0.0.1:8081");
    let text = repo_file("tollgate.example.toml");
    for (_, key) in ENV_KEYS {
        assert!(
            text.contains(&format!("{key} =")),
            "tollgate.example.toml does not mention {key}"
        );
    }
}

//! The `tollgate` binary: parse the command line and hand over to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    // Only `ring` is in the dependency graph; install it before anything builds a TLS config.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = tollgate::cli::Cli::parse();
    let result = actix_web::rt::System::new().block_on(tollgate::cli::run(cli));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // Never `eprintln!`: it panics when stderr is closed (docs/architecture.md,
            // "The process log").
            tollgate::telemetry::write_stderr(&format!("error: {e:#}\n"));
            std::process::ExitCode::FAILURE
        }
    }
}

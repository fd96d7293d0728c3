//! The `tollgate` binary: parse the command line and hand over to the library.

use clap::Parser;

/// jemalloc, built with `background_thread:true`: a purge thread returns pages freed for
/// about 10 s (jemalloc's `dirty_decay_ms`) to the OS even when no worker allocates.
/// glibc's malloc kept a burst's peak for good (180 MB of RSS 60 s after 5 000 connections,
/// 26 MB idle), as did jemalloc without the thread and mimalloc (which purges only when
/// the thread that freed the memory allocates again); with it, RSS is back to 1.6× idle
/// within 10 s (docs/architecture.md, "Memory"; bench/README.md, "Memory scenario").
/// Operators can tune it with `_RJEM_MALLOC_CONF`.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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

//! The crate's one integration-test binary (one link of the whole crate instead of one per
//! file). Add further test modules here.

// clippy's `allow-unwrap-in-tests` only covers `#[test]` fns, not the helpers they share.
#![allow(clippy::unwrap_used)]

mod admin_api;
mod admin_security;
mod auth;
mod bad_secret;
mod billing;
mod cli;
mod conformance;
mod deploy;
mod kong;
mod logging;
mod memory;
#[allow(dead_code)]
mod mock_upstream;
mod otlp;
#[allow(dead_code)]
mod process;
mod provider_streams;
mod proxy;
mod redaction;
mod sdk;
mod secrets;
mod storage_faults;
mod store;
mod streaming;
#[allow(dead_code)]
mod support;
mod upstream_guard;
mod upstream_load;
mod usage;
mod usage_flow;

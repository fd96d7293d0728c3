//! The crate's one integration-test binary (one link of the whole crate instead of one per
//! file). Add further test modules here; helpers that several of them share go in
//! `support/`, and test files hold tests.

// clippy's `allow-unwrap-in-tests` only covers `#[test]` fns, not the helpers they share.
#![allow(clippy::unwrap_used)]

mod admin_api;
mod admin_security;
mod auth;
mod bad_secret;
mod billing;
mod cli;
mod client_matrix;
mod clients;
mod conformance;
mod deploy;
mod embeddings;
mod first_session;
mod limits;
mod logging;
mod memory;
mod otlp;
mod otlp_tls;
mod policies;
mod prometheus;
mod provider_streams;
mod proxy;
mod redaction;
mod schemathesis;
mod sdk;
mod secrets;
mod spool;
mod storage_faults;
mod store;
mod streaming;
mod support;
mod timeouts;
mod transformers;
mod ui;
mod upstream_guard;
mod upstream_load;
mod usage;
mod usage_flow;

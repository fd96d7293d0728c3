//! Tollgate: a multi-tenant AI gateway. See `docs/architecture.md` for the map.

pub mod actors;
pub mod admin;
pub mod app;
pub mod bootstrap;
pub mod budget;
pub mod cli;
pub mod client_addr;
pub mod config;
pub mod crypto;
pub mod error;
#[cfg(test)]
mod layering;
pub mod limits;
pub mod llm;
pub mod mock_upstream;
pub mod policy;
pub mod providers;
pub mod proxy;
pub mod shutdown;
pub mod snapshot;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod vocab;

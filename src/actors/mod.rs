//! Actix actors. `upstream`: one pool actor per provider per worker, owning that provider's
//! `awc` connection pools (docs/architecture.md, "Why the proxy path is cheap");
//! `metrics`: the metrics aggregator; `spool`: the usage spool.

pub mod metrics;
pub mod spool;
pub mod upstream;

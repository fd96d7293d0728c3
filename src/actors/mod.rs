//! Actix actors. `upstream`: one pool actor per provider per worker, owning that provider's
//! `awc` connection pools (the design card); the metrics aggregator arrives with the
//! telemetry issue.

pub mod metrics;
pub mod spool;
pub mod upstream;

//! The limits stage: the caller's rate limits and budgets, reserved before the upstream is
//! called (docs/behaviour.md, "Limits and policies"). No limit kinds exist yet; each new
//! one reserves here and settles in the account stage.

use crate::error::Error;

use super::context::{Party, RequestCtx};
use super::prepare::Plan;

pub fn reserve(_ctx: &RequestCtx, _party: &Party, _plan: &Plan) -> Result<(), Error> {
    Ok(())
}

//! The policies stage: the route's request-side policies, applied to the client's body
//! before its prompt is checked (docs/behaviour.md, "Request order", step 4). No policy
//! kinds exist yet; each new one is applied here, in its documented order.

use crate::error::Error;

use super::context::{Party, RequestCtx};
use super::read::Body;

pub fn apply(_ctx: &RequestCtx, _party: &Party, _body: &mut Body) -> Result<(), Error> {
    Ok(())
}

//! The policies stage: the request-side prompt policies, applied to the client's body
//! before its prompt is checked (docs/behaviour.md, "Policies"): prompt template → prompt
//! decorator → prompt guard, each the most specific binding of its type (route over
//! service over tenant), compiled when the snapshot was.

use std::sync::Arc;

use crate::error::Error;
use crate::policy::{Compiled, Refusal, Templated};
use crate::snapshot::PolicyEntry;

use super::context::{Party, PolicyOutcome, RequestCtx};
use super::read::Body;
use crate::telemetry::event::PolicyEvent as PolicyAction;

pub fn apply(ctx: &mut RequestCtx, party: &Party, body: &mut Body) -> Result<(), Error> {
    if ctx.snapshot.policies.is_empty() {
        return Ok(());
    }
    let snapshot = Arc::clone(&ctx.snapshot);
    for policy in snapshot.policies_for(&party.route, party.caller.tenant) {
        let before = body.raw.clone();
        let (action, refused) = match run(policy, body) {
            Ok(None) => continue,
            Ok(Some(action)) => (action, None),
            Err(refusal) => (refusal.0, Some(refusal.1)),
        };
        if refused.is_some() {
            tracing::info!(
                policy = %action.name,
                r#type = action.kind,
                outcome = action.outcome,
                reason = action.detail.as_deref().unwrap_or_default(),
                "policy refused the request"
            );
        }
        if let Ok(Compiled::PromptTemplate(template)) = &policy.compiled
            && template.log_original_request()
            && refused.is_none()
        {
            ctx.original_request = Some(before);
        }
        ctx.policy_actions.push(action);
        if let Some(error) = refused {
            return Err(error);
        }
    }
    Ok(())
}

/// Runs one policy: `Ok(None)` when it had nothing to do, `Ok(Some)` when it changed or
/// passed the request, `Err` with the client's error when it refused it.
fn run(
    policy: &PolicyEntry,
    body: &mut Body,
) -> Result<Option<PolicyAction>, Box<(PolicyAction, Error)>> {
    let action = |outcome: PolicyOutcome, detail| PolicyAction {
        kind: policy.kind.as_str(),
        name: policy.record.name.clone(),
        outcome: outcome.as_str(),
        detail,
    };
    let failed = |error: Error| {
        Box::new((
            action(PolicyOutcome::Failed, Some(error.message.clone())),
            error,
        ))
    };
    let compiled = match &policy.compiled {
        Ok(compiled) => compiled,
        Err(e) => {
            return Err(failed(
                Error::unavailable(format!(
                    "policy '{}' cannot run: its configuration does not compile ({e})",
                    policy.record.name
                ))
                .with_openai_code("policy_unavailable"),
            ));
        }
    };
    let object = body.object().map_err(failed)?;
    match compiled {
        Compiled::PromptTemplate(template) => match template.apply(object) {
            Ok(Templated::Untouched) => Ok(None),
            Ok(Templated::Rendered {
                template,
                body: rendered,
            }) => {
                *object = rendered;
                body.changed();
                Ok(Some(action(
                    PolicyOutcome::Applied,
                    Some(format!("template {template}")),
                )))
            }
            Err(refusal) => Err(failed(refused(refusal))),
        },
        Compiled::PromptDecorator(decorator) => match decorator.apply(object) {
            Ok(()) => {
                body.changed();
                Ok(Some(action(PolicyOutcome::Applied, None)))
            }
            Err(refusal) => Err(failed(refused(refusal))),
        },
        Compiled::PromptGuard(guard) => match guard.check(object) {
            Ok(_) => Ok(Some(action(PolicyOutcome::Applied, None))),
            Err(blocked) => {
                let detail = match blocked.pattern_field() {
                    Some(field) => format!("{} ({field})", blocked.reason.as_str()),
                    None => blocked.reason.as_str().to_string(),
                };
                let error = refused(blocked.refusal());
                Err(Box::new((
                    action(PolicyOutcome::Blocked, Some(detail)),
                    error,
                )))
            }
        },
        // Not implemented yet: refused rather than skipped, so a route that relies on one
        // is never answered without it (docs/behaviour.md, "Policies").
        Compiled::RequestTransformer(_) | Compiled::ResponseTransformer(_) => Err(failed(
            Error::unavailable(format!(
                "policy '{}' cannot run: {} is not implemented by this gateway yet",
                policy.record.name,
                policy.kind.as_str()
            ))
            .with_openai_code("policy_unavailable"),
        )),
    }
}

/// A policy's refusal as the client's error.
fn refused(refusal: Refusal) -> Error {
    if refusal.status >= 500 {
        Error::internal(refusal.message)
    } else {
        Error::bad_request(refusal.message)
    }
}

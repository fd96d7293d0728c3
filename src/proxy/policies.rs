//! The policies stage: the request-side policies, applied to the client's body before its
//! prompt is checked (docs/behaviour.md, "Policies"): request transformer → prompt
//! template → prompt decorator → prompt guard, each the most specific binding of its type
//! (route over service over tenant), compiled when the snapshot was. The response
//! transformer runs after the respond stage (transformers.rs).

use std::sync::Arc;

use crate::error::Error;
use crate::policy::{Compiled, Templated};
use crate::snapshot::PolicyEntry;

use super::context::{Party, PolicyOutcome, RequestCtx};
use super::read::Body;
use super::transformers::{self, Upstreams, refused};
use crate::telemetry::event::PolicyEvent as PolicyAction;

pub async fn apply(
    ctx: &mut RequestCtx,
    party: &Party,
    up: Upstreams<'_>,
    body: &mut Body,
) -> Result<(), Error> {
    if ctx.snapshot.policies.is_empty() {
        return Ok(());
    }
    let snapshot = Arc::clone(&ctx.snapshot);
    for policy in snapshot.policies_for(&party.route, party.caller.tenant) {
        if !policy.kind.applies_to(party.route.route_type) {
            continue;
        }
        // The body before this policy, only where it is read: the transformer's input, or
        // the template's logged original (taking it rebuilds a body an earlier policy changed).
        let before = match &policy.compiled {
            Ok(Compiled::RequestTransformer(_)) => Some(body.raw().clone()),
            Ok(Compiled::PromptTemplate(template)) if template.log_original_request() => {
                Some(body.raw().clone())
            }
            _ => None,
        };
        let ran = match (&policy.compiled, &before) {
            (Ok(Compiled::RequestTransformer(transformer)), Some(input)) => {
                let result = transformers::instruct(ctx, up, policy, transformer, input).await;
                transform_body(policy, result, body)
            }
            // Runs after the respond stage (transformers.rs).
            (Ok(Compiled::ResponseTransformer(_)), _) => continue,
            _ => run(policy, body),
        };
        let (action, refused) = match ran {
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
        if let Ok(Compiled::PromptTemplate(_)) = &policy.compiled
            && refused.is_none()
            && before.is_some()
        {
            ctx.original_request = before;
        }
        ctx.policy_actions.push(action);
        if let Some(error) = refused {
            return Err(error);
        }
    }
    Ok(())
}

/// The request transformer's result becomes the body: the later stages parse it (and
/// answer 400 when it is not a JSON object).
fn transform_body(
    policy: &PolicyEntry,
    result: Result<String, Error>,
    body: &mut Body,
) -> Result<Option<PolicyAction>, Box<(PolicyAction, Error)>> {
    let action = |outcome: PolicyOutcome, detail| PolicyAction {
        kind: policy.kind.as_str(),
        name: policy.record.name.clone(),
        outcome: outcome.as_str(),
        detail,
    };
    match result {
        Ok(text) => {
            body.replace(bytes::Bytes::from(text));
            Ok(Some(action(PolicyOutcome::Applied, None)))
        }
        Err(error) => Err(Box::new((
            action(PolicyOutcome::Failed, Some(error.message.clone())),
            error,
        ))),
    }
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
        // Both run in `apply` and after the respond stage, not here.
        Compiled::RequestTransformer(_) | Compiled::ResponseTransformer(_) => Ok(None),
    }
}

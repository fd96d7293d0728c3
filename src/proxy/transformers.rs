//! The AI transformer policies' upstream half (docs/behaviour.md, "Policies"): the call to
//! the instruction LLM — one of the gateway's own services, its credential injected, sent
//! on this worker's upstream pool — and the response-transformer stage, which rewrites a
//! whole answer after the respond stage. What is sent and how the answer is read is
//! `policy::transform`'s.

use std::time::{Duration, Instant};

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderName, HeaderValue};
use bytes::Bytes;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::actors::upstream::Forward;
use crate::budget::ResponseBudget;
use crate::crypto::redact::LazyRedactor;
use crate::error::Error;
use crate::policy::transform::{CompiledTransformer, ResponseRewrite};
use crate::policy::{Compiled, Refusal};
use crate::providers::TranslateContext;
use crate::snapshot::PolicyEntry;
use crate::telemetry::event::{PolicyEvent, PolicyUsage};
use crate::vocab::RouteKind;
use crate::vocab::policy::PolicyType;

use super::Pools;
use super::accounting::render;
use super::context::{Party, PolicyOutcome, RequestCtx};
use super::forward::masked_failure;
use super::inject::inject;
use super::respond::{Outcome, Reply};

/// The instruction LLM's answers are small; a larger one is refused.
const MAX_INSTRUCTION_ANSWER: usize = 8 * 1024 * 1024;

/// What an instruction call needs from the worker.
#[derive(Clone, Copy)]
pub struct Upstreams<'a> {
    pub pools: &'a Pools,
    pub budget: &'a ResponseBudget,
    pub default_max_tokens: u32,
}

/// Sends `input` to the policy's instruction LLM and returns its text (cut to the extract
/// pattern). Its usage is recorded in `ctx` whether the call succeeded or not, once the LLM
/// answered.
pub async fn instruct(
    ctx: &mut RequestCtx,
    up: Upstreams<'_>,
    policy: &PolicyEntry,
    transformer: &CompiledTransformer,
    input: &[u8],
) -> Result<String, Error> {
    let service = policy
        .llm_service
        .as_ref()
        .ok_or_else(|| Error::internal("the transformer's instruction LLM is not configured"))?;
    if let Some(name) = &service.unavailable_credential {
        return Err(Error::unavailable(format!(
            "the instruction LLM's credential '{name}' cannot be decrypted"
        ))
        .with_openai_code("credential_unavailable"));
    }
    let llm = transformer.llm();
    let model = llm.model.name.clone().unwrap_or_default();
    let tctx = TranslateContext {
        upstream_url: service.record.upstream_url.as_deref(),
        options: &service.options,
        model: &model,
        tuning: &llm.model.options,
        default_max_tokens: up.default_max_tokens,
    };
    let translator = service.translator();
    let mut upstream = translator
        .request(
            &tctx,
            RouteKind::Chat,
            transformer.instruction_request(input),
        )
        .map_err(|e| refused(Refusal::bad_request(e.message)))?;
    if let Some(credential) = &service.credential {
        inject(credential, None, &mut upstream)?;
    }
    upstream
        .headers
        .push(("content-type".into(), "application/json".into()));
    let pool = up
        .pools
        .get(service.provider.name())
        .ok_or_else(|| Error::internal("no upstream pool for this provider"))?;
    let cancel = CancellationToken::new();
    let _cancel_if_abandoned = cancel.clone().drop_guard();
    let timeout = Duration::from_millis(transformer.http_timeout_ms());
    let redactor = LazyRedactor::new(service.credential.clone());
    let sent = Instant::now();
    let reply = pool
        .send(Forward {
            url: upstream.url,
            headers: upstream.headers,
            body: Bytes::from(upstream.body),
            connect_timeout: Duration::from_millis(service.timeouts.connect_ms).min(timeout),
            read_timeout: timeout,
            max_response_bytes: MAX_INSTRUCTION_ANSWER,
            service: service.record.id,
            max_connections: service.timeouts.max_connections,
            pool_wait: Duration::from_millis(service.timeouts.pool_wait_ms),
            total_timeout: Some(timeout),
            cancel,
            budget: up.budget.clone(),
        })
        .await
        .map_err(|_| Error::internal("upstream pool unavailable"))?
        .map_err(|f| masked_failure(&redactor, f))?;
    let latency = sent.elapsed();
    if !(200..300).contains(&reply.status) {
        return Err(refused(crate::policy::transform::introspect_failed(
            reply.status,
        )));
    }
    let answer = translator
        .response(&tctx, RouteKind::Chat, &reply.body)
        .map_err(|e| refused(crate::policy::transform::conversion_failed(e.0)))?;
    let Value::Object(answer) = answer else {
        return Err(refused(crate::policy::transform::conversion_failed(
            "not a JSON object",
        )));
    };
    let usage = answer.get("usage");
    let tokens = |k: &str| {
        usage
            .and_then(|u| u.get(k))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let (prompt, completion) = (tokens("prompt_tokens"), tokens("completion_tokens"));
    let options = &llm.model.options;
    let cost = match (options.input_cost, options.output_cost) {
        (Some(i), Some(o)) => (prompt as f64 * i + completion as f64 * o) / 1_000_000.0,
        _ => 0.0,
    };
    ctx.policy_usage.push(PolicyUsage {
        kind: policy.kind.as_str(),
        plugin_id: policy.record.id,
        provider: service.provider.name(),
        service: service.record.name.clone(),
        request_model: model.clone(),
        response_model: answer
            .get("model")
            .and_then(Value::as_str)
            .map(str::to_string),
        prompt_tokens: prompt,
        completion_tokens: completion,
        cost,
        latency,
    });
    transformer.answer_text(&answer).map_err(refused)
}

/// A policy's refusal as the client's error.
pub fn refused(refusal: Refusal) -> Error {
    if refusal.status >= 500 {
        Error::internal(refusal.message)
    } else {
        Error::bad_request(refusal.message)
    }
}

/// The response transformer that applies to the request, if any.
fn response_transformer(ctx: &RequestCtx, party: &Party) -> Option<std::sync::Arc<PolicyEntry>> {
    // No policy bound anywhere (the common case): one check, no map lookups.
    if ctx.snapshot.policies.is_empty()
        || !PolicyType::ResponseTransformer.applies_to(party.route.route_type)
    {
        return None;
    }
    ctx.snapshot
        .policy_for(
            PolicyType::ResponseTransformer,
            &party.route,
            party.caller.tenant,
        )
        .cloned()
}

/// A streamed request cannot have its answer rewritten (Kong's plugin cannot stream
/// either): refused before anything is sent upstream.
pub fn refuse_stream(ctx: &mut RequestCtx, party: &Party, streaming: bool) -> Result<(), Error> {
    if !streaming {
        return Ok(());
    }
    let Some(policy) = response_transformer(ctx, party) else {
        return Ok(());
    };
    let error = Error::bad_request(
        "streaming is not supported on a route with an ai-response-transformer policy",
    )
    .with_param("stream");
    ctx.policy_actions.push(action(
        &policy,
        PolicyOutcome::Failed,
        Some(error.message.clone()),
    ));
    Err(error)
}

fn action(policy: &PolicyEntry, outcome: PolicyOutcome, detail: Option<String>) -> PolicyEvent {
    PolicyEvent {
        kind: policy.kind.as_str(),
        name: policy.record.name.clone(),
        outcome: outcome.as_str(),
        detail,
    }
}

/// The response-transformer stage: a whole answer sent to the instruction LLM, and the
/// client answered as it says (docs/behaviour.md, "Policies").
pub async fn respond(
    ctx: &mut RequestCtx,
    party: &Party,
    up: Upstreams<'_>,
    reply: Reply,
) -> Result<Reply, Error> {
    let Reply::Whole(outcome) = reply else {
        return Ok(reply);
    };
    let Some(policy) = response_transformer(ctx, party) else {
        return Ok(Reply::Whole(outcome));
    };
    let mut outcome = outcome;
    match rewrite(ctx, up, &policy, &mut outcome).await {
        Ok(()) => {
            ctx.policy_actions
                .push(action(&policy, PolicyOutcome::Applied, None));
        }
        Err(error) => {
            ctx.policy_actions.push(action(
                &policy,
                PolicyOutcome::Failed,
                Some(error.message.clone()),
            ));
            // The upstream answered and its tokens were spent: the request is recorded
            // with them, answered with the policy's error.
            let response = render(error);
            outcome.status = response.status().as_u16();
            outcome.error_type = Some(outcome.status.to_string());
            outcome.response = response;
        }
    }
    Ok(Reply::Whole(outcome))
}

async fn rewrite(
    ctx: &mut RequestCtx,
    up: Upstreams<'_>,
    policy: &PolicyEntry,
    outcome: &mut Outcome,
) -> Result<(), Error> {
    let transformer = match &policy.compiled {
        Ok(Compiled::ResponseTransformer(t)) => t,
        Ok(_) => return Err(Error::internal("not a response transformer")),
        Err(e) => {
            return Err(Error::unavailable(format!(
                "policy '{}' cannot run: its configuration does not compile ({e})",
                policy.record.name
            ))
            .with_openai_code("policy_unavailable"));
        }
    };
    let response = std::mem::replace(&mut outcome.response, HttpResponse::Ok().finish());
    let (head, body) = response.into_parts();
    let body = actix_web::body::to_bytes(body)
        .await
        .map_err(|_| Error::internal("cannot read the answer"))?;
    let text = instruct(ctx, up, policy, transformer, &body).await?;
    let mut builder = HttpResponse::build(head.status());
    let response = match transformer.response_rewrite(text).map_err(refused)? {
        ResponseRewrite::Body(text) => {
            for (name, value) in head.headers() {
                if name != "content-length" {
                    builder.append_header((name.clone(), value.clone()));
                }
            }
            builder.body(text)
        }
        ResponseRewrite::Instructed(instructions) => {
            let status = StatusCode::from_u16(instructions.status).unwrap_or(StatusCode::OK);
            builder.status(status);
            let mut overridden: Vec<HeaderName> = Vec::new();
            for (name, value) in &instructions.headers {
                let (Ok(name), Ok(value)) = (
                    HeaderName::try_from(name.as_str()),
                    HeaderValue::try_from(value.as_str()),
                ) else {
                    return Err(refused(Refusal::internal(format!(
                        "failed to parse JSON response instructions from AI backend: invalid header '{name}'"
                    ))));
                };
                overridden.push(name.clone());
                builder.append_header((name, value));
            }
            for (name, value) in head.headers() {
                if name != "content-length" && !overridden.contains(name) {
                    builder.append_header((name.clone(), value.clone()));
                }
            }
            outcome.status = instructions.status;
            builder.body(instructions.body)
        }
    };
    outcome.response = response;
    Ok(())
}

//! The respond stage: the upstream's answer in the route type's OpenAI shape
//! (docs/behaviour.md, "Responses") — a whole answer translated (or passed through for
//! `preserve`), an error normalised with the credential masked, or a 2xx stream set up to be
//! transcoded frame by frame (stream.rs).

use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, HttpResponseBuilder};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::actors::upstream::UpstreamStream;
use crate::error::Error;
use crate::llm::tokens::{Counter, PromptEstimate};
use crate::llm::{StreamMeta, Transcode};
use crate::providers::embeddings::{self, Encoding};
use crate::providers::{TranslateContext, TranslateError, Translator, WireFormat};
use crate::vocab::{RouteKind, RouteType};

use super::context::Party;
use super::forward::{Answer, Reply as Upstream};
use super::limits::UpstreamRates;
use super::prepare::{Operation, Plan, translate_context};

/// The answer, ready for the account stage to record and send.
pub enum Reply {
    Whole(Outcome),
    Stream(StreamStart),
}

/// A whole answer and what its record needs.
pub struct Outcome {
    pub response: HttpResponse,
    pub status: u16,
    pub request_model: String,
    pub response_model: Option<String>,
    /// `None` when the provider reported none (errors, `preserve`).
    pub usage: Option<(u64, u64)>,
    /// A count the provider did not report was estimated by the gateway.
    pub usage_estimated: bool,
    pub finish_reason: Option<String>,
    pub error_type: Option<String>,
    pub upstream_latency: Duration,
    /// With `log_payloads`: the body as sent upstream, and the body the client received.
    pub upstream_body: Option<Vec<u8>>,
    pub logged_response: Option<Value>,
    /// The upstream's own rate-limit hints, as passed on to the client.
    pub upstream_rates: UpstreamRates,
}

/// A 2xx stream, ready to be sent.
pub struct StreamStart {
    /// Its translator names the upstream's rate-limit headers as OpenAI does.
    pub wire: WireFormat,
    pub upstream: UpstreamStream,
    pub transcode: Transcode,
    pub request_model: String,
    pub upstream_body: Option<Vec<u8>>,
    pub upstream_sent: Instant,
}

/// The provider refusing the gateway's own credential (docs/behaviour.md, "Responses"): a
/// 502 naming the service, so the client's SDK does not report its own key as wrong.
fn credential_refused(
    party: &Party,
    status: u16,
    body: &[u8],
    redactor: &crate::crypto::redact::LazyRedactor,
) -> Error {
    let service = &party.route.service;
    let provider = service.translator().error(status, body);
    let mut e = Error::upstream(
        StatusCode::BAD_GATEWAY,
        format!(
            "the provider refused the gateway's credential for service '{}' (upstream status \
             {status}): {}; this is the gateway operator's configuration to fix, not the \
             client's key",
            service.record.name,
            redactor.get().redact(&provider.message)
        ),
    )
    .with_openai_type("upstream_authentication_error")
    .with_openai_code("upstream_authentication_error");
    e.retryable = false;
    e
}

pub fn reply(
    party: &Party,
    plan: Plan,
    answer: Answer,
    default_max_tokens: u32,
) -> Result<Reply, Error> {
    let route = party.route.as_ref();
    let provider = route.service.provider;
    let Answer {
        reply,
        body_sent,
        logged_request,
        redactor,
    } = answer;
    let reply = match reply {
        Upstream::Stream(upstream, upstream_sent) => {
            let (Operation::Complete(kind), Some(stream)) = (plan.operation, plan.stream) else {
                return Err(Error::internal(
                    "a stream answered a request that did not ask for one",
                ));
            };
            let meta = StreamMeta {
                id: openai_id(kind),
                created: chrono::Utc::now().timestamp(),
                model: plan.model.clone(),
                kind,
                include_usage: stream.include_usage,
                collect_text: route.logging.log_payloads,
            };
            // Counted only if the provider reports no prompt tokens (src/llm/tokens.rs).
            let estimate = PromptEstimate::lazy(
                body_sent,
                Counter::for_model(provider.name(), &plan.model),
                body_credential(route),
            );
            return Ok(Reply::Stream(StreamStart {
                wire: route.service.wire,
                upstream,
                transcode: Transcode::new(stream.transcoder, meta, provider.name())
                    .with_prompt_estimate(estimate)
                    .with_redactor(redactor),
                request_model: plan.model,
                upstream_body: logged_request,
                upstream_sent,
            }));
        }
        Upstream::Whole(reply) => reply,
    };
    if matches!(reply.status, 401 | 403) {
        return Err(credential_refused(
            party,
            reply.status,
            &reply.body,
            &redactor,
        ));
    }

    let mut builder =
        HttpResponse::build(StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_GATEWAY));
    let upstream_rates =
        pass_rate_limit_hints(&mut builder, &reply.headers, route.service.translator());
    let mut logged_response = None;
    let mut usage_estimated = false;
    let mut finish_reason = None;
    let mut error_type = None;
    let (response, response_model, usage) = match plan.operation {
        Operation::Preserve => {
            let ct = reply
                .headers
                .iter()
                .find(|(n, _)| n == "content-type")
                .map(|(_, v)| v.clone());
            if let Some(ct) = ct {
                builder.insert_header(("content-type", ct));
            }
            if reply.status >= 400 {
                error_type = Some(reply.status.to_string());
                let body = Bytes::from(redactor.get().redact_body(&reply.body).into_owned());
                (builder.body(body), None, None)
            } else {
                // Kong records usage from a `preserve` answer that carries it.
                let usage = preserve_usage(&reply.body);
                (builder.body(reply.body.clone()), None, usage)
            }
        }
        Operation::Embed(encoding) if (200..300).contains(&reply.status) => {
            let embedder = route.service.translator().embeddings();
            if let Some((prompt, model)) = embedder.and_then(|e| e.verbatim(&reply.body, encoding))
            {
                // Already OpenAI's answer in the client's encoding: sent as received
                // (docs/architecture.md, "Why the proxy path is cheap").
                if route.logging.log_payloads {
                    logged_response = logged_as_received(&reply.body, &redactor);
                }
                builder.content_type("application/json");
                (
                    builder.body(reply.body.clone()),
                    Some(model),
                    Some((prompt, 0)),
                )
            } else {
                let ctx = translate_context(route, &plan.model, default_max_tokens);
                let mut answer = embeddings_answer(party, &ctx, encoding, &reply.body, &body_sent)?;
                let prompt = answer["usage"]["prompt_tokens"].as_u64().unwrap_or(0);
                let model = answer["model"].as_str().map(str::to_string);
                let response = builder.json(&answer);
                if route.logging.log_payloads {
                    redactor.get().redact_value(&mut answer);
                    logged_response = Some(answer);
                }
                (response, model, Some((prompt, 0)))
            }
        }
        Operation::Complete(kind) if (200..300).contains(&reply.status) => {
            let translator = route.service.translator();
            if let Some(facts) = translator.verbatim(kind, &reply.body) {
                // Already the OpenAI object: sent as received, no tree built
                // (docs/architecture.md, "Why the proxy path is cheap").
                finish_reason = Some(facts.finish_reason);
                if route.logging.log_payloads {
                    logged_response = logged_as_received(&reply.body, &redactor);
                }
                builder.content_type("application/json");
                let usage = Some((facts.prompt_tokens, facts.completion_tokens));
                (builder.body(reply.body.clone()), Some(facts.model), usage)
            } else {
                let ctx = translate_context(route, &plan.model, default_max_tokens);
                let mut translated = translator.response(&ctx, kind, &reply.body).map_err(|e| {
                    Error::upstream(
                        StatusCode::BAD_GATEWAY,
                        format!(
                            "transformation failed from type {}://{}: {}",
                            provider.name(),
                            kind.as_str(),
                            e.0
                        ),
                    )
                })?;
                if translated.pointer("/usage/prompt_tokens").is_none()
                    || translated.pointer("/usage/completion_tokens").is_none()
                {
                    estimate_usage(
                        &mut translated,
                        &body_sent,
                        route,
                        provider.name(),
                        &plan.model,
                    );
                    usage_estimated = true;
                }
                let usage = Some(usage_of(&translated));
                finish_reason = translated
                    .get("choices")
                    .and_then(|c| c.get(0))
                    .and_then(|c| c.get("finish_reason"))
                    .and_then(Value::as_str)
                    .map(str::to_string);
                let model = translated
                    .get("model")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                let response = builder.json(&translated);
                if route.logging.log_payloads {
                    let mut logged = translated;
                    redactor.get().redact_value(&mut logged);
                    logged_response = Some(logged);
                }
                (response, model, usage)
            }
        }
        Operation::Complete(_) | Operation::Embed(_) => {
            // The provider's text may echo the credential: masked after parsing, so an
            // escaped echo is found in its decoded form too.
            let error = route.service.translator().error(reply.status, &reply.body);
            let mut body = error.to_openai();
            redactor.get().redact_value(&mut body);
            error_type = Some(redactor.get().redact(&error.kind).into_owned());
            (builder.json(body), None, None)
        }
    };
    Ok(Reply::Whole(Outcome {
        response,
        status: reply.status,
        request_model: plan.model,
        response_model,
        usage,
        finish_reason,
        error_type,
        usage_estimated,
        upstream_latency: reply.latency,
        upstream_body: logged_request,
        logged_response,
        upstream_rates,
    }))
}

/// The logged copy of an answer sent as received: parsed, the credential masked.
fn logged_as_received(
    body: &[u8],
    redactor: &crate::crypto::redact::LazyRedactor,
) -> Option<Value> {
    let mut logged = serde_json::from_slice::<Value>(body).ok()?;
    redactor.get().redact_value(&mut logged);
    Some(logged)
}

/// An embeddings 2xx in OpenAI's shape (docs/behaviour.md, "Embeddings"): translated, its
/// usage estimated from the texts sent when the provider counted none, its vectors in the
/// client's encoding.
fn embeddings_answer(
    party: &Party,
    ctx: &TranslateContext<'_>,
    encoding: Encoding,
    body: &[u8],
    body_sent: &[u8],
) -> Result<Value, Error> {
    let service = &party.route.service;
    let provider = service.provider.name();
    let failed = |e: TranslateError| {
        Error::upstream(
            StatusCode::BAD_GATEWAY,
            format!(
                "transformation failed from type {provider}://{}: {}",
                RouteType::Embeddings.as_str(),
                e.0
            ),
        )
    };
    let embedder = service
        .translator()
        .embeddings()
        .ok_or_else(|| Error::internal("the service has no embeddings translator"))?;
    let mut answer = embedder.response(ctx, body).map_err(failed)?;
    if answer.pointer("/usage/prompt_tokens").is_none() {
        let tokens = estimate_input_tokens(body_sent, Counter::for_model(provider, ctx.model));
        answer["usage"] = json!({"prompt_tokens": tokens, "total_tokens": tokens});
    }
    embeddings::encode(&mut answer, encoding).map_err(failed)?;
    Ok(answer)
}

/// Fills the counts a translated answer's provider did not report (docs/behaviour.md,
/// "Responses"), as a stream's are: the prompt from the body as sent upstream
/// (src/llm/tokens.rs), the completion from the answer's text at 4 characters per token.
fn estimate_usage(
    answer: &mut Value,
    body_sent: &Bytes,
    route: &crate::snapshot::RouteEntry,
    provider: &str,
    model: &str,
) {
    let reported = |answer: &Value, key: &str| {
        answer
            .pointer(&format!("/usage/{key}"))
            .and_then(Value::as_u64)
    };
    let prompt = reported(answer, "prompt_tokens").unwrap_or_else(|| {
        PromptEstimate::lazy(
            body_sent.clone(),
            Counter::for_model(provider, model),
            body_credential(route),
        )
        .tokens()
    });
    let completion = reported(answer, "completion_tokens").unwrap_or_else(|| {
        let choice = answer.pointer("/choices/0");
        let text = choice
            .and_then(|c| c.pointer("/message/content").or_else(|| c.get("text")))
            .and_then(Value::as_str)
            .unwrap_or("");
        (text.chars().count() as u64).div_ceil(4)
    });
    answer["usage"] = json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt.saturating_add(completion),
    });
}

/// The body field that carries the credential, not counted as prompt.
fn body_credential(route: &crate::snapshot::RouteEntry) -> Option<String> {
    route
        .service
        .credential
        .as_ref()
        .filter(|c| c.param_location.as_deref() == Some("body"))
        .and_then(|c| c.param_name.clone())
}

/// The tokens of an embeddings request as sent upstream: its texts (`input`, or Cohere's
/// `texts`) counted with the model's tokenizer, token ids one each.
fn estimate_input_tokens(body_sent: &[u8], counter: Counter) -> u64 {
    let Ok(sent) = serde_json::from_slice::<Value>(body_sent) else {
        return 0;
    };
    fn count(value: &Value, counter: Counter) -> u64 {
        match value {
            Value::String(text) => counter.count(text),
            Value::Number(_) => 1,
            Value::Array(items) => items.iter().map(|v| count(v, counter)).sum(),
            _ => 0,
        }
    }
    ["input", "texts"]
        .iter()
        .find_map(|field| sent.get(*field))
        .map_or(0, |input| count(input, counter))
}

impl StreamStart {
    /// The response head: the upstream's status, SSE headers and its rate-limit hints (and
    /// what those said).
    pub fn head(&self) -> (HttpResponseBuilder, UpstreamRates) {
        let status = StatusCode::from_u16(self.upstream.status).unwrap_or(StatusCode::OK);
        let mut head = HttpResponse::build(status);
        head.insert_header(("content-type", "text/event-stream"))
            .insert_header(("cache-control", "no-cache"))
            .insert_header(("x-accel-buffering", "no"));
        let rates =
            pass_rate_limit_hints(&mut head, &self.upstream.headers, self.wire.translator());
        (head, rates)
    }
}

/// Rate-limit hints are useful to clients; cookies and framing headers are not ours. The
/// ones already under OpenAI's names pass as sent; the translator names its provider's
/// own (docs/wire-formats.md, "Rate-limit headers").
fn pass_rate_limit_hints(
    builder: &mut HttpResponseBuilder,
    headers: &[(String, String)],
    translator: &dyn Translator,
) -> UpstreamRates {
    let mut rates = UpstreamRates::default();
    for (name, value) in headers {
        if name.starts_with("x-ratelimit-") || name == "retry-after" || name == "retry-after-ms" {
            builder.insert_header((name.as_str(), value.as_str()));
            rates.note(name, value);
        }
    }
    translator.rate_limit_headers(headers, chrono::Utc::now(), &mut |name, value| {
        rates.note(name, &value);
        builder.insert_header((name, value.as_ref()));
    });
    rates
}

/// `chatcmpl-…` / `cmpl-…`, like OpenAI's ids.
fn openai_id(kind: RouteKind) -> String {
    let prefix = match kind {
        RouteKind::Chat => "chatcmpl-",
        RouteKind::Completions => "cmpl-",
    };
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

/// The usage numbers of a translated response.
fn usage_of(response: &Value) -> (u64, u64) {
    let usage = response.get("usage");
    let get = |k: &str| {
        usage
            .and_then(|u| u.get(k))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    (get("prompt_tokens"), get("completion_tokens"))
}

#[derive(Deserialize)]
struct Answered {
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Usage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
}

/// Usage of a `preserve` answer (docs/architecture.md, "The analytics line"): the body is
/// passed through untouched, but when it is JSON and carries an OpenAI-shaped
/// (`usage.prompt_tokens` / `completion_tokens`) or Anthropic-shaped (`usage.input_tokens`
/// / `output_tokens`, cache reads and writes counted as input) usage object, it is recorded.
pub fn preserve_usage(body: &[u8]) -> Option<(u64, u64)> {
    // Only the `usage` member is kept; the rest of the body is skipped, not built.
    let usage = serde_json::from_slice::<Answered>(body).ok()?.usage?;
    if usage.prompt_tokens.is_some() || usage.completion_tokens.is_some() {
        return Some((
            usage.prompt_tokens.unwrap_or(0),
            usage.completion_tokens.unwrap_or(0),
        ));
    }
    if usage.input_tokens.is_some() || usage.output_tokens.is_some() {
        let input = usage.input_tokens.unwrap_or(0)
            + usage.cache_creation_input_tokens.unwrap_or(0)
            + usage.cache_read_input_tokens.unwrap_or(0);
        return Some((input, usage.output_tokens.unwrap_or(0)));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_and_anthropic_usage_shapes_are_read() {
        assert_eq!(
            preserve_usage(br#"{"object":"list","data":[{"embedding":[0.1]}],"usage":{"prompt_tokens":8,"total_tokens":8}}"#),
            Some((8, 0))
        );
        assert_eq!(
            preserve_usage(br#"{"choices":[],"usage":{"prompt_tokens":10,"completion_tokens":5}}"#),
            Some((10, 5))
        );
        assert_eq!(
            preserve_usage(br#"{"content":[],"usage":{"input_tokens":7,"output_tokens":3,"cache_read_input_tokens":20}}"#),
            Some((27, 3))
        );
        assert_eq!(preserve_usage(br#"{"usage":{}}"#), None);
        assert_eq!(preserve_usage(br#"{"data":[]}"#), None);
        assert_eq!(preserve_usage(b"<html>ok</html>"), None);
        assert_eq!(preserve_usage(br#"[1,2]"#), None);
    }
}

//! The prepare stage: what the request asks of its route, checked before anything is
//! translated (docs/behaviour.md, "Request order", steps 5–7) — the service is callable,
//! Kong's prompt checks, the model to call, and streaming as client and route want it.

use serde_json::{Map, Value};

use crate::error::Error;
use crate::llm::StreamTranscoder;
use crate::providers::embeddings::Encoding;
use crate::providers::{RequestError, TranslateContext};
use crate::snapshot::RouteEntry;
use crate::vocab::{ResponseStreaming, RouteKind, RouteType};

use super::context::{Party, RequestCtx, Surface};
use super::read::Body;

/// What the later stages do with the request.
pub struct Plan {
    pub operation: Operation,
    /// The model to call.
    pub model: String,
    /// Set when the answer is streamed (the operation is then `Complete`).
    pub stream: Option<StreamPlan>,
}

/// What the route type asks of the translator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `preserve`: the body goes through untouched.
    Preserve,
    /// Chat or completions, translated.
    Complete(RouteKind),
    /// Embeddings, translated; the answer in the encoding the client asked for.
    Embed(Encoding),
}

/// Streaming as the client and the route want it.
pub struct StreamPlan {
    pub transcoder: Box<dyn StreamTranscoder>,
    pub include_usage: bool,
}

pub fn request(
    ctx: &RequestCtx,
    party: &Party,
    body: &mut Body,
    default_max_tokens: u32,
) -> Result<Plan, Error> {
    let route = party.route.as_ref();
    let service = &route.service;
    if let Some(credential) = &service.unavailable_credential {
        return Err(Error::credential_unavailable(
            &service.record.name,
            credential,
        ));
    }
    let kind = match route.route_type {
        RouteType::Chat => RouteKind::Chat,
        RouteType::Completions => RouteKind::Completions,
        RouteType::Embeddings => return embeddings(ctx, route, body),
        RouteType::Preserve => {
            return Ok(Plan {
                operation: Operation::Preserve,
                model: preserve_model(route, body.raw()),
                stream: None,
            });
        }
    };
    let object = body.object()?;
    check_surface(ctx.surface, route.route_type, object)?;
    if kind == RouteKind::Completions {
        one_prompt_as_string(object)?;
    }
    check_prompt(object, kind)?;
    let model = resolve_model(object, route, ctx.surface)?;
    let wants_stream = object
        .get("stream")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    match route.streaming {
        ResponseStreaming::Deny if wants_stream => {
            return Err(
                Error::bad_request("response streaming is not enabled for this LLM")
                    .with_param("stream"),
            );
        }
        ResponseStreaming::Always => {
            object.insert("stream".into(), Value::Bool(true));
        }
        _ => {}
    }
    let stream = if object
        .get("stream")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        let provider = service.provider;
        let ctx = translate_context(route, &model, default_max_tokens);
        let transcoder = service.translator().stream(&ctx, kind).ok_or_else(|| {
            Error::bad_request(format!(
                "streaming is not supported for provider {} in this format",
                provider.name()
            ))
            .with_param("stream")
        })?;
        let include_usage = object
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Some(StreamPlan {
            transcoder,
            include_usage,
        })
    } else {
        None
    };
    Ok(Plan {
        operation: Operation::Complete(kind),
        model,
        stream,
    })
}

/// On the OpenAI-compatible surface, the alias must be of the endpoint's route type.
fn check_surface(
    surface: Surface,
    route_type: RouteType,
    object: &Map<String, Value>,
) -> Result<(), Error> {
    match surface {
        Surface::OpenAi(endpoint) if endpoint != route_type => Err(Error::bad_request(format!(
            "model '{}' is served on the {} route type",
            object
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or_default(),
            route_type.as_str()
        ))
        .with_param("model")),
        _ => Ok(()),
    }
}

/// An embeddings request (docs/behaviour.md, "Embeddings"): an `input` and no prompt of
/// the other route types, never streamed, a provider that has embeddings; `input` itself
/// and the other fields are checked by the translator.
fn embeddings(ctx: &RequestCtx, route: &RouteEntry, body: &mut Body) -> Result<Plan, Error> {
    let object = body.object()?;
    check_surface(ctx.surface, RouteType::Embeddings, object)?;
    let service = &route.service;
    if service.translator().embeddings().is_none() {
        return Err(Error::bad_request(format!(
            "the route's service '{}' (provider {}) has no embeddings API",
            service.record.name,
            service.provider.name()
        ))
        .with_param("model"));
    }
    for (field, format) in [
        ("messages", "llm/v1/chat"),
        ("prompt", "llm/v1/completions"),
    ] {
        if object.contains_key(field) {
            return Err(Error::bad_request(format!(
                "[{format}] message format is not compatible with [llm/v1/embeddings] route type"
            )));
        }
    }
    if !object.contains_key("input") {
        return Err(Error::bad_request("'input' is required").with_param("input"));
    }
    if object.get("stream").and_then(Value::as_bool) == Some(true) {
        return Err(Error::bad_request("embeddings are not streamed").with_param("stream"));
    }
    let encoding = Encoding::of(object).map_err(bad_request)?;
    let model = resolve_model(object, route, ctx.surface)?;
    Ok(Plan {
        operation: Operation::Embed(encoding),
        model,
        stream: None,
    })
}

/// A request a translator refused: 400, naming the parameter when it knows it.
pub fn bad_request(e: RequestError) -> Error {
    let err = Error::bad_request(e.message);
    match e.param {
        Some(p) => err.with_param(p),
        None => err,
    }
}

/// A `preserve` route's model: the route's, else the client's (Kong: the preserve
/// embeddings test expects `openai/text-embedding-ada-002` from the body).
fn preserve_model(route: &RouteEntry, raw: &[u8]) -> String {
    route
        .model
        .name
        .clone()
        .or_else(|| {
            let body: Value = serde_json::from_slice(raw).ok()?;
            Some(body.get("model")?.as_str()?.to_string())
        })
        .unwrap_or_else(|| "UNSPECIFIED".into())
}

/// What a translator may read for this route, with the model to call.
pub fn translate_context<'a>(
    route: &'a RouteEntry,
    model: &'a str,
    default_max_tokens: u32,
) -> TranslateContext<'a> {
    let service = &route.service;
    TranslateContext {
        upstream_url: service.record.upstream_url.as_deref(),
        options: &service.options,
        model,
        tuning: &route.model.options,
        default_max_tokens,
    }
}

/// A completions `prompt` may be a list (OpenAI's batch form, which LangChain always sends):
/// one string is that string for every provider; several go to the translator, which
/// forwards them where the provider takes batches and refuses them naming `prompt`
/// elsewhere (docs/behaviour.md, "Request order").
fn one_prompt_as_string(body: &mut Map<String, Value>) -> Result<(), Error> {
    let Some(Value::Array(prompts)) = body.get_mut("prompt") else {
        return Ok(());
    };
    if prompts.is_empty() || !prompts.iter().all(Value::is_string) {
        return Err(Error::bad_request(
            "'prompt' must be a string or a non-empty array of strings",
        )
        .with_param("prompt"));
    }
    if prompts.len() == 1 {
        let one = prompts.swap_remove(0);
        body.insert("prompt".into(), one);
    }
    Ok(())
}

/// Kong's prompt checks (docs/behaviour.md, "Request order", step 5).
fn check_prompt(body: &Map<String, Value>, kind: RouteKind) -> Result<(), Error> {
    let chat = body
        .get("messages")
        .is_some_and(|m| m.as_array().is_some_and(|a| !a.is_empty()));
    // A list of several prompts counts as one format too (`one_prompt_as_string`).
    let completion = body
        .get("prompt")
        .is_some_and(|p| p.is_string() || p.is_array());
    match (chat, completion, kind) {
        (true, true, _) => Err(Error::bad_request(
            "request matches multiple LLM request formats",
        )),
        (true, false, RouteKind::Chat) | (false, true, RouteKind::Completions) => Ok(()),
        (true, false, RouteKind::Completions) => Err(Error::bad_request(
            "[llm/v1/chat] message format is not compatible with [llm/v1/completions] route type",
        )),
        (false, true, RouteKind::Chat) => Err(Error::bad_request(
            "[llm/v1/completions] message format is not compatible with [llm/v1/chat] route type",
        )),
        (false, false, _) => Err(Error::bad_request(
            "request body doesn't contain valid prompts",
        )),
    }
}

/// The model to call (docs/behaviour.md, "Request order", step 6; Kong ≥ 3.7): the route's,
/// else the client's.
fn resolve_model(
    body: &Map<String, Value>,
    route: &RouteEntry,
    surface: Surface,
) -> Result<String, Error> {
    let requested = match body.get("model") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(Error::bad_request("'model' must be a string").with_param("model")),
    };
    match (&route.model.name, requested) {
        (Some(configured), Some(requested))
            if surface == Surface::RoutePath && requested != configured =>
        {
            Err(
                Error::bad_request(format!("cannot use own model - must be: {configured}"))
                    .with_param("model"),
            )
        }
        (Some(configured), _) => Ok(configured.clone()),
        (None, Some(requested)) => Ok(requested.to_string()),
        (None, None) => Err(Error::bad_request(
            "no model: the route configures none and the request names none",
        )
        .with_param("model")),
    }
}

//! OpenAI-compatible answers → normalised OpenAI objects.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde_json::Value;

use crate::providers::shared::{
    map_finish_reason, new_id, normalise_usage, now_secs, object_name, parse_body,
};
use crate::providers::{RouteKind, TranslateContext, TranslateError, Verbatim};

/// An OpenAI-compatible 2xx body → the OpenAI object of the route type.
pub(super) fn compatible_response(
    ctx: &TranslateContext<'_>,
    kind: RouteKind,
    body: &[u8],
) -> Result<Value, TranslateError> {
    let mut value = parse_body(kind, body)?;
    let obj = value.as_object_mut().ok_or_else(|| {
        TranslateError(format!("{} response is not a JSON object", kind.as_str()))
    })?;
    let choices = obj
        .get_mut("choices")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| TranslateError(format!("'choices' not in {} response", kind.as_str())))?;
    if choices.is_empty() {
        return Err(TranslateError(format!(
            "'choices' is empty in {} response",
            kind.as_str()
        )));
    }
    for (i, choice) in choices.iter_mut().enumerate() {
        normalise_choice(kind, i, choice)?;
    }
    if obj
        .get("id")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        obj.insert("id".into(), Value::from(new_id(kind)));
    }
    obj.insert("object".into(), Value::from(object_name(kind)));
    if !obj.get("created").is_some_and(|c| c.is_u64() || c.is_i64()) {
        obj.insert("created".into(), Value::from(now_secs()));
    }
    if obj
        .get("model")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        obj.insert("model".into(), Value::from(ctx.model));
    }
    let usage = normalise_usage(obj.get("usage"));
    obj.insert("usage".into(), usage);
    Ok(value)
}

fn normalise_choice(kind: RouteKind, i: usize, choice: &mut Value) -> Result<(), TranslateError> {
    let c = choice
        .as_object_mut()
        .ok_or_else(|| TranslateError(format!("choice {i} is not an object")))?;
    if !c.get("index").is_some_and(Value::is_u64) {
        c.insert("index".into(), Value::from(i));
    }
    let has_output = match kind {
        RouteKind::Chat => {
            let msg = c
                .get_mut("message")
                .and_then(Value::as_object_mut)
                .ok_or_else(|| TranslateError(format!("'message' not in choice {i}")))?;
            let tool_calls = msg
                .get("tool_calls")
                .and_then(Value::as_array)
                .is_some_and(|t| !t.is_empty());
            let content = match msg.get("content") {
                Some(Value::String(s)) => Some(!s.is_empty()),
                Some(Value::Null) => None,
                None if tool_calls => None,
                None => return Err(TranslateError(format!("no content in choice {i}"))),
                Some(_) => {
                    return Err(TranslateError(format!(
                        "content of choice {i} is not a string"
                    )));
                }
            };
            if !msg.get("role").is_some_and(Value::is_string) {
                msg.insert("role".into(), Value::from("assistant"));
            }
            content.unwrap_or(false) || tool_calls
        }
        RouteKind::Completions => match c.get("text") {
            Some(Value::String(s)) => !s.is_empty(),
            _ => return Err(TranslateError(format!("'text' not in choice {i}"))),
        },
    };
    let reason = match c.get("finish_reason").and_then(Value::as_str) {
        // Mistral's `error` (docs/wire-formats.md, "Mistral"): keep a produced answer, else it
        // failed.
        Some("error") if has_output => "stop",
        Some("error") => {
            return Err(TranslateError(
                "upstream finished with finish_reason 'error'".into(),
            ));
        }
        Some(raw) => map_finish_reason(raw),
        None => "stop",
    };
    c.insert("finish_reason".into(), Value::from(reason));
    Ok(())
}

/// The facts of a body that `compatible_response` would leave as it is — every field it
/// checks already present and in OpenAI's form — read with a borrowing parse that builds no
/// tree (docs/architecture.md, "Why the proxy path is cheap"). Any doubt (a missing field, a
/// finish reason to map, a number that is not a plain integer, a duplicate key) is `None`,
/// and the full translation runs instead.
pub(super) fn verbatim(kind: RouteKind, body: &[u8]) -> Option<Verbatim> {
    let answer: Answer<'_> = serde_json::from_slice(body).ok()?;
    let first_reason = answer.choices.first()?.finish_reason?;
    let object_ok = answer.object == Some(object_name(kind));
    let ids_ok = answer.id.is_some_and(|id| !id.is_empty()) && answer.created.is_some();
    let model = answer.model.filter(|m| !m.is_empty())?;
    let usage = answer.usage?;
    // All three counts as plain integers: `normalise_usage` would rewrite anything else.
    usage.total_tokens?;
    let choices_ok = answer.choices.iter().all(|c| c.is_verbatim(kind));
    if !(object_ok && ids_ok && choices_ok) {
        return None;
    }
    Some(Verbatim {
        prompt_tokens: usage.prompt_tokens?,
        completion_tokens: usage.completion_tokens?,
        model: model.into_owned(),
        finish_reason: first_reason.to_string(),
    })
}

/// The fields `compatible_response` checks; the rest is skipped unread.
#[derive(Deserialize)]
struct Answer<'a> {
    id: Option<&'a str>,
    object: Option<&'a str>,
    created: Option<i64>,
    #[serde(borrow)]
    model: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    choices: Vec<Choice<'a>>,
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    index: Option<u64>,
    message: Option<Message>,
    text: Option<IsString>,
    finish_reason: Option<&'a str>,
}

#[derive(Deserialize)]
struct Message {
    role: Option<IsString>,
    content: Option<IsString>,
    tool_calls: Option<NonEmpty>,
}

#[derive(Deserialize)]
struct Usage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    total_tokens: Option<u64>,
}

impl Choice<'_> {
    fn is_verbatim(&self, kind: RouteKind) -> bool {
        let output_ok = match kind {
            RouteKind::Chat => self.message.as_ref().is_some_and(|m| {
                m.role.is_some() && (m.content.is_some() || m.tool_calls.is_some())
            }),
            RouteKind::Completions => self.text.is_some(),
        };
        // Only finish reasons that map to themselves (`error` and provider spellings are
        // translated).
        let reason_ok = self
            .finish_reason
            .is_some_and(|r| r != "error" && map_finish_reason(r) == r);
        self.index.is_some() && output_ok && reason_ok
    }
}

/// A JSON string, not kept.
struct IsString;

impl<'de> Deserialize<'de> for IsString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = IsString;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<IsString, E> {
                Ok(IsString)
            }
        }
        d.deserialize_str(V)
    }
}

/// A JSON array with at least one element, not kept.
struct NonEmpty;

impl<'de> Deserialize<'de> for NonEmpty {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = NonEmpty;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-empty array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NonEmpty, A::Error> {
                let mut any = false;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    any = true;
                }
                if any {
                    Ok(NonEmpty)
                } else {
                    Err(de::Error::invalid_length(0, &self))
                }
            }
        }
        d.deserialize_seq(V)
    }
}

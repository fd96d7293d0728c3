//! `ai-prompt-template` (docs/behaviour.md, "Policies"): a request naming a template with
//! `{template://name}` in `messages` or `prompt` is replaced by that template, a whole JSON
//! body, with its `{{placeholder}}`s filled from the request's `properties`.

use serde_json::{Map, Value};

use crate::vocab::policy::PromptTemplateConfig;

use super::Refusal;

const PREFIX: &str = "{template://";

/// One template, split once into literal text and placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Placeholder(String),
}

#[derive(Debug, Clone)]
struct Template {
    name: String,
    parts: Vec<Part>,
}

/// `ai-prompt-template`, compiled: its templates parsed.
#[derive(Debug, Clone)]
pub struct CompiledTemplate {
    templates: Vec<Template>,
    allow_untemplated: bool,
    log_original_request: bool,
}

/// What a template did to a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Templated {
    /// The request names no template and untemplated requests are allowed: unchanged.
    Untouched,
    /// The rendered template, the request's new body; `template` names it for the logs.
    Rendered {
        template: String,
        body: Map<String, Value>,
    },
}

/// A placeholder at the start of `text`: `{{` + `[A-Za-z0-9_]+` + `}}` (Kong's
/// `{{([%w_]+)}}`). Returns the name and the length matched.
fn placeholder_at(text: &str) -> Option<(&str, usize)> {
    let rest = text.strip_prefix("{{")?;
    let len = rest
        .bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
        .count();
    if len == 0 || !rest[len..].starts_with("}}") {
        return None;
    }
    Some((&rest[..len], len + 4))
}

/// Every placeholder of `text` with the text between them, scanning left to right as
/// Lua's `gsub` does.
fn split(text: &str) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut literal_from = 0;
    let mut at = 0;
    while let Some(offset) = text[at..].find("{{") {
        let start = at + offset;
        match placeholder_at(&text[start..]) {
            Some((name, len)) => {
                if literal_from < start {
                    parts.push(Part::Literal(text[literal_from..start].to_string()));
                }
                parts.push(Part::Placeholder(name.to_string()));
                at = start + len;
                literal_from = at;
            }
            None => at = start + 1,
        }
    }
    if literal_from < text.len() {
        parts.push(Part::Literal(text[literal_from..].to_string()));
    }
    parts
}

/// The template a `messages` or `prompt` value names, if it is a `{template://name}`.
fn template_name(reference: &Value) -> Option<&str> {
    reference.as_str()?.strip_prefix(PREFIX)?.strip_suffix('}')
}

/// Lua's name for the type of a decoded JSON value, as Kong's messages report it (JSON
/// `null` decodes to `cjson.null`, a userdata).
fn lua_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "userdata",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) | Value::Object(_) => "table",
    }
}

/// Lua's truthiness of an optional field: absent and `false` are false (`null` is not).
fn present(value: Option<&Value>) -> Option<&Value> {
    value.filter(|v| !matches!(v, Value::Bool(false)))
}

/// The request's `properties`, each value JSON-escaped (without its quotes) so that no
/// value can close the string it is put in: Kong's guard against JSON injection.
fn escaped_properties(body: &Map<String, Value>) -> Result<Vec<(&str, String)>, Refusal> {
    let properties = match present(body.get("properties")) {
        None => return Ok(Vec::new()),
        Some(Value::Object(map)) => map,
        // An empty JSON array decodes to the same empty Lua table as `{}`.
        Some(Value::Array(items)) if items.is_empty() => return Ok(Vec::new()),
        Some(_) => return Err(Refusal::bad_request("properties must be an object")),
    };
    properties
        .iter()
        .map(|(key, value)| match value {
            Value::String(s) => {
                let quoted = Value::String(s.clone()).to_string();
                Ok((key.as_str(), quoted[1..quoted.len() - 1].to_string()))
            }
            other => Err(Refusal::bad_request(format!(
                "property values must be a string, got {}",
                lua_type(other)
            ))),
        })
        .collect()
}

impl CompiledTemplate {
    pub fn new(config: &PromptTemplateConfig) -> CompiledTemplate {
        CompiledTemplate {
            templates: config
                .templates
                .iter()
                .map(|t| Template {
                    name: t.name.clone(),
                    parts: split(&t.template),
                })
                .collect(),
            allow_untemplated: config.allow_untemplated_requests,
            log_original_request: config.log_original_request,
        }
    }

    /// Whether the analytics entry keeps the client's body as sent
    /// (`payload.original_request`).
    pub fn log_original_request(&self) -> bool {
        self.log_original_request
    }

    /// Runs the template policy on the client's body, with Kong's checks and messages.
    pub fn apply(&self, body: &Map<String, Value>) -> Result<Templated, Refusal> {
        let messages = present(body.get("messages"));
        let prompt = present(body.get("prompt"));
        if messages.is_some() && prompt.is_some() {
            return Err(Refusal::bad_request(
                "cannot run 'messages' and 'prompt' templates at the same time",
            ));
        }
        let Some(reference) = messages.or(prompt) else {
            return Err(Refusal::bad_request(
                "only 'llm/v1/chat' and 'llm/v1/completions' formats are supported for templating",
            ));
        };
        let Some(name) = template_name(reference) else {
            return if self.allow_untemplated {
                Ok(Templated::Untouched)
            } else {
                Err(Refusal::bad_request(
                    "this LLM route only supports templated requests",
                ))
            };
        };
        let Some(template) = self.templates.iter().find(|t| t.name == name) else {
            return Err(Refusal::bad_request(format!(
                "could not find template name [{name}]"
            )));
        };
        let properties = escaped_properties(body)?;
        let rendered = render(&template.parts, &properties);
        let missing = missing_placeholders(&rendered);
        if !missing.is_empty() {
            return Err(Refusal::bad_request(format!(
                "missing template parameters: {}",
                missing.join(", ")
            )));
        }
        match serde_json::from_str::<Value>(&rendered) {
            Ok(Value::Object(body)) => Ok(Templated::Rendered {
                template: template.name.clone(),
                body,
            }),
            Ok(_) => Err(Refusal::bad_request(format!(
                "template [{name}] did not render to a JSON object"
            ))),
            Err(e) => Err(Refusal::bad_request(format!(
                "template [{name}] did not render to valid JSON: {e}"
            ))),
        }
    }
}

/// The template with every placeholder that has a property replaced by its escaped value;
/// the others stay as written.
fn render(parts: &[Part], properties: &[(&str, String)]) -> String {
    let mut out = String::new();
    for part in parts {
        match part {
            Part::Literal(text) => out.push_str(text),
            Part::Placeholder(name) => match properties.iter().find(|(key, _)| key == name) {
                Some((_, value)) => out.push_str(value),
                None => {
                    out.push_str("{{");
                    out.push_str(name);
                    out.push_str("}}");
                }
            },
        }
    }
    out
}

/// The placeholders left in the rendered text, each once, as `[name]`, in order. Read from
/// the result as Kong does, so a property value that spells a placeholder is refused too.
fn missing_placeholders(rendered: &str) -> Vec<String> {
    let mut missing: Vec<String> = Vec::new();
    for part in split(rendered) {
        if let Part::Placeholder(name) = part {
            let name = format!("[{name}]");
            if !missing.contains(&name) {
                missing.push(name);
            }
        }
    }
    missing
}

#[cfg(test)]
pub(super) fn parts_of(text: &str) -> Vec<(bool, String)> {
    split(text)
        .into_iter()
        .map(|p| match p {
            Part::Literal(s) => (false, s),
            Part::Placeholder(s) => (true, s),
        })
        .collect()
}

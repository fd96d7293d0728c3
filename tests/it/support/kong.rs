//! Kong's ai-proxy fixtures, read from the directory in `TOLLGATE_KONG_FIXTURES` (never
//! copied into this repository), and the comparison rules the conformance tests share:
//! numbers compared as Lua compares them, and every field where Tollgate differs from
//! Kong on purpose written down once, as a [`Rule`] that pins both sides' values.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;

/// Kong's fixture directory (`spec/fixtures/ai-proxy`).
pub struct Fixtures {
    pub root: PathBuf,
}

impl Fixtures {
    /// The directory in `TOLLGATE_KONG_FIXTURES`; the (ignored) test fails when it is
    /// unset or not a directory.
    pub fn from_env() -> Fixtures {
        let root = PathBuf::from(crate::support::required_env(
            "TOLLGATE_KONG_FIXTURES",
            "the directory of Kong's ai-proxy fixtures (spec/fixtures/ai-proxy)",
        ));
        assert!(
            root.is_dir(),
            "TOLLGATE_KONG_FIXTURES={} is not a directory",
            root.display()
        );
        Fixtures { root }
    }

    pub fn bytes(&self, rel: &str) -> Vec<u8> {
        let path = self.root.join(rel);
        std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
    }

    pub fn json(&self, rel: &str) -> Value {
        serde_json::from_slice(&self.bytes(rel)).unwrap_or_else(|e| panic!("parsing {rel}: {e}"))
    }

    /// Every file under `dir` (relative to the root), sorted.
    pub fn list(&self, dir: &str) -> Vec<String> {
        fn walk(base: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
            let entries =
                std::fs::read_dir(dir).unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()));
            for entry in entries {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(base, &path, out);
                } else {
                    let rel = path.strip_prefix(base).unwrap();
                    out.push(rel.to_string_lossy().replace('\\', "/"));
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.root, &self.root.join(dir), &mut out);
        out.sort();
        out
    }
}

/// JSON equality where `1` equals `1.0` (Lua/cjson does not tell them apart).
pub fn json_eq(a: &Value, b: &Value) -> bool {
    first_difference(a, b, "").is_none()
}

/// The JSON pointer of the first difference, with both values.
pub fn first_difference(a: &Value, b: &Value, at: &str) -> Option<String> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.as_f64() == y.as_f64() => None,
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (p, q))| first_difference(p, q, &format!("{at}/{i}"))),
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| {
                let p = format!("{at}/{k}");
                match (x.get(k), y.get(k)) {
                    (Some(v), Some(w)) => first_difference(v, w, &p),
                    (v, w) => Some(format!("{p}: {v:?} vs {w:?}")),
                }
            })
        }
        _ if a == b => None,
        _ => Some(format!("{at}: {a} vs {b}")),
    }
}

/// A field where Tollgate's body differs from Kong's expected one on purpose. `why` names
/// the item of docs/behaviour.md (§9.x: "Differences from Kong", item x; §4.4: "Responses", the
/// OpenAI shape Tollgate always emits). Each rule pins what both sides hold, so a rule never hides
/// an accident.
#[derive(Debug, Clone)]
pub enum Rule {
    /// Tollgate adds a field Kong's expected body lacks; `check` validates ours.
    Added {
        at: &'static str,
        why: &'static str,
        check: fn(&Value) -> bool,
    },
    /// Both have the field, with these values.
    Changed {
        at: &'static str,
        why: &'static str,
        kong: Value,
        ours: Value,
    },
    /// Kong's expected body has this value where Tollgate's has none.
    Dropped {
        at: &'static str,
        why: &'static str,
        kong: Value,
    },
}

impl Rule {
    pub fn why(&self) -> &'static str {
        match self {
            Rule::Added { why, .. } | Rule::Changed { why, .. } | Rule::Dropped { why, .. } => why,
        }
    }
}

/// Removes the value at a JSON pointer (an object key or an array element).
fn remove_at(v: &mut Value, at: &str) -> Option<Value> {
    let (parent, last) = at.rsplit_once('/')?;
    match v.pointer_mut(parent)? {
        Value::Object(m) => m.remove(last),
        Value::Array(a) => {
            let i: usize = last.parse().ok()?;
            (i < a.len()).then(|| a.remove(i))
        }
        _ => None,
    }
}

/// `kong` (Kong's expected body) equals `ours` once `rules` are applied; each rule's
/// pinned values are asserted first. `what` names the fixture in every failure.
pub fn assert_conforms(what: &str, kong: &Value, ours: &Value, rules: &[Rule]) {
    let (mut kong, mut ours) = (kong.clone(), ours.clone());
    for rule in rules {
        match rule {
            Rule::Added { at, why, check } => {
                assert!(
                    kong.pointer(at).is_none(),
                    "{what}: rule '{why}' is stale: Kong's body has {at}"
                );
                let value = remove_at(&mut ours, at)
                    .unwrap_or_else(|| panic!("{what}: {at} missing ({why}) in {ours}"));
                assert!(check(&value), "{what}: {at} = {value} ({why})");
            }
            Rule::Changed {
                at,
                why,
                kong: k,
                ours: o,
            } => {
                let got_kong = kong.pointer(at).cloned().unwrap_or(Value::Null);
                assert!(
                    json_eq(&got_kong, k),
                    "{what}: rule '{why}' is stale: Kong's {at} is {got_kong}"
                );
                let got = ours.pointer(at).cloned().unwrap_or(Value::Null);
                assert!(json_eq(&got, o), "{what}: {at} = {got}, want {o} ({why})");
                *kong.pointer_mut(at).unwrap() = o.clone();
            }
            Rule::Dropped { at, why, kong: k } => {
                let got_kong = remove_at(&mut kong, at).unwrap_or(Value::Null);
                assert!(
                    json_eq(&got_kong, k),
                    "{what}: rule '{why}' is stale: Kong's {at} is {got_kong}"
                );
                assert!(
                    ours.pointer(at) != Some(k),
                    "{what}: {at} should differ from Kong's ({why})"
                );
            }
        }
    }
    if let Some(diff) = first_difference(&kong, &ours, "") {
        panic!("{what}: differs from Kong's at {diff}\nKong (normalised): {kong}\nours: {ours}");
    }
}

/// The case label: the fixture, plus `deliberate_difference [§…]` when rules apply.
pub fn label(fixture: &str, rules: &[Rule]) -> String {
    let mut whys: Vec<&str> = rules.iter().map(Rule::why).collect();
    whys.dedup();
    if whys.is_empty() {
        fixture.to_string()
    } else {
        format!("{fixture} (deliberate_difference: {})", whys.join("; "))
    }
}

// ---- Predicates for `Rule::Added` --------------------------------------------------

pub fn is_string(v: &Value) -> bool {
    v.as_str().is_some_and(|s| !s.is_empty())
}

pub fn is_timestamp(v: &Value) -> bool {
    v.as_i64().is_some_and(|t| t > 1_600_000_000)
}

pub fn is_null(v: &Value) -> bool {
    v.is_null()
}

pub fn is_stop(v: &Value) -> bool {
    v == "stop"
}

/// An OpenAI `usage` object whose total is the sum of its parts.
pub fn is_usage(v: &Value) -> bool {
    let n = |k: &str| v.get(k).and_then(Value::as_u64);
    matches!((n("prompt_tokens"), n("completion_tokens"), n("total_tokens")),
             (Some(p), Some(c), Some(t)) if p + c == t)
}

// ---- The deliberate differences, written once ----------------------------------------

/// "Responses": every response has an `id`.
pub const ID: &str = "§4.4/§9.4 the response has an id";
/// "Responses": `created` is part of the OpenAI shape Tollgate always emits.
pub const CREATED: &str = "§4.4 OpenAI shape: created";
/// "Responses", "Differences from Kong" 4: usage is always an object.
pub const USAGE: &str = "§9.4 usage always an object";
/// "Responses": `finish_reason` mapped to OpenAI values.
pub const FINISH: &str = "§4.4 finish_reason present and mapped";
/// "Responses": the OpenAI shape names the model.
pub const MODEL: &str = "§4.4 OpenAI shape: model";

/// The differences in Tollgate's answer to Kong's `unit/real-responses/<fixture>`.
pub fn unit_response_rules(fixture: &str) -> Vec<Rule> {
    let added = |at, why, check| Rule::Added { at, why, check };
    match fixture {
        "anthropic/llm-v1-chat" | "anthropic/llm-v1-completions" => vec![
            added("/id", ID, is_string),
            added("/created", CREATED, is_timestamp),
            added("/usage", USAGE, is_usage),
            Rule::Changed {
                at: "/choices/0/finish_reason",
                why: "§9.4 anthropic finish_reason mapped (stop_sequence→stop)",
                kong: "stop_sequence".into(),
                ours: "stop".into(),
            },
        ],
        "cohere/llm-v1-chat" => vec![
            added("/created", CREATED, is_timestamp),
            Rule::Changed {
                at: "/id",
                why: "§4.4 OpenAI-style id (chatcmpl- + cohere's generation_id)",
                kong: "f8aabbeb-f745-4e9b-85b1-71a3269620d9".into(),
                ours: "chatcmpl-f8aabbeb-f745-4e9b-85b1-71a3269620d9".into(),
            },
        ],
        "cohere/llm-v1-completions" => vec![
            added("/created", CREATED, is_timestamp),
            Rule::Changed {
                at: "/id",
                why: "§4.4 OpenAI-style id (cmpl- + cohere's id)",
                kong: "77d630a0-c350-4f4e-bbff-ae6eda8919f3".into(),
                ours: "cmpl-77d630a0-c350-4f4e-bbff-ae6eda8919f3".into(),
            },
            Rule::Changed {
                at: "/choices/0/finish_reason",
                why: "§9.6 cohere finish_reason mapped (MAX_TOKENS→length; Kong hard-codes stop)",
                kong: "stop".into(),
                ours: "length".into(),
            },
        ],
        "llama2/raw/llm-v1-chat" | "llama2/raw/llm-v1-completions" => {
            let mut rules = vec![
                added("/id", ID, is_string),
                added("/created", CREATED, is_timestamp),
                added("/model", MODEL, is_string),
                added("/usage", USAGE, is_usage),
                added("/choices/0/finish_reason", FINISH, is_stop),
            ];
            if fixture.ends_with("completions") {
                rules.push(added(
                    "/choices/0/logprobs",
                    "§4.4 OpenAI text_completion shape: logprobs",
                    is_null,
                ));
            }
            rules
        }
        "llama2/ollama/llm-v1-chat" | "mistral/ollama/llm-v1-chat" => vec![
            added("/id", ID, is_string),
            added("/created", CREATED, is_timestamp),
            ollama_usage(26, 100),
        ],
        "llama2/ollama/llm-v1-completions" => vec![
            added("/id", ID, is_string),
            added("/created", CREATED, is_timestamp),
            added("/choices/0/finish_reason", FINISH, is_stop),
            added(
                "/choices/0/logprobs",
                "§4.4 OpenAI text_completion shape: logprobs",
                is_null,
            ),
            ollama_usage(13, 12),
            Rule::Changed {
                at: "/choices/0/text",
                why: "Kong fixture inconsistency: its expected text is another fixture's and \
                      Kong asserts only choices[1].message, absent for completions",
                kong: "You cannot divide by zero because it is not a valid operation in \
                       mathematics."
                    .into(),
                ours: "Because I said so.".into(),
            },
        ],
        // OpenAI-format upstreams: passed through, equal to Kong's.
        _ => Vec::new(),
    }
}

/// Ollama's counts (`prompt_eval_count`, `eval_count`) versus Kong's expected 139/130/269,
/// which the fixture does not contain and Kong does not assert.
fn ollama_usage(prompt: u64, completion: u64) -> Rule {
    Rule::Changed {
        at: "/usage",
        why: "§9.3 provider usage preferred (Kong's expected usage is not the fixture's)",
        kong: serde_json::json!({"completion_tokens": 139, "prompt_tokens": 130, "total_tokens": 269}),
        ours: serde_json::json!({"prompt_tokens": prompt, "completion_tokens": completion,
                                 "total_tokens": prompt + completion}),
    }
}

/// The differences in the upstream body Tollgate builds from `unit/requests/<route>` for
/// `unit/expected-requests/<fixture>`.
pub fn unit_request_rules(fixture: &str) -> Vec<Rule> {
    const RAW: &str = "§9.7 standard Llama 2 chat template, assistant turns kept";
    match fixture {
        "cohere/llm-v1-chat" => vec![
            Rule::Dropped {
                at: "/chat_history/0",
                why: "§9.6 cohere system message goes to preamble, not a USER turn",
                kong: serde_json::json!({"role": "USER", "message": "You are a mathematician."}),
            },
            Rule::Added {
                at: "/preamble",
                why: "§9.6 cohere system message goes to preamble, not a USER turn",
                check: |v| v == "You are a mathematician.",
            },
        ],
        "llama2/raw/llm-v1-chat" => vec![Rule::Changed {
            at: "/inputs",
            why: RAW,
            kong: "<s>[INST] <<SYS>> You are a mathematician. <</SYS>> What is 1 + 2? [/INST] \
                   <s>[INST] Multiply that by 2 [/INST] <s>[INST] Why can't you divide by \
                   zero? [/INST]"
                .into(),
            ours: "<s>[INST] <<SYS>>\nYou are a mathematician.\n<</SYS>>\n\nWhat is 1 + 2? \
                   [/INST] The sum of 1 + 2 is 3. If you have any more math questions or if \
                   there's anything else I can help you with, feel free to ask! </s><s>[INST] \
                   Multiply that by 2 [/INST] Certainly! If you multiply 3 by 2, the result \
                   is 6. If you have any more questions or if there's anything else I can \
                   help you with, feel free to ask! </s><s>[INST] Why can't you divide by \
                   zero? [/INST]"
                .into(),
        }],
        "llama2/raw/llm-v1-completions" => vec![Rule::Changed {
            at: "/inputs",
            why: RAW,
            kong: "<s> [INST] <<SYS>> You are a helpful assistant. <<SYS>> Explain why you \
                   can't divide by zero? [/INST]"
                .into(),
            ours: "<s>[INST] Explain why you can't divide by zero? [/INST]".into(),
        }],
        _ => Vec::new(),
    }
}

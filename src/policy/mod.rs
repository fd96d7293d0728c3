//! The policies' compiled forms and their executors (docs/behaviour.md, "Policies"): Kong's
//! companion AI plugins, built once from their vocabulary configuration (patterns compiled,
//! templates parsed) and run on an OpenAI-shaped body without I/O. The transformers' LLM
//! call itself belongs to the proxy; `transform.rs` builds its request and reads its answer.
//!
//! `Compiled::new` is the one place a policy's patterns are checked: the admin API calls it
//! to refuse a policy at write time, the snapshot to build what the request path runs.

pub mod decorator;
pub mod guard;
pub mod template;
pub mod transform;

use std::fmt;

use crate::vocab::{PolicyConfig, PolicyScope, PolicyType};

pub use decorator::CompiledDecorator;
pub use guard::{BlockReason, Blocked, CompiledGuard, GuardPass};
pub use template::{CompiledTemplate, Templated};
pub use transform::{CompiledTransformer, Instructions, ResponseRewrite};

/// A policy's answer to the client instead of forwarding the request: Kong's status and
/// message (rendered as `{"error":{"message":…}}` by the proxy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub message: String,
}

impl Refusal {
    pub fn bad_request(message: impl Into<String>) -> Refusal {
        Refusal {
            status: 400,
            message: message.into(),
        }
    }

    pub fn internal(message: impl Into<String>) -> Refusal {
        Refusal {
            status: 500,
            message: message.into(),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.status)
    }
}

/// A configuration that cannot be compiled: the offending field by its path under the
/// policy (`config.deny_patterns[2]`) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct CompileError {
    pub field: String,
    pub message: String,
}

impl CompileError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> CompileError {
        CompileError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Kong's regex flags for a pattern, as Rust `regex` builder switches.
#[derive(Debug, Clone, Copy, Default)]
struct Flags {
    case_insensitive: bool,
    multi_line: bool,
}

/// Compiles one pattern, naming `field` when it does not compile. Rust's `regex` runs in
/// time linear in the input, so the features that need backtracking (look-around,
/// back-references) do not exist and are refused here, when the policy is saved.
fn compile_pattern(field: &str, pattern: &str, flags: Flags) -> Result<regex::Regex, CompileError> {
    regex::RegexBuilder::new(pattern)
        .case_insensitive(flags.case_insensitive)
        .multi_line(flags.multi_line)
        .build()
        .map_err(|e| CompileError::new(field, pattern_error(pattern, &e)))
}

/// Whether `pattern` compiles as a policy pattern, and why not: the one check the admin
/// API and the snapshot share, so a saved pattern always compiles on the request path.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    compile_pattern("", pattern, Flags::default())
        .map(|_| ())
        .map_err(|e| e.message)
}

/// The reason of a `regex` error on one line (its syntax errors are multi-line drawings
/// ending in `error: <reason>`).
fn pattern_error(pattern: &str, e: &regex::Error) -> String {
    match e {
        regex::Error::Syntax(text) => {
            let reason = text
                .lines()
                .rev()
                .find_map(|line| line.strip_prefix("error: "))
                .unwrap_or(text.as_str());
            // PCRE (Kong) reads a `{` that starts no repetition as a literal.
            let hint = if pattern.contains('{') && reason.contains("repetition") {
                "; write a literal '{' as '\\{'"
            } else {
                ""
            };
            format!(
                "not a valid pattern: {reason}{hint} (patterns are Rust regex syntax, which \
                 matches in linear time: no look-around, no back-references)"
            )
        }
        regex::Error::CompiledTooBig(limit) => {
            format!("pattern too large: it compiles to more than {limit} bytes")
        }
        other => format!("not a valid pattern: {other}"),
    }
}

/// One policy, compiled once from its configuration: what the request path runs.
#[derive(Debug, Clone)]
pub enum Compiled {
    RequestTransformer(CompiledTransformer),
    PromptTemplate(CompiledTemplate),
    PromptDecorator(CompiledDecorator),
    PromptGuard(CompiledGuard),
    ResponseTransformer(CompiledTransformer),
}

impl Compiled {
    /// Compiles a policy's configuration: its patterns, its templates, its decorations.
    /// Errors name the field under `config`.
    pub fn new(config: &PolicyConfig) -> Result<Compiled, CompileError> {
        Ok(match config {
            PolicyConfig::RequestTransformer(c) => {
                Compiled::RequestTransformer(CompiledTransformer::new(c)?)
            }
            PolicyConfig::PromptTemplate(c) => Compiled::PromptTemplate(CompiledTemplate::new(c)),
            PolicyConfig::PromptDecorator(c) => {
                Compiled::PromptDecorator(CompiledDecorator::new(c)?)
            }
            PolicyConfig::PromptGuard(c) => Compiled::PromptGuard(CompiledGuard::new(c)?),
            PolicyConfig::ResponseTransformer(c) => {
                Compiled::ResponseTransformer(CompiledTransformer::new(c)?)
            }
        })
    }

    pub fn kind(&self) -> PolicyType {
        match self {
            Compiled::RequestTransformer(_) => PolicyType::RequestTransformer,
            Compiled::PromptTemplate(_) => PolicyType::PromptTemplate,
            Compiled::PromptDecorator(_) => PolicyType::PromptDecorator,
            Compiled::PromptGuard(_) => PolicyType::PromptGuard,
            Compiled::ResponseTransformer(_) => PolicyType::ResponseTransformer,
        }
    }
}

/// A bound policy as the snapshot keeps it.
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    /// A disabled policy is as if absent: it does not hide one bound at a wider scope.
    pub enabled: bool,
    pub compiled: Compiled,
}

/// The policy that applies to one request for one type, and the scope it was bound at.
#[derive(Debug, Clone, Copy)]
pub struct Effective<'a> {
    pub scope: PolicyScope,
    pub policy: &'a Policy,
}

/// The policies that apply to one request: at most one per type, the most specific binding
/// of each (route over service over tenant).
#[derive(Debug, Clone, Copy, Default)]
pub struct PolicySet<'a> {
    by_type: [Option<Effective<'a>>; 5],
}

fn slot(kind: PolicyType) -> usize {
    match kind {
        PolicyType::RequestTransformer => 0,
        PolicyType::PromptTemplate => 1,
        PolicyType::PromptDecorator => 2,
        PolicyType::PromptGuard => 3,
        PolicyType::ResponseTransformer => 4,
    }
}

impl<'a> PolicySet<'a> {
    /// Resolves the policies bound to the request's route, its service and the caller's
    /// tenant. Within one scope the first enabled policy of a type wins, so the caller
    /// passes each scope's policies in a stable order (by name).
    pub fn resolve(
        route: impl IntoIterator<Item = &'a Policy>,
        service: impl IntoIterator<Item = &'a Policy>,
        tenant: impl IntoIterator<Item = &'a Policy>,
    ) -> PolicySet<'a> {
        let mut set = PolicySet::default();
        set.fill(PolicyScope::Route, route);
        set.fill(PolicyScope::Service, service);
        set.fill(PolicyScope::Tenant, tenant);
        set
    }

    /// Takes the types still unset from one scope's policies (scopes come most specific
    /// first).
    fn fill(&mut self, scope: PolicyScope, policies: impl IntoIterator<Item = &'a Policy>) {
        for policy in policies.into_iter().filter(|p| p.enabled) {
            let entry = &mut self.by_type[slot(policy.compiled.kind())];
            if entry.is_none() {
                *entry = Some(Effective { scope, policy });
            }
        }
    }

    pub fn get(&self, kind: PolicyType) -> Option<Effective<'a>> {
        self.by_type[slot(kind)]
    }

    /// The effective policies in the order they run (`PolicyType::IN_ORDER`).
    pub fn in_order(&self) -> impl Iterator<Item = Effective<'a>> + '_ {
        PolicyType::IN_ORDER
            .into_iter()
            .filter_map(|kind| self.get(kind))
    }

    pub fn is_empty(&self) -> bool {
        self.by_type.iter().all(Option::is_none)
    }
}

#[cfg(test)]
mod tests;

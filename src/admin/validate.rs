//! Write-time validation shared by the admin resources. Every check names the offending
//! field by its dotted path within the submitted object, and all problems of one request
//! are reported together.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::error::Error;
// The private-address rule is shared with the upstream connector (connect time).
use crate::vocab::netguard::is_private_ip;

/// Collects every problem of one request, then fails once naming them all. The status
/// follows the kind of problem (docs/behaviour.md, "Admin conventions"): a field that breaks
/// its own rule is 400; a reference to an object that does not exist is 409; fields each
/// valid whose combination (or whose relation to the current time) is refused are 422.
/// When kinds mix, 400 wins over 409 and 409 over 422.
#[derive(Debug, Default)]
pub struct Problems {
    fields: BTreeMap<String, String>,
    kind: Option<ProblemKind>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum ProblemKind {
    Field,
    Missing,
    Rule,
}

impl Problems {
    fn push(&mut self, kind: ProblemKind, field: String, message: String) {
        self.fields.entry(field).or_insert(message);
        self.kind = Some(self.kind.map_or(kind, |k| k.min(kind)));
    }

    /// A field that breaks its own rule (400).
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.push(ProblemKind::Field, field.into(), message.into());
    }

    /// A field naming an object that does not exist (409).
    pub fn missing(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.push(ProblemKind::Missing, field.into(), message.into());
    }

    /// A field refused by a rule tying it to other fields or to the time (422).
    pub fn rule(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.push(ProblemKind::Rule, field.into(), message.into());
    }

    /// Takes `other`'s problems as rule problems (422): checks of a part the published
    /// schema leaves open, such as a policy's configuration.
    pub fn absorb_as_rules(&mut self, other: Problems) {
        for (field, message) in other.fields {
            self.rule(field, message);
        }
    }

    pub fn check(&mut self, field: &str, result: Result<(), String>) {
        if let Err(message) = result {
            self.add(field, message);
        }
    }

    pub fn finish(self) -> Result<(), Error> {
        let Some(kind) = self.kind else {
            return Ok(());
        };
        let mut error = Error::invalid_fields(self.fields);
        match kind {
            ProblemKind::Field => {}
            ProblemKind::Missing => {
                error.status = actix_web::http::StatusCode::CONFLICT;
                error.code = crate::error::ErrorCode::Conflict;
            }
            ProblemKind::Rule => error.status = actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
        }
        Err(error)
    }
}

/// Object names: `[a-z0-9][a-z0-9-_.]{0,62}` (docs/behaviour.md, "Admin conventions").
pub fn name(value: &str) -> Result<(), String> {
    let mut chars = value.chars();
    let valid_first = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let valid_rest =
        chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
    if valid_first && valid_rest && value.len() <= 63 {
        Ok(())
    } else {
        Err("must match [a-z0-9][a-z0-9-_.]{0,62}: 1 to 63 lowercase ASCII letters, digits, '-', '_' or '.', starting with a letter or digit".into())
    }
}

/// A name that must not look like a UUID, since URLs address objects by either.
pub fn object_name(value: &str) -> Result<(), String> {
    name(value)?;
    if uuid::Uuid::parse_str(value).is_ok() {
        return Err("must not be a UUID (objects are addressed by id or name)".into());
    }
    Ok(())
}

/// Free text shown to humans (display names): any printable unicode, bounded.
pub fn display_text(value: &str, max_chars: usize) -> Result<(), String> {
    if value.chars().count() > max_chars {
        return Err(format!("must be at most {max_chars} characters"));
    }
    if value.trim().is_empty() {
        return Err("must not be blank".into());
    }
    Ok(())
}

/// Tags: at most 32, each 1..=64 printable characters without whitespace at the ends.
pub fn tags(problems: &mut Problems, tags: &[String]) {
    if tags.len() > 32 {
        problems.add("tags", "at most 32 tags");
    }
    for (i, tag) in tags.iter().enumerate() {
        if tag.is_empty() || tag.chars().count() > 64 || tag.trim() != tag {
            problems.add(
                format!("tags[{i}]"),
                "must be 1 to 64 characters without leading or trailing whitespace",
            );
        }
    }
}

/// A `model_alias`: what OpenAI clients send as `model` (`gpt-4o`, `meta/llama3:8b`).
pub fn model_alias(value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && value
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/' | '@'));
    if ok {
        Ok(())
    } else {
        Err(
            "must be 1 to 128 ASCII letters, digits or '-_.:/@', starting with a letter or digit"
                .into(),
        )
    }
}

/// The OpenAI-compatible surface, which route paths may not shadow.
pub const RESERVED_PATHS: &[&str] = &["/v1/chat/completions", "/v1/completions", "/v1/models"];

/// A route path prefix: absolute, no query or fragment, no empty or dot segments, not
/// shadowing the gateway's own endpoints.
pub fn route_path(value: &str) -> Result<(), String> {
    route_path_shape(value)?;
    shadowed_endpoint(value)
}

/// [`route_path`]'s rules on the path alone (the document states them).
pub fn route_path_shape(value: &str) -> Result<(), String> {
    if !value.starts_with('/') {
        return Err("must start with '/'".into());
    }
    if value.len() > 256 {
        return Err("must be at most 256 characters".into());
    }
    if !value.chars().all(|c| c.is_ascii_graphic()) || value.contains(['?', '#', '%', '\\']) {
        return Err("must be printable ASCII without spaces, '?', '#', '%' or '\\'".into());
    }
    if value.len() > 1 && (value.contains("//") || value.split('/').any(|s| s == "." || s == ".."))
    {
        return Err("must not contain empty, '.' or '..' segments".into());
    }
    Ok(())
}

/// A route path that would take requests meant for the OpenAI-compatible surface.
pub fn shadowed_endpoint(value: &str) -> Result<(), String> {
    // Prefixes match at segment boundaries: "/v1" contains "/v1/models", "/v" does not.
    let trimmed = value.trim_end_matches('/');
    for reserved in RESERVED_PATHS {
        let contains_reserved = trimmed.is_empty()
            || *reserved == trimmed
            || reserved
                .strip_prefix(trimmed)
                .is_some_and(|rest| rest.starts_with('/'));
        let under_reserved = value
            .strip_prefix(reserved)
            .is_some_and(|r| r.is_empty() || r.starts_with('/'));
        if contains_reserved || under_reserved {
            return Err(format!(
                "would shadow the OpenAI-compatible endpoint {reserved}"
            ));
        }
    }
    Ok(())
}

/// An HTTP header name (RFC 9110 token).
pub fn header_name(value: &str) -> Result<(), String> {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if value.is_empty() || value.len() > 128 || !value.chars().all(token) {
        return Err("must be a valid HTTP header name".into());
    }
    const HOP_OR_FRAMING: &[&str] = &[
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "te",
        "upgrade",
    ];
    if HOP_OR_FRAMING.contains(&value.to_ascii_lowercase().as_str()) {
        return Err(format!("'{value}' cannot carry a credential"));
    }
    Ok(())
}

/// A value that will be sent in a header: no CR/LF (header injection), bounded.
pub fn header_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    if value.len() > 8192 {
        return Err("must be at most 8192 bytes".into());
    }
    if value.chars().any(|c| c.is_control()) {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

/// Upstream URL rules (docs/behaviour.md, "Admin resources"): http/https, a host, no userinfo, and
/// (unless private upstreams are allowed) no loopback, link-local, private or metadata destination.
///
/// Host names are not resolved here (DNS may not be reachable from the admin node and can
/// change); the proxy checks the resolved address again at connect time.
pub fn upstream_url(value: &str, allow_private: bool) -> Result<(), String> {
    let url = url::Url::parse(value).map_err(|e| format!("is not a valid URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("scheme must be http or https".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain user information (put secrets in a credential)".into());
    }
    if url.fragment().is_some() {
        return Err("must not contain a fragment".into());
    }
    let host = match url.host() {
        Some(h) => h,
        None => return Err("must have a host".into()),
    };
    if allow_private {
        return Ok(());
    }
    let private = match host {
        url::Host::Ipv4(ip) => is_private_ip(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => is_private_ip(IpAddr::V6(ip)),
        url::Host::Domain(d) => is_private_hostname(d),
    };
    if private {
        return Err("points at a loopback, link-local, private or cloud-metadata address; set TOLLGATE_ALLOW_PRIVATE_UPSTREAMS=true to allow it".into());
    }
    Ok(())
}

/// Host names that always mean this machine, its network or a metadata endpoint.
pub fn is_private_hostname(host: &str) -> bool {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    h == "localhost"
        || h.ends_with(".localhost")
        || h.ends_with(".local")
        || h.ends_with(".internal")
        || h == "metadata"
        || h.parse::<IpAddr>().is_ok_and(is_private_ip)
}

/// Checks a submitted limits object (docs/behaviour.md, "Limits and budgets") and returns
/// its stored form; `None` is the empty object. Problems are added under `limits.…`.
pub fn limits(
    problems: &mut Problems,
    submitted: Option<&serde_json::Map<String, serde_json::Value>>,
    scope: crate::vocab::LimitScope,
) -> serde_json::Value {
    let value = serde_json::Value::Object(submitted.cloned().unwrap_or_default());
    match crate::vocab::Limits::parse(&value, "limits", scope) {
        Ok(limits) => limits.to_value(),
        Err(found) => {
            for (field, message) in found {
                problems.add(field, message);
            }
            value
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "acme", "openai-prod", "a.b_c-d", "0x", &"a".repeat(63)] {
            assert!(name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "A",
            "acme corp",
            "ünï",
            "a/b",
            &"a".repeat(64),
            "a\u{0}",
        ] {
            assert!(name(bad).is_err(), "{bad}");
        }
        assert!(object_name("0191e5a0-0000-7000-8000-000000000000").is_err());
    }

    #[test]
    fn upstream_urls() {
        assert!(upstream_url("https://api.openai.com/v1/chat/completions", false).is_ok());
        for bad in [
            "ftp://x.com",
            "https://user:pw@api.x.com",
            "http://127.0.0.1:8080",
            "http://localhost/x",
            "http://169.254.169.254/latest",
            "http://10.1.2.3",
            "http://192.168.0.1",
            "http://[::1]:80",
            "http://[fe80::1]",
            "http://[::ffff:127.0.0.1]",
            "http://metadata.google.internal",
            "not a url",
        ] {
            assert!(upstream_url(bad, false).is_err(), "{bad}");
        }
        assert!(upstream_url("http://127.0.0.1:11434/api/chat", true).is_ok());
        assert!(upstream_url("http://u:p@127.0.0.1", true).is_err());
    }

    #[test]
    fn route_paths() {
        assert!(route_path("/openai/chat").is_ok());
        assert!(route_path("/v").is_ok());
        assert!(route_path("/v1/chat/completions-legacy").is_ok());
        for bad in [
            "openai",
            "/a b",
            "/a?b",
            "/a//b",
            "/a/../b",
            "/v1",
            "/",
            "/v1/chat/completions/x",
        ] {
            assert!(route_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn headers() {
        assert!(header_name("Authorization").is_ok());
        assert!(header_name("x-api-key").is_ok());
        assert!(header_name("bad header").is_err());
        assert!(header_name("Host").is_err());
        assert!(header_value("Bearer sk-1").is_ok());
        assert!(header_value("a\r\nX-Evil: 1").is_err());
    }
}

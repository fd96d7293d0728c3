//! Where an OpenAI-compatible request goes: default URLs and Azure's deployment URLs.

use crate::providers::shared::required_upstream_url;
use crate::providers::{Dialect, RequestError, RouteKind, TranslateContext};
use crate::vocab::DEFAULT_AZURE_API_VERSION;

const OPENAI_CHAT_URL: &str = "https://api.openai.com:443/v1/chat/completions";
const OPENAI_COMPLETIONS_URL: &str = "https://api.openai.com:443/v1/completions";
const MISTRAL_CHAT_URL: &str = "https://api.mistral.ai:443/v1/chat/completions";
const OPENAI_EMBEDDINGS_URL: &str = "https://api.openai.com:443/v1/embeddings";
const MISTRAL_EMBEDDINGS_URL: &str = "https://api.mistral.ai:443/v1/embeddings";

/// The URL of a request in `dialect`: the service's `upstream_url` where it has one, else
/// the provider's public endpoint; self-hosted servers and Mistral's completions routes
/// (api.mistral.ai has no completions endpoint) need an `upstream_url`.
pub(super) fn url(
    dialect: Dialect,
    ctx: &TranslateContext<'_>,
    kind: RouteKind,
) -> Result<String, RequestError> {
    match dialect {
        Dialect::OpenAi => Ok(match (ctx.upstream_url, kind) {
            (Some(url), _) => url.to_string(),
            (None, RouteKind::Chat) => OPENAI_CHAT_URL.to_string(),
            (None, RouteKind::Completions) => OPENAI_COMPLETIONS_URL.to_string(),
        }),
        Dialect::Azure => azure_url(
            ctx,
            match kind {
                RouteKind::Chat => "chat/completions",
                RouteKind::Completions => "completions",
            },
        ),
        Dialect::Mistral => match kind {
            RouteKind::Chat => Ok(ctx.upstream_url.unwrap_or(MISTRAL_CHAT_URL).to_string()),
            RouteKind::Completions => required_upstream_url(ctx, "mistral completions routes"),
        },
        Dialect::SelfHosted => required_upstream_url(ctx, "llama2 services"),
    }
}

/// The URL of an embeddings request in `dialect` (docs/wire-formats.md, "Embeddings").
pub(super) fn embeddings_url(
    dialect: Dialect,
    ctx: &TranslateContext<'_>,
) -> Result<String, RequestError> {
    match dialect {
        Dialect::OpenAi => Ok(ctx
            .upstream_url
            .unwrap_or(OPENAI_EMBEDDINGS_URL)
            .to_string()),
        Dialect::Azure => azure_url(ctx, "embeddings"),
        Dialect::Mistral => Ok(ctx
            .upstream_url
            .unwrap_or(MISTRAL_EMBEDDINGS_URL)
            .to_string()),
        Dialect::SelfHosted => required_upstream_url(ctx, "llama2 services"),
    }
}

/// The Azure deployment URL of `operation`, or the service's `upstream_url`; `api-version`
/// is added to both (docs/wire-formats.md, "Azure OpenAI") unless the URL already carries
/// one.
fn azure_url(ctx: &TranslateContext<'_>, operation: &str) -> Result<String, RequestError> {
    let version = ctx
        .options
        .azure_api_version
        .as_deref()
        .filter(|v| !v.is_empty())
        .unwrap_or(DEFAULT_AZURE_API_VERSION);
    let base = match ctx.upstream_url {
        Some(url) => url.to_string(),
        None => {
            let missing = |field: &str| RequestError {
                param: None,
                message: format!("the azure service has no options.{field}"),
            };
            let instance = ctx
                .options
                .azure_instance
                .as_deref()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| missing("azure_instance"))?;
            let deployment = ctx
                .options
                .azure_deployment_id
                .as_deref()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| missing("azure_deployment_id"))?;
            format!(
                "https://{}.openai.azure.com:443/openai/deployments/{}/{operation}",
                encode_component(instance),
                encode_component(deployment)
            )
        }
    };
    Ok(with_query_param(&base, "api-version", version))
}

/// Whether the Azure URL's API accepts `stream_options` (docs/wire-formats.md, "Azure OpenAI"):
/// the v1 API, previews from 2024-08-01, GA versions from 2024-10-21. Older versions answer
/// 400 "Unrecognized request argument supplied: stream_options"; an unknown version is
/// treated as old, since a stream without usage is better than a refused request.
pub(super) fn azure_has_stream_options(url: &str) -> bool {
    azure_version_from(url, "2024-08-01", "2024-10-21")
}

/// Whether the Azure URL's API surely takes `encoding_format` on embeddings: previews from
/// 2024-03-01, GA versions from 2024-06-01, and the v1 API. With an older (or unknown)
/// version the field is not sent and the gateway encodes the floats itself, which costs
/// only a larger upstream answer.
pub(super) fn azure_has_encoding_format(url: &str) -> bool {
    azure_version_from(url, "2024-03-01", "2024-06-01")
}

/// Whether the Azure URL's API is the v1 API, or a dated version no older than `preview`
/// (for `-preview` versions) or `ga`.
fn azure_version_from(url: &str, preview: &str, ga: &str) -> bool {
    let without_fragment = url.split('#').next().unwrap_or(url);
    let (path, query) = without_fragment
        .split_once('?')
        .unwrap_or((without_fragment, ""));
    if path.contains("/openai/v1/") {
        return true;
    }
    let Some(version) = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("api-version="))
    else {
        return false;
    };
    let is_date = |d: &str| {
        d.len() == 10
            && d.bytes().enumerate().all(|(i, b)| match i {
                4 | 7 => b == b'-',
                _ => b.is_ascii_digit(),
            })
    };
    match version {
        "v1" | "latest" | "preview" => true,
        _ => match version.strip_suffix("-preview") {
            // Dates in this format compare correctly as strings.
            Some(date) => is_date(date) && date >= preview,
            None => is_date(version) && version >= ga,
        },
    }
}

/// Appends `key=value` to a URL's query unless the key is already there (the configured
/// URL is kept exactly as written otherwise).
pub(super) fn with_query_param(url: &str, key: &str, value: &str) -> String {
    let (before_fragment, fragment) = match url.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (url, None),
    };
    let has_key = before_fragment
        .split_once('?')
        .is_some_and(|(_, q)| q.split('&').any(|pair| pair.split('=').next() == Some(key)));
    let mut out = before_fragment.to_string();
    if !has_key {
        let sep = match before_fragment.split_once('?') {
            None => "?",
            Some((_, q)) if q.is_empty() || q.ends_with('&') => "",
            Some(_) => "&",
        };
        out.push_str(sep);
        out.push_str(&encode_component(key));
        out.push('=');
        out.push_str(&encode_component(value));
    }
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

/// Percent-encodes everything but RFC 3986 unreserved characters (options are validated
/// at write time; this keeps a URL well-formed whatever they hold).
fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

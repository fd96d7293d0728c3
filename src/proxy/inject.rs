//! Credential injection with Kong's `allow_override` (docs/behaviour.md, "Request order",
//! step 8): the service's credential is set as a header, query parameter or body field;
//! with `allow_override` a value the client sent itself is kept instead. The gateway key is
//! never forwarded. A call the gateway makes on its own (a transformer policy's instruction
//! LLM) has no client, so nothing overrides the credential there.

use actix_web::HttpRequest;
use serde_json::Value;

use crate::error::Error;
use crate::providers::UpstreamRequest;
use crate::snapshot::CredentialEntry;

use super::auth::KeyHeader;

pub fn inject(
    credential: &CredentialEntry,
    client: Option<(&HttpRequest, KeyHeader)>,
    upstream: &mut UpstreamRequest,
) -> Result<(), Error> {
    if let (Some(name), Some(value)) = (&credential.header_name, &credential.header_value) {
        let client_value = client
            .filter(|(_, key_header)| {
                credential.allow_override && !name.eq_ignore_ascii_case(key_header.name())
            })
            .and_then(|(client, _)| client.headers().get(name.as_str()))
            .and_then(|v| v.to_str().ok());
        let value = client_value.unwrap_or(value.expose()).to_string();
        upstream
            .headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        upstream.headers.push((name.clone(), value));
    }
    let (Some(name), Some(value), Some(location)) = (
        &credential.param_name,
        &credential.param_value,
        &credential.param_location,
    ) else {
        return Ok(());
    };
    match location.as_str() {
        "query" => {
            let client_value =
                client
                    .filter(|_| credential.allow_override)
                    .and_then(|(client, _)| {
                        url::form_urlencoded::parse(client.query_string().as_bytes())
                            .find(|(k, _)| k == name.as_str())
                            .map(|(_, v)| v.into_owned())
                    });
            let mut url = url::Url::parse(&upstream.url)
                .map_err(|e| Error::internal(format!("invalid upstream URL: {e}")))?;
            let kept: Vec<(String, String)> = url
                .query_pairs()
                .filter(|(k, _)| k != name.as_str())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            url.query_pairs_mut()
                .clear()
                .extend_pairs(kept)
                .append_pair(name, client_value.as_deref().unwrap_or(value.expose()));
            upstream.url = url.to_string();
        }
        "body" => {
            let mut body: serde_json::Map<String, Value> = serde_json::from_slice(&upstream.body)
                .map_err(|_| {
                Error::bad_request("a body credential needs a JSON object body")
            })?;
            let keep_client = client.is_some() && credential.allow_override;
            if !(keep_client && body.contains_key(name.as_str())) {
                body.insert(name.clone(), Value::String(value.expose().clone()));
            }
            upstream.body = serde_json::to_vec(&body)
                .map_err(|e| Error::internal(format!("cannot serialise the upstream body: {e}")))?;
        }
        _ => {}
    }
    Ok(())
}

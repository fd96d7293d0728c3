//! What of a request may be logged (docs/architecture.md, "The analytics line"): the
//! upstream body with its body credential masked by name (whatever value it carries, the
//! client's own with `allow_override` included) and every stored credential value masked
//! wherever else it appears; model names capped in length.

use std::borrow::Cow;

use serde_json::Value;

use crate::crypto::MASK;
use crate::crypto::redact::Redactor;
use crate::snapshot::CredentialEntry;

/// Longest model name written to usage rows, analytics lines, metrics, spans and headers.
/// A client may choose the model on a route that configures none; the upstream still gets
/// the name it sent, the records get its first characters and `...` (ASCII, so the capped
/// name is also a valid header value).
pub const MAX_MODEL_NAME: usize = 128;

/// `model` cut to at most `MAX_MODEL_NAME` bytes (at a character boundary, ending in `...`).
pub fn cap_model_name(model: &str) -> Cow<'_, str> {
    if model.len() <= MAX_MODEL_NAME {
        return Cow::Borrowed(model);
    }
    let room = MAX_MODEL_NAME - 3;
    let end = (0..=room)
        .rev()
        .find(|&i| model.is_char_boundary(i))
        .unwrap_or(0);
    Cow::Owned(format!("{}...", &model[..end]))
}

/// The upstream request body as the analytics line may show it.
pub fn logged_request(credential: Option<&CredentialEntry>, body: &[u8]) -> Vec<u8> {
    let mut body = Cow::Borrowed(body);
    if let Some(c) = credential
        && c.param_location.as_deref() == Some("body")
        && let Some(name) = &c.param_name
        && let Ok(Value::Object(mut map)) = serde_json::from_slice::<Value>(&body)
        && let Some(v) = map.get_mut(name.as_str())
    {
        *v = Value::String(MASK.into());
        if let Ok(masked) = serde_json::to_vec(&map) {
            body = Cow::Owned(masked);
        }
    }
    Redactor::for_credential(credential)
        .redact_bytes(&body)
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Secret;

    #[test]
    fn long_model_names_are_capped_at_a_char_boundary() {
        assert_eq!(cap_model_name("gpt-4o"), "gpt-4o");
        let exact = "m".repeat(MAX_MODEL_NAME);
        assert_eq!(cap_model_name(&exact), exact);
        let long = "é".repeat(5000);
        let capped = cap_model_name(&long);
        assert!(capped.len() <= MAX_MODEL_NAME, "{}", capped.len());
        assert!(capped.ends_with("..."));
        assert!(capped.starts_with("éé"));
    }

    #[test]
    fn a_body_credential_is_masked_by_name_and_value() {
        let credential = CredentialEntry {
            id: uuid::Uuid::nil(),
            name: "c".into(),
            header_name: None,
            header_value: None,
            param_name: Some("api_key".into()),
            param_value: Some(Secret::new("stored-body-secret-0123456789".into())),
            param_location: Some("body".into()),
            allow_override: true,
        };
        // The client's own value (allow_override) is masked by the field's name; the stored
        // value elsewhere in the body by its value.
        let body = br#"{"api_key":"client-own-value-xyz","messages":[{"role":"user","content":"stored-body-secret-0123456789"}]}"#;
        let out = String::from_utf8(logged_request(Some(&credential), body)).unwrap();
        assert!(!out.contains("client-own-value-xyz"), "{out}");
        assert!(!out.contains("stored-body-secret"), "{out}");
        assert!(out.contains(r#""api_key":"********""#), "{out}");
        assert!(out.contains("messages"), "{out}");
        assert_eq!(logged_request(None, body), body.to_vec());
    }
}

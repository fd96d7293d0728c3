//! The read stage: the client's body, bounded and checked before anything looks inside it
//! (docs/behaviour.md, "Request order", step 3).

use actix_web::{HttpRequest, web};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Map, Value};

use crate::error::Error;

/// The client's body as read, and parsed as soon as a stage needs its fields, once.
pub struct Body {
    pub raw: Bytes,
    pub parsed: Option<Map<String, Value>>,
}

impl Body {
    /// The body as a JSON object, parsed on first use.
    pub fn object(&mut self) -> Result<&mut Map<String, Value>, Error> {
        let parsed = match self.parsed.take() {
            Some(map) => map,
            None => parse_object(&self.raw)?,
        };
        Ok(self.parsed.insert(parsed))
    }

    /// A policy replaced or changed the parsed body: the raw bytes follow it (a `preserve`
    /// route forwards them).
    pub fn changed(&mut self) {
        if let Some(parsed) = &self.parsed
            && let Ok(raw) = serde_json::to_vec(parsed)
        {
            self.raw = Bytes::from(raw);
        }
    }
}

/// Reads the body: 413 past `limit` (declared length first, then while reading, so a
/// chunked body cannot get around it), 415 for a non-JSON content type.
pub async fn body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Body, Error> {
    let declared = req
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    if let Some(ct) = req.headers().get("content-type") {
        let mime = ct
            .to_str()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if mime != "application/json" {
            return Err(Error::unsupported_media_type(format!(
                "Content-Type must be application/json, got '{mime}'"
            )));
        }
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| Error::bad_request(format!("cannot read request body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Body {
        raw: body.freeze(),
        parsed: None,
    })
}

/// 413 naming the limit.
pub fn too_large(limit: usize) -> Error {
    Error::payload_too_large(limit).with_openai_code("request_too_large")
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, Error> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Error::bad_request("request body must be a JSON object")),
        Err(_) => Err(Error::bad_request("request body is not valid JSON")),
    }
}

//! The read stage: the client's body, bounded and checked before anything looks inside it
//! (docs/behaviour.md, "Request order", step 3).

use actix_web::{HttpRequest, web};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Map, Value};

use crate::error::Error;

/// The client's body as read, and parsed as soon as a stage needs its fields, once.
pub struct Body {
    raw: Bytes,
    pub parsed: Option<Map<String, Value>>,
    /// A policy changed `parsed` and `raw` is not rebuilt yet: it is when a stage next
    /// reads it (most routes never do, the translator writes `parsed`).
    stale: bool,
}

impl Body {
    pub fn new(raw: Bytes) -> Body {
        Body {
            raw,
            parsed: None,
            stale: false,
        }
    }

    /// The body's bytes, following the parsed body if a policy changed it.
    pub fn raw(&mut self) -> &Bytes {
        if self.stale {
            self.stale = false;
            if let Some(parsed) = &self.parsed
                && let Ok(raw) = serde_json::to_vec(parsed)
            {
                self.raw = Bytes::from(raw);
            }
        }
        &self.raw
    }

    /// The body as received, before any policy changed it (only the resolve stage, which
    /// runs before the policies, reads this).
    pub fn received(&self) -> &Bytes {
        &self.raw
    }

    /// A policy replaced the whole body: later stages parse the new bytes.
    pub fn replace(&mut self, raw: Bytes) {
        self.raw = raw;
        self.parsed = None;
        self.stale = false;
    }

    /// The body as a JSON object, parsed on first use.
    pub fn object(&mut self) -> Result<&mut Map<String, Value>, Error> {
        let parsed = match self.parsed.take() {
            Some(map) => map,
            None => parse_object(&self.raw)?,
        };
        Ok(self.parsed.insert(parsed))
    }

    /// A policy changed the parsed body: the raw bytes follow it when next read (a
    /// `preserve` route forwards them, a transformer sends them to its LLM).
    pub fn changed(&mut self) {
        self.stale = self.parsed.is_some();
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
    Ok(Body::new(body.freeze()))
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

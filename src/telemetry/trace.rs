//! W3C trace context (`traceparent`) for the proxy: the request continues the client's
//! trace when it sends a valid `traceparent`, else starts one; the upstream call gets a
//! `traceparent` naming the upstream span. Ids are chosen here, at the start of the
//! request, so the upstream header can carry them; the spans themselves are built later,
//! off the request path, from the usage event (see `telemetry::otel`).

use actix_web::http::header::HeaderMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    /// The client's span, when the client sent a `traceparent`.
    pub parent_span_id: Option<[u8; 8]>,
    /// The gateway's span for the whole request.
    pub request_span_id: [u8; 8],
    /// The child span for the upstream call.
    pub upstream_span_id: [u8; 8],
    /// The client's sampled flag (a new trace is sampled).
    pub sampled: bool,
}

fn random_nonzero<const N: usize>() -> [u8; N] {
    loop {
        let bytes: [u8; N] = rand::random();
        if bytes.iter().any(|&b| b != 0) {
            return bytes;
        }
    }
}

fn hex_to<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N * 2
        || !s
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    out.iter().any(|&b| b != 0).then_some(out)
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Lower-case hex by table, not a formatter call per byte: every request's upstream
/// `traceparent` is written with it.
fn push_hex(out: &mut String, bytes: &[u8]) {
    for &b in bytes {
        out.push(char::from(HEX_DIGITS[usize::from(b >> 4)]));
        out.push(char::from(HEX_DIGITS[usize::from(b & 0x0f)]));
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    push_hex(&mut s, bytes);
    s
}

/// Parses a W3C `traceparent` (version 00, or a later version read as 00 would be).
pub fn parse_traceparent(value: &str) -> Option<([u8; 16], [u8; 8], bool)> {
    let mut parts = value.trim().split('-');
    let version = parts.next()?;
    let trace = parts.next()?;
    let span = parts.next()?;
    let flags = parts.next()?;
    if version.len() != 2 || version == "ff" || !version.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    if version == "00" && parts.next().is_some() {
        return None;
    }
    if flags.len() != 2
        || !flags
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some((hex_to(trace)?, hex_to(span)?, flags & 1 == 1))
}

impl TraceContext {
    /// A context for a call the gateway makes on the request's behalf (a transformer
    /// policy's instruction call): same trace, its spans under the request's span, with
    /// ids of their own.
    pub fn child(&self) -> TraceContext {
        TraceContext {
            trace_id: self.trace_id,
            parent_span_id: Some(self.request_span_id),
            request_span_id: random_nonzero(),
            upstream_span_id: random_nonzero(),
            sampled: self.sampled,
        }
    }

    pub fn from_headers(headers: &HeaderMap) -> TraceContext {
        let incoming = headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_traceparent);
        match incoming {
            Some((trace_id, parent, sampled)) => TraceContext {
                trace_id,
                parent_span_id: Some(parent),
                request_span_id: random_nonzero(),
                upstream_span_id: random_nonzero(),
                sampled,
            },
            None => TraceContext {
                trace_id: random_nonzero(),
                parent_span_id: None,
                request_span_id: random_nonzero(),
                upstream_span_id: random_nonzero(),
                sampled: true,
            },
        }
    }

    /// The header value for the upstream request: this trace, the upstream span.
    pub fn upstream_traceparent(&self) -> String {
        let mut s = String::with_capacity(55);
        s.push_str("00-");
        push_hex(&mut s, &self.trace_id);
        s.push('-');
        push_hex(&mut s, &self.upstream_span_id);
        s.push_str(if self.sampled { "-01" } else { "-00" });
        s
    }

    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_context_is_under_the_request_span() {
        let request = TraceContext::from_headers(&HeaderMap::new());
        let child = request.child();
        assert_eq!(child.trace_id, request.trace_id);
        assert_eq!(child.parent_span_id, Some(request.request_span_id));
        assert_ne!(child.request_span_id, request.request_span_id);
        assert_ne!(child.upstream_span_id, request.upstream_span_id);
        assert_eq!(child.sampled, request.sampled);
    }

    #[test]
    fn a_valid_traceparent_is_continued() {
        let (trace, span, sampled) =
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
                .expect("valid");
        assert_eq!(hex(&trace), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex(&span), "00f067aa0ba902b7");
        assert!(sampled);
        let (_, _, sampled) =
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
                .expect("valid, not sampled");
        assert!(!sampled);
    }

    #[test]
    fn invalid_traceparents_start_a_new_trace() {
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn the_upstream_header_names_the_upstream_span_of_the_same_trace() {
        let mut headers = HeaderMap::new();
        headers.insert(
            actix_web::http::header::HeaderName::from_static("traceparent"),
            actix_web::http::header::HeaderValue::from_static(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        );
        let ctx = TraceContext::from_headers(&headers);
        let up = ctx.upstream_traceparent();
        assert!(
            up.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{up}"
        );
        assert!(up.ends_with("-01"));
        let (_, span, _) = parse_traceparent(&up).expect("round trip");
        assert_eq!(span, ctx.upstream_span_id);
        assert_ne!(ctx.upstream_span_id, ctx.request_span_id);
        let fresh = TraceContext::from_headers(&HeaderMap::new());
        assert!(fresh.parent_span_id.is_none() && fresh.sampled);
    }
}

//! The OpenAI-format side of streaming: framing (SSE, NDJSON), the chunk emitter, and the
//! driver that feeds upstream bytes through a provider's stream transcoder.
//!
//! A provider's `StreamTranscoder` (in `src/providers/<provider>.rs`) is pure: it turns
//! upstream bytes, split anywhere, into calls on the `ChunkEmitter`. `Transcode` wraps one
//! transcoder and one emitter for one response and turns failures into the in-band error
//! frame of docs/behaviour.md, "Streaming rules"; the proxy feeds it what the upstream actor reads.

pub mod chunks;
pub mod framing;
pub mod tokens;

pub use chunks::{ChunkEmitter, ReportedUsage, StreamEnd, StreamMeta};
pub use framing::{FramingError, LineBuffer, NdjsonDecoder, SseDecoder, SseEvent};

use serde_json::Value;

/// Why a stream could not be transcoded further.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Framing(#[from] FramingError),
    /// An event that is not what the provider's format says (e.g. invalid JSON).
    #[error("{0}")]
    Invalid(String),
}

/// An upstream error normalised into the OpenAI error shape: a translator's reading of a
/// non-2xx body, or a stream's in-band error frame (docs/architecture.md, "Streaming").
#[derive(Debug, Clone, PartialEq)]
pub struct OpenAiErrorBody {
    pub message: String,
    /// The provider's error type, or `upstream_error` when it gives none.
    pub kind: String,
    pub code: Option<Value>,
    pub param: Option<Value>,
}

impl OpenAiErrorBody {
    pub fn to_openai(&self) -> Value {
        serde_json::json!({"error": {
            "message": self.message, "type": self.kind,
            "param": self.param.clone().unwrap_or(Value::Null),
            "code": self.code.clone().unwrap_or(Value::Null),
        }})
    }
}

/// One provider's stream format, for one response.
pub trait StreamTranscoder: Send {
    /// Upstream bytes as they arrive (any split). In-band provider errors are reported with
    /// `out.error(…)`, the provider's end of stream with `out.done()`.
    fn feed(&mut self, bytes: &[u8], out: &mut ChunkEmitter) -> Result<(), StreamError>;

    /// The upstream closed the connection (after or without its own end marker): flush a
    /// final unterminated frame.
    fn finish(&mut self, out: &mut ChunkEmitter) -> Result<(), StreamError>;
}

/// A transcoder and its emitter: upstream bytes in, OpenAI SSE bytes out.
pub struct Transcode {
    transcoder: Box<dyn StreamTranscoder>,
    emitter: ChunkEmitter,
    provider: &'static str,
}

impl Transcode {
    pub fn new(
        transcoder: Box<dyn StreamTranscoder>,
        meta: StreamMeta,
        provider: &'static str,
    ) -> Transcode {
        Transcode {
            transcoder,
            emitter: ChunkEmitter::new(meta),
            provider,
        }
    }

    /// The prompt's size estimate, reported only if the provider reports no prompt count.
    pub fn with_prompt_estimate(mut self, estimate: tokens::PromptEstimate) -> Transcode {
        self.emitter.set_prompt_estimate(estimate);
        self
    }

    /// Masks the service's credential values in in-band error frames.
    pub fn with_redactor(mut self, redactor: crate::crypto::redact::LazyRedactor) -> Transcode {
        self.emitter.set_redactor(redactor);
        self
    }

    /// Feeds upstream bytes; returns the OpenAI bytes to send now (possibly empty).
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<u8> {
        if self.emitter.end() == StreamEnd::Open
            && let Err(e) = self.transcoder.feed(bytes, &mut self.emitter)
        {
            self.fail_with(e);
        }
        self.emitter.take()
    }

    /// The upstream closed the stream cleanly. A stream that ended without the provider's
    /// end marker still ends well when the finish reason was seen (some OpenAI-compatible
    /// servers omit `[DONE]`); otherwise it was cut short and the client is told so.
    pub fn upstream_closed(&mut self) -> Vec<u8> {
        if self.emitter.end() == StreamEnd::Open {
            if let Err(e) = self.transcoder.finish(&mut self.emitter) {
                self.fail_with(e);
            }
            if self.emitter.end() == StreamEnd::Open {
                if self.emitter.finish_sent() {
                    self.emitter.done();
                } else {
                    self.emitter.error(&OpenAiErrorBody {
                        message: "the upstream closed the stream before it was complete".into(),
                        kind: "upstream_error".into(),
                        code: None,
                        param: None,
                    });
                }
            }
        }
        self.emitter.take()
    }

    /// The upstream failed (reset, idle timeout): the in-band error frame.
    pub fn upstream_failed(&mut self, message: &str, code: &str) -> Vec<u8> {
        self.emitter.error(&OpenAiErrorBody {
            message: message.to_string(),
            kind: "upstream_error".into(),
            code: Some(code.into()),
            param: None,
        });
        self.emitter.take()
    }

    /// The gateway ends the stream (a graceful stop's drain time ran out): the in-band
    /// error frame, with the gateway's own error type rather than the upstream's.
    pub fn gateway_failed(&mut self, message: &str, kind: &str, code: &str) -> Vec<u8> {
        self.emitter.error(&OpenAiErrorBody {
            message: message.to_string(),
            kind: kind.into(),
            code: Some(code.into()),
            param: None,
        });
        self.emitter.take()
    }

    pub fn emitter(&self) -> &ChunkEmitter {
        &self.emitter
    }

    pub fn is_ended(&self) -> bool {
        self.emitter.end() != StreamEnd::Open
    }

    fn fail_with(&mut self, e: StreamError) {
        self.emitter.error(&OpenAiErrorBody {
            message: format!("transformation failed from type {}: {e}", self.provider),
            kind: "upstream_error".into(),
            code: Some("stream_transformation_failed".into()),
            param: None,
        });
    }
}

/// The `data:` payloads of the gateway's SSE output, parsed (`[DONE]` as the JSON string
/// "[DONE]"). Every frame must be `data: …` followed by a blank line: the tests check the
/// framing too.
#[cfg(test)]
pub fn sse_payloads(bytes: &[u8]) -> Vec<serde_json::Value> {
    let text = std::str::from_utf8(bytes).expect("utf-8");
    assert!(
        text.is_empty() || text.ends_with("\n\n"),
        "unterminated frame: {text}"
    );
    text.split_terminator("\n\n")
        .map(|frame| {
            let data = frame.strip_prefix("data: ").expect("a data frame");
            if data == "[DONE]" {
                serde_json::Value::String("[DONE]".into())
            } else {
                serde_json::from_str(data).expect("a JSON frame")
            }
        })
        .collect()
}

/// Feeds `input` to a fresh transcoder in the given pieces and returns everything the
/// client would receive, the end included: the harness for the split-at-every-byte tests.
#[cfg(test)]
pub fn transcode_in_pieces(
    transcoder: Box<dyn StreamTranscoder>,
    meta: StreamMeta,
    input: &[u8],
    cuts: &[usize],
) -> Vec<u8> {
    let mut t = Transcode::new(transcoder, meta, "test");
    let mut out = Vec::new();
    let mut start = 0;
    for &at in cuts.iter().chain(std::iter::once(&input.len())) {
        out.extend(t.feed(&input[start..at]));
        start = at;
    }
    out.extend(t.upstream_closed());
    out
}

/// Asserts that every split of `input` into two pieces, a split into single bytes, and a
/// few pseudo-random chunkings all give byte-identical output; returns that output.
#[cfg(test)]
pub fn assert_split_invariant(
    make: impl Fn() -> Box<dyn StreamTranscoder>,
    meta: &StreamMeta,
    input: &[u8],
) -> Vec<u8> {
    let whole = transcode_in_pieces(make(), meta.clone(), input, &[]);
    for at in 0..=input.len() {
        let got = transcode_in_pieces(make(), meta.clone(), input, &[at]);
        assert!(
            got == whole,
            "split at byte {at} changed the output:\n{}\nvs\n{}",
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&whole)
        );
    }
    let every: Vec<usize> = (1..input.len()).collect();
    assert!(
        transcode_in_pieces(make(), meta.clone(), input, &every) == whole,
        "byte-by-byte feeding changed the output"
    );
    // A small deterministic LCG: reproducible "random" chunkings without a dependency.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..20 {
        let mut cuts = Vec::new();
        let mut at = 0usize;
        loop {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            at += 1 + (seed >> 33) as usize % 64;
            if at >= input.len() {
                break;
            }
            cuts.push(at);
        }
        assert!(
            transcode_in_pieces(make(), meta.clone(), input, &cuts) == whole,
            "chunking {cuts:?} changed the output"
        );
    }
    whole
}

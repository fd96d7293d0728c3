//! Incremental stream framing: server-sent events and newline-delimited JSON.
//!
//! Upstream bytes arrive in arbitrary pieces (a frame can be split anywhere, even inside a
//! UTF-8 sequence or between `\r` and `\n`). These decoders buffer only the current,
//! incomplete line, so memory is bounded by `max_line` whatever the upstream sends: a line
//! that never ends is an error, not an ever-growing buffer.

/// Longest line (and longest SSE event) accepted from an upstream stream.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("upstream stream frame is longer than {0} bytes")]
    TooLong(usize),
    #[error("upstream stream frame is not valid UTF-8")]
    NotUtf8,
}

/// Splits bytes into lines (`\n`, `\r\n`; a trailing `\r` is removed), keeping the partial
/// last line for the next call.
#[derive(Debug)]
pub struct LineBuffer {
    partial: Vec<u8>,
    max_line: usize,
}

impl LineBuffer {
    pub fn new(max_line: usize) -> LineBuffer {
        LineBuffer {
            partial: Vec::new(),
            max_line,
        }
    }

    /// Calls `on_line` for every line completed by `bytes` (without its line ending).
    pub fn feed<E: From<FramingError>>(
        &mut self,
        mut bytes: &[u8],
        mut on_line: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        while let Some(at) = bytes.iter().position(|&b| b == b'\n') {
            let (head, rest) = bytes.split_at(at);
            bytes = &rest[1..];
            if self.partial.is_empty() {
                self.check(head.len())?;
                on_line(trim_cr(head))?;
            } else {
                self.check(self.partial.len() + head.len())?;
                self.partial.extend_from_slice(head);
                let line = std::mem::take(&mut self.partial);
                on_line(trim_cr(&line))?;
                // Reuse the allocation for the next partial line.
                self.partial = line;
                self.partial.clear();
            }
        }
        if !bytes.is_empty() {
            self.check(self.partial.len() + bytes.len())?;
            self.partial.extend_from_slice(bytes);
        }
        Ok(())
    }

    /// The unterminated last line at the end of the stream, if any.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        let rest = std::mem::take(&mut self.partial);
        let trimmed = trim_cr(&rest);
        (!trimmed.is_empty()).then(|| trimmed.to_vec())
    }

    fn check(&self, len: usize) -> Result<(), FramingError> {
        if len > self.max_line {
            Err(FramingError::TooLong(self.max_line))
        } else {
            Ok(())
        }
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// One server-sent event: its `event:` name (if any) and its `data:` lines joined by `\n`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

/// An incremental SSE parser (WHATWG rules: fields `event`/`data`, one optional space after
/// the colon, comments start with `:`, an empty line dispatches the event).
#[derive(Debug)]
pub struct SseDecoder {
    lines: LineBuffer,
    current: SseEvent,
    has_data: bool,
}

impl Default for SseDecoder {
    fn default() -> Self {
        SseDecoder::new(MAX_LINE_BYTES)
    }
}

impl SseDecoder {
    pub fn new(max_line: usize) -> SseDecoder {
        SseDecoder {
            lines: LineBuffer::new(max_line),
            current: SseEvent::default(),
            has_data: false,
        }
    }

    /// Calls `on_event` for every event completed by `bytes`.
    pub fn feed<E: From<FramingError>>(
        &mut self,
        bytes: &[u8],
        mut on_event: impl FnMut(SseEvent) -> Result<(), E>,
    ) -> Result<(), E> {
        let max = self.lines.max_line;
        let current = &mut self.current;
        let has_data = &mut self.has_data;
        self.lines.feed(bytes, |line: &[u8]| -> Result<(), E> {
            if line.is_empty() {
                if *has_data || current.event.is_some() {
                    *has_data = false;
                    on_event(std::mem::take(current))?;
                }
                return Ok(());
            }
            let line = std::str::from_utf8(line).map_err(|_| FramingError::NotUtf8)?;
            if line.starts_with(':') {
                return Ok(());
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line, ""),
            };
            match field {
                "event" => current.event = Some(value.to_string()),
                "data" => {
                    if *has_data {
                        current.data.push('\n');
                    }
                    if current.data.len() + value.len() > max {
                        return Err(FramingError::TooLong(max).into());
                    }
                    current.data.push_str(value);
                    *has_data = true;
                }
                // `id`, `retry` and unknown fields carry nothing a translator needs.
                _ => {}
            }
            Ok(())
        })
    }

    /// The upstream closed the stream: an event without its final blank line still counts.
    pub fn finish<E: From<FramingError>>(
        &mut self,
        on_event: impl FnMut(SseEvent) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut on_event = on_event;
        if let Some(last) = self.lines.finish() {
            let mut tail = last;
            tail.extend_from_slice(b"\n\n");
            self.feed(&tail, &mut on_event)?;
        } else if self.has_data {
            self.has_data = false;
            on_event(std::mem::take(&mut self.current))?;
        }
        Ok(())
    }
}

/// Newline-delimited JSON (Cohere v1, Ollama): one non-empty line per event.
#[derive(Debug)]
pub struct NdjsonDecoder {
    lines: LineBuffer,
}

impl Default for NdjsonDecoder {
    fn default() -> Self {
        NdjsonDecoder {
            lines: LineBuffer::new(MAX_LINE_BYTES),
        }
    }
}

impl NdjsonDecoder {
    pub fn new(max_line: usize) -> NdjsonDecoder {
        NdjsonDecoder {
            lines: LineBuffer::new(max_line),
        }
    }

    /// Calls `on_line` for every complete, non-blank line.
    pub fn feed<E: From<FramingError>>(
        &mut self,
        bytes: &[u8],
        mut on_line: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        self.lines.feed(bytes, |line| {
            if line.iter().all(u8::is_ascii_whitespace) {
                Ok(())
            } else {
                on_line(line)
            }
        })
    }

    /// The last line, when the upstream closed without a final newline.
    pub fn finish<E: From<FramingError>>(
        &mut self,
        mut on_line: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        match self.lines.finish() {
            Some(line) if !line.iter().all(u8::is_ascii_whitespace) => on_line(&line),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sse_all(input: &[u8], split: &[usize]) -> Result<Vec<SseEvent>, FramingError> {
        let mut decoder = SseDecoder::default();
        let mut events = Vec::new();
        let mut start = 0;
        for &at in split.iter().chain(std::iter::once(&input.len())) {
            decoder.feed(&input[start..at], |e| {
                events.push(e);
                Ok::<_, FramingError>(())
            })?;
            start = at;
        }
        decoder.finish(|e| {
            events.push(e);
            Ok::<_, FramingError>(())
        })?;
        Ok(events)
    }

    #[test]
    fn sse_events_survive_every_split_point() {
        let input = "event: message_start\r\ndata: {\"a\":\"é\"}\r\n\r\n: comment\n\ndata: one\ndata: two\n\nevent: ping\n\ndata:[DONE]\n\n";
        let whole = sse_all(input.as_bytes(), &[]).expect("parses");
        assert_eq!(
            whole,
            vec![
                SseEvent {
                    event: Some("message_start".into()),
                    data: "{\"a\":\"é\"}".into()
                },
                SseEvent {
                    event: None,
                    data: "one\ntwo".into()
                },
                SseEvent {
                    event: Some("ping".into()),
                    data: String::new()
                },
                SseEvent {
                    event: None,
                    data: "[DONE]".into()
                },
            ]
        );
        for at in 0..=input.len() {
            assert_eq!(
                sse_all(input.as_bytes(), &[at]).expect("parses"),
                whole,
                "split at {at}"
            );
        }
        let every: Vec<usize> = (1..input.len()).collect();
        assert_eq!(sse_all(input.as_bytes(), &every).expect("parses"), whole);
    }

    #[test]
    fn sse_event_without_final_blank_line_is_dispatched_at_the_end() {
        let events = sse_all(b"data: {\"x\":1}", &[]).expect("parses");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data, "{\"x\":1}");
    }

    #[test]
    fn a_line_that_never_ends_is_an_error_not_unbounded_memory() {
        let mut decoder = SseDecoder::new(64);
        let chunk = [b'x'; 16];
        let mut result = Ok(());
        for _ in 0..10 {
            result = decoder.feed(&chunk, |_| Ok::<_, FramingError>(()));
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(FramingError::TooLong(64)));
        assert!(decoder.lines.partial.len() <= 64);
    }

    #[test]
    fn many_data_lines_cannot_grow_one_event_past_the_bound() {
        let mut decoder = SseDecoder::new(64);
        let mut result = Ok(());
        for _ in 0..10 {
            result = decoder.feed(b"data: 0123456789\n", |_| Ok::<_, FramingError>(()));
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(FramingError::TooLong(64)));
    }

    #[test]
    fn ndjson_lines_with_crlf_blank_lines_and_splits() {
        let input = b"{\"a\":1}\r\n\n{\"b\":2}\n{\"c\":3}";
        for at in 0..=input.len() {
            let mut decoder = NdjsonDecoder::default();
            let mut lines: Vec<Vec<u8>> = Vec::new();
            for part in [&input[..at], &input[at..]] {
                decoder
                    .feed(part, |l| {
                        lines.push(l.to_vec());
                        Ok::<_, FramingError>(())
                    })
                    .expect("feeds");
            }
            decoder
                .finish(|l| {
                    lines.push(l.to_vec());
                    Ok::<_, FramingError>(())
                })
                .expect("finishes");
            assert_eq!(
                lines,
                vec![
                    b"{\"a\":1}".to_vec(),
                    b"{\"b\":2}".to_vec(),
                    b"{\"c\":3}".to_vec()
                ],
                "split at {at}"
            );
        }
    }

    #[test]
    fn invalid_utf8_in_an_sse_line_is_an_error() {
        let mut decoder = SseDecoder::default();
        let r = decoder.feed(b"data: \xff\xfe\n\n", |_| Ok::<_, FramingError>(()));
        assert_eq!(r, Err(FramingError::NotUtf8));
    }
}

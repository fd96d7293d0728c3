//! One line of a spool segment: a `SpoolRecord` as JSON. Every request's record is written
//! once and read back once (docs/architecture.md, "The usage spool"), so both ways skip
//! serde's general machinery: the writer puts the fields down in their declared order, and
//! the reader takes exactly that shape on a fast path, handing anything else — a line of
//! another version, an escaped model name, a torn line — to serde, which decides.

use uuid::Uuid;
use uuid::fmt::Hyphenated;

use super::{Kind, SpoolRecord};

/// Appends `record` as one JSON object (no newline): the same text `serde_json` writes
/// for it.
pub(super) fn encode(out: &mut Vec<u8>, record: &SpoolRecord) -> serde_json::Result<()> {
    let mut int = itoa::Buffer::new();
    out.extend_from_slice(b"{\"id\":\"");
    push_uuid(out, record.id);
    out.extend_from_slice(match record.kind {
        Kind::Begin => b"\",\"kind\":\"begin\",\"at_ms\":",
        Kind::Done => b"\",\"kind\":\"done\",\"at_ms\":" as &[u8],
    });
    out.extend_from_slice(int.format(record.at_ms).as_bytes());
    out.extend_from_slice(b",\"tenant_id\":\"");
    push_uuid(out, record.tenant_id);
    out.extend_from_slice(b"\",\"key_id\":\"");
    push_uuid(out, record.key_id);
    out.extend_from_slice(b"\",\"route_id\":\"");
    push_uuid(out, record.route_id);
    out.extend_from_slice(b"\",\"model\":");
    serde_json::to_writer(&mut *out, &record.model)?;
    out.extend_from_slice(if record.error {
        b",\"error\":true,\"prompt_tokens\":"
    } else {
        b",\"error\":false,\"prompt_tokens\":" as &[u8]
    });
    out.extend_from_slice(int.format(record.prompt_tokens).as_bytes());
    out.extend_from_slice(b",\"completion_tokens\":");
    out.extend_from_slice(int.format(record.completion_tokens).as_bytes());
    // Floats as serde_json writes them (shortest form; `null` when not finite).
    out.extend_from_slice(b",\"cost\":");
    serde_json::to_writer(&mut *out, &record.cost)?;
    out.extend_from_slice(b",\"latency_ms\":");
    serde_json::to_writer(&mut *out, &record.latency_ms)?;
    // Written only when set, as serde skips them: a proxied request's line is the same as
    // before these fields existed.
    if let Some(source) = &record.source {
        out.extend_from_slice(b",\"source\":");
        serde_json::to_writer(&mut *out, source)?;
    }
    if record.rejected {
        out.extend_from_slice(b",\"rejected\":true");
    }
    out.push(b'}');
    Ok(())
}

fn push_uuid(out: &mut Vec<u8>, id: Uuid) {
    let mut buf = [0u8; Hyphenated::LENGTH];
    out.extend_from_slice(id.hyphenated().encode_lower(&mut buf).as_bytes());
}

/// Reads one line (without its newline).
pub(super) fn decode(line: &[u8]) -> serde_json::Result<SpoolRecord> {
    match fast(line) {
        Some(record) => Ok(record),
        None => serde_json::from_slice(line),
    }
}

/// The line as `encode` writes it, or `None`.
fn fast(line: &[u8]) -> Option<SpoolRecord> {
    let mut p = Cursor(line);
    p.tag(b"{\"id\":\"")?;
    let id = p.uuid()?;
    p.tag(b"\",\"kind\":\"")?;
    let kind = if p.tag(b"begin").is_some() {
        Kind::Begin
    } else {
        p.tag(b"done")?;
        Kind::Done
    };
    p.tag(b"\",\"at_ms\":")?;
    let at_ms = p.number()?.parse().ok()?;
    p.tag(b",\"tenant_id\":\"")?;
    let tenant_id = p.uuid()?;
    p.tag(b"\",\"key_id\":\"")?;
    let key_id = p.uuid()?;
    p.tag(b"\",\"route_id\":\"")?;
    let route_id = p.uuid()?;
    p.tag(b"\",\"model\":\"")?;
    let model = p.plain_string()?;
    p.tag(b",\"error\":")?;
    let error = if p.tag(b"true").is_some() {
        true
    } else {
        p.tag(b"false")?;
        false
    };
    p.tag(b",\"prompt_tokens\":")?;
    let prompt_tokens = p.number()?.parse().ok()?;
    p.tag(b",\"completion_tokens\":")?;
    let completion_tokens = p.number()?.parse().ok()?;
    p.tag(b",\"cost\":")?;
    let cost = p.number()?.parse().ok()?;
    p.tag(b",\"latency_ms\":")?;
    let latency_ms = p.number()?.parse().ok()?;
    let source = match p.tag(b",\"source\":\"") {
        Some(()) => Some(p.plain_string()?),
        None => None,
    };
    let rejected = p.tag(b",\"rejected\":true").is_some();
    p.tag(b"}")?;
    p.0.is_empty().then_some(SpoolRecord {
        id,
        kind,
        at_ms,
        tenant_id,
        key_id,
        route_id,
        model,
        error,
        prompt_tokens,
        completion_tokens,
        cost,
        latency_ms,
        source,
        rejected,
    })
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn tag(&mut self, tag: &[u8]) -> Option<()> {
        self.0 = self.0.strip_prefix(tag)?;
        Some(())
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn uuid(&mut self) -> Option<Uuid> {
        Uuid::try_parse_ascii(self.take(Hyphenated::LENGTH)?).ok()
    }

    /// A JSON number's characters (an integer or a float); `str::parse` checks them.
    fn number(&mut self) -> Option<&'a str> {
        let len = self
            .0
            .iter()
            .position(|b| !matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
            .unwrap_or(self.0.len());
        if len == 0 || self.0[0] == b'+' {
            return None;
        }
        std::str::from_utf8(self.take(len)?).ok()
    }

    /// A string with nothing escaped, up to its closing quote (consumed).
    fn plain_string(&mut self) -> Option<String> {
        let len = self.0.iter().position(|b| *b == b'"')?;
        let text = self.take(len)?;
        self.0 = &self.0[1..];
        if text.iter().any(|b| *b == b'\\' || *b < 0x20) {
            return None;
        }
        String::from_utf8(text.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(model: &str, cost: f64) -> SpoolRecord {
        SpoolRecord {
            id: Uuid::now_v7(),
            kind: Kind::Done,
            at_ms: 1_765_000_000_123,
            tenant_id: Uuid::new_v4(),
            key_id: Uuid::new_v4(),
            route_id: Uuid::nil(),
            model: model.into(),
            error: true,
            prompt_tokens: 12,
            completion_tokens: u64::MAX,
            cost,
            latency_ms: 0.1 + 0.2,
            source: None,
            rejected: false,
        }
    }

    /// The hand-written line is serde's, and both ways of reading it give the record back.
    #[test]
    fn lines_are_serdes_json_and_read_back_exactly() {
        let begin = SpoolRecord {
            kind: Kind::Begin,
            error: false,
            at_ms: -5,
            ..record("gpt-4o", 0.0)
        };
        for r in [
            record("gpt-4o", 2.5e-5),
            record("claude-3-5-sonnet-20241022", 1e300),
            record("a \"quoted\" \\ model\nname é", 123.456),
            record("", f64::MIN_POSITIVE),
            begin,
            SpoolRecord {
                source: Some("ai-request-transformer".into()),
                ..record("gpt-4o-mini", 1e-5)
            },
            SpoolRecord {
                rejected: true,
                ..record("gpt-4o", 0.0)
            },
            SpoolRecord {
                source: Some("a \"quoted\" source".into()),
                rejected: true,
                ..record("m", 0.0)
            },
        ] {
            let mut line = Vec::new();
            encode(&mut line, &r).expect("encode");
            assert_eq!(line, serde_json::to_vec(&r).expect("serde"), "{r:?}");
            assert_eq!(decode(&line).expect("decode"), r);
            assert_eq!(
                serde_json::from_slice::<SpoolRecord>(&line).expect("serde"),
                r
            );
        }
    }

    /// A line written before `source` and `rejected` existed reads (on the fast path) as
    /// proxy usage that was not refused, and an ordinary record still writes that line.
    #[test]
    fn lines_of_earlier_versions_read_as_proxy_usage() {
        let r = record("gpt-4o", 0.25);
        let old = format!(
            concat!(
                r#"{{"id":"{}","kind":"done","at_ms":1765000000123,"tenant_id":"{}","#,
                r#""key_id":"{}","route_id":"{}","model":"gpt-4o","error":true,"#,
                r#""prompt_tokens":12,"completion_tokens":18446744073709551615,"#,
                r#""cost":0.25,"latency_ms":0.30000000000000004}}"#
            ),
            r.id, r.tenant_id, r.key_id, r.route_id
        );
        let read = fast(old.as_bytes()).expect("the fast path takes it");
        assert_eq!(read, r);
        assert_eq!((read.source, read.rejected), (None, false));
        let mut line = Vec::new();
        encode(&mut line, &r).expect("encode");
        assert_eq!(String::from_utf8(line).expect("utf-8"), old);
        // A set field on the fast path too.
        let policy = SpoolRecord {
            source: Some("ai-response-transformer".into()),
            rejected: true,
            ..r
        };
        let mut line = Vec::new();
        encode(&mut line, &policy).expect("encode");
        assert_eq!(fast(&line), Some(policy));
    }

    /// The fast path takes only its own shape; other valid lines go to serde, and what
    /// serde refuses stays refused.
    #[test]
    fn other_shapes_are_left_to_serde() {
        let r = record("m", 1.5);
        let mut line = Vec::new();
        encode(&mut line, &r).expect("encode");
        assert!(fast(&line).is_some());
        let value = serde_json::to_value(&r).expect("value");
        let mut reordered = serde_json::Map::new();
        for key in [
            "model",
            "id",
            "kind",
            "at_ms",
            "tenant_id",
            "key_id",
            "route_id",
        ] {
            reordered.insert(key.into(), value[key].clone());
        }
        for (key, v) in value.as_object().expect("object") {
            reordered.entry(key.clone()).or_insert(v.clone());
        }
        let reordered = serde_json::to_vec(&reordered).expect("json");
        assert!(fast(&reordered).is_none());
        assert_eq!(decode(&reordered).expect("serde reads it"), r);
        let spaced = String::from_utf8(line.clone())
            .expect("utf-8")
            .replace(",\"", ", \"");
        assert!(fast(spaced.as_bytes()).is_none());
        assert_eq!(decode(spaced.as_bytes()).expect("serde reads it"), r);
        for torn in [
            &line[..line.len() - 1],
            &line[..line.len() / 2],
            b"" as &[u8],
        ] {
            assert!(decode(torn).is_err(), "{}", String::from_utf8_lossy(torn));
        }
        let mut trailing = line.clone();
        trailing.extend_from_slice(b"x");
        assert!(decode(&trailing).is_err());
        let nan = record("m", f64::NAN);
        let mut line = Vec::new();
        encode(&mut line, &nan).expect("encode");
        assert_eq!(line, serde_json::to_vec(&nan).expect("serde"));
        assert!(
            decode(&line).is_err(),
            "a null cost is unreadable, as before"
        );
    }
}

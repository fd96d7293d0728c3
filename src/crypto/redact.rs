//! Masks a service's credential values in text the upstream sent back (error bodies,
//! in-band stream errors) and in logged payloads (docs/architecture.md, "The
//! analytics line").
//!
//! Built from the values of the service's credential (header value, query/body parameter
//! value), which the snapshot hands over through [`SecretValues`]. Each value is searched in the forms an echo may take — raw,
//! JSON-escaped (also with `\/`), URL-encoded, HTML-escaped, and for an `Authorization`-style
//! header the token after its scheme — and partially: any run of at least `PARTIAL` characters
//! of a value is masked, so a truncated echo ("key sk-abc…xyz is invalid") does not leak
//! the rest either. One Aho-Corasick automaton finds them all in a single pass.
//!
//! Only error paths and payload logging use it; `LazyRedactor` holds just an `Arc` of the
//! credential and builds the automaton on first use, so a 2xx answer pays nothing.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use aho_corasick::AhoCorasick;
use serde_json::Value;

use super::secret::MASK;

/// The shortest run of a secret that is masked on its own (a partial echo).
const PARTIAL: usize = 12;
/// Values shorter than this are not searched (masking every "abc" would wreck the text,
/// and such a value is no secret).
const MIN_SECRET: usize = 4;

/// Something that holds secret values to mask: a service's credential (the snapshot's
/// `CredentialEntry`).
pub trait SecretValues: Send + Sync {
    /// The values in plaintext.
    fn secret_values(&self) -> Vec<&str>;
}

/// A matcher for a set of secret values.
pub struct Redactor {
    matcher: Option<AhoCorasick>,
}

impl Redactor {
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Redactor {
        let mut patterns: Vec<String> = Vec::new();
        for secret in secrets {
            for form in forms(secret) {
                windows(&form, &mut patterns);
            }
        }
        patterns.sort();
        patterns.dedup();
        let matcher = if patterns.is_empty() {
            None
        } else {
            AhoCorasick::new(&patterns).ok()
        };
        Redactor { matcher }
    }

    /// The service's credential values (header and parameter).
    pub fn for_credential<C: SecretValues + ?Sized>(credential: Option<&C>) -> Redactor {
        let Some(c) = credential else {
            return Redactor { matcher: None };
        };
        Redactor::new(c.secret_values())
    }

    pub fn is_empty(&self) -> bool {
        self.matcher.is_none()
    }

    /// The spans to mask, merged, in order.
    fn spans(&self, haystack: &[u8]) -> Vec<(usize, usize)> {
        let Some(matcher) = &self.matcher else {
            return Vec::new();
        };
        let mut spans: Vec<(usize, usize)> = matcher
            .find_overlapping_iter(haystack)
            .map(|m| (m.start(), m.end()))
            .collect();
        spans.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(spans.len());
        for (start, end) in spans {
            match merged.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        merged
    }

    pub fn redact_bytes<'t>(&self, text: &'t [u8]) -> Cow<'t, [u8]> {
        let spans = self.spans(text);
        if spans.is_empty() {
            return Cow::Borrowed(text);
        }
        let mut out = Vec::with_capacity(text.len());
        let mut at = 0;
        for (start, end) in spans {
            out.extend_from_slice(&text[at..start]);
            out.extend_from_slice(MASK.as_bytes());
            at = end;
        }
        out.extend_from_slice(&text[at..]);
        Cow::Owned(out)
    }

    pub fn redact<'t>(&self, text: &'t str) -> Cow<'t, str> {
        match self.redact_bytes(text.as_bytes()) {
            Cow::Borrowed(_) => Cow::Borrowed(text),
            // Every pattern is whole characters (windows are cut at char boundaries), so
            // the result is still UTF-8; the lossy form only guards that assumption.
            Cow::Owned(bytes) => Cow::Owned(match String::from_utf8(bytes) {
                Ok(s) => s,
                Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
            }),
        }
    }

    /// A body as it may be passed on: a JSON body is masked value by value (so an
    /// escaped echo is matched in its decoded form and the result stays valid JSON), any
    /// other body as text.
    pub fn redact_body<'t>(&self, body: &'t [u8]) -> Cow<'t, [u8]> {
        if self.matcher.is_none() {
            return Cow::Borrowed(body);
        }
        if let Ok(mut value) = serde_json::from_slice::<Value>(body) {
            let before = value.clone();
            self.redact_value(&mut value);
            if value == before {
                return Cow::Borrowed(body);
            }
            if let Ok(bytes) = serde_json::to_vec(&value) {
                return Cow::Owned(bytes);
            }
        }
        self.redact_bytes(body)
    }

    /// Masks every string (and object key) in a JSON value, in place.
    pub fn redact_value(&self, value: &mut Value) {
        if self.matcher.is_none() {
            return;
        }
        match value {
            Value::String(s) => {
                if let Cow::Owned(r) = self.redact(s) {
                    *s = r;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.redact_value(v)),
            Value::Object(map) => {
                let keys: Vec<String> = map.keys().cloned().collect();
                for key in keys {
                    if let Some(mut v) = map.remove(&key) {
                        self.redact_value(&mut v);
                        map.insert(self.redact(&key).into_owned(), v);
                    }
                }
            }
            _ => {}
        }
    }
}

/// The forms a value may be echoed in.
fn forms(secret: &str) -> Vec<String> {
    let mut values = vec![secret.to_string()];
    // `Bearer sk-…`: the upstream may echo only the token.
    if let Some((scheme, token)) = secret.split_once(' ')
        && ["bearer", "basic", "token", "key"].contains(&scheme.to_ascii_lowercase().as_str())
    {
        values.push(token.trim().to_string());
    }
    let mut out = Vec::new();
    for v in values {
        if v.chars().count() < MIN_SECRET {
            continue;
        }
        let json = serde_json::to_string(&v).unwrap_or_default();
        let json = json
            .strip_prefix('"')
            .and_then(|j| j.strip_suffix('"'))
            .unwrap_or(&v)
            .to_string();
        let html = v
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
            .replace('\'', "&#39;");
        let url: String = url::form_urlencoded::byte_serialize(v.as_bytes()).collect();
        out.extend([
            json.replace('/', "\\/"),
            json,
            html,
            url.replace('+', "%20"),
            url,
            v,
        ]);
    }
    out.sort();
    out.dedup();
    out
}

/// Every run of `PARTIAL` characters of `form` (the whole form when it is shorter).
fn windows(form: &str, patterns: &mut Vec<String>) {
    let bounds: Vec<usize> = form
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(form.len()))
        .collect();
    let chars = bounds.len() - 1;
    if chars <= PARTIAL {
        patterns.push(form.to_string());
        return;
    }
    for start in 0..=chars - PARTIAL {
        patterns.push(form[bounds[start]..bounds[start + PARTIAL]].to_string());
    }
}

/// A `Redactor` for one service's credential, built when first needed (an error or a
/// logged payload), so requests that need none pay only an `Arc` clone.
#[derive(Clone, Default)]
pub struct LazyRedactor {
    inner: Arc<LazyInner>,
}

#[derive(Default)]
struct LazyInner {
    credential: Option<Arc<dyn SecretValues>>,
    built: OnceLock<Redactor>,
}

impl LazyRedactor {
    pub fn new<C: SecretValues + 'static>(credential: Option<Arc<C>>) -> LazyRedactor {
        LazyRedactor {
            inner: Arc::new(LazyInner {
                credential: credential.map(|c| c as Arc<dyn SecretValues>),
                built: OnceLock::new(),
            }),
        }
    }

    pub fn get(&self) -> &Redactor {
        self.inner
            .built
            .get_or_init(|| Redactor::for_credential(self.inner.credential.as_deref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "sk-live-4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c";

    #[test]
    fn raw_escaped_and_encoded_echoes_are_masked() {
        let odd = "p@ss/w\"rd&<key>+ 12345";
        let r = Redactor::new(
            ["Bearer ".to_string() + KEY]
                .iter()
                .map(String::as_str)
                .chain([odd]),
        );
        let json = serde_json::to_string(odd).unwrap();
        let url: String = url::form_urlencoded::byte_serialize(odd.as_bytes()).collect();
        for text in [
            format!("Incorrect API key provided: {KEY}."),
            format!("header was 'Bearer {KEY}'"),
            format!("{{\"echo\":{json}}}"),
            format!("{{\"echo\":{}}}", json.replace('/', "\\/")),
            format!("GET /v1?key={url} failed"),
            "<p>p@ss/w&quot;rd&amp;&lt;key&gt;+ 12345</p>".to_string(),
        ] {
            let out = r.redact(&text);
            assert!(out.contains(MASK), "{text} -> {out}");
            assert!(!out.contains(&KEY[8..20]), "{out}");
            assert!(!out.contains("12345"), "{out}");
        }
    }

    #[test]
    fn partial_echoes_are_masked_and_other_text_is_kept() {
        let r = Redactor::new([KEY]);
        let out = r
            .redact(&format!("key {}… is not valid", &KEY[..20]))
            .into_owned();
        assert_eq!(out, format!("key {MASK}… is not valid"));
        let out = r
            .redact(&format!("ends with {}", &KEY[KEY.len() - 14..]))
            .into_owned();
        assert_eq!(out, format!("ends with {MASK}"));
        // Fewer than PARTIAL characters of it (OpenAI's own `sk-liv…6b5c` style) is no leak.
        let text = "key sk-live-4f…6b5c rejected";
        assert!(matches!(r.redact(text), Cow::Borrowed(_)));
        // Two echoes side by side, and the rest of the message unchanged.
        let out = r.redact(&format!("a {KEY} b {KEY}")).into_owned();
        assert_eq!(out, format!("a {MASK} b {MASK}"));
    }

    #[test]
    fn bodies_stay_json_when_they_were() {
        let r = Redactor::new(["q\"uote\\back-0123456789abcdef"]);
        let json =
            serde_json::to_vec(&serde_json::json!({"m": "x q\"uote\\back-0123456789abcdef y"}))
                .unwrap();
        let out = r.redact_body(&json);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["m"], format!("x {MASK} y"));
        let html = b"<pre>q&quot;uote\\back-0123456789abcdef</pre>";
        let out = r.redact_body(html);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            format!("<pre>{MASK}</pre>")
        );
        assert!(matches!(r.redact_body(b"{\"m\":1}"), Cow::Borrowed(_)));
    }

    #[test]
    fn json_values_are_masked_in_place_and_no_credential_masks_nothing() {
        let r = Redactor::new([KEY]);
        let mut v = serde_json::json!({"error": {"message": format!("bad {KEY}"), KEY: [KEY, 1]}});
        r.redact_value(&mut v);
        assert!(!v.to_string().contains(KEY), "{v}");
        assert_eq!(v["error"]["message"], format!("bad {MASK}"));
        let none = Redactor::for_credential(None::<&dyn SecretValues>);
        assert!(none.is_empty());
        assert!(matches!(none.redact(KEY), Cow::Borrowed(_)));
        // Too short to be searched.
        assert!(Redactor::new(["abc"]).is_empty());
    }
}

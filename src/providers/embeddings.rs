//! What every wire format's embeddings translator shares (docs/behaviour.md, "Embeddings"):
//! the client's `input` and `encoding_format` read once, OpenAI's `list` of `embedding`s
//! built from the provider's vectors, and a vector encoded as OpenAI's base64 (the float32
//! array, little-endian) or decoded from it, so the client gets the encoding it asked for
//! whatever the provider sent.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};

use super::{RequestError, TranslateError};

/// The encoding the client asked for (`encoding_format`; OpenAI's default is `float`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Float,
    Base64,
}

impl Encoding {
    /// The request's `encoding_format`: absent or null is `float`.
    pub fn of(body: &Map<String, Value>) -> Result<Encoding, RequestError> {
        match body.get("encoding_format") {
            None | Some(Value::Null) => Ok(Encoding::Float),
            Some(Value::String(s)) if s == "float" => Ok(Encoding::Float),
            Some(Value::String(s)) if s == "base64" => Ok(Encoding::Base64),
            Some(_) => Err(RequestError::param(
                "encoding_format",
                "`encoding_format` must be \"float\" or \"base64\"",
            )),
        }
    }
}

/// The client's `input`: texts, or token ids (one array, or one array per input).
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Texts(Vec<String>),
    Tokens,
}

impl Input {
    /// Reads `input`: a string, a non-empty array of strings, an array of token ids or a
    /// non-empty array of such arrays; anything else is 400 naming `input`.
    pub fn of(body: &Map<String, Value>) -> Result<Input, RequestError> {
        let bad = || {
            RequestError::param(
                "input",
                "`input` must be a string, a non-empty array of strings, an array of token ids \
                 or an array of arrays of token ids",
            )
        };
        let is_tokens = |v: &Value| {
            v.as_array()
                .is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_u64))
        };
        match body.get("input") {
            Some(Value::String(s)) => Ok(Input::Texts(vec![s.clone()])),
            Some(Value::Array(items)) if items.is_empty() => Err(bad()),
            Some(Value::Array(items)) if items.iter().all(Value::is_string) => Ok(Input::Texts(
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect(),
            )),
            Some(v @ Value::Array(items)) if is_tokens(v) || items.iter().all(is_tokens) => {
                Ok(Input::Tokens)
            }
            _ => Err(bad()),
        }
    }

    /// The texts, for a provider that embeds text only: token ids are 400 naming `input`.
    pub fn texts(body: &Map<String, Value>, provider: &str) -> Result<Vec<String>, RequestError> {
        match Input::of(body)? {
            Input::Texts(texts) => Ok(texts),
            Input::Tokens => Err(RequestError::param(
                "input",
                format!("{provider} embeds text only: send `input` as strings, not token ids"),
            )),
        }
    }
}

/// `dimensions`, when the client set it: a positive integer, else 400 naming it.
pub fn dimensions(body: &Map<String, Value>) -> Result<Option<u64>, RequestError> {
    match body.get("dimensions") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if n > 0 => Ok(Some(n)),
            _ => Err(RequestError::param(
                "dimensions",
                "`dimensions` must be a positive integer",
            )),
        },
    }
}

/// OpenAI's embeddings answer from a provider's float vectors, in input order; `usage`
/// only when the provider counted the input (the proxy estimates it otherwise).
pub fn list(vectors: Vec<Value>, model: &str, prompt_tokens: Option<u64>) -> Value {
    let data: Vec<Value> = vectors
        .into_iter()
        .enumerate()
        .map(|(index, embedding)| json!({"object": "embedding", "index": index, "embedding": embedding}))
        .collect();
    let mut answer = json!({"object": "list", "data": data, "model": model});
    if let Some(tokens) = prompt_tokens {
        answer["usage"] = json!({"prompt_tokens": tokens, "total_tokens": tokens});
    }
    answer
}

/// An upstream 2xx embeddings body as a JSON object.
pub fn parse(body: &[u8]) -> Result<Map<String, Value>, TranslateError> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(TranslateError(
            "embeddings response is not a JSON object".into(),
        )),
        Err(e) => Err(TranslateError(format!(
            "embeddings response is not JSON: {e}"
        ))),
    }
}

/// A provider's list of vectors: every vector an array of numbers.
pub fn vectors(value: Option<&Value>) -> Result<Vec<Value>, TranslateError> {
    let Some(Value::Array(vectors)) = value else {
        return Err(TranslateError("no embeddings in the response".into()));
    };
    if let Some(i) = vectors.iter().position(|v| {
        !v.as_array()
            .is_some_and(|numbers| numbers.iter().all(Value::is_number))
    }) {
        return Err(TranslateError(format!(
            "embedding {i} is not an array of numbers"
        )));
    }
    Ok(vectors.clone())
}

/// Puts every `data[i].embedding` of an OpenAI answer in `encoding`: a float array becomes
/// base64 of its float32 little-endian bytes (what OpenAI sends for `base64`), a base64
/// string becomes floats. Anything else is untranslatable.
pub fn encode(answer: &mut Value, encoding: Encoding) -> Result<(), TranslateError> {
    let Some(data) = answer.get_mut("data").and_then(Value::as_array_mut) else {
        return Err(TranslateError(
            "no `data` in the embeddings response".into(),
        ));
    };
    for (i, item) in data.iter_mut().enumerate() {
        let Some(embedding) = item.get_mut("embedding") else {
            return Err(TranslateError(format!("data[{i}] has no embedding")));
        };
        let converted = match (encoding, &*embedding) {
            (Encoding::Float, Value::Array(_)) | (Encoding::Base64, Value::String(_)) => continue,
            (Encoding::Base64, Value::Array(numbers)) => {
                Value::String(to_base64(numbers).ok_or_else(|| {
                    TranslateError(format!("data[{i}].embedding is not an array of numbers"))
                })?)
            }
            (Encoding::Float, Value::String(encoded)) => from_base64(encoded).ok_or_else(|| {
                TranslateError(format!(
                    "data[{i}].embedding is not base64 of float32 values"
                ))
            })?,
            _ => {
                return Err(TranslateError(format!(
                    "data[{i}].embedding is neither an array nor a base64 string"
                )));
            }
        };
        *embedding = converted;
    }
    Ok(())
}

/// Base64 of the numbers as float32, little-endian; `None` when one is not a number.
fn to_base64(numbers: &[Value]) -> Option<String> {
    let mut bytes = Vec::with_capacity(numbers.len() * 4);
    for n in numbers {
        // float32 is the format OpenAI's base64 carries; the narrowing is the point.
        bytes.extend_from_slice(&(n.as_f64()? as f32).to_le_bytes());
    }
    Some(STANDARD.encode(bytes))
}

/// Floats from base64 of float32 little-endian values.
fn from_base64(encoded: &str) -> Option<Value> {
    let bytes = STANDARD.decode(encoded).ok()?;
    if bytes.len() % 4 != 0 {
        return None;
    }
    let numbers = bytes
        .chunks_exact(4)
        .map(|c| {
            let f = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            serde_json::Number::from_f64(f64::from(f)).map(Value::Number)
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Value::Array(numbers))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn input_forms() {
        let texts = |v: Value| Input::of(&body(json!({"input": v})));
        assert_eq!(texts(json!("a")), Ok(Input::Texts(vec!["a".into()])));
        assert_eq!(
            texts(json!(["a", "b"])),
            Ok(Input::Texts(vec!["a".into(), "b".into()]))
        );
        assert_eq!(texts(json!([1, 2, 3])), Ok(Input::Tokens));
        assert_eq!(texts(json!([[1, 2], [3]])), Ok(Input::Tokens));
        for bad in [
            json!([]),
            json!([[]]),
            json!(["a", 1]),
            json!(3),
            json!(null),
            json!({"a": 1}),
            json!([-1]),
        ] {
            let e = texts(bad.clone()).unwrap_err();
            assert_eq!(e.param.as_deref(), Some("input"), "{bad}");
        }
        assert_eq!(
            Input::of(&body(json!({}))).unwrap_err().param.as_deref(),
            Some("input")
        );
        let e = Input::texts(&body(json!({"input": [1, 2]})), "cohere").unwrap_err();
        assert!(e.message.contains("cohere embeds text only"), "{e}");
    }

    #[test]
    fn encoding_format_values() {
        let of = |v: Value| Encoding::of(&body(json!({"encoding_format": v})));
        assert_eq!(Encoding::of(&body(json!({}))), Ok(Encoding::Float));
        assert_eq!(of(json!(null)), Ok(Encoding::Float));
        assert_eq!(of(json!("float")), Ok(Encoding::Float));
        assert_eq!(of(json!("base64")), Ok(Encoding::Base64));
        assert_eq!(
            of(json!("int8")).unwrap_err().param.as_deref(),
            Some("encoding_format")
        );
    }

    #[test]
    fn dimensions_must_be_positive() {
        let of = |v: Value| dimensions(&body(json!({"dimensions": v})));
        assert_eq!(of(json!(256)), Ok(Some(256)));
        assert_eq!(dimensions(&body(json!({}))), Ok(None));
        for bad in [json!(0), json!(-3), json!("256"), json!(1.5)] {
            assert_eq!(of(bad).unwrap_err().param.as_deref(), Some("dimensions"));
        }
    }

    #[test]
    fn base64_is_float32_little_endian_both_ways() {
        let mut answer = list(vec![json!([1.0, -0.5, 0.25])], "m", Some(3));
        encode(&mut answer, Encoding::Base64).unwrap();
        let encoded = answer["data"][0]["embedding"].as_str().unwrap().to_string();
        let mut expected = Vec::new();
        for f in [1.0f32, -0.5, 0.25] {
            expected.extend_from_slice(&f.to_le_bytes());
        }
        assert_eq!(encoded, STANDARD.encode(&expected));
        // Already base64: left as it is.
        encode(&mut answer, Encoding::Base64).unwrap();
        assert_eq!(answer["data"][0]["embedding"], encoded.as_str());
        encode(&mut answer, Encoding::Float).unwrap();
        assert_eq!(answer["data"][0]["embedding"], json!([1.0, -0.5, 0.25]));
        assert_eq!(
            answer["usage"],
            json!({"prompt_tokens": 3, "total_tokens": 3})
        );
        assert_eq!(answer["data"][0]["object"], "embedding");
        assert_eq!(answer["data"][0]["index"], 0);
    }

    #[test]
    fn bad_vectors_are_untranslatable() {
        assert!(vectors(Some(&json!([[0.1], ["x"]]))).is_err());
        assert!(vectors(None).is_err());
        let mut answer = json!({"data": [{"embedding": "%%%"}]});
        assert!(encode(&mut answer, Encoding::Float).is_err());
        let mut answer = json!({"data": [{"embedding": 3}]});
        assert!(encode(&mut answer, Encoding::Base64).is_err());
        assert!(encode(&mut json!({}), Encoding::Float).is_err());
        assert!(list(vec![], "m", None).get("usage").is_none());
    }
}

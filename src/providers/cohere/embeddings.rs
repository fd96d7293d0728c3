//! Cohere's embed API (docs/wire-formats.md, "Embeddings"): `POST /v2/embed` by default (v1's
//! `/v1/embed` takes the same body when the service's `upstream_url` names it). The texts go
//! as `texts`, with an `input_type` (the client's, else `search_document`: the gateway
//! cannot know whether a text is a document or a query) and `embedding_types: ["float"]`;
//! the answer's `embeddings.float` (v1 without types: `embeddings`) become OpenAI's list,
//! usage from `meta.billed_units.input_tokens`.

use serde_json::{Map, Value, json};

use crate::providers::embeddings::{self, Input};
use crate::providers::shared::to_body;
use crate::providers::{Embedder, RequestError, TranslateContext, TranslateError, UpstreamRequest};

const DEFAULT_EMBED_URL: &str = "https://api.cohere.com:443/v2/embed";

/// What the client sends when it does not say whether its texts are documents or queries.
const DEFAULT_INPUT_TYPE: &str = "search_document";

/// Cohere's embeddings translator.
pub struct CohereEmbeddings;

impl Embedder for CohereEmbeddings {
    fn request(
        &self,
        ctx: &TranslateContext<'_>,
        body: Map<String, Value>,
    ) -> Result<UpstreamRequest, RequestError> {
        let texts = Input::texts(&body, "cohere")?;
        embeddings::Encoding::of(&body)?;
        let input_type = match body.get("input_type") {
            None | Some(Value::Null) => DEFAULT_INPUT_TYPE.to_string(),
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(_) => {
                return Err(RequestError::param(
                    "input_type",
                    "`input_type` must be a Cohere input type such as \"search_document\" or \
                     \"search_query\"",
                ));
            }
        };
        let mut out = Map::new();
        out.insert("model".into(), Value::from(ctx.model));
        out.insert("texts".into(), json!(texts));
        out.insert("input_type".into(), Value::from(input_type));
        // Floats only: the gateway encodes base64 itself (Cohere's own types are int8 and
        // binary forms, not OpenAI's base64 of float32).
        out.insert("embedding_types".into(), json!(["float"]));
        if let Some(d) = embeddings::dimensions(&body)? {
            out.insert("output_dimension".into(), Value::from(d));
        }
        if let Some(truncate) = body.get("truncate").filter(|t| !t.is_null()) {
            out.insert("truncate".into(), truncate.clone());
        }
        Ok(UpstreamRequest {
            url: ctx.upstream_url.unwrap_or(DEFAULT_EMBED_URL).to_string(),
            headers: Vec::new(),
            body: to_body(&out)?,
        })
    }

    fn response(&self, ctx: &TranslateContext<'_>, body: &[u8]) -> Result<Value, TranslateError> {
        let answer = embeddings::parse(body)?;
        let vectors = match answer.get("embeddings") {
            Some(Value::Object(by_type)) => by_type.get("float"),
            other => other,
        };
        let vectors = embeddings::vectors(vectors)?;
        let meta = answer.get("meta");
        let tokens = ["/billed_units/input_tokens", "/tokens/input_tokens"]
            .iter()
            .find_map(|p| meta.and_then(|m| m.pointer(p)).and_then(Value::as_u64));
        Ok(embeddings::list(vectors, ctx.model, tokens))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::providers::test_support::{Setup, body_json, object, translator};
    use crate::providers::{Embedder, ProviderKind};

    fn embedder() -> &'static dyn Embedder {
        translator(ProviderKind::Cohere)
            .embeddings()
            .expect("has embeddings")
    }

    #[test]
    fn texts_go_to_v2_embed_as_documents_unless_the_client_says() {
        let setup = Setup::new(ProviderKind::Cohere, "embed-v4.0");
        let sent = embedder()
            .request(
                &setup.ctx(),
                object(
                    json!({"model": "alias", "input": ["a", "b"], "dimensions": 256,
                              "encoding_format": "base64", "user": "u"}),
                ),
            )
            .unwrap();
        assert_eq!(sent.url, "https://api.cohere.com:443/v2/embed");
        assert_eq!(
            body_json(&sent.body),
            json!({"model": "embed-v4.0", "texts": ["a", "b"], "input_type": "search_document",
                   "embedding_types": ["float"], "output_dimension": 256})
        );
        let sent = embedder()
            .request(
                &setup.ctx(),
                object(json!({"input": "q", "input_type": "search_query", "truncate": "END"})),
            )
            .unwrap();
        let body = body_json(&sent.body);
        assert_eq!(body["texts"], json!(["q"]));
        assert_eq!(body["input_type"], "search_query");
        assert_eq!(body["truncate"], "END");
        let err = embedder()
            .request(&setup.ctx(), object(json!({"input": [1, 2]})))
            .unwrap_err();
        assert_eq!(err.param.as_deref(), Some("input"));
        let err = embedder()
            .request(&setup.ctx(), object(json!({"input": "a", "input_type": 3})))
            .unwrap_err();
        assert_eq!(err.param.as_deref(), Some("input_type"));
    }

    #[test]
    fn v2_and_v1_answers_become_the_openai_list() {
        let setup = Setup::new(ProviderKind::Cohere, "embed-v4.0");
        let v2 = json!({"id": "e1", "texts": ["a", "b"], "response_type": "embeddings_by_type",
            "embeddings": {"float": [[0.25, 0.5], [1.0, -1.0]]},
            "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": 7}}});
        let answer = embedder()
            .response(&setup.ctx(), v2.to_string().as_bytes())
            .unwrap();
        assert_eq!(
            answer,
            json!({"object": "list", "model": "embed-v4.0",
                   "data": [{"object": "embedding", "index": 0, "embedding": [0.25, 0.5]},
                            {"object": "embedding", "index": 1, "embedding": [1.0, -1.0]}],
                   "usage": {"prompt_tokens": 7, "total_tokens": 7}})
        );
        let v1 = json!({"id": "e1", "response_type": "embeddings_floats",
                        "embeddings": [[0.25]], "meta": {}});
        let answer = embedder()
            .response(&setup.ctx(), v1.to_string().as_bytes())
            .unwrap();
        assert_eq!(answer["data"][0]["embedding"], json!([0.25]));
        assert!(answer.get("usage").is_none());
        let bad = json!({"embeddings": {"int8": [[1]]}});
        assert!(
            embedder()
                .response(&setup.ctx(), bad.to_string().as_bytes())
                .is_err()
        );
    }
}

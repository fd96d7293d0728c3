//! OpenAI's `/v1/embeddings` in each dialect (docs/wire-formats.md, "Embeddings"): the body
//! forwarded with the route's model; Mistral's allow-list and rename; Azure's deployment URL,
//! where `encoding_format` is sent only to api-versions that surely know it.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::endpoint::{azure_has_encoding_format, embeddings_url};
use crate::providers::embeddings::{self, Encoding, Input};
use crate::providers::shared::to_body;
use crate::providers::{
    Dialect, Embedder, RequestError, TranslateContext, TranslateError, UpstreamRequest,
};

/// The embeddings translator of one OpenAI dialect.
#[derive(Debug)]
pub struct OpenAiEmbeddings(Dialect);

impl OpenAiEmbeddings {
    /// The translator of `dialect` (one static instance per dialect).
    pub fn of(dialect: Dialect) -> &'static OpenAiEmbeddings {
        match dialect {
            Dialect::OpenAi => &OpenAiEmbeddings(Dialect::OpenAi),
            Dialect::Azure => &OpenAiEmbeddings(Dialect::Azure),
            Dialect::Mistral => &OpenAiEmbeddings(Dialect::Mistral),
            Dialect::SelfHosted => &OpenAiEmbeddings(Dialect::SelfHosted),
        }
    }
}

impl Embedder for OpenAiEmbeddings {
    fn request(
        &self,
        ctx: &TranslateContext<'_>,
        mut body: Map<String, Value>,
    ) -> Result<UpstreamRequest, RequestError> {
        let url = embeddings_url(self.0, ctx)?;
        Encoding::of(&body)?;
        embeddings::dimensions(&body)?;
        match self.0 {
            Dialect::Mistral => {
                Input::texts(&body, "mistral")?;
                // Mistral answers 422 to unknown fields; `dimensions` is its `output_dimension`.
                if let Some(d) = body.remove("dimensions") {
                    body.insert("output_dimension".into(), d);
                }
                const ALLOWED: &[&str] = &[
                    "model",
                    "input",
                    "metadata",
                    "encoding_format",
                    "output_dimension",
                    "output_dtype",
                ];
                body.retain(|k, _| ALLOWED.contains(&k.as_str()));
            }
            Dialect::Azure if !azure_has_encoding_format(&url) => {
                Input::of(&body)?;
                body.remove("encoding_format");
            }
            Dialect::OpenAi | Dialect::Azure | Dialect::SelfHosted => {
                Input::of(&body)?;
            }
        }
        // `stream` is no field of embeddings (a `true` was refused before translation).
        body.remove("stream");
        body.insert("model".into(), Value::from(ctx.model));
        Ok(UpstreamRequest {
            url,
            headers: Vec::new(),
            body: to_body(&body)?,
        })
    }

    fn response(&self, ctx: &TranslateContext<'_>, body: &[u8]) -> Result<Value, TranslateError> {
        let mut answer = embeddings::parse(body)?;
        let Some(Value::Array(data)) = answer.get("data") else {
            return Err(TranslateError(
                "'data' not in the embeddings response".into(),
            ));
        };
        if data.iter().any(|item| item.get("embedding").is_none()) {
            return Err(TranslateError("an item of 'data' has no embedding".into()));
        }
        answer.insert("object".into(), Value::from("list"));
        if answer
            .get("model")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            answer.insert("model".into(), Value::from(ctx.model));
        }
        // Usage as OpenAI sends it: prompt and total tokens; absent when the server sent none.
        let prompt = answer
            .get("usage")
            .and_then(|u| u.get("prompt_tokens"))
            .and_then(Value::as_u64);
        match prompt {
            Some(tokens) => {
                answer.insert(
                    "usage".into(),
                    serde_json::json!({"prompt_tokens": tokens, "total_tokens": tokens}),
                );
            }
            None => {
                answer.remove("usage");
            }
        }
        Ok(Value::Object(answer))
    }

    fn verbatim(&self, body: &[u8], encoding: Encoding) -> Option<(u64, String)> {
        let answer: Answer = serde_json::from_slice(body).ok()?;
        let shape = match encoding {
            Encoding::Float => Shape::Floats,
            Encoding::Base64 => Shape::Base64,
        };
        (answer.object == "list"
            && !answer.model.is_empty()
            && answer.data.iter().all(|item| item.embedding == shape))
        .then_some((answer.usage.prompt_tokens, answer.model))
    }
}

/// What `verbatim` reads of an OpenAI embeddings answer; the vectors' numbers are skipped.
#[derive(Deserialize)]
struct Answer {
    object: String,
    model: String,
    usage: Usage,
    data: Vec<Item>,
}

#[derive(Deserialize)]
struct Usage {
    prompt_tokens: u64,
}

#[derive(Deserialize)]
struct Item {
    embedding: Shape,
}

/// An embedding's form: an array (of anything; `response` checks numbers) or a string.
#[derive(Debug, PartialEq, Eq)]
enum Shape {
    Floats,
    Base64,
}

impl<'de> Deserialize<'de> for Shape {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Shape, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Shape;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array or a string")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Shape, E> {
                Ok(Shape::Base64)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Shape, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Shape::Floats)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::providers::embeddings::{Encoding, encode};
    use crate::providers::test_support::{Setup, body_json, object, translator};
    use crate::providers::{Embedder, ProviderKind, UpstreamRequest};
    use crate::vocab::MistralFormat;

    fn embedder(setup: &Setup) -> &'static dyn Embedder {
        translator(setup.provider)
            .embeddings()
            .expect("has embeddings")
    }

    fn send(setup: &Setup, body: serde_json::Value) -> UpstreamRequest {
        embedder(setup)
            .request(&setup.ctx(), object(body))
            .expect("translates")
    }

    #[test]
    fn openai_forwards_the_body_with_the_route_model() {
        let setup = Setup::new(ProviderKind::Openai, "text-embedding-3-small");
        let sent = send(
            &setup,
            json!({"model": "alias", "input": ["a", "b"], "encoding_format": "base64",
                   "dimensions": 256, "user": "u1"}),
        );
        assert_eq!(sent.url, "https://api.openai.com:443/v1/embeddings");
        assert_eq!(
            body_json(&sent.body),
            json!({"model": "text-embedding-3-small", "input": ["a", "b"],
                   "encoding_format": "base64", "dimensions": 256, "user": "u1"})
        );
        // Token ids go to OpenAI as they are.
        let sent = send(&setup, json!({"input": [[1, 2], [3]]}));
        assert_eq!(body_json(&sent.body)["input"], json!([[1, 2], [3]]));
        let err = embedder(&setup)
            .request(&setup.ctx(), object(json!({"input": []})))
            .unwrap_err();
        assert_eq!(err.param.as_deref(), Some("input"));
        let err = embedder(&setup)
            .request(&setup.ctx(), object(json!({"input": "a", "dimensions": 0})))
            .unwrap_err();
        assert_eq!(err.param.as_deref(), Some("dimensions"));
        let setup = setup.url("http://10.0.0.1:9000/v1/embeddings");
        assert_eq!(
            send(&setup, json!({"input": "a"})).url,
            "http://10.0.0.1:9000/v1/embeddings"
        );
    }

    #[test]
    fn azure_uses_the_deployment_url_and_drops_encoding_format_on_old_versions() {
        let mut setup = Setup::new(ProviderKind::Azure, "ignored");
        setup.options.azure_instance = Some("res".into());
        setup.options.azure_deployment_id = Some("emb".into());
        setup.options.azure_api_version = Some("2023-05-15".into());
        let ask = json!({"input": "a", "encoding_format": "base64"});
        let sent = send(&setup, ask.clone());
        assert_eq!(
            sent.url,
            "https://res.openai.azure.com:443/openai/deployments/emb/embeddings?api-version=2023-05-15"
        );
        assert!(body_json(&sent.body).get("encoding_format").is_none());
        setup.options.azure_api_version = Some("2024-10-21".into());
        let sent = send(&setup, ask);
        assert_eq!(body_json(&sent.body)["encoding_format"], "base64");
    }

    #[test]
    fn mistral_renames_dimensions_and_keeps_only_its_fields() {
        let setup = Setup::new(
            ProviderKind::Mistral(MistralFormat::Openai),
            "mistral-embed",
        );
        let sent = send(
            &setup,
            json!({"input": ["a"], "dimensions": 512, "user": "u1", "encoding_format": "float"}),
        );
        assert_eq!(sent.url, "https://api.mistral.ai:443/v1/embeddings");
        assert_eq!(
            body_json(&sent.body),
            json!({"model": "mistral-embed", "input": ["a"], "output_dimension": 512,
                   "encoding_format": "float"})
        );
        let err = embedder(&setup)
            .request(&setup.ctx(), object(json!({"input": [1, 2]})))
            .unwrap_err();
        assert_eq!(err.param.as_deref(), Some("input"));
    }

    #[test]
    fn self_hosted_servers_need_their_url() {
        let setup = Setup::new(
            ProviderKind::Llama2(crate::vocab::Llama2Format::Openai),
            "bge",
        );
        assert!(
            embedder(&setup)
                .request(&setup.ctx(), object(json!({"input": "a"})))
                .is_err()
        );
    }

    #[test]
    fn answers_keep_their_vectors_and_normalise_usage() {
        let setup = Setup::new(ProviderKind::Openai, "text-embedding-3-small");
        let upstream = json!({"object": "list", "model": "text-embedding-3-small",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -1.0]}],
            "usage": {"prompt_tokens": 4, "total_tokens": 4, "completion_tokens": 0}});
        let mut answer = embedder(&setup)
            .response(&setup.ctx(), upstream.to_string().as_bytes())
            .unwrap();
        assert_eq!(
            answer["usage"],
            json!({"prompt_tokens": 4, "total_tokens": 4})
        );
        assert_eq!(answer["data"][0]["embedding"], json!([0.5, -1.0]));
        encode(&mut answer, Encoding::Base64).unwrap();
        assert!(answer["data"][0]["embedding"].is_string());
        // No usage, no model: the model called, and usage left to the proxy's estimate.
        let bare = json!({"data": [{"embedding": "AAAAPw=="}]});
        let answer = embedder(&setup)
            .response(&setup.ctx(), bare.to_string().as_bytes())
            .unwrap();
        assert_eq!(answer["model"], "text-embedding-3-small");
        assert_eq!(answer["object"], "list");
        assert!(answer.get("usage").is_none());
        for bad in [json!({"choices": []}), json!({"data": [{"index": 0}]})] {
            assert!(
                embedder(&setup)
                    .response(&setup.ctx(), bad.to_string().as_bytes())
                    .is_err(),
                "{bad}"
            );
        }
        assert!(embedder(&setup).response(&setup.ctx(), b"").is_err());
    }

    #[test]
    fn an_answer_in_the_clients_encoding_is_sent_as_received() {
        let setup = Setup::new(ProviderKind::Openai, "text-embedding-3-small");
        let floats = json!({"object": "list", "model": "text-embedding-3-small",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -1.0]}],
            "usage": {"prompt_tokens": 4, "total_tokens": 4}})
        .to_string();
        let e = embedder(&setup);
        assert_eq!(
            e.verbatim(floats.as_bytes(), Encoding::Float),
            Some((4, "text-embedding-3-small".to_string()))
        );
        // Floats where base64 was asked, no usage, not a list: translated instead.
        assert_eq!(e.verbatim(floats.as_bytes(), Encoding::Base64), None);
        let no_usage = json!({"object": "list", "model": "m", "data": [{"embedding": "AAAA"}]});
        assert_eq!(
            e.verbatim(no_usage.to_string().as_bytes(), Encoding::Base64),
            None
        );
        let base64 = json!({"object": "list", "model": "m", "data": [{"embedding": "AAAA"}],
                            "usage": {"prompt_tokens": 1}});
        assert_eq!(
            e.verbatim(base64.to_string().as_bytes(), Encoding::Base64),
            Some((1, "m".to_string()))
        );
        assert_eq!(e.verbatim(b"{\"data\": 1}", Encoding::Float), None);
    }
}

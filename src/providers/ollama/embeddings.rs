//! Ollama's `/api/embed` (docs/wire-formats.md, "Embeddings"), at the service's
//! `upstream_url`: `{model, input, dimensions?, truncate?, keep_alive?}`; the answer's
//! `embeddings` become OpenAI's list, usage from `prompt_eval_count`.

use serde_json::{Map, Value, json};

use crate::providers::embeddings::{self, Input};
use crate::providers::shared::{required_upstream_url, to_body};
use crate::providers::{Embedder, RequestError, TranslateContext, TranslateError, UpstreamRequest};

/// Ollama's embeddings translator.
pub struct OllamaEmbeddings;

impl Embedder for OllamaEmbeddings {
    fn request(
        &self,
        ctx: &TranslateContext<'_>,
        body: Map<String, Value>,
    ) -> Result<UpstreamRequest, RequestError> {
        let url = required_upstream_url(ctx, "ollama-format services")?;
        let texts = Input::texts(&body, "ollama")?;
        embeddings::Encoding::of(&body)?;
        let mut out = Map::new();
        out.insert("model".into(), Value::from(ctx.model));
        out.insert("input".into(), json!(texts));
        if let Some(d) = embeddings::dimensions(&body)? {
            out.insert("dimensions".into(), Value::from(d));
        }
        for field in ["truncate", "keep_alive"] {
            if let Some(v) = body.get(field).filter(|v| !v.is_null()) {
                out.insert(field.into(), v.clone());
            }
        }
        Ok(UpstreamRequest {
            url,
            headers: Vec::new(),
            body: to_body(&out)?,
        })
    }

    fn response(&self, ctx: &TranslateContext<'_>, body: &[u8]) -> Result<Value, TranslateError> {
        let answer = embeddings::parse(body)?;
        let vectors = embeddings::vectors(answer.get("embeddings"))?;
        let model = answer
            .get("model")
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty())
            .unwrap_or(ctx.model);
        let tokens = answer.get("prompt_eval_count").and_then(Value::as_u64);
        Ok(embeddings::list(vectors, model, tokens))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::providers::test_support::{Setup, body_json, object, translator};
    use crate::providers::{Embedder, ProviderKind};
    use crate::vocab::Llama2Format;

    fn embedder() -> &'static dyn Embedder {
        translator(ProviderKind::Llama2(Llama2Format::Ollama))
            .embeddings()
            .expect("has embeddings")
    }

    #[test]
    fn requests_go_to_the_services_url_as_api_embed() {
        let setup = Setup::new(
            ProviderKind::Llama2(Llama2Format::Ollama),
            "nomic-embed-text",
        );
        assert!(
            embedder()
                .request(&setup.ctx(), object(json!({"input": "a"})))
                .is_err(),
            "no upstream_url"
        );
        let setup = setup.url("http://10.0.0.2:11434/api/embed");
        let sent = embedder()
            .request(
                &setup.ctx(),
                object(
                    json!({"model": "alias", "input": "a", "encoding_format": "base64",
                              "dimensions": 64, "truncate": false, "user": "u"}),
                ),
            )
            .unwrap();
        assert_eq!(sent.url, "http://10.0.0.2:11434/api/embed");
        assert_eq!(
            body_json(&sent.body),
            json!({"model": "nomic-embed-text", "input": ["a"], "dimensions": 64,
                   "truncate": false})
        );
        let err = embedder()
            .request(&setup.ctx(), object(json!({"input": [[1]]})))
            .unwrap_err();
        assert_eq!(err.param.as_deref(), Some("input"));
    }

    #[test]
    fn answers_carry_prompt_eval_count_as_usage() {
        let setup = Setup::new(
            ProviderKind::Llama2(Llama2Format::Ollama),
            "nomic-embed-text",
        );
        let upstream = json!({"model": "nomic-embed-text:latest",
            "embeddings": [[0.1, 0.2], [0.3, 0.4]],
            "total_duration": 14143917, "load_duration": 1019500, "prompt_eval_count": 8});
        let answer = embedder()
            .response(&setup.ctx(), upstream.to_string().as_bytes())
            .unwrap();
        assert_eq!(answer["model"], "nomic-embed-text:latest");
        assert_eq!(
            answer["usage"],
            json!({"prompt_tokens": 8, "total_tokens": 8})
        );
        assert_eq!(answer["data"][1]["index"], 1);
        assert_eq!(answer["data"][1]["embedding"], json!([0.3, 0.4]));
        let bare = json!({"embeddings": [[0.1]]});
        let answer = embedder()
            .response(&setup.ctx(), bare.to_string().as_bytes())
            .unwrap();
        assert_eq!(answer["model"], "nomic-embed-text");
        assert!(answer.get("usage").is_none());
    }
}

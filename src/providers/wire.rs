//! Which wire format a provider speaks: the key translators are dispatched on, decided
//! once per service when the snapshot is compiled (docs/wire-formats.md).

use super::{ProviderKind, Translator, anthropic, cohere, ollama, openai, tgi};
use crate::vocab::{Llama2Format, MistralFormat};

/// An upstream's wire format. Provider-specific facts a translator needs (Azure's
/// deployment URLs, Mistral's renames) are carried in the `Dialect`, so no translator
/// looks at the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireFormat {
    /// OpenAI's Chat Completions / Completions API, in one of its dialects.
    OpenAiCompatible(Dialect),
    /// Anthropic's Messages / Text Completions API.
    Anthropic,
    /// Cohere's v1 `/chat` and `/generate`.
    Cohere,
    /// Ollama's native `/api/chat` and `/api/generate`.
    Ollama,
    /// A Llama 2 prompt in `{"inputs", "parameters"}` (HF TGI style, `llama2_format: raw`).
    Tgi,
}

/// Which OpenAI dialect an OpenAI-compatible upstream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// api.openai.com: `top_k` is not a field there (Kong removes it).
    OpenAi,
    /// Azure OpenAI: OpenAI's body at a deployment URL with an `api-version`
    /// (docs/wire-formats.md, "Azure OpenAI").
    Azure,
    /// api.mistral.ai: renames, unknown fields rejected upstream (docs/wire-formats.md,
    /// "Mistral").
    Mistral,
    /// vLLM, llama.cpp, Ollama `/v1` (`llama2_format: openai`): they honour `top_k`, so it
    /// is kept; the service's `upstream_url` is required.
    SelfHosted,
}

impl WireFormat {
    /// The wire format of a provider in its configured format; the only place that
    /// matches on the provider for translation.
    pub fn of(provider: ProviderKind) -> WireFormat {
        match provider {
            ProviderKind::Openai => WireFormat::OpenAiCompatible(Dialect::OpenAi),
            ProviderKind::Azure => WireFormat::OpenAiCompatible(Dialect::Azure),
            ProviderKind::Mistral(MistralFormat::Openai) => {
                WireFormat::OpenAiCompatible(Dialect::Mistral)
            }
            ProviderKind::Llama2(Llama2Format::Openai) => {
                WireFormat::OpenAiCompatible(Dialect::SelfHosted)
            }
            ProviderKind::Mistral(MistralFormat::Ollama)
            | ProviderKind::Llama2(Llama2Format::Ollama) => WireFormat::Ollama,
            ProviderKind::Llama2(Llama2Format::Raw) => WireFormat::Tgi,
            ProviderKind::Anthropic => WireFormat::Anthropic,
            ProviderKind::Cohere => WireFormat::Cohere,
        }
    }

    /// The translator of this wire format.
    pub fn translator(self) -> &'static dyn Translator {
        match self {
            WireFormat::OpenAiCompatible(dialect) => openai::OpenAiCompatible::of(dialect),
            WireFormat::Anthropic => &anthropic::Anthropic,
            WireFormat::Cohere => &cohere::Cohere,
            WireFormat::Ollama => &ollama::Ollama,
            WireFormat::Tgi => &tgi::Tgi,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::{Provider, ServiceOptions};

    #[test]
    fn every_provider_in_every_format_has_a_wire_format() {
        let formats = |mistral, llama2| ServiceOptions {
            mistral_format: Some(mistral),
            llama2_format: Some(llama2),
            ..Default::default()
        };
        let all = [
            formats(MistralFormat::Openai, Llama2Format::Openai),
            formats(MistralFormat::Ollama, Llama2Format::Ollama),
            formats(MistralFormat::Ollama, Llama2Format::Raw),
        ];
        for options in &all {
            for provider in Provider::ALL {
                let kind = ProviderKind::new(provider, options).expect("formats are set");
                let _ = WireFormat::of(kind).translator();
            }
        }
        assert_eq!(
            WireFormat::of(ProviderKind::Llama2(Llama2Format::Raw)),
            WireFormat::Tgi
        );
        // The admin API's list of providers with embeddings is the translators' own.
        for options in &all {
            for provider in Provider::ALL {
                let kind = ProviderKind::new(provider, options).expect("formats are set");
                assert_eq!(
                    kind.has_embeddings(),
                    WireFormat::of(kind).translator().embeddings().is_some(),
                    "{kind:?}"
                );
            }
        }
        assert_eq!(
            WireFormat::of(ProviderKind::Mistral(MistralFormat::Ollama)),
            WireFormat::of(ProviderKind::Llama2(Llama2Format::Ollama))
        );
    }
}

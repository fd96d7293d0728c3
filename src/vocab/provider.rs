//! The providers a service can call, listed once: every per-provider name (the
//! configuration's, OpenTelemetry's) is a method here, so adding a provider is one variant
//! and the compiler's list of what else to decide.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::service::ServiceOptions;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Openai,
    Azure,
    Anthropic,
    Cohere,
    Mistral,
    Llama2,
}

impl Provider {
    /// Every provider, in the order the documentation lists them.
    pub const ALL: [Provider; 6] = [
        Provider::Openai,
        Provider::Azure,
        Provider::Anthropic,
        Provider::Cohere,
        Provider::Mistral,
        Provider::Llama2,
    ];

    /// Tollgate's name: a service's `provider`, the stored column, `tollgate.provider` and
    /// the first part of `x-tollgate-llm-model`.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Openai => "openai",
            Provider::Azure => "azure",
            Provider::Anthropic => "anthropic",
            Provider::Cohere => "cohere",
            Provider::Mistral => "mistral",
            Provider::Llama2 => "llama2",
        }
    }

    /// The provider named `name` ([`Provider::as_str`]).
    pub fn parse(name: &str) -> Option<Provider> {
        Provider::ALL.into_iter().find(|p| p.as_str() == name)
    }

    /// `gen_ai.provider.name`: the OpenTelemetry GenAI conventions' well-known value where
    /// one exists, else Tollgate's name (docs/architecture.md, "Usage and telemetry").
    pub fn gen_ai_name(self) -> &'static str {
        match self {
            Provider::Azure => "azure.ai.openai",
            Provider::Mistral => "mistral_ai",
            Provider::Openai | Provider::Anthropic | Provider::Cohere | Provider::Llama2 => {
                self.as_str()
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MistralFormat {
    Openai,
    Ollama,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Llama2Format {
    Raw,
    Openai,
    Ollama,
}

/// Which wire format a service speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    Openai,
    Azure,
    Anthropic,
    Cohere,
    Mistral(MistralFormat),
    Llama2(Llama2Format),
}

impl ProviderKind {
    /// A service's provider with the format its options choose; `None` when the provider
    /// needs a format the options do not name.
    pub fn new(provider: Provider, options: &ServiceOptions) -> Option<ProviderKind> {
        Some(match provider {
            Provider::Openai => ProviderKind::Openai,
            Provider::Azure => ProviderKind::Azure,
            Provider::Anthropic => ProviderKind::Anthropic,
            Provider::Cohere => ProviderKind::Cohere,
            Provider::Mistral => ProviderKind::Mistral(options.mistral_format?),
            Provider::Llama2 => ProviderKind::Llama2(options.llama2_format?),
        })
    }

    pub fn provider(self) -> Provider {
        match self {
            ProviderKind::Openai => Provider::Openai,
            ProviderKind::Azure => Provider::Azure,
            ProviderKind::Anthropic => Provider::Anthropic,
            ProviderKind::Cohere => Provider::Cohere,
            ProviderKind::Mistral(_) => Provider::Mistral,
            ProviderKind::Llama2(_) => Provider::Llama2,
        }
    }

    /// Tollgate's provider name (`openai`, `azure`, …), as in `x-tollgate-llm-model`.
    pub fn name(self) -> &'static str {
        self.provider().as_str()
    }

    /// Whether the provider, in this format, has an embeddings API (docs/behaviour.md,
    /// "Embeddings"): Anthropic and the raw Llama 2 (TGI) format have none. The admin API
    /// refuses an `llm/v1/embeddings` route on the others; a test of the translators checks
    /// that this list is theirs.
    pub fn has_embeddings(self) -> bool {
        !matches!(
            self,
            ProviderKind::Anthropic | ProviderKind::Llama2(Llama2Format::Raw)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_the_wire_form() {
        for p in Provider::ALL {
            assert_eq!(Provider::parse(p.as_str()), Some(p));
            assert_eq!(
                serde_json::to_value(p).unwrap(),
                serde_json::Value::String(p.as_str().into())
            );
        }
        assert_eq!(Provider::parse("gemini"), None);
        assert_eq!(Provider::parse("OpenAI"), None);
    }

    #[test]
    fn gen_ai_names_use_the_well_known_values() {
        let names: Vec<_> = Provider::ALL
            .into_iter()
            .map(Provider::gen_ai_name)
            .collect();
        assert_eq!(
            names,
            [
                "openai",
                "azure.ai.openai",
                "anthropic",
                "cohere",
                "mistral_ai",
                "llama2"
            ]
        );
    }

    #[test]
    fn a_kind_needs_the_format_its_provider_requires() {
        let none = ServiceOptions::default();
        assert_eq!(
            ProviderKind::new(Provider::Openai, &none),
            Some(ProviderKind::Openai)
        );
        assert_eq!(ProviderKind::new(Provider::Mistral, &none), None);
        assert_eq!(ProviderKind::new(Provider::Llama2, &none), None);
        let formats = ServiceOptions {
            mistral_format: Some(MistralFormat::Ollama),
            llama2_format: Some(Llama2Format::Raw),
            ..ServiceOptions::default()
        };
        for p in Provider::ALL {
            let kind = ProviderKind::new(p, &formats).unwrap();
            assert_eq!(kind.provider(), p);
            assert_eq!(kind.name(), p.as_str());
        }
        assert_eq!(
            ProviderKind::new(Provider::Mistral, &formats),
            Some(ProviderKind::Mistral(MistralFormat::Ollama))
        );
    }
}

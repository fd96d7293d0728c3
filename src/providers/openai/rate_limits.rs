//! Rate-limit headers of the OpenAI dialects (docs/wire-formats.md, "Rate-limit
//! headers"). OpenAI, Azure and the self-hosted servers already use OpenAI's names, which
//! pass through as sent. Mistral counts per minute under its own names:
//! `x-ratelimit-{limit,remaining}-req-minute` → `x-ratelimit-{limit,remaining}-requests`,
//! `x-ratelimit-{limit,remaining}-tokens-minute` → `…-tokens`. It sends no reset, so none
//! is invented; its monthly counts have no OpenAI name and pass through as they are.

use std::borrow::Cow;

pub(super) fn mistral<'h>(
    headers: &'h [(String, String)],
    emit: &mut dyn FnMut(&'static str, Cow<'h, str>),
) {
    for (name, value) in headers {
        let openai = match name.as_str() {
            "x-ratelimit-limit-req-minute" => "x-ratelimit-limit-requests",
            "x-ratelimit-remaining-req-minute" => "x-ratelimit-remaining-requests",
            "x-ratelimit-limit-tokens-minute" => "x-ratelimit-limit-tokens",
            "x-ratelimit-remaining-tokens-minute" => "x-ratelimit-remaining-tokens",
            _ => continue,
        };
        emit(openai, Cow::Borrowed(value));
    }
}

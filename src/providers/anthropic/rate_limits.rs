//! Anthropic's rate-limit headers under OpenAI's names (docs/wire-formats.md, "Rate-limit
//! headers"): `anthropic-ratelimit-requests-*` → `x-ratelimit-*-requests`, and the tokens
//! limit → `x-ratelimit-*-tokens`: `anthropic-ratelimit-tokens-*` (Anthropic's most
//! restrictive token limit) when sent, else whichever of the input- and output-tokens
//! limits has less remaining. Resets are RFC 3339 times, turned into OpenAI's durations.

use std::borrow::Cow;

use chrono::{DateTime, Utc};

use crate::providers::shared::openai_duration;

const PREFIX: &str = "anthropic-ratelimit-";

/// One limit's three headers, as sent.
#[derive(Default, Clone, Copy)]
struct Window<'h> {
    limit: Option<&'h str>,
    remaining: Option<&'h str>,
    reset: Option<&'h str>,
}

impl<'h> Window<'h> {
    fn is_empty(&self) -> bool {
        self.limit.is_none() && self.remaining.is_none() && self.reset.is_none()
    }

    fn remaining(&self) -> u64 {
        self.remaining
            .and_then(|r| r.trim().parse().ok())
            .unwrap_or(u64::MAX)
    }

    fn emit(
        &self,
        names: [&'static str; 3],
        now: DateTime<Utc>,
        emit: &mut dyn FnMut(&'static str, Cow<'h, str>),
    ) {
        if let Some(limit) = self.limit {
            emit(names[0], Cow::Borrowed(limit));
        }
        if let Some(remaining) = self.remaining {
            emit(names[1], Cow::Borrowed(remaining));
        }
        // An unreadable time is dropped rather than passed on in a format clients
        // do not expect.
        if let Some(reset) = self
            .reset
            .and_then(|r| DateTime::parse_from_rfc3339(r.trim()).ok())
        {
            let millis = (reset.with_timezone(&Utc) - now).num_milliseconds();
            emit(names[2], Cow::Owned(openai_duration(millis)));
        }
    }
}

pub(super) fn rate_limit_headers<'h>(
    headers: &'h [(String, String)],
    now: DateTime<Utc>,
    emit: &mut dyn FnMut(&'static str, Cow<'h, str>),
) {
    let [mut requests, mut tokens, mut input, mut output] = [Window::default(); 4];
    for (name, value) in headers {
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let (window, field) = if let Some(f) = rest.strip_prefix("requests-") {
            (&mut requests, f)
        } else if let Some(f) = rest.strip_prefix("tokens-") {
            (&mut tokens, f)
        } else if let Some(f) = rest.strip_prefix("input-tokens-") {
            (&mut input, f)
        } else if let Some(f) = rest.strip_prefix("output-tokens-") {
            (&mut output, f)
        } else {
            continue;
        };
        let value = Some(value.as_str());
        match field {
            "limit" => window.limit = value,
            "remaining" => window.remaining = value,
            "reset" => window.reset = value,
            _ => {}
        }
    }
    requests.emit(
        [
            "x-ratelimit-limit-requests",
            "x-ratelimit-remaining-requests",
            "x-ratelimit-reset-requests",
        ],
        now,
        emit,
    );
    let tokens = if !tokens.is_empty() {
        tokens
    } else if input.is_empty() || (!output.is_empty() && output.remaining() < input.remaining()) {
        output
    } else {
        input
    };
    tokens.emit(
        [
            "x-ratelimit-limit-tokens",
            "x-ratelimit-remaining-tokens",
            "x-ratelimit-reset-tokens",
        ],
        now,
        emit,
    );
}

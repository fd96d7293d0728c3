//! Usage of a `preserve` answer (docs/architecture.md, "The analytics line"): the body is
//! passed through untouched, but when it is JSON and carries an OpenAI-shaped
//! (`usage.prompt_tokens` / `completion_tokens`) or Anthropic-shaped (`usage.input_tokens`
//! / `output_tokens`, cache reads and writes counted as input) usage object, it is recorded.

use serde::Deserialize;

#[derive(Deserialize)]
struct Answer {
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Usage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
}

/// `(prompt, completion)` from a `preserve` answer's body, when it reports them.
pub fn preserve_usage(body: &[u8]) -> Option<(u64, u64)> {
    // Only the `usage` member is kept; the rest of the body is skipped, not built.
    let usage = serde_json::from_slice::<Answer>(body).ok()?.usage?;
    if usage.prompt_tokens.is_some() || usage.completion_tokens.is_some() {
        return Some((
            usage.prompt_tokens.unwrap_or(0),
            usage.completion_tokens.unwrap_or(0),
        ));
    }
    if usage.input_tokens.is_some() || usage.output_tokens.is_some() {
        let input = usage.input_tokens.unwrap_or(0)
            + usage.cache_creation_input_tokens.unwrap_or(0)
            + usage.cache_read_input_tokens.unwrap_or(0);
        return Some((input, usage.output_tokens.unwrap_or(0)));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_and_anthropic_usage_shapes_are_read() {
        assert_eq!(
            preserve_usage(br#"{"object":"list","data":[{"embedding":[0.1]}],"usage":{"prompt_tokens":8,"total_tokens":8}}"#),
            Some((8, 0))
        );
        assert_eq!(
            preserve_usage(br#"{"choices":[],"usage":{"prompt_tokens":10,"completion_tokens":5}}"#),
            Some((10, 5))
        );
        assert_eq!(
            preserve_usage(br#"{"content":[],"usage":{"input_tokens":7,"output_tokens":3,"cache_read_input_tokens":20}}"#),
            Some((27, 3))
        );
        assert_eq!(preserve_usage(br#"{"usage":{}}"#), None);
        assert_eq!(preserve_usage(br#"{"data":[]}"#), None);
        assert_eq!(preserve_usage(b"<html>ok</html>"), None);
        assert_eq!(preserve_usage(br#"[1,2]"#), None);
    }
}

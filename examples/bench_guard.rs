//! The prompt guard's cost on a large prompt (bench/README.md, "Policies"): ten deny
//! patterns of the kind operators write, checked against a 100 KB chat prompt that none of
//! them matches (the worst case: every pattern scans all of it). Prints one line,
//! `BENCH_GUARD checks=N prompt_bytes=B median_us=… p99_us=…`, for bench/run.
//!
//! Usage: `bench_guard [checks]` (default 2000).

use std::time::Instant;

use serde_json::{Map, Value, json};
use tollgate::policy::CompiledGuard;
use tollgate::vocab::policy::PromptGuardConfig;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let checks: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(2000);
    let config: PromptGuardConfig = serde_json::from_value(json!({
        "deny_patterns": [
            "(?i)ignore (all|any|previous|prior) instructions",
            "(?i)disregard (the|your) (system|previous) prompt",
            "(?i)you are now (DAN|in developer mode)",
            r"\b\d{3}-\d{2}-\d{4}\b",
            r"(?i)\bpassword\s*[:=]",
            r"(?i)api[_-]?key\s*[:=]\s*\S{16,}",
            r"\b(?:\d[ -]*?){13,16}\b",
            "(?i)reveal (the|your) (system prompt|instructions)",
            "(?i)jailbreak",
            r"(?i)BEGIN (RSA|OPENSSH) PRIVATE KEY",
        ],
    }))?;
    let guard = CompiledGuard::new(&config)?;
    // 100 KB of ordinary prose, in a few user messages and one assistant turn.
    let sentence = "The quarterly report shows steady growth across all regions and teams. ";
    let chunk: String = sentence.repeat(100 * 1024 / sentence.len() / 4 + 1);
    let body: Map<String, Value> = serde_json::from_value(json!({"messages": [
        {"role": "system", "content": "You summarise reports."},
        {"role": "user", "content": chunk},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": chunk},
        {"role": "user", "content": chunk},
        {"role": "user", "content": chunk},
    ]}))?;
    let prompt_bytes: usize = body["messages"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|m| m["content"].as_str())
                .map(str::len)
                .sum()
        })
        .unwrap_or(0);
    if guard.check(&body).is_err() {
        return Err("the benchmark prompt must pass the guard".into());
    }
    let mut micros: Vec<f64> = Vec::with_capacity(checks);
    for _ in 0..checks {
        let started = Instant::now();
        let passed = guard.check(&body).is_ok();
        micros.push(started.elapsed().as_secs_f64() * 1e6);
        std::hint::black_box(passed);
    }
    micros.sort_by(f64::total_cmp);
    let at = |q: f64| micros[((micros.len() - 1) as f64 * q) as usize];
    println!(
        "BENCH_GUARD checks={checks} prompt_bytes={prompt_bytes} median_us={:.1} p99_us={:.1}",
        at(0.5),
        at(0.99)
    );
    Ok(())
}

//! What `vembed-lab bench` prints: the figures of each host run and baseline
//! side by side, and their ratios, as a table or JSON.

use super::measure::Report;
use super::{Baseline, BenchArgs};

/// (label, key in a vembed report, key in a baseline's JSON, divisor).
const ROWS: [(&str, &str, &str, f64); 8] = [
    ("single query p50 (ms)", "single_query_p50_ms", "single_query_p50_ms", 1.0),
    ("single query p99 (ms)", "single_query_p99_ms", "single_query_p99_ms", 1.0),
    ("bulk (chunks/s)", "bulk_chunks_per_s", "bulk_texts_per_s", 1.0),
    ("bulk (tokens/s)", "bulk_tokens_per_s", "bulk_tokens_per_s", 1.0),
    ("peak RSS (MiB)", "peak_rss_bytes", "peak_rss_bytes", 1048576.0),
    ("PSS idle (MiB)", "host_pss_idle_bytes", "pss_bytes", 1048576.0),
    ("PSS during bulk (MiB)", "host_pss_bulk_max_bytes", "pss_bytes", 1048576.0),
    ("PSS after bulk (MiB)", "host_pss_bytes", "pss_bytes", 1048576.0),
];

/// Prints the runs (one per precision, or the one host) and baselines.
pub(super) fn print(
    runs: &[(Option<String>, Report)],
    baselines: &[(Baseline, serde_json::Value)],
    args: &BenchArgs,
    group: &str,
) -> anyhow::Result<()> {
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&json(runs, baselines, group)?)?)?;
        return Ok(());
    }
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    for (w, report) in runs {
        outln!()?;
        outln!(
            "model {}{} in host pid {} ({} threads), load average {:.2}",
            report.model,
            w.as_ref()
                .map(|w| match group {
                    "weights" => format!(" with {w} weights"),
                    _ => format!(" ({w})"),
                })
                .unwrap_or_default(),
            report.host_pid,
            report.threads,
            report.load_avg_1m
        )?;
        outln!(
            "single query ({} requests): p50 {:.2} ms, p99 {:.2} ms",
            report.single_query_requests,
            report.single_query_p50_ms,
            report.single_query_p99_ms
        )?;
        outln!(
            "ipc overhead (round trip minus host time): p50 {:.1} µs, p99 {:.1} µs",
            report.ipc_overhead_p50_us,
            report.ipc_overhead_p99_us
        )?;
        outln!(
            "ping round trip: p50 {:.1} µs back to back, {:.1} µs after {:.1} ms idle; embed of no texts (through the queue) {:.1} µs",
            report.ping_p50_us,
            report.ping_after_idle_p50_us,
            report.idle_nap_ms,
            report.empty_embed_p50_us
        )?;
        outln!(
            "bulk: {} texts (mean {:.0} tokens) at batch {} in {:.2} s: {:.1} texts/s, {:.0} tokens/s",
            report.bulk_texts,
            report.bulk_mean_tokens,
            report.bulk_batch,
            report.bulk_seconds,
            report.bulk_texts_per_s,
            report.bulk_tokens_per_s
        )?;
        outln!(
            "host memory: pss {:.1} MiB idle, at most {:.1} MiB during bulk, {:.1} MiB after; rss {:.1} MiB, peak rss {:.1} MiB",
            mib(report.host_pss_idle_bytes),
            mib(report.host_pss_bulk_max_bytes),
            mib(report.host_pss_bytes),
            mib(report.host_rss_bytes),
            mib(report.peak_rss_bytes)
        )?;
    }
    if runs.len() == 1 && baselines.is_empty() {
        return Ok(());
    }
    // One column per run and baseline, then the ratios of each run to the
    // first run and to each baseline.
    let mut cols: Vec<(String, serde_json::Value, &str)> = Vec::new();
    for (w, r) in runs {
        let label = w.as_ref().map_or("vembed".to_string(), |w| format!("vembed {w}"));
        cols.push((label, serde_json::to_value(r)?, "vembed"));
    }
    for (b, v) in baselines {
        cols.push((b.label().to_string(), v.clone(), "baseline"));
    }
    let value = |c: &(String, serde_json::Value, &str), row: &(&str, &str, &str, f64)| {
        let key = if c.2 == "vembed" { row.1 } else { row.2 };
        num(&c.1, key) / row.3
    };
    let mut pairs: Vec<(usize, usize)> = Vec::new();
    for i in 0..runs.len() {
        if i > 0 {
            pairs.push((i, 0));
        }
        for j in runs.len()..cols.len() {
            pairs.push((i, j));
        }
    }
    outln!()?;
    out!("{:<22}", "")?;
    for c in &cols {
        out!(" {:>21}", c.0)?;
    }
    outln!()?;
    for row in &ROWS {
        out!("{:<22}", row.0)?;
        for c in &cols {
            out!(" {:>21.2}", value(c, row))?;
        }
        outln!()?;
    }
    outln!()?;
    outln!("ratios (below 1 is better for latency and memory, above 1 for throughput):")?;
    out!("{:<22}", "")?;
    for &(i, j) in &pairs {
        out!(" {:>21}", format!("{} / {}", short(&cols[i].0), short(&cols[j].0)))?;
    }
    outln!()?;
    for row in &ROWS {
        out!("{:<22}", row.0)?;
        for &(i, j) in &pairs {
            out!(" {:>20.2}x", value(&cols[i], row) / value(&cols[j], row))?;
        }
        outln!()?;
    }
    for (b, v) in baselines {
        outln!(
            "{}: {} ({} threads), import {:.1} s, load {:.2} s, load average {:.2}",
            b.label(),
            v.get("impl").and_then(|v| v.as_str()).unwrap_or("?"),
            num(v, "threads"),
            num(v, "import_seconds"),
            num(v, "load_seconds"),
            num(v, "load_avg_1m")
        )?;
        if let Some(c) = v.get("parity_min_cosine").and_then(serde_json::Value::as_f64) {
            outln!("  checked against sentence-transformers first: least cosine {c:.5}")?;
        }
    }
    Ok(())
}

/// A column label short enough for a ratio's heading.
fn short(label: &str) -> &str {
    match label {
        "sentence-transformers" => "ST",
        "ONNX Runtime" => "ORT",
        "ONNX Runtime int8" => "ORT int8",
        other => other.strip_prefix("vembed ").unwrap_or(other),
    }
}

/// The JSON form. One host: its report, or with baselines
/// `{"vembed": report, <baseline>: ..., "ratios"[_<baseline>]: ...}`.
/// With `--weights`: `{"weights": {<w>: report}, <baseline>: ...,
/// "ratios": {"<w>/<first w>" | "<w>/<baseline>": ...}}`; with
/// `--via-remote`, the same under `"hosts"` (`direct`, `remote-c<N>`).
fn json(
    runs: &[(Option<String>, Report)],
    baselines: &[(Baseline, serde_json::Value)],
    group: &str,
) -> anyhow::Result<serde_json::Value> {
    if let [(None, report)] = runs {
        if baselines.is_empty() {
            return Ok(serde_json::to_value(report)?);
        }
        let mut out = serde_json::json!({ "vembed": report });
        for (b, v) in baselines {
            out[b.key()] = v.clone();
            let key = match b {
                Baseline::Torch => "ratios".to_string(),
                other => format!("ratios_{}", other.key()),
            };
            out[key] = ratios(report, v);
        }
        return Ok(out);
    }
    let mut out = serde_json::json!({ group: {}, "ratios": {} });
    let first = &runs[0];
    let name = |w: &Option<String>| w.clone().unwrap_or_else(|| "vembed".into());
    for (w, report) in runs {
        out[group][name(w)] = serde_json::to_value(report)?;
        if !std::ptr::eq(report, &first.1) {
            let as_baseline = baseline_shape(&first.1)?;
            out["ratios"][format!("{}/{}", name(w), name(&first.0))] = ratios(report, &as_baseline);
        }
        for (b, v) in baselines {
            out["ratios"][format!("{}/{}", name(w), b.key())] = ratios(report, v);
        }
    }
    for (b, v) in baselines {
        out[b.key()] = v.clone();
    }
    Ok(out)
}

/// A report with the keys a baseline's JSON uses, to compute ratios.
fn baseline_shape(r: &Report) -> anyhow::Result<serde_json::Value> {
    let mut v = serde_json::to_value(r)?;
    v["bulk_texts_per_s"] = v["bulk_chunks_per_s"].clone();
    v["pss_bytes"] = v["host_pss_bytes"].clone();
    Ok(v)
}

fn num(v: &serde_json::Value, key: &str) -> f64 {
    v.get(key).and_then(serde_json::Value::as_f64).unwrap_or(f64::NAN)
}

/// vembed over a baseline: above 1 means vembed is better for throughput,
/// below 1 means vembed is better for latency and memory.
pub(super) fn ratios(report: &Report, st: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "single_query_p50": report.single_query_p50_ms / num(st, "single_query_p50_ms"),
        "single_query_p99": report.single_query_p99_ms / num(st, "single_query_p99_ms"),
        "bulk_chunks_per_s": report.bulk_chunks_per_s / num(st, "bulk_texts_per_s"),
        "bulk_tokens_per_s": report.bulk_tokens_per_s / num(st, "bulk_tokens_per_s"),
        "peak_rss": report.peak_rss_bytes as f64 / num(st, "peak_rss_bytes"),
        "memory_pss": report.host_pss_bytes as f64 / num(st, "pss_bytes"),
    })
}

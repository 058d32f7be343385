//! `vembed bench`: latency, throughput and IPC overhead through the host.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use vembed::{Client, ModelRef, Role};

/// Options of `vembed bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Texts for the bulk run: one JSON string or {"text": ...} per line, or plain lines.
    #[arg(long)]
    texts: Option<PathBuf>,
    /// Without --texts: cut the source files under this folder into chunks.
    #[arg(long, default_value = ".")]
    corpus: PathBuf,
    /// Lines per chunk cut from the corpus.
    #[arg(long, default_value_t = 30)]
    chunk_lines: usize,
    /// Texts in the bulk run.
    #[arg(long, default_value_t = 512)]
    bulk_texts: usize,
    /// Texts per request in the bulk run.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Single-query requests to time.
    #[arg(long, default_value_t = 300)]
    requests: usize,
    /// The single query.
    #[arg(long, default_value = "find the function that validates email addresses")]
    query: String,
    /// Write the bulk texts as JSON lines here (to feed the same set to a baseline).
    #[arg(long)]
    dump_texts: Option<PathBuf>,
    /// Also run in-process baselines with this Python (one that has
    /// sentence-transformers installed, and onnxruntime, onnx and onnxscript
    /// for the onnx baselines) on the same model and texts, and show them
    /// side by side with ratios.
    #[arg(long)]
    baseline_python: Option<PathBuf>,
    /// Which baselines --baseline-python runs: torch (sentence-transformers),
    /// onnx (ONNX Runtime on the same model exported to ONNX), onnx-int8
    /// (that export quantized to int8, dynamic and per channel). An ONNX
    /// model is checked against sentence-transformers before it is timed.
    #[arg(long, value_delimiter = ',', default_value = "torch")]
    baselines: Vec<Baseline>,
}

/// An in-process Python baseline.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Baseline {
    /// sentence-transformers on PyTorch.
    Torch,
    /// ONNX Runtime.
    Onnx,
    /// ONNX Runtime on the export quantized to int8 (dynamic, per channel).
    #[value(name = "onnx-int8")]
    OnnxInt8,
}

impl Baseline {
    fn key(self) -> &'static str {
        match self {
            Baseline::Torch => "sentence_transformers",
            Baseline::Onnx => "onnx_runtime",
            Baseline::OnnxInt8 => "onnx_runtime_int8",
        }
    }
    /// `st_baseline.py --engine`.
    fn engine(self) -> &'static str {
        match self {
            Baseline::Torch => "torch",
            Baseline::Onnx => "onnx",
            Baseline::OnnxInt8 => "onnx-int8",
        }
    }
    fn label(self) -> &'static str {
        match self {
            Baseline::Torch => "sentence-transformers",
            Baseline::Onnx => "ONNX Runtime",
            Baseline::OnnxInt8 => "ONNX Runtime int8",
        }
    }
}

/// The in-process baselines, run by `--baseline-python`.
const ST_BASELINE: &str = include_str!("st_baseline.py");

#[derive(Serialize)]
struct Report {
    model: String,
    host_pid: u32,
    threads: u32,
    load_avg_1m: f64,
    single_query_requests: usize,
    single_query_p50_ms: f64,
    single_query_p99_ms: f64,
    ping_p50_us: f64,
    ping_after_idle_p50_us: f64,
    empty_embed_p50_us: f64,
    ipc_overhead_p50_us: f64,
    ipc_overhead_p99_us: f64,
    bulk_texts: usize,
    bulk_batch: usize,
    bulk_seconds: f64,
    bulk_texts_per_s: f64,
    bulk_chunks_per_s: f64,
    bulk_tokens_per_s: f64,
    bulk_mean_tokens: f64,
    peak_rss_bytes: u64,
    host_pss_bytes: u64,
    host_rss_bytes: u64,
}

use super::{load_avg, percentile};

/// Runs the benchmark on a connected client.
pub fn run(client: &mut Client, args: &BenchArgs) -> anyhow::Result<()> {
    let texts = match &args.texts {
        Some(p) => read_texts(p)?,
        None => corpus_chunks(&args.corpus, args.chunk_lines, args.bulk_texts)?,
    };
    let texts: Vec<String> = texts.into_iter().take(args.bulk_texts).collect();
    if texts.is_empty() {
        bail!("no texts for the bulk run (use --texts FILE or --corpus DIR)");
    }
    if let Some(p) = &args.dump_texts {
        write_jsonl(p, &texts)?;
    }
    let unified = ModelRef::Role(Role::Unified);

    // Single query: warm up, then time each round trip.
    for _ in 0..10 {
        client.embed_with(&unified, &[args.query.as_str()])?;
    }
    let mut rtt_ms = Vec::with_capacity(args.requests);
    let mut overhead_us = Vec::with_capacity(args.requests);
    for _ in 0..args.requests {
        let t = Instant::now();
        let e = client.embed_with(&unified, &[args.query.as_str()])?;
        let rtt = t.elapsed();
        rtt_ms.push(rtt.as_secs_f64() * 1e3);
        overhead_us.push(rtt.as_secs_f64() * 1e6 - e.host_us as f64);
    }
    let mut ping_us = Vec::new();
    for _ in 0..args.requests {
        let t = Instant::now();
        client.ping()?;
        ping_us.push(t.elapsed().as_secs_f64() * 1e6);
    }

    // The same ping after the client sat idle as long as a forward pass takes:
    // the wake-up cost every blocking round trip pays on this machine.
    let mut idle_ping_us = Vec::new();
    let nap = Duration::from_secs_f64(percentile(&mut rtt_ms.clone(), 0.5) / 1e3);
    for _ in 0..args.requests.min(200) {
        std::thread::sleep(nap);
        let t = Instant::now();
        client.ping()?;
        idle_ping_us.push(t.elapsed().as_secs_f64() * 1e6);
    }

    // An embed request with no texts: socket, queue and batcher, no forward pass.
    let mut empty_us = Vec::new();
    for _ in 0..args.requests {
        let t = Instant::now();
        client.embed_with(&unified, &[])?;
        empty_us.push(t.elapsed().as_secs_f64() * 1e6);
    }

    // Bulk.
    client.set_texts_per_request(args.batch);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let t = Instant::now();
    let out = client.embed_with(&unified, &refs)?;
    let bulk = t.elapsed().max(Duration::from_micros(1));
    let tokens: u64 = out.tokens.iter().map(|&t| u64::from(t)).sum();
    let status = client.status()?;

    let report = Report {
        model: out.model.clone(),
        host_pid: status.pid,
        threads: status.threads,
        load_avg_1m: load_avg(),
        single_query_requests: args.requests,
        single_query_p50_ms: percentile(&mut rtt_ms.clone(), 0.5),
        single_query_p99_ms: percentile(&mut rtt_ms, 0.99),
        ping_p50_us: percentile(&mut ping_us, 0.5),
        ping_after_idle_p50_us: percentile(&mut idle_ping_us, 0.5),
        empty_embed_p50_us: percentile(&mut empty_us, 0.5),
        ipc_overhead_p50_us: percentile(&mut overhead_us.clone(), 0.5),
        ipc_overhead_p99_us: percentile(&mut overhead_us, 0.99),
        bulk_texts: texts.len(),
        bulk_batch: args.batch,
        bulk_seconds: bulk.as_secs_f64(),
        bulk_texts_per_s: texts.len() as f64 / bulk.as_secs_f64(),
        bulk_chunks_per_s: texts.len() as f64 / bulk.as_secs_f64(),
        bulk_tokens_per_s: tokens as f64 / bulk.as_secs_f64(),
        bulk_mean_tokens: tokens as f64 / texts.len() as f64,
        peak_rss_bytes: status.memory.peak_rss,
        host_pss_bytes: status.memory.pss,
        host_rss_bytes: status.memory.rss,
    };
    let mut baselines: Vec<(Baseline, serde_json::Value)> = Vec::new();
    if let Some(python) = &args.baseline_python {
        let model_dir = client
            .hello()
            .models
            .iter()
            .find(|m| m.roles.contains(&Role::Unified))
            .map(|m| m.path.clone())
            .context("the host reports no unified model")?;
        for &b in &args.baselines {
            baselines.push((b, run_baseline(python, b, &model_dir, &texts, args, status.threads)?));
        }
    }
    if args.json {
        let out = if baselines.is_empty() {
            serde_json::to_value(&report)?
        } else {
            let mut out = serde_json::json!({ "vembed": report });
            for (b, v) in &baselines {
                out[b.key()] = v.clone();
                let key = match b {
                    Baseline::Torch => "ratios".to_string(),
                    other => format!("ratios_{}", other.key()),
                };
                out[key] = ratios(&report, v);
            }
            out
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!(
        "model {} in host pid {} ({} threads), load average {:.2}",
        report.model, report.host_pid, report.threads, report.load_avg_1m
    );
    println!(
        "single query ({} requests): p50 {:.2} ms, p99 {:.2} ms",
        report.single_query_requests, report.single_query_p50_ms, report.single_query_p99_ms
    );
    println!(
        "ipc overhead (round trip minus host time): p50 {:.1} µs, p99 {:.1} µs",
        report.ipc_overhead_p50_us, report.ipc_overhead_p99_us
    );
    println!(
        "ping round trip: p50 {:.1} µs back to back, {:.1} µs after {:.1} ms idle; embed of no texts (through the queue) {:.1} µs",
        report.ping_p50_us,
        report.ping_after_idle_p50_us,
        nap.as_secs_f64() * 1e3,
        report.empty_embed_p50_us
    );
    println!(
        "bulk: {} texts (mean {:.0} tokens) at batch {} in {:.2} s: {:.1} texts/s, {:.0} tokens/s",
        report.bulk_texts,
        report.bulk_mean_tokens,
        report.bulk_batch,
        report.bulk_seconds,
        report.bulk_texts_per_s,
        report.bulk_tokens_per_s
    );
    println!(
        "host memory: pss {:.1} MiB, rss {:.1} MiB, peak rss {:.1} MiB",
        mib(report.host_pss_bytes),
        mib(report.host_rss_bytes),
        mib(report.peak_rss_bytes)
    );
    if baselines.is_empty() {
        return Ok(());
    }
    println!();
    print!("{:<24} {:>10}", "", "vembed");
    for (b, _) in &baselines {
        print!(" {:>22} {:>7}", b.label(), "ratio");
    }
    println!();
    let rows: [(&str, f64, &str, f64); 6] = [
        ("single query p50 (ms)", report.single_query_p50_ms, "single_query_p50_ms", 1.0),
        ("single query p99 (ms)", report.single_query_p99_ms, "single_query_p99_ms", 1.0),
        ("bulk (chunks/s)", report.bulk_chunks_per_s, "bulk_texts_per_s", 1.0),
        ("bulk (tokens/s)", report.bulk_tokens_per_s, "bulk_tokens_per_s", 1.0),
        ("peak RSS (MiB)", mib(report.peak_rss_bytes), "peak_rss_bytes", 1048576.0),
        ("PSS (MiB)", mib(report.host_pss_bytes), "pss_bytes", 1048576.0),
    ];
    for (name, ours, key, scale) in rows {
        print!("{name:<24} {ours:>10.2}");
        for (_, v) in &baselines {
            let theirs = num(v, key) / scale;
            print!(" {theirs:>22.2} {:>6.2}x", ours / theirs);
        }
        println!();
    }
    for (b, v) in &baselines {
        println!(
            "{}: {} ({} threads), import {:.1} s, load {:.2} s, load average {:.2}",
            b.label(),
            v.get("impl").and_then(|v| v.as_str()).unwrap_or("?"),
            num(v, "threads"),
            num(v, "import_seconds"),
            num(v, "load_seconds"),
            num(v, "load_avg_1m")
        );
        if let Some(c) = v.get("parity_min_cosine").and_then(serde_json::Value::as_f64) {
            println!("  checked against sentence-transformers first: least cosine {c:.5}");
        }
    }
    Ok(())
}

fn num(v: &serde_json::Value, key: &str) -> f64 {
    v.get(key).and_then(serde_json::Value::as_f64).unwrap_or(f64::NAN)
}

/// vembed over a baseline: above 1 means vembed is better for throughput,
/// below 1 means vembed is better for latency and memory.
fn ratios(report: &Report, st: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "single_query_p50": report.single_query_p50_ms / num(st, "single_query_p50_ms"),
        "single_query_p99": report.single_query_p99_ms / num(st, "single_query_p99_ms"),
        "bulk_chunks_per_s": report.bulk_chunks_per_s / num(st, "bulk_texts_per_s"),
        "bulk_tokens_per_s": report.bulk_tokens_per_s / num(st, "bulk_tokens_per_s"),
        "peak_rss": report.peak_rss_bytes as f64 / num(st, "peak_rss_bytes"),
        "memory_pss": report.host_pss_bytes as f64 / num(st, "pss_bytes"),
    })
}

/// Runs `st_baseline.py` (compiled in) on the same texts.
fn run_baseline(
    python: &Path,
    which: Baseline,
    model_dir: &str,
    texts: &[String],
    args: &BenchArgs,
    threads: u32,
) -> anyhow::Result<serde_json::Value> {
    let dir = std::env::temp_dir().join(format!("vembed-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let script = dir.join("st_baseline.py");
    std::fs::write(&script, ST_BASELINE)?;
    let data = dir.join("texts.jsonl");
    write_jsonl(&data, texts)?;
    if !args.json {
        eprintln!("running the {} baseline with {} ...", which.label(), python.display());
    }
    let out = std::process::Command::new(python)
        .arg(&script)
        .args(["--model", model_dir, "--texts"])
        .arg(&data)
        .args(["--requests", &args.requests.to_string(), "--batch", &args.batch.to_string()])
        .args(["--threads", &threads.to_string(), "--query", &args.query])
        .args(["--engine", which.engine()])
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    let _ = std::fs::remove_dir_all(&dir);
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no output");
        bail!("the {} baseline failed: {last}", which.label());
    }
    serde_json::from_slice(&out.stdout).context("reading the baseline's JSON")
}

/// Writes texts as JSON lines, the format `--texts` and the baseline read.
fn write_jsonl(path: &Path, texts: &[String]) -> anyhow::Result<()> {
    let mut out = String::new();
    for t in texts {
        out.push_str(&serde_json::to_string(t)?);
        out.push('\n');
    }
    std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))
}

fn read_texts(path: &Path) -> anyhow::Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| match serde_json::from_str::<serde_json::Value>(l) {
            Ok(serde_json::Value::String(s)) => s,
            Ok(serde_json::Value::Object(o)) => {
                o.get("text").and_then(|t| t.as_str()).map_or_else(|| l.to_string(), str::to_string)
            }
            _ => l.to_string(),
        })
        .collect())
}

/// Cuts source files under `dir` (sorted, so runs are comparable) into
/// chunks of `lines` lines, keeping chunks with some substance.
pub fn corpus_chunks(dir: &Path, lines: usize, want: usize) -> anyhow::Result<Vec<String>> {
    const EXTS: [&str; 9] = ["rs", "py", "go", "js", "ts", "c", "h", "java", "cpp"];
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name == "target" || name == "node_modules" {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().and_then(|x| x.to_str()).is_some_and(|x| EXTS.contains(&x)) {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut chunks = Vec::new();
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else { continue };
        let all: Vec<&str> = text.lines().collect();
        for c in all.chunks(lines.max(1)) {
            if c.iter().filter(|l| l.trim().len() > 3).count() >= lines.max(1) / 2 {
                chunks.push(c.join("\n"));
                if chunks.len() >= want {
                    return Ok(chunks);
                }
            }
        }
    }
    Ok(chunks)
}

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
}

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

fn percentile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn load_avg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|x| x.parse().ok()))
        .unwrap_or(0.0)
}

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
        let mut out = String::new();
        for t in &texts {
            out.push_str(&serde_json::to_string(t)?);
            out.push('\n');
        }
        std::fs::write(p, out).with_context(|| format!("writing {}", p.display()))?;
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
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
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
    Ok(())
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

//! One host's figures: single-query latency, IPC overhead, bulk throughput
//! and memory.

use std::time::{Duration, Instant};

use serde::Serialize;
use vembed::{Client, ModelRef, Role};

use super::BenchArgs;
use crate::stats::{load_avg, percentile};

/// One host's figures.
#[derive(Serialize)]
pub(super) struct Report {
    pub(super) model: String,
    pub(super) host_pid: u32,
    pub(super) threads: u32,
    pub(super) load_avg_1m: f64,
    pub(super) single_query_requests: usize,
    pub(super) single_query_p50_ms: f64,
    pub(super) single_query_p99_ms: f64,
    pub(super) ping_p50_us: f64,
    pub(super) ping_after_idle_p50_us: f64,
    /// How long the client slept before each of those pings.
    pub(super) idle_nap_ms: f64,
    pub(super) empty_embed_p50_us: f64,
    pub(super) ipc_overhead_p50_us: f64,
    pub(super) ipc_overhead_p99_us: f64,
    pub(super) bulk_texts: usize,
    pub(super) bulk_batch: usize,
    pub(super) bulk_seconds: f64,
    pub(super) bulk_texts_per_s: f64,
    pub(super) bulk_chunks_per_s: f64,
    pub(super) bulk_tokens_per_s: f64,
    pub(super) bulk_mean_tokens: f64,
    pub(super) peak_rss_bytes: u64,
    /// PSS after the single-query runs, before the bulk run.
    pub(super) host_pss_idle_bytes: u64,
    /// The most PSS seen while the bulk run worked (sampled every 250 ms on
    /// a second connection; the host walks its page tables to answer, so
    /// not more often) or just after it.
    pub(super) host_pss_bulk_max_bytes: u64,
    pub(super) host_pss_bytes: u64,
    pub(super) host_rss_bytes: u64,
}

/// Measures the host `client` is connected to on `texts`.
pub(super) fn measure(
    client: &mut Client,
    texts: &[String],
    args: &BenchArgs,
) -> anyhow::Result<Report> {
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

    let idle = client.status()?;

    // Bulk.
    client.set_texts_per_request(args.batch);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    // A second connection samples the host's PSS while the bulk run works.
    let done = std::sync::atomic::AtomicBool::new(false);
    let mut sampler = Client::connect(client.socket())?;
    let (out, bulk, bulk_pss) = std::thread::scope(|scope| {
        let peak = scope.spawn(|| {
            let mut peak = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(s) = sampler.status() {
                    peak = peak.max(s.memory.pss);
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            peak
        });
        let t = Instant::now();
        let out = client.embed_with(&unified, &refs);
        let bulk = t.elapsed().max(Duration::from_micros(1));
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        (out, bulk, peak.join().unwrap_or(0))
    });
    let out = out?;
    let tokens: u64 = out.tokens.iter().map(|&t| u64::from(t)).sum();
    let status = client.status()?;

    Ok(Report {
        model: out.model.clone(),
        host_pid: status.pid,
        threads: status.threads,
        load_avg_1m: load_avg(),
        single_query_requests: args.requests,
        single_query_p50_ms: percentile(&mut rtt_ms.clone(), 0.5),
        single_query_p99_ms: percentile(&mut rtt_ms, 0.99),
        ping_p50_us: percentile(&mut ping_us, 0.5),
        ping_after_idle_p50_us: percentile(&mut idle_ping_us, 0.5),
        idle_nap_ms: nap.as_secs_f64() * 1e3,
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
        host_pss_idle_bytes: idle.memory.pss,
        host_pss_bulk_max_bytes: bulk_pss.max(status.memory.pss),
        host_pss_bytes: status.memory.pss,
        host_rss_bytes: status.memory.rss,
    })
}

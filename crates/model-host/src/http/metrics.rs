//! `GET /metrics`: Prometheus text (format 0.0.4) of the HTTP front door
//! and the host behind it.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::State;
use crate::stats::{Histogram, LATENCY_BUCKETS};

/// Counters of the HTTP front door.
#[derive(Default)]
pub(crate) struct HttpMetrics {
    /// Requests answered, by endpoint and status.
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    /// Seconds per request, by endpoint.
    seconds: Mutex<BTreeMap<&'static str, Histogram>>,
    /// Connections open now.
    pub open: AtomicU64,
    /// Connections refused (over the limit, or another user's).
    pub refused: AtomicU64,
}

impl HttpMetrics {
    /// One request to `endpoint` answered with `status` after `took`.
    pub fn record(&self, endpoint: &'static str, status: u16, took: Duration) {
        *lock(&self.requests).entry((endpoint, status)).or_default() += 1;
        lock(&self.seconds)
            .entry(endpoint)
            .or_insert_with(|| Histogram::new(LATENCY_BUCKETS))
            .observe(took.as_secs_f64());
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The whole exposition.
pub(crate) fn render(state: &State, who: super::caller::Caller) -> String {
    let mut out = String::with_capacity(8192);
    let m = &state.metrics;
    header(
        &mut out,
        "vembed_http_requests_total",
        "counter",
        "HTTP requests answered, by endpoint and status.",
    );
    for ((endpoint, status), n) in lock(&m.requests).iter() {
        let _ = writeln!(
            out,
            "vembed_http_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}"
        );
    }
    header(
        &mut out,
        "vembed_http_request_duration_seconds",
        "histogram",
        "Time to answer an HTTP request, by endpoint.",
    );
    for (endpoint, h) in lock(&m.seconds).iter() {
        h.render(
            &mut out,
            "vembed_http_request_duration_seconds",
            &format!("endpoint=\"{endpoint}\""),
        );
    }
    gauge(
        &mut out,
        "vembed_http_connections",
        "HTTP connections open now.",
        m.open.load(Ordering::Relaxed) as f64,
    );
    counter(
        &mut out,
        "vembed_http_connections_refused_total",
        "HTTP connections refused: over the limit or another user's.",
        m.refused.load(Ordering::Relaxed),
    );

    let s = &state.stats;
    counter(
        &mut out,
        "vembed_embed_requests_total",
        "Embed requests answered with vectors, every front door.",
        s.requests.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "vembed_texts_total",
        "Texts embedded, every front door.",
        s.texts.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "vembed_request_errors_total",
        "Socket requests answered with an error.",
        s.errors.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "vembed_batches_total",
        "Forward passes run.",
        s.batches.load(Ordering::Relaxed),
    );
    header(&mut out, "vembed_batch_texts", "histogram", "Texts per forward pass.");
    s.batch_texts.render(&mut out, "vembed_batch_texts", "");
    header(
        &mut out,
        "vembed_embed_duration_seconds",
        "histogram",
        "Time from reading an embed request to answering it (queue and forward passes).",
    );
    s.request_seconds.render(&mut out, "vembed_embed_duration_seconds", "");
    gauge(
        &mut out,
        "vembed_queue_texts",
        "Texts waiting in the queue or being embedded now.",
        state.infer.queued() as f64,
    );
    gauge(
        &mut out,
        "vembed_queue_limit_texts",
        "Texts the queue holds before requests get 429.",
        f64::from(state.infer.limits().max_queue_texts),
    );

    let mem = crate::stats::memory_of("self");
    header(&mut out, "vembed_host_memory_bytes", "gauge", "The host's memory, from /proc/self.");
    for (kind, v) in [
        ("rss", mem.rss),
        ("pss", mem.pss),
        ("rss_anon", mem.rss_anon),
        ("rss_file", mem.rss_file),
        ("peak_rss", mem.peak_rss),
    ] {
        let _ = writeln!(out, "vembed_host_memory_bytes{{kind=\"{kind}\"}} {v}");
    }
    gauge(
        &mut out,
        "vembed_uptime_seconds",
        "Seconds since the HTTP front door started.",
        state.started.elapsed().as_secs_f64(),
    );
    header(
        &mut out,
        "vembed_model_info",
        "gauge",
        "The models served (value 1), with their name, sha256 and dimension.",
    );
    for m in state.infer.infos() {
        let _ = writeln!(
            out,
            "vembed_model_info{{name=\"{}\",sha256=\"{}\",dim=\"{}\",max_seq_length=\"{}\"}} 1",
            escape(&super::caller::shown_name(&m.name, &m.sha256, who)),
            m.sha256,
            m.dim,
            m.max_seq_length
        );
    }
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn counter(out: &mut String, name: &str, help: &str, v: u64) {
    header(out, name, "counter", help);
    let _ = writeln!(out, "{name} {v}");
}

fn gauge(out: &mut String, name: &str, help: &str, v: f64) {
    header(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {v}");
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

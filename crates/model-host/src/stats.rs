//! Counters and latency percentiles for `vembed status`, and the host's
//! memory as the kernel reports it.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use vembed_protocol::MemoryStatus;

const WINDOW: usize = 4096;

/// Host-wide counters. Every method takes `&self`.
pub struct Stats {
    /// Embed requests answered with embeddings.
    pub requests: AtomicU64,
    /// Texts embedded.
    pub texts: AtomicU64,
    /// Requests answered with an error.
    pub errors: AtomicU64,
    /// Forward passes.
    pub batches: AtomicU64,
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Texts per forward pass.
    pub batch_texts: Histogram,
    /// Seconds from reading an embed request to answering it (queue and
    /// forward passes), every front door.
    pub request_seconds: Histogram,
    latencies: Latencies,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            requests: AtomicU64::new(0),
            texts: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            batch_texts: Histogram::new(&[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
            request_seconds: Histogram::new(LATENCY_BUCKETS),
            latencies: Latencies::default(),
        }
    }
}

/// Latency buckets, in seconds: 1 ms to 60 s.
pub const LATENCY_BUCKETS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// A Prometheus histogram: fixed upper bounds, a count per bucket, a sum.
pub struct Histogram {
    bounds: &'static [f64],
    /// One per bound, then the overflow (`+Inf`) bucket; not cumulative.
    counts: Vec<AtomicU64>,
    /// The sum of observations, in millionths.
    sum_micros: AtomicU64,
}

impl Histogram {
    /// An empty histogram with these upper bounds (ascending).
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, value: f64) {
        let i = self.bounds.iter().position(|&b| value <= b).unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add((value * 1e6).round() as u64, Ordering::Relaxed);
    }

    /// Writes the histogram's lines in Prometheus text format; `labels` is
    /// empty or `key="value",...` without braces.
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        use std::fmt::Write;
        let sep = if labels.is_empty() { "" } else { "," };
        let mut total = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            total += c.load(Ordering::Relaxed);
            let le = self.bounds.get(i).map_or("+Inf".to_string(), |b| b.to_string());
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {total}");
        }
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {total}");
    }
}

impl Stats {
    /// One request answered after `latency` in the host.
    pub fn record_request(&self, texts: usize, latency: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.texts.fetch_add(texts as u64, Ordering::Relaxed);
        self.latencies.record(latency);
        self.request_seconds.observe(latency.as_secs_f64());
    }

    /// One request answered with an error.
    pub fn record_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// One forward pass of `texts` texts.
    pub fn record_batch(&self, texts: usize) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.batch_texts.observe(texts as f64);
    }

    /// p50 and p99 of recent request latencies, in microseconds.
    pub fn latency_percentiles(&self) -> (u64, u64) {
        self.latencies.percentiles()
    }
}

/// The last [`WINDOW`] latencies, for percentiles.
#[derive(Default)]
pub struct Latencies(Mutex<VecDeque<u64>>);

impl Latencies {
    /// Records one latency.
    pub fn record(&self, latency: Duration) {
        let mut l = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if l.len() == WINDOW {
            l.pop_front();
        }
        l.push_back(latency.as_micros() as u64);
    }

    /// p50 and p99, in microseconds; zeros when none was recorded.
    pub fn percentiles(&self) -> (u64, u64) {
        let mut v: Vec<u64> =
            self.0.lock().unwrap_or_else(|p| p.into_inner()).iter().copied().collect();
        if v.is_empty() {
            return (0, 0);
        }
        v.sort_unstable();
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        (at(0.50), at(0.99))
    }
}

/// Memory of a process (a pid, or `self`), as the status reports it.
pub fn memory_of(pid: &str) -> MemoryStatus {
    let m = vembed_models::os::memory_of(pid);
    MemoryStatus {
        rss: m.rss,
        pss: m.pss,
        rss_anon: m.rss_anon,
        rss_file: m.rss_file,
        peak_rss: m.peak_rss,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let h = Histogram::new(&[1.0, 10.0]);
        for v in [0.5, 1.0, 5.0, 50.0] {
            h.observe(v);
        }
        let mut out = String::new();
        h.render(&mut out, "x", "a=\"b\"");
        assert!(out.contains("x_bucket{a=\"b\",le=\"1\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"10\"} 3\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"+Inf\"} 4\n"), "{out}");
        assert!(out.contains("x_sum{a=\"b\"} 56.5\nx_count{a=\"b\"} 4\n"), "{out}");
    }

    #[test]
    fn percentiles() {
        let s = Stats::default();
        for i in 1..=100 {
            s.record_request(1, Duration::from_micros(i));
        }
        assert_eq!(s.latency_percentiles(), (51, 99));
    }
}

//! Counters and latency percentiles for `vembed status`, and the host's
//! memory as the kernel reports it.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use vembed_protocol::MemoryStatus;

const WINDOW: usize = 4096;

/// Host-wide counters. Every method takes `&self`.
#[derive(Default)]
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
    latencies_us: Mutex<VecDeque<u64>>,
}

impl Stats {
    /// One request answered after `latency` in the host.
    pub fn record_request(&self, texts: usize, latency: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.texts.fetch_add(texts as u64, Ordering::Relaxed);
        let mut l = self.latencies_us.lock().unwrap_or_else(|p| p.into_inner());
        if l.len() == WINDOW {
            l.pop_front();
        }
        l.push_back(latency.as_micros() as u64);
    }

    /// One request answered with an error.
    pub fn record_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// One forward pass.
    pub fn record_batch(&self) {
        self.batches.fetch_add(1, Ordering::Relaxed);
    }

    /// p50 and p99 of recent request latencies, in microseconds.
    pub fn latency_percentiles(&self) -> (u64, u64) {
        let mut v: Vec<u64> =
            self.latencies_us.lock().unwrap_or_else(|p| p.into_inner()).iter().copied().collect();
        if v.is_empty() {
            return (0, 0);
        }
        v.sort_unstable();
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        (at(0.50), at(0.99))
    }
}

fn kib_field(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// Memory of a process from `/proc/PID/status` and `/proc/PID/smaps_rollup`.
pub fn memory_of(pid: &str) -> MemoryStatus {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    MemoryStatus {
        rss: kib_field(&status, "VmRSS:"),
        pss: kib_field(&rollup, "Pss:"),
        rss_anon: kib_field(&status, "RssAnon:"),
        rss_file: kib_field(&status, "RssFile:"),
        peak_rss: kib_field(&status, "VmHWM:"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_memory_is_read() {
        let m = memory_of("self");
        assert!(m.rss > 0 && m.pss > 0 && m.peak_rss >= m.rss, "{m:?}");
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

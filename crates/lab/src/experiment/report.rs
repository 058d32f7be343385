//! The experiment's results: the JSON of every raw sample, and the Markdown
//! report whose tables have the seed document's shape, each row with the
//! seed's claimed figure, the measured median, min and max, and the ratio.

use std::fmt::Write;

use serde::Serialize;

use super::probe::Machine;
use super::steps::{Agents, Inference, Sample, Start};

/// A model the experiment loaded.
#[derive(Debug, Clone, Serialize)]
pub struct ModelReport {
    pub name: String,
    pub path: String,
    pub weights_bytes: u64,
    /// Every file of the folder.
    pub files_bytes: u64,
    /// A timing stand-in (repeated layers): for time and memory, never quality.
    pub standin: bool,
}

/// Everything measured on one configuration.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigReport {
    pub name: &'static str,
    pub kind: super::subject::Kind,
    pub tools_model: String,
    pub code_model: String,
    /// Bytes of its models' files on disk.
    pub disk_bytes: u64,
    pub starts: Vec<Start>,
    /// Every cold start began with 0 bytes of weights in the page cache.
    pub eviction_confirmed: bool,
    /// Bytes of its weights in the page cache after a start and one turn.
    pub page_cache_bytes: u64,
    pub inference: Inference,
    pub agents: Agents,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub vembed_version: &'static str,
    pub machine: Machine,
    pub quick: bool,
    pub repeat: usize,
    pub samples: usize,
    pub processes: usize,
    pub corpus: String,
    pub index_chunks: u64,
    pub index_seconds: f64,
    pub models: Vec<ModelReport>,
    pub configs: Vec<ConfigReport>,
    pub load_avg_start: f64,
    pub load_avg_end: f64,
    pub seconds: f64,
}

/// Median, min and max.
#[derive(Debug, Clone, Copy)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

pub fn stat(values: impl IntoIterator<Item = f64>) -> Option<Stat> {
    let mut v: Vec<f64> = values.into_iter().collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
    Some(Stat { median, min: v[0], max: v[n - 1] })
}

pub(super) fn of(samples: &[Sample]) -> Option<Stat> {
    stat(samples.iter().map(|s| s.value))
}

pub(super) const MIB: f64 = 1024.0 * 1024.0;

impl ConfigReport {
    pub fn starts_of(&self, cold: bool) -> impl Iterator<Item = &Start> {
        self.starts.iter().filter(move |s| s.cold == cold)
    }
    /// Spawn to the first tool selection, cold or warm, in ms.
    pub fn startup(&self, cold: bool) -> Option<Stat> {
        stat(self.starts_of(cold).map(|s| s.first_selection_ms))
    }
    /// Memory in MiB after a step, over the warm starts.
    pub fn memory(&self, f: impl Fn(&Start) -> u64) -> Option<Stat> {
        stat(self.starts_of(false).map(|s| f(s) as f64 / MIB))
    }
}

pub(super) fn fmt_stat(s: Option<Stat>, unit: &str, decimals: usize) -> String {
    match s {
        None => "n/a".into(),
        Some(s) if (s.max - s.min).abs() < f64::EPSILON => {
            format!("{:.*} {unit}", decimals, s.median)
        }
        Some(s) => format!(
            "{:.*} {unit} ({:.*}–{:.*})",
            decimals, s.median, decimals, s.min, decimals, s.max
        ),
    }
}

fn ratio(a: Option<Stat>, b: Option<Stat>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b.median > 0.0 => format!("{:.2}×", a.median / b.median),
        _ => "n/a".into(),
    }
}

/// Whether the measured unified/separate ratio points the way the seed's does.
fn verdict(seed_ratio: f64, measured: (Option<Stat>, Option<Stat>)) -> &'static str {
    let (Some(u), Some(s)) = measured else { return "not measured" };
    if s.median <= 0.0 {
        return "not measured";
    }
    let r = u.median / s.median;
    let same_direction = (seed_ratio < 1.0 && r < 0.97) || (seed_ratio > 1.0 && r > 1.03);
    if same_direction && (r - seed_ratio).abs() <= 0.25 * seed_ratio {
        "confirmed"
    } else if same_direction {
        "direction confirmed, size differs"
    } else {
        "contradicted"
    }
}

impl Report {
    pub fn config(&self, name: &str) -> Option<&ConfigReport> {
        self.configs.iter().find(|c| c.name == name)
    }

    /// The report in Markdown.
    pub fn markdown(&self) -> String {
        let mut o = String::new();
        let m = &self.machine;
        let _ = writeln!(o, "# vembed experiment: the seed's tables, measured\n");
        let _ = writeln!(
            o,
            "Machine: **{}**, {} CPUs, last-level cache L{} {} MiB, kernel {}. Load average {:.2} at the start, {:.2} at the end. \
             {} repeats, {} latency samples, {} agent processes{}; {:.0} s in all.\n",
            m.cpu_model,
            m.cpus,
            m.llc_level,
            m.llc_bytes >> 20,
            m.kernel,
            self.load_avg_start,
            self.load_avg_end,
            self.repeat,
            self.samples,
            self.processes,
            if self.quick { " (--quick)" } else { "" },
            self.seconds
        );
        let _ = writeln!(
            o,
            "Code search reads an index of {} ({} snippets; built or brought up to date in {:.0} s with the code model).\n",
            self.corpus, self.index_chunks, self.index_seconds
        );
        let _ = writeln!(o, "Models:\n");
        for model in &self.models {
            let _ = writeln!(
                o,
                "- `{}`: {:.1} MiB of weights{}",
                model.name,
                model.weights_bytes as f64 / MIB,
                if model.standin {
                    " — **a timing stand-in** (a smaller model's layers repeated): its time and memory are a 12-layer model's, its vectors mean nothing and are never used for quality"
                } else {
                    ""
                }
            );
        }
        let _ = writeln!(
            o,
            "\nConfigurations: **separate** = one vembed host with the tool model for tool selection and the code model for code search (the seed's L6 + L12); \
             **unified** = one vembed host with the code model for both; **per-process** = sentence-transformers loaded in each agent process with the code model for both, as Victor runs today. \
             Each figure is the median (min–max) over the runs; ratios are unified ÷ separate.\n"
        );
        let sep = self.config("separate");
        let uni = self.config("unified");
        let pp = self.config("per-process");
        self.memory_impact(&mut o, sep, uni, pp);
        self.memory_table(&mut o);
        self.startup_table(&mut o, sep, uni, pp);
        self.latency_table(&mut o, sep, uni, pp);
        self.quality_table(&mut o);
        self.agents_table(&mut o);
        o
    }

    fn memory_impact(
        &self,
        o: &mut String,
        sep: Option<&ConfigReport>,
        uni: Option<&ConfigReport>,
        pp: Option<&ConfigReport>,
    ) {
        let _ = writeln!(o, "## Memory impact (the seed's \"Memory Impact\" table)\n");
        let _ = writeln!(
            o,
            "| Metric | Separate: seed | Separate: measured | Unified: seed | Unified: measured | Ratio: seed | Ratio: measured | Verdict | Per-process: measured |"
        );
        let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|");
        type Get<'a> = &'a dyn Fn(&ConfigReport) -> Option<Stat>;
        let pss: Get = &|c| c.memory(|s| s.memory.after_code.pss);
        let rss: Get = &|c| c.memory(|s| s.memory.after_code.rss);
        let disk: Get = &|c| stat([c.disk_bytes as f64 / MIB]);
        let cache: Get = &|c| stat([c.page_cache_bytes as f64 / MIB]);
        let cold: Get = &|c| c.startup(true);
        let warm: Get = &|c| c.startup(false);
        let rows: [(&str, &str, &str, f64, Get, &str, usize); 6] = [
            ("RAM usage (PSS after a turn)", "200MB", "120MB", 0.6, pss, "MiB", 0),
            ("RAM usage (RSS after a turn)", "200MB", "120MB", 0.6, rss, "MiB", 0),
            ("Disk usage (model files)", "200MB", "120MB", 0.6, disk, "MiB", 0),
            (
                "Page cache (weights resident)",
                "High (2 models)",
                "Low (1 model)",
                0.5,
                cache,
                "MiB",
                0,
            ),
            ("Startup time (cold)", "~400ms", "~200ms", 0.5, cold, "ms", 0),
            ("Startup time (warm cache)", "~100ms", "~50ms", 0.5, warm, "ms", 0),
        ];
        for (name, seed_s, seed_u, seed_ratio, get, unit, d) in rows {
            let (s, u) = (sep.and_then(get), uni.and_then(get));
            let _ = writeln!(
                o,
                "| {name} | {seed_s} | {} | {seed_u} | {} | {seed_ratio:.2}× | {} | {} | {} |",
                fmt_stat(s, unit, d),
                fmt_stat(u, unit, d),
                ratio(u, s),
                verdict(seed_ratio, (u, s)),
                pp.map_or("not run".into(), |p| fmt_stat(get(p), unit, d)),
            );
        }
        let _ = writeln!(
            o,
            "\nStartup is spawn → loaded → first tool selection returned. Cold: every model file evicted from the page cache first (posix_fadvise DONTNEED), {}. \
             The programs themselves (vembed-host, Python and torch) stay cached.\n",
            if self.configs.iter().all(|c| c.eviction_confirmed) {
                "and mincore confirmed 0 bytes of weights resident before each cold start"
            } else {
                "but mincore did NOT confirm 0 bytes resident before every cold start (see resident_before in the JSON): another process maps the model files (stop other vembed hosts, `vembed stop`, and agents)"
            }
        );
    }

    fn memory_table(&self, o: &mut String) {
        let _ = writeln!(o, "## Memory usage (the seed's \"Memory Usage (RSS)\" table)\n");
        let _ = writeln!(
            o,
            "| Configuration | Idle | After Tool Selection | After Codebase Search | Peak |"
        );
        let _ = writeln!(o, "|---|---|---|---|---|");
        let seed = |name: &str| match name {
            "separate" => [150.0, 230.0, 350.0, 350.0],
            "unified" => [150.0, 270.0, 270.0, 270.0],
            _ => [0.0; 4],
        };
        for c in &self.configs {
            let s = seed(c.name);
            let cells = [
                c.memory(|s| s.memory.idle.rss),
                c.memory(|s| s.memory.after_tools.rss),
                c.memory(|s| s.memory.after_code.rss),
                c.memory(|s| s.memory.peak_rss),
            ];
            let _ = write!(o, "| {} (RSS)", c.name);
            for (cell, claim) in cells.iter().zip(s) {
                let _ = write!(o, " | {}", fmt_stat(*cell, "MiB", 0));
                if let Some(c) = cell.filter(|_| claim > 0.0) {
                    // The seed's "MB" read as MiB: the difference is 5%.
                    let _ = write!(o, "; seed {claim:.0}MB, {:.2}×", c.median / claim);
                }
            }
            let _ = writeln!(o, " |");
        }
        let _ = writeln!(
            o,
            "\n| Configuration | PSS idle | PSS after tools | PSS after code | anon after code | file after code |"
        );
        let _ = writeln!(o, "|---|---|---|---|---|---|");
        for c in &self.configs {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} |",
                c.name,
                fmt_stat(c.memory(|s| s.memory.idle.pss), "MiB", 0),
                fmt_stat(c.memory(|s| s.memory.after_tools.pss), "MiB", 0),
                fmt_stat(c.memory(|s| s.memory.after_code.pss), "MiB", 0),
                fmt_stat(c.memory(|s| s.memory.after_code.rss_anon), "MiB", 0),
                fmt_stat(c.memory(|s| s.memory.after_code.rss_file), "MiB", 0),
            );
        }
        let _ = writeln!(o);
    }

    fn startup_table(
        &self,
        o: &mut String,
        sep: Option<&ConfigReport>,
        uni: Option<&ConfigReport>,
        pp: Option<&ConfigReport>,
    ) {
        let _ = writeln!(o, "## Startup time (the seed's \"Startup Time\" table)\n");
        let _ = writeln!(
            o,
            "| Configuration | Cold start: seed | measured | loaded (ready) | Warm cache: seed | measured | loaded (ready) | CPU cache hit rate: seed | measured |"
        );
        let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|");
        for (c, seed) in [
            (sep, ["~400ms", "~100ms", "~50%"]),
            (uni, ["~200ms", "~50ms", "~80%"]),
            (pp, ["—", "—", "—"]),
        ] {
            let Some(c) = c else { continue };
            let ready = |cold| stat(c.starts_of(cold).map(|s| s.ready_ms));
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                c.name,
                seed[0],
                fmt_stat(c.startup(true), "ms", 0),
                fmt_stat(ready(true), "ms", 0),
                seed[1],
                fmt_stat(c.startup(false), "ms", 0),
                fmt_stat(ready(false), "ms", 0),
                seed[2],
                hit_rate(&c.inference),
            );
        }
        let _ = writeln!(
            o,
            "\nCPU cache hit rate: last-level-cache loads and misses of the embedding process's threads, counted with perf_event_open around a code-search query embedding right after a tool-selection one."
        );
        if let Some(why) =
            self.configs.iter().find_map(|c| c.inference.counters_unavailable.as_ref())
        {
            let _ = writeln!(o, "**Not measured on this machine, and not estimated**: {why}.");
        }
        let _ = writeln!(o);
    }

    fn latency_table(
        &self,
        o: &mut String,
        sep: Option<&ConfigReport>,
        uni: Option<&ConfigReport>,
        pp: Option<&ConfigReport>,
    ) {
        let _ = writeln!(
            o,
            "## Inference latency per query embedding (the seed's \"Latency Comparison\" table)\n"
        );
        let _ = writeln!(
            o,
            "| Operation | Separate: seed | measured | Unified: seed | measured | Delta: seed | Delta: measured | Ratio: seed | Ratio: measured | Per-process: measured |"
        );
        let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|");
        type Get<'a> = &'a dyn Fn(&Inference) -> &Vec<Sample>;
        let rows: [(&str, i32, i32, Get); 5] = [
            ("Tool selection (cold cache)", 5, 8, &|i| &i.tools_cold),
            ("Tool selection (warm cache)", 3, 5, &|i| &i.tools_warm),
            ("Codebase search (cold cache)", 8, 8, &|i| &i.code_cold),
            ("Codebase search (warm cache)", 6, 5, &|i| &i.code_warm),
            ("Codebase search right after tool selection", 6, 5, &|i| &i.code_after_tools),
        ];
        for (name, seed_s, seed_u, get) in rows {
            let s = sep.and_then(|c| of(get(&c.inference)));
            let u = uni.and_then(|c| of(get(&c.inference)));
            let delta = match (s, u) {
                (Some(s), Some(u)) => format!("{:+.2} ms", u.median - s.median),
                _ => "n/a".into(),
            };
            let _ = writeln!(
                o,
                "| {name} | {seed_s}ms | {} | {seed_u}ms | {} | {:+}ms | {delta} | {:.2}× | {} | {} |",
                fmt_stat(s, "ms", 2),
                fmt_stat(u, "ms", 2),
                seed_u - seed_s,
                f64::from(seed_u) / f64::from(seed_s),
                ratio(u, s),
                pp.map_or("not run".into(), |p| fmt_stat(of(get(&p.inference)), "ms", 2)),
            );
        }
        let _ = writeln!(
            o,
            "\nCold cache: every core's caches flushed just before (each CPU streams {} MiB, twice the last-level cache). Warm: right after another query on the same model. \
             Host times are the client's round trip over the socket; per-process times are measured inside the Python process.\n",
            (2 * self.machine.llc_bytes).max(32 << 20) >> 20
        );
    }

    fn agents_table(&self, o: &mut String) {
        let _ = writeln!(
            o,
            "## {} concurrent agent processes (each: tool selection, code search, hold)\n",
            self.processes
        );
        let _ = writeln!(
            o,
            "| Configuration | Host PSS | Agents' PSS (sum) | Total PSS | vs per-process |"
        );
        let _ = writeln!(o, "|---|---|---|---|---|");
        let pp_total = self.config("per-process").map(|p| p.agents.total_pss as f64);
        for c in &self.configs {
            let a = &c.agents;
            let _ = writeln!(
                o,
                "| {} | {} | {:.0} MiB | {:.0} MiB | {} |",
                c.name,
                a.host.map_or("—".into(), |h| format!("{:.0} MiB", h.pss as f64 / MIB)),
                a.agents.iter().map(|m| m.pss).sum::<u64>() as f64 / MIB,
                a.total_pss as f64 / MIB,
                pp_total.map_or("not run".into(), |p| format!("{:.2}×", a.total_pss as f64 / p)),
            );
        }
        let _ = writeln!(o);
    }
}

fn hit_rate(i: &Inference) -> String {
    match (&i.counters, &i.counters_unavailable) {
        (Some(events), _) => {
            let rates: Vec<f64> = i
                .code_after_tools_llc
                .iter()
                .filter_map(|c| c.hit_rate())
                .map(|r| r * 100.0)
                .collect();
            format!("{} ({events})", fmt_stat(stat(rates), "%", 1))
        }
        (None, Some(_)) => "unavailable (below)".into(),
        (None, None) => "n/a".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_and_verdicts() {
        let s = stat([3.0, 1.0, 2.0, 10.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.5, 1.0, 10.0));
        assert!(stat([]).is_none());
        let st = |x: f64| stat([x]);
        assert_eq!(verdict(0.6, (st(60.0), st(100.0))), "confirmed");
        assert_eq!(verdict(0.6, (st(90.0), st(100.0))), "direction confirmed, size differs");
        assert_eq!(verdict(0.6, (st(120.0), st(100.0))), "contradicted");
    }
}

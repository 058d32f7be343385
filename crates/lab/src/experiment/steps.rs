//! The measurements, one function per kind, each on real started
//! configurations: startup (cold and warm page cache) with memory at each
//! step of an agent's first turn, query latency with cold and warm CPU
//! caches (and cache counters where the machine has them), and N agents.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use vembed::Role;
use vembed_models::os::{self, ProcessMemory};

use super::probe::{CacheCount, CacheCounters, flush_cpu_caches, load_avg};
use super::subject::{Config, Ctx, Kind, Subject};

/// One timed sample and the load average when it was taken.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    pub value: f64,
    pub load_avg: f64,
}

fn sample(value: f64) -> Sample {
    Sample { value, load_avg: load_avg() }
}

/// Memory after each step of one start.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct MemorySteps {
    pub idle: ProcessMemory,
    pub after_tools: ProcessMemory,
    pub after_code: ProcessMemory,
    pub peak_rss: u64,
    pub load_avg: f64,
}

/// One start of a configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Start {
    pub cold: bool,
    /// Bytes of the model weights in the page cache just before the spawn.
    pub resident_before: u64,
    /// ... and after the first tool selection.
    pub resident_after: u64,
    /// Spawn to loaded (the host's ready line; Python's model loaded).
    pub ready_ms: f64,
    /// Spawn to the first tool selection returned.
    pub first_selection_ms: f64,
    pub load_avg: f64,
    pub memory: MemorySteps,
}

fn weights_resident(config: &Config) -> u64 {
    config.models().iter().map(|m| os::residency(&m.weights()).map_or(0, |(_, r)| r)).sum()
}

/// Starts `config` once with its model files evicted from the page cache
/// (`cold`) or read in full (warm), and runs one agent turn on it.
pub fn start_once(ctx: &Ctx, config: &Config, cold: bool, query: &str) -> anyhow::Result<Start> {
    for f in config.model_files() {
        if cold {
            os::evict(&f).with_context(|| format!("evicting {}", f.display()))?;
        } else {
            os::preload(&f).with_context(|| format!("reading {}", f.display()))?;
        }
    }
    let resident_before = weights_resident(config);
    let load = load_avg();
    let t0 = Instant::now();
    let mut subject = Subject::start(ctx, config)?;
    let ready_ms = t0.elapsed().as_secs_f64() * 1e3;
    let pid = subject.pid().to_string();
    let idle = os::memory_of(&pid);
    let tools_ms = subject.tools(query)?;
    let first_selection_ms = ready_ms + tools_ms;
    let after_tools = os::memory_of(&pid);
    subject.code(query)?;
    let after_code = os::memory_of(&pid);
    let resident_after = weights_resident(config);
    subject.stop()?;
    let memory = MemorySteps {
        idle,
        after_tools,
        after_code,
        peak_rss: after_code.peak_rss,
        load_avg: load,
    };
    Ok(Start {
        cold,
        resident_before,
        resident_after,
        ready_ms,
        first_selection_ms,
        load_avg: load,
        memory,
    })
}

/// Query-embedding latency with cold and warm CPU caches.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Inference {
    pub tools_cold: Vec<Sample>,
    pub tools_warm: Vec<Sample>,
    pub code_cold: Vec<Sample>,
    pub code_warm: Vec<Sample>,
    /// A code-search query embedding right after a tool-selection one.
    pub code_after_tools: Vec<Sample>,
    /// The cache counters used ...
    pub counters: Option<&'static str>,
    /// ... or why there are none.
    pub counters_unavailable: Option<String>,
    pub tools_warm_llc: Vec<CacheCount>,
    pub code_after_tools_llc: Vec<CacheCount>,
}

/// Distinct queries, so no answer can come from a cache.
pub struct Queries {
    n: usize,
}

/// Words of one word piece each, so every query has the same length in
/// tokens (latency grows with it) while no two queries are the same text.
const COLOURS: [&str; 8] = ["red", "blue", "green", "black", "white", "brown", "pink", "gray"];
const ANIMALS: [&str; 8] = ["cat", "dog", "fox", "bird", "fish", "horse", "cow", "bear"];
const NUMBERS: [&str; 8] = ["one", "two", "three", "four", "five", "six", "seven", "eight"];

impl Queries {
    pub fn new() -> Queries {
        Queries { n: 0 }
    }
    /// The next query: "find the function that validates the red cat one
    /// email addresses", and so on through 512 variants.
    pub fn next(&mut self) -> String {
        let n = self.n;
        self.n += 1;
        format!(
            "find the function that validates the {} {} {} email addresses",
            COLOURS[n % 8],
            ANIMALS[(n / 8) % 8],
            NUMBERS[(n / 64) % 8]
        )
    }
}

/// Measures `samples` query embeddings of each kind on a running subject.
pub fn inference(
    subject: &mut Subject,
    samples: usize,
    llc_bytes: u64,
    q: &mut Queries,
) -> anyhow::Result<Inference> {
    let mut out = Inference::default();
    // One turn first: the tool set is embedded, and every lazy init done.
    subject.tools(&q.next())?;
    subject.code(&q.next())?;
    let counters = CacheCounters::open(subject.pid());
    out.counters = counters.as_ref().ok().map(|c| c.events);
    out.counters_unavailable = counters.as_ref().err().cloned();
    let counted = |subject: &mut Subject,
                   role: Role,
                   text: &str|
     -> anyhow::Result<(f64, Option<CacheCount>)> {
        let before = counters.as_ref().ok().map(|c| c.read());
        let ms = subject.embed(role, text)?;
        let after = counters.as_ref().ok().map(|c| c.read());
        let count = before.zip(after).map(|(b, a)| CacheCount {
            loads: a.loads.saturating_sub(b.loads),
            misses: a.misses.saturating_sub(b.misses),
        });
        Ok((ms, count))
    };
    for _ in 0..samples {
        flush_cpu_caches(llc_bytes);
        out.tools_cold.push(sample(subject.embed(Role::Tools, &q.next())?));
        subject.embed(Role::Tools, &q.next())?;
        let (ms, c) = counted(subject, Role::Tools, &q.next())?;
        out.tools_warm.push(sample(ms));
        out.tools_warm_llc.extend(c);

        flush_cpu_caches(llc_bytes);
        out.code_cold.push(sample(subject.embed(Role::Code, &q.next())?));
        subject.embed(Role::Code, &q.next())?;
        out.code_warm.push(sample(subject.embed(Role::Code, &q.next())?));

        flush_cpu_caches(llc_bytes);
        subject.embed(Role::Tools, &q.next())?;
        let (ms, c) = counted(subject, Role::Code, &q.next())?;
        out.code_after_tools.push(sample(ms));
        out.code_after_tools_llc.extend(c);
    }
    Ok(out)
}

/// N agent processes, each after one tool selection and one code search.
#[derive(Debug, Clone, Serialize)]
pub struct Agents {
    pub processes: usize,
    /// The host, when there is one.
    pub host: Option<ProcessMemory>,
    pub agents: Vec<ProcessMemory>,
    pub total_pss: u64,
    pub load_avg: f64,
}

/// Starts `n` agents on `config` (and its host), has each select tools and
/// search code, and sums the PSS of every process while all of them hold.
pub fn agents(ctx: &Ctx, config: &Config, n: usize, q: &mut Queries) -> anyhow::Result<Agents> {
    let host = match config.kind {
        Kind::Host => Some(ctx.start_host(config)?),
        Kind::PerProcess => None,
    };
    let mut procs = Vec::new();
    let run = (|| -> anyhow::Result<Agents> {
        for i in 0..n {
            procs.push(ctx.start_agent(config, i)?);
        }
        for p in &mut procs {
            p.wait_ready(Duration::from_secs(600))?;
        }
        for p in &mut procs {
            p.op(super::agent::tools_op(&q.next()))?;
            p.op(super::agent::code_op(&q.next()))?;
        }
        let host_mem = host.as_ref().map(|(child, _)| os::memory_of(&child.id().to_string()));
        let agents: Vec<ProcessMemory> =
            procs.iter().map(|p| os::memory_of(&p.pid().to_string())).collect();
        let total_pss = agents.iter().map(|m| m.pss).sum::<u64>() + host_mem.map_or(0, |m| m.pss);
        Ok(Agents { processes: n, host: host_mem, agents, total_pss, load_avg: load_avg() })
    })();
    for p in procs {
        p.stop();
    }
    if let Some((mut child, mut client)) = host {
        let _ = client.shutdown();
        let _ = child.wait();
    }
    run
}

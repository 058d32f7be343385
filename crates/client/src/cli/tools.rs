//! `vembed tools`: semantic tool selection from the command line.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use vembed::tools::{
    Fallback, METHODS, Method, SelectOptions, Selection, Selector, ToolSet, method_name,
    parse_fallback, parse_method,
};
use vembed::{Client, ModelRef, Role};

/// `vembed tools ...`
#[derive(clap::Subcommand, Debug)]
pub enum ToolsCommand {
    /// Rank the tools of a tool set against a request: [{"name", "score"}].
    Select {
        #[command(flatten)]
        set: SetArgs,
        /// Most tools returned.
        #[arg(short, default_value_t = 5)]
        k: usize,
        /// Least score kept.
        #[arg(long, default_value_t = 0.15)]
        threshold: f32,
        /// What to return when no tool reaches the threshold.
        #[arg(long, value_parser = parse_fallback, default_value = "all")]
        fallback: Fallback,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Read requests as JSON lines from stdin (a string or {"query": ...});
        /// write one JSON line of selections per request, in order.
        #[arg(long)]
        jsonl: bool,
        /// The request.
        query: Option<String>,
    },
    /// Embed a tool set into the host's cache, so later selections cost one
    /// query embedding.
    Embed {
        #[command(flatten)]
        set: SetArgs,
    },
    /// Measure top-1 and top-5 accuracy of every scoring method on labelled
    /// requests (JSON lines: {"query", "tools": [acceptable names], "split":
    /// "tune" | "dev" | "holdout"}).
    Eval {
        #[command(flatten)]
        set: SetArgs,
        /// The labelled requests.
        #[arg(long)]
        cases: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// The tool set and how to score it.
#[derive(clap::Args, Debug)]
pub struct SetArgs {
    /// The tool set: a JSON list of {"name", "description", "parameters", "use_cases"}.
    #[arg(long)]
    tools: PathBuf,
    /// How tools are scored: plain, split, max-sim or hybrid.
    #[arg(long, value_parser = parse_method, default_value = "hybrid")]
    method: Method,
}

fn load(path: &Path) -> anyhow::Result<ToolSet> {
    ToolSet::load(path).map_err(|e| match e {
        // Its message names the file already.
        e @ vembed_tools::ToolsError::Io { .. } => anyhow::Error::from(e),
        e => anyhow::Error::from(e).context(format!("tool set {}", path.display())),
    })
}

/// Runs a `vembed tools` command.
pub fn run(client: &mut Client, command: &ToolsCommand) -> anyhow::Result<()> {
    match command {
        ToolsCommand::Select { set, k, threshold, fallback, json, jsonl, query } => {
            let opts = SelectOptions { k: *k, threshold: *threshold, fallback: *fallback };
            let tools = load(&set.tools)?;
            if *jsonl {
                if query.is_some() {
                    bail!("--jsonl reads requests from stdin; do not also pass one");
                }
                return select_jsonl(client, &tools, set.method, &opts);
            }
            let Some(query) = query else { bail!("no request given (or use --jsonl)") };
            let mut picks = client.select_tools(&tools, set.method, &[query], &opts)?.selections;
            let picks = picks.pop().unwrap_or_default();
            if *json {
                outln!("{}", serde_json::to_string(&picks)?)?;
            } else {
                for p in picks {
                    outln!("{:.4}  {}", p.score, p.name)?;
                }
            }
            Ok(())
        }
        ToolsCommand::Embed { set } => {
            let tools = load(&set.tools)?;
            let before = client.status()?.cache;
            let t = Instant::now();
            let held = client.select_tools(&tools, set.method, &[], &SelectOptions::default())?;
            let after = client.status()?.cache;
            let ms = t.elapsed().as_secs_f64() * 1e3;
            if held.tools_cached {
                outln!(
                    "{} tools ready in {ms:.1} ms: the host holds their vectors",
                    tools.tools.len()
                )?;
            } else {
                outln!(
                    "{} tools ready in {ms:.1} ms: {} embedding(s) computed, {} from the host's cache",
                    tools.tools.len(),
                    after.misses - before.misses,
                    (after.hits + after.disk_hits) - (before.hits + before.disk_hits),
                )?;
            }
            Ok(())
        }
        ToolsCommand::Eval { set, cases, json } => eval(client, &load(&set.tools)?, cases, *json),
    }
}

/// Requests per `SelectTools` request when reading JSON lines.
const QUERIES_PER_REQUEST: usize = 256;

fn select_jsonl(
    client: &mut Client,
    tools: &ToolSet,
    method: Method,
    opts: &SelectOptions,
) -> anyhow::Result<()> {
    let queries = super::read_jsonl_texts(io::stdin().lock(), "query")?;
    let mut w = BufWriter::new(io::stdout().lock());
    for part in queries.chunks(QUERIES_PER_REQUEST) {
        let refs: Vec<&str> = part.iter().map(String::as_str).collect();
        for picks in client.select_tools(tools, method, &refs, opts)?.selections {
            serde_json::to_writer(&mut w, &picks)?;
            w.write_all(b"\n")?;
        }
    }
    w.flush()?;
    Ok(())
}

#[derive(Deserialize)]
struct Case {
    query: String,
    tools: Vec<String>,
    #[serde(default)]
    split: Option<String>,
}

#[derive(Serialize, Default, Clone, Copy)]
struct Score {
    cases: usize,
    top1: f64,
    top5: f64,
}

#[derive(Serialize)]
struct MethodReport {
    method: Method,
    tune: Score,
    dev: Score,
    holdout: Score,
    all: Score,
    /// Mean time to score and rank one request, query already embedded.
    rank_us: f64,
}

fn eval(client: &mut Client, tools: &ToolSet, path: &Path, json: bool) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let mut cases = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let c: Case =
            serde_json::from_str(line).with_context(|| format!("{}:{}", path.display(), i + 1))?;
        if let Some(bad) = c.tools.iter().find(|t| !tools.tools.iter().any(|x| &x.name == *t)) {
            bail!("{}:{}: no tool named {bad:?} in the tool set", path.display(), i + 1);
        }
        cases.push(c);
    }
    let refs: Vec<&str> = cases.iter().map(|c| c.query.as_str()).collect();
    let queries = client.embed_with(&ModelRef::Role(Role::Tools), &refs)?;
    let opts = SelectOptions { k: 5, threshold: f32::NEG_INFINITY, fallback: Fallback::TopK };
    let mut reports = Vec::new();
    for method in METHODS {
        let selector = Selector::new(client, tools, method)?;
        let (mut tune, mut dev, mut holdout, mut all) =
            (Score::default(), Score::default(), Score::default(), Score::default());
        let t = Instant::now();
        let ranked: Vec<Vec<Selection>> = cases
            .iter()
            .zip(queries.rows())
            .map(|(c, v)| selector.rank(&c.query, v, &opts))
            .collect();
        let rank_us = t.elapsed().as_secs_f64() * 1e6 / cases.len().max(1) as f64;
        for (c, picks) in cases.iter().zip(&ranked) {
            let ok = |n: usize| picks.iter().take(n).any(|p| c.tools.contains(&p.name));
            let (h1, h5) = (f64::from(u8::from(ok(1))), f64::from(u8::from(ok(5))));
            for s in [
                Some(&mut all),
                match c.split.as_deref() {
                    Some("tune") => Some(&mut tune),
                    Some("dev") => Some(&mut dev),
                    Some("holdout") => Some(&mut holdout),
                    _ => None,
                },
            ]
            .into_iter()
            .flatten()
            {
                s.cases += 1;
                s.top1 += h1;
                s.top5 += h5;
            }
        }
        for s in [&mut tune, &mut dev, &mut holdout, &mut all] {
            if s.cases > 0 {
                s.top1 /= s.cases as f64;
                s.top5 /= s.cases as f64;
            }
        }
        reports.push(MethodReport { method, tune, dev, holdout, all, rank_us });
    }
    // Latency of a whole selection with the default method, as
    // `vembed tools select` and every client get it: one `SelectTools`
    // round trip (the query's embedding and the ranking in the host, the
    // tool set's vectors already held there).
    client.select_tools(tools, Method::Hybrid, &[], &SelectOptions::default())?;
    let mut select_us: Vec<f64> = Vec::new();
    for c in cases.iter().cycle().take(200) {
        let t = Instant::now();
        client.select_tools(tools, Method::Hybrid, &[&c.query], &SelectOptions::default())?;
        select_us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    select_us.sort_by(f64::total_cmp);
    let select_p50_us = select_us[select_us.len() / 2];
    if json {
        let out = serde_json::json!({ "methods": reports, "select_p50_us": select_p50_us });
        outln!("{}", serde_json::to_string_pretty(&out)?)?;
        return Ok(());
    }
    outln!(
        "{} tools, {} requests ({} tune, {} dev, {} holdout); top-1/top-5 per split",
        tools.tools.len(),
        cases.len(),
        reports[0].tune.cases,
        reports[0].dev.cases,
        reports[0].holdout.cases
    )?;
    outln!(
        "{:<8} {:>13} {:>13} {:>13} {:>13} {:>9}",
        "method",
        "tune",
        "dev",
        "holdout",
        "all",
        "rank µs"
    )?;
    let pair = |s: &Score| format!("{:.3}/{:.3}", s.top1, s.top5);
    for r in &reports {
        outln!(
            "{:<8} {:>13} {:>13} {:>13} {:>13} {:>9.1}",
            method_name(r.method),
            pair(&r.tune),
            pair(&r.dev),
            pair(&r.holdout),
            pair(&r.all),
            r.rank_us
        )?;
    }
    outln!(
        "select with the default method (one SelectTools round trip): p50 {:.0} µs",
        select_p50_us
    )?;
    Ok(())
}

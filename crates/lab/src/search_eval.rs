//! `vembed-lab search-eval CASES.jsonl`: how well code search finds what a
//! labelled set of queries is looking for. Each case is `{"query": Q,
//! "path": P}` (P relative to the repository); a case is found at rank r
//! when the r-th hit is in P. Prints MRR@10, R@1 and R@10 for each way of
//! searching, with the time indexing and searching took.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use vembed::search::Searcher;
use vembed::{Client, IndexRequest, ModelRef, RankedSearchHit, Role, SearchHit};

use crate::stats::percentile;

#[derive(Deserialize)]
struct Case {
    query: String,
    path: String,
}

/// One way of searching, scored.
#[derive(Debug, Serialize)]
pub struct MethodScore {
    pub method: &'static str,
    pub mrr_at_10: f64,
    pub recall_at_1: f64,
    pub recall_at_10: f64,
    pub search_p50_ms: f64,
    pub search_p99_ms: f64,
}

/// The whole evaluation.
#[derive(Debug, Serialize)]
pub struct EvalReport {
    pub cases: usize,
    pub snippets: u64,
    pub files: u64,
    /// Indexing through the host (0 with --no-index).
    pub index_seconds: f64,
    pub index_chunks_added: u64,
    /// Embedding every query (one batch per 256).
    pub embed_queries_seconds: f64,
    pub methods: Vec<MethodScore>,
}

fn read_cases(path: &Path) -> anyhow::Result<Vec<Case>> {
    let file = std::fs::File::open(path).with_context(|| format!("--eval {}", path.display()))?;
    let mut cases = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let case: Case = serde_json::from_str(&line).with_context(|| {
            format!("{} line {}: expected {{\"query\": ..., \"path\": ...}}", path.display(), i + 1)
        })?;
        cases.push(case);
    }
    if cases.is_empty() {
        bail!("{}: no cases", path.display());
    }
    Ok(cases)
}

fn score(
    method: &'static str,
    cases: &[Case],
    vectors: &[&[f32]],
    mut search: impl FnMut(&Case, &[f32]) -> anyhow::Result<Vec<SearchHit>>,
) -> anyhow::Result<MethodScore> {
    let (mut rr, mut at1, mut at10) = (0.0, 0usize, 0usize);
    let mut times = Vec::with_capacity(cases.len());
    for (case, v) in cases.iter().zip(vectors) {
        let t = Instant::now();
        let hits = search(case, v)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        if let Some(rank) = hits.iter().take(10).position(|h| h.path == case.path) {
            rr += 1.0 / (rank + 1) as f64;
            at1 += usize::from(rank == 0);
            at10 += 1;
        }
    }
    let n = cases.len() as f64;
    Ok(MethodScore {
        method,
        mrr_at_10: rr / n,
        recall_at_1: at1 as f64 / n,
        recall_at_10: at10 as f64 / n,
        search_p50_ms: percentile(&mut times, 0.5),
        search_p99_ms: percentile(&mut times, 0.99),
    })
}

/// Runs the evaluation: indexes `repo` (unless `no_index`), embeds every
/// query, and scores each way of searching.
pub fn run(
    client: &mut Client,
    repo: &Path,
    index_dir: Option<&Path>,
    cases_path: &Path,
    no_index: bool,
    json: bool,
) -> anyhow::Result<()> {
    let cases = read_cases(cases_path)?;
    let root = repo.canonicalize().with_context(|| format!("repository {}", repo.display()))?;
    let (mut index_seconds, mut index_chunks_added) = (0.0, 0);
    if !no_index {
        let t = Instant::now();
        let summary = client.index(
            IndexRequest {
                repo: root.display().to_string(),
                index_dir: index_dir.map(|d| d.display().to_string()),
                rebuild: false,
            },
            |_| {},
        )?;
        index_seconds = t.elapsed().as_secs_f64();
        index_chunks_added = summary.chunks_added;
    }
    let searcher = Searcher::open(client, &root, index_dir)?;
    let stats = searcher.stats()?;
    let missing: Vec<&str> =
        cases.iter().map(|c| c.path.as_str()).filter(|p| !root.join(p).is_file()).take(3).collect();
    if !missing.is_empty() {
        bail!("cases name files that are not in {}: {}", root.display(), missing.join(", "));
    }

    let t = Instant::now();
    let mut data = Vec::new();
    for group in cases.chunks(256) {
        let texts: Vec<&str> = group.iter().map(|c| c.query.as_str()).collect();
        data.extend(client.embed_with(&ModelRef::Role(Role::Code), &texts)?.data);
    }
    let embed_queries_seconds = t.elapsed().as_secs_f64();
    let dim = data.len() / cases.len();
    let vectors: Vec<&[f32]> = data.chunks_exact(dim).collect();

    let candidates = searcher.default_candidates(10)?;
    let plain = |hits: Vec<RankedSearchHit>| hits.into_iter().map(|h| h.hit).collect();
    let methods = vec![
        score("semantic", &cases, &vectors, |_, v| Ok(searcher.search_vector(v, 10)?))?,
        score("semantic-exact", &cases, &vectors, |_, v| Ok(searcher.search_vector_exact(v, 10)?))?,
        score("semantic-codes", &cases, &vectors, |_, v| {
            Ok(searcher.search_vector_with(v, 10, Some(candidates))?)
        })?,
        score("lexical", &cases, &vectors, |c, _| {
            Ok(plain(searcher.search_lexical(&c.query, 10)?))
        })?,
        score("hybrid", &cases, &vectors, |c, v| {
            Ok(plain(searcher.search_hybrid(&c.query, v, 10)?))
        })?,
    ];
    let report = EvalReport {
        cases: cases.len(),
        snippets: stats.snippets,
        files: stats.files,
        index_seconds,
        index_chunks_added,
        embed_queries_seconds,
        methods,
    };
    if json {
        outln!("{}", serde_json::to_string_pretty(&report)?)?;
        return Ok(());
    }
    outln!(
        "{} cases; index: {} files, {} snippets{}; queries embedded in {:.2} s",
        report.cases,
        report.files,
        report.snippets,
        if no_index {
            String::new()
        } else {
            format!(" ({} added in {:.1} s)", report.index_chunks_added, report.index_seconds)
        },
        report.embed_queries_seconds
    )?;
    outln!(
        "{:<16} {:>8} {:>7} {:>7} {:>12} {:>12}",
        "method",
        "MRR@10",
        "R@1",
        "R@10",
        "p50 ms",
        "p99 ms"
    )?;
    for m in &report.methods {
        outln!(
            "{:<16} {:>8.3} {:>7.3} {:>7.3} {:>12.3} {:>12.3}",
            m.method,
            m.mrr_at_10,
            m.recall_at_1,
            m.recall_at_10,
            m.search_p50_ms,
            m.search_p99_ms
        )?;
    }
    Ok(())
}

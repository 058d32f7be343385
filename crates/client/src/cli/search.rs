//! `vembed search`: one query embedding from the host, the index searched here.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context, bail};
use vembed::search::Searcher;
use vembed::{Client, ModelRef, Role, SearchHit, SearchRequest};

/// Options of `vembed search`.
#[derive(clap::Args, Debug)]
pub struct SearchArgs {
    /// The query (or use --jsonl).
    query: Option<String>,
    /// The repository.
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// Where the index lives [default: under the cache dir, per repository].
    #[arg(long)]
    index_dir: Option<PathBuf>,
    /// Results per query.
    #[arg(short, default_value_t = 10)]
    k: usize,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Read queries as JSON lines (a string or {"query": ...}) from stdin;
    /// write one JSON line of results per query, in order.
    #[arg(long)]
    jsonl: bool,
    /// Search through the host instead of opening the index here.
    #[arg(long)]
    via_host: bool,
    /// Forest nodes to visit [default: k × trees × 50]; higher is slower and
    /// more exact.
    #[arg(long)]
    search_k: Option<usize>,
    /// Evaluate search on labelled cases instead: JSON lines of {"query":
    /// ..., "path": ...} (path relative to --repo). Indexes --repo first
    /// (unless --no-index), then prints MRR@10, R@1 and R@10 per method.
    #[arg(long, value_name = "CASES.jsonl", conflicts_with_all = ["query", "jsonl", "via_host"])]
    eval: Option<PathBuf>,
    /// With --eval: search the index as it is, without updating it first.
    #[arg(long, requires = "eval")]
    no_index: bool,
}

/// Runs `vembed search`.
pub fn run(client: &mut Client, args: &SearchArgs) -> anyhow::Result<()> {
    if let Some(cases) = &args.eval {
        return super::search_eval::run(
            client,
            &args.repo,
            args.index_dir.as_deref(),
            cases,
            args.no_index,
            args.json,
        );
    }
    let queries: Vec<String> = if args.jsonl {
        if args.query.is_some() {
            bail!("--jsonl reads queries from stdin; do not also pass one");
        }
        super::read_jsonl_texts(io::stdin().lock(), "query")?
    } else {
        vec![args.query.clone().context("no query given (or use --jsonl)")?]
    };
    let results: Vec<Vec<SearchHit>> = if args.via_host {
        let repo = args
            .repo
            .canonicalize()
            .with_context(|| format!("repository {}", args.repo.display()))?;
        let mut all = Vec::new();
        for q in &queries {
            all.push(client.search_via_host(SearchRequest {
                repo: repo.display().to_string(),
                index_dir: args.index_dir.as_ref().map(|d| d.display().to_string()),
                query: q.clone(),
                k: args.k as u32,
            })?);
        }
        all
    } else {
        let searcher = Searcher::open(client, &args.repo, args.index_dir.as_deref())?;
        let refs: Vec<&str> = queries.iter().map(String::as_str).collect();
        let vectors = client.embed_with(&ModelRef::Role(Role::Code), &refs)?;
        vectors
            .rows()
            .map(|v| searcher.search_vector_with(v, args.k, args.search_k))
            .collect::<Result<_, _>>()?
    };
    let mut w = BufWriter::new(io::stdout().lock());
    if args.jsonl {
        for hits in &results {
            serde_json::to_writer(&mut w, hits)?;
            w.write_all(b"\n")?;
        }
    } else if args.json {
        serde_json::to_writer_pretty(&mut w, &results[0])?;
        w.write_all(b"\n")?;
    } else {
        for h in &results[0] {
            let symbol = h.symbol.as_deref().map(|s| format!(" ({s})")).unwrap_or_default();
            writeln!(w, "{:.3}  {}:{}-{}{symbol}", h.score, h.path, h.start_line, h.end_line)?;
            for line in h.text.lines().take(4) {
                writeln!(w, "        {line}")?;
            }
        }
    }
    w.flush()?;
    Ok(())
}

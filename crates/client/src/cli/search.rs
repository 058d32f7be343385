//! `vembed search`: one query embedding from the host, the index searched here.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context, bail};
use vembed::search::Searcher;
use vembed::{
    Client, ModelRef, Rank, RankedSearchHit, RankedSearchRequest, Role, SearchHit, SearchMode,
};

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
    /// Snippets to re-rank exactly after the sign-bit code scan, at any
    /// index size [default: an exact scan up to 25,000 snippets, then
    /// k × 50 to k × 150 as the index grows]; more is slower and more exact.
    /// Semantic mode only.
    #[arg(long, alias = "search-k")]
    candidates: Option<usize>,
    /// How to rank: semantic (the query's embedding), lexical (BM25 over
    /// code tokens) or hybrid (both, fused by normalised score) [default:
    /// hybrid; semantic with --candidates, which only it takes]. --via-host
    /// ranks the same way in the host.
    #[arg(long, value_enum)]
    mode: Option<ModeArg>,
}

/// `--mode`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModeArg {
    /// The query's embedding against the snippets'.
    Semantic,
    /// BM25 over code tokens (identifiers split), no embedding.
    Lexical,
    /// Both, fused by normalised score.
    Hybrid,
}

impl From<ModeArg> for SearchMode {
    fn from(m: ModeArg) -> SearchMode {
        match m {
            ModeArg::Semantic => SearchMode::Semantic,
            ModeArg::Lexical => SearchMode::Lexical,
            ModeArg::Hybrid => SearchMode::Hybrid,
        }
    }
}

/// Runs `vembed search`.
pub fn run(client: &mut Client, args: &SearchArgs) -> anyhow::Result<()> {
    let queries: Vec<String> = if args.jsonl {
        if args.query.is_some() {
            bail!("--jsonl reads queries from stdin; do not also pass one");
        }
        super::read_jsonl_texts(io::stdin().lock(), "query")?
    } else {
        vec![args.query.clone().context("no query given (or use --jsonl)")?]
    };
    let mode = match args.mode {
        Some(m) => SearchMode::from(m),
        None if args.candidates.is_some() => SearchMode::Semantic,
        None => SearchMode::Hybrid,
    };
    if args.candidates.is_some() && mode != SearchMode::Semantic {
        bail!("--candidates tunes the semantic search: add --mode semantic");
    }
    let results: Vec<Vec<RankedSearchHit>> = if args.via_host {
        if args.candidates.is_some() {
            bail!("--candidates is for a search in this process, not --via-host");
        }
        let repo = args
            .repo
            .canonicalize()
            .with_context(|| format!("repository {}", args.repo.display()))?;
        let mut all = Vec::new();
        for q in &queries {
            let hits = client.search_ranked(RankedSearchRequest {
                repo: repo.display().to_string(),
                index_dir: args.index_dir.as_ref().map(|d| d.display().to_string()),
                query: q.clone(),
                k: args.k as u32,
                mode,
            })?;
            all.push(hits);
        }
        all
    } else {
        let searcher = Searcher::open(client, &args.repo, args.index_dir.as_deref())?;
        let refs: Vec<&str> = queries.iter().map(String::as_str).collect();
        let vectors = if mode == SearchMode::Lexical {
            None
        } else {
            Some(client.embed_with(&ModelRef::Role(Role::Code), &refs)?)
        };
        let mut all = Vec::with_capacity(queries.len());
        for (i, q) in queries.iter().enumerate() {
            let v = vectors.as_ref().and_then(|e| e.rows().nth(i)).unwrap_or(&[]);
            let hits = match args.candidates {
                Some(sk) => searcher
                    .search_vector_with(v, args.k, Some(sk))?
                    .into_iter()
                    .enumerate()
                    .map(|(i, h)| semantic_only(i, h))
                    .collect(),
                None => searcher.search_mode(mode, q, v, args.k)?,
            };
            all.push(hits);
        }
        all
    };
    let mut w = BufWriter::new(io::stdout().lock());
    if args.jsonl {
        for hits in &results {
            serde_json::to_writer(&mut w, &shown(hits))?;
            w.write_all(b"\n")?;
        }
    } else if args.json {
        serde_json::to_writer_pretty(&mut w, &shown(&results[0]))?;
        w.write_all(b"\n")?;
    } else {
        for h in results[0].iter().map(|r| &r.hit) {
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

fn semantic_only(i: usize, hit: SearchHit) -> RankedSearchHit {
    let semantic = Some(Rank { rank: i as u32 + 1, score: hit.score });
    RankedSearchHit { hit, semantic, lexical: None }
}

/// Hits as `--json` prints them (and the Python package reads them): each
/// hit's fields, then `semantic_rank`, `semantic_score`, `lexical_rank`
/// and `lexical_score` (null where that ranking did not find it). A view
/// of the wire hit for printing, not a record of its own.
fn shown(hits: &[RankedSearchHit]) -> Vec<Shown<'_>> {
    hits.iter()
        .map(|h| Shown {
            hit: &h.hit,
            semantic_rank: h.semantic.map(|r| r.rank),
            semantic_score: h.semantic.map(|r| r.score),
            lexical_rank: h.lexical.map(|r| r.rank),
            lexical_score: h.lexical.map(|r| r.score),
        })
        .collect()
}

#[derive(serde::Serialize)]
struct Shown<'a> {
    #[serde(flatten)]
    hit: &'a SearchHit,
    semantic_rank: Option<u32>,
    semantic_score: Option<f32>,
    lexical_rank: Option<u32>,
    lexical_score: Option<f32>,
}

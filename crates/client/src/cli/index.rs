//! `vembed index`: the host builds or updates a repository's index.

use std::io::{self, IsTerminal};
use std::path::PathBuf;

use anyhow::Context;
use vembed::search::{Searcher, index_dir_for};
use vembed::{Client, IndexRequest};

/// Options of `vembed index`.
#[derive(clap::Args, Debug)]
pub struct IndexArgs {
    /// The repository to index.
    #[arg(default_value = ".")]
    repo: PathBuf,
    /// Where the index lives [default: under the cache dir, per repository].
    #[arg(long)]
    index_dir: Option<PathBuf>,
    /// Empty the index first (after changing the code model).
    #[arg(long)]
    rebuild: bool,
    /// Show the index's model, counts and last update instead of indexing.
    #[arg(long)]
    status: bool,
    /// Print JSON (and no progress bar).
    #[arg(long)]
    json: bool,
}

/// Runs `vembed index`.
pub fn run(
    client: impl FnOnce() -> anyhow::Result<Client>,
    args: &IndexArgs,
) -> anyhow::Result<()> {
    if args.status {
        let dir = index_dir_for(&args.repo, args.index_dir.as_deref())?;
        let stats = Searcher::open_dir(&dir)?.stats()?;
        if args.json {
            outln!("{}", serde_json::to_string_pretty(&stats)?)?;
        } else {
            outln!("index {} for {}", dir.display(), stats.root)?;
            outln!("  model: {}", stats.model)?;
            outln!(
                "  {} files, {} snippets, {:.1} MiB on disk",
                stats.files,
                stats.snippets,
                stats.disk_bytes as f64 / 1048576.0
            )?;
            outln!("  last update: {} (unix seconds)", stats.updated_unix)?;
        }
        return Ok(());
    }
    let mut client = client()?;
    let repo =
        args.repo.canonicalize().with_context(|| format!("repository {}", args.repo.display()))?;
    let req = IndexRequest {
        repo: repo.display().to_string(),
        index_dir: args.index_dir.as_ref().map(|d| d.display().to_string()),
        rebuild: args.rebuild,
    };
    let bar = !args.json && io::stderr().is_terminal();
    let summary = client.index(req, |p| {
        if bar && p.files_to_index > 0 {
            let width = 30;
            let done = (p.files_indexed * width / p.files_to_index.max(1)) as usize;
            err!(
                "\r[{}{}] {}/{} files, {} snippets",
                "#".repeat(done),
                " ".repeat(width as usize - done),
                p.files_indexed,
                p.files_to_index,
                p.chunks_added
            );
        }
    })?;
    if bar {
        errln!();
    }
    if args.json {
        outln!("{}", serde_json::to_string(&summary)?)?;
    } else {
        outln!(
            "{} files seen: {} indexed, {} unchanged, {} deleted, {} skipped; {} snippets added, {} removed; {:.2} s",
            summary.files_seen,
            summary.indexed,
            summary.unchanged,
            summary.deleted,
            summary.skipped,
            summary.chunks_added,
            summary.chunks_removed,
            summary.seconds
        )?;
    }
    Ok(())
}

//! `vembed-lab`: vembed's measurement tooling, kept out of the `vembed`
//! binary users install (it links plotters for its chart).
//!
//! `vembed-lab bench` measures latency, throughput and IPC overhead through
//! the host (beside in-process Python baselines, other weight precisions or
//! a remote hop); `vembed-lab search-eval` scores code search on labelled
//! queries; `vembed-lab experiment` measures the seed document's claims on
//! this machine: memory, page cache, startup, CPU cache and N agents, for
//! separate models, one unified model and (with `--baseline-python`)
//! per-process models. `vembed-lab experiment-agent` is one of its agent
//! processes (internal).

use std::path::PathBuf;

use std::process::ExitCode;
use vembed::flags::HostFlags;

use clap::{Parser, Subcommand};

/// Output that returns its `io::Result` (`outln!`), and diagnostics that
/// drop a failed write (`errln!`), as in the `vembed` CLI.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        writeln!(::std::io::stdout().lock(), $($arg)*)
    }};
}
macro_rules! out {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        write!(::std::io::stdout().lock(), $($arg)*)
    }};
}
macro_rules! errln {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let _ = writeln!(::std::io::stderr().lock(), $($arg)*);
    }};
}

mod bench;
mod experiment;
mod search_eval;
mod stats;

/// vembed-lab: measurements of vembed on this machine.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    host: HostFlags,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Single-query latency, IPC overhead, bulk throughput and host memory
    /// through the host; with --baseline-python, in-process baselines on the
    /// same texts; with --weights or --via-remote, private hosts side by side.
    Bench(bench::BenchArgs),
    /// Score code search on labelled cases: JSON lines of {"query": ...,
    /// "path": ...} (path relative to --repo). Indexes --repo first (unless
    /// --no-index), then prints MRR@10, R@1 and R@10 per method.
    SearchEval {
        /// The labelled cases.
        #[arg(value_name = "CASES.jsonl")]
        cases: PathBuf,
        /// The repository the cases' paths are in.
        #[arg(long, default_value = ".")]
        repo: PathBuf,
        /// Where the index lives [default: under the user's cache].
        #[arg(long)]
        index_dir: Option<PathBuf>,
        /// Search the index as it is, without updating it first.
        #[arg(long)]
        no_index: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Measure the seed document's claims on this machine: memory, page
    /// cache, startup, CPU cache and N agents, for separate models, one
    /// unified model and (with --baseline-python) per-process models.
    Experiment(experiment::ExperimentArgs),
    /// One agent process of `vembed-lab experiment` (internal).
    #[command(hide = true)]
    ExperimentAgent {
        /// The agent's host socket.
        #[arg(long)]
        socket: PathBuf,
        #[command(flatten)]
        args: experiment::agent::AgentArgs,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Bench(args) => bench::run(&cli.host, args),
        Command::SearchEval { cases, repo, index_dir, no_index, json } => {
            cli.host.client(None).map_err(anyhow::Error::from).and_then(|mut c| {
                search_eval::run(&mut c, repo, index_dir.as_deref(), cases, *no_index, *json)
            })
        }
        Command::Experiment(args) => experiment::run(args),
        Command::ExperimentAgent { socket, args } => vembed::Client::connect(socket)
            .map_err(anyhow::Error::from)
            .and_then(|mut c| experiment::agent::run_agent(&mut c, args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            errln!("vembed-lab: error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

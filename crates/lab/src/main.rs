//! `vembed-lab`: vembed's measurement tooling, kept out of the `vembed`
//! binary users install (it links plotters for its chart).
//!
//! `vembed-lab experiment` measures the seed document's claims on this
//! machine: memory, page cache, startup, CPU cache and N agents, for
//! separate models, one unified model and (with `--baseline-python`)
//! per-process models. `vembed-lab experiment-agent` is one of its agent
//! processes (internal).

use std::path::PathBuf;
use std::process::ExitCode;

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

mod experiment;

/// vembed-lab: measurements of vembed on this machine.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
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

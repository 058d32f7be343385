//! `vembed-lab bench`: latency, throughput and IPC overhead through the host,
//! optionally for several weight precisions (a private host each) and
//! beside in-process Python baselines, all in one run on the same texts.

mod baseline;
mod measure;
mod output;
mod remote;

use std::path::PathBuf;

use anyhow::{Context, bail};
use vembed::{Client, Role};

pub use baseline::corpus_chunks;
use measure::Report;
use vembed::flags::HostFlags;

/// Options of `vembed-lab bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Texts for the bulk run: one JSON string or {"text": ...} per line, or plain lines.
    #[arg(long)]
    texts: Option<PathBuf>,
    /// Without --texts: cut the source files under this folder into chunks.
    #[arg(long, default_value = ".")]
    corpus: PathBuf,
    /// Lines per chunk cut from the corpus.
    #[arg(long, default_value_t = 30)]
    chunk_lines: usize,
    /// Texts in the bulk run.
    #[arg(long, default_value_t = 512)]
    bulk_texts: usize,
    /// Texts per request in the bulk run.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Single-query requests to time.
    #[arg(long, default_value_t = 300)]
    requests: usize,
    /// The single query.
    #[arg(long, default_value = "find the function that validates email addresses")]
    query: String,
    /// Write the bulk texts as JSON lines here (to feed the same set to a baseline).
    #[arg(long)]
    dump_texts: Option<PathBuf>,
    /// Also run in-process baselines with this Python (one that has
    /// sentence-transformers installed, and onnxruntime, onnx and onnxscript
    /// for the onnx baselines) on the same model and texts, and show them
    /// side by side with ratios.
    #[arg(long)]
    baseline_python: Option<PathBuf>,
    /// Which baselines --baseline-python runs: torch (sentence-transformers),
    /// onnx (ONNX Runtime on the same model exported to ONNX), onnx-int8
    /// (that export quantized to int8, dynamic and per channel). An ONNX
    /// model is checked against sentence-transformers before it is timed.
    #[arg(long, value_delimiter = ',', default_value = "torch")]
    baselines: Vec<Baseline>,
    /// Measure these weight precisions side by side (f32, f16, bf16, int8, int8-dynamic, amx-bf16), each
    /// in a private host of its own started for the run, instead of the
    /// running host.
    #[arg(long, value_delimiter = ',')]
    weights: Vec<String>,
    /// Measure what a remote model costs: a private host A serving HTTP,
    /// directly, then for each of these concurrencies a private host B
    /// whose model is A's through A's OpenAI endpoint (`[remote.NAME]`).
    #[arg(long, value_delimiter = ',', conflicts_with = "weights")]
    via_remote: Vec<u32>,
}

/// An in-process Python baseline.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Baseline {
    /// sentence-transformers on PyTorch.
    Torch,
    /// ONNX Runtime.
    Onnx,
    /// ONNX Runtime on the export quantized to int8 (dynamic, per channel).
    #[value(name = "onnx-int8")]
    OnnxInt8,
}

impl Baseline {
    fn key(self) -> &'static str {
        match self {
            Baseline::Torch => "sentence_transformers",
            Baseline::Onnx => "onnx_runtime",
            Baseline::OnnxInt8 => "onnx_runtime_int8",
        }
    }
    /// `st_baseline.py --engine`.
    fn engine(self) -> &'static str {
        match self {
            Baseline::Torch => "torch",
            Baseline::Onnx => "onnx",
            Baseline::OnnxInt8 => "onnx-int8",
        }
    }
    fn label(self) -> &'static str {
        match self {
            Baseline::Torch => "sentence-transformers",
            Baseline::Onnx => "ONNX Runtime",
            Baseline::OnnxInt8 => "ONNX Runtime int8",
        }
    }
}

/// Runs the benchmark: on the running (or started) host, or on one private
/// host per `--weights` precision; then the baselines, once.
pub fn run(host: &HostFlags, args: &BenchArgs) -> anyhow::Result<()> {
    let texts = match &args.texts {
        Some(p) => baseline::read_texts(p)?,
        None => corpus_chunks(&args.corpus, args.chunk_lines, args.bulk_texts)?,
    };
    let texts: Vec<String> = texts.into_iter().take(args.bulk_texts).collect();
    if texts.is_empty() {
        bail!("no texts for the bulk run (use --texts FILE or --corpus DIR)");
    }
    if let Some(p) = &args.dump_texts {
        baseline::write_jsonl(p, &texts)?;
    }
    let mut runs: Vec<(Option<String>, Report)> = Vec::new();
    let mut model_dir = None;
    if !args.via_remote.is_empty() {
        if host.no_spawn {
            bail!("--via-remote starts private hosts; it cannot run with --no-spawn");
        }
        let (r, dir) = remote::runs(host, args, &texts)?;
        runs = r;
        model_dir = Some(dir);
    } else if args.weights.is_empty() {
        let mut client = host.client(None)?;
        model_dir = Some(unified_dir(&client)?);
        runs.push((None, measure::measure(&mut client, &texts, args)?));
    } else {
        if host.no_spawn {
            bail!("--weights starts a private host per precision; it cannot run with --no-spawn");
        }
        for w in &args.weights {
            vembed_models::Settings::default().set("weights", w).map_err(anyhow::Error::msg)?;
        }
        let dir = tempfile::Builder::new().prefix("vembed-bench-").tempdir()?;
        for w in &args.weights {
            let mut opts = host.spawn_options(None);
            opts.socket = dir.path().join(format!("{w}.sock"));
            opts.host_args.extend(["--weights".into(), w.into()]);
            opts.host_args.extend(["--idle-timeout-secs".into(), "60".into()]);
            if !args.json {
                errln!("starting a host with weights = {w:?} ...");
            }
            let mut client = Client::connect_or_spawn_with(opts)
                .with_context(|| format!("starting a host with weights = {w:?}"))?;
            model_dir.get_or_insert(unified_dir(&client)?);
            let report = measure::measure(&mut client, &texts, args);
            let _ = client.shutdown();
            runs.push((Some(w.clone()), report?));
        }
    }
    let mut baselines: Vec<(Baseline, serde_json::Value)> = Vec::new();
    if let Some(python) = &args.baseline_python {
        let model_dir = model_dir.context("the host reports no unified model")?;
        let threads = runs[0].1.threads;
        for &b in &args.baselines {
            let v = baseline::run_baseline(python, b, &model_dir, &texts, args, threads)?;
            baselines.push((b, v));
        }
    }
    let group = if args.via_remote.is_empty() { "weights" } else { "hosts" };
    output::print(&runs, &baselines, args, group)
}

/// The folder of the host's unified model (what the baselines load).
fn unified_dir(client: &Client) -> anyhow::Result<String> {
    client
        .hello()
        .models
        .iter()
        .find(|m| m.roles.contains(&Role::Unified))
        .map(|m| m.path.clone())
        .context("the host reports no unified model")
}

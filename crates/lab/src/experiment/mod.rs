//! `vembed-lab experiment`: the seed document's tables, measured on this
//! machine. Real hosts (separate models, one unified model) and, with
//! `--baseline-python`, sentence-transformers in each agent process; memory
//! at each step of an agent's turn, startup with a cold and a warm page
//! cache, query latency with cold and warm CPU caches, cache counters where
//! the machine has them, and N concurrent agents. Writes a Markdown report,
//! the JSON of every sample, and a chart.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use vembed::IndexRequest;
use vembed::search::Searcher;
use vembed_models::{DEFAULT_MODEL, ModelDir};

pub mod agent;
mod chart;
mod probe;
mod quality;
mod report;
mod steps;
mod subject;

use report::{ConfigReport, ModelReport, Report};
use subject::{Config, Ctx, Kind, Subject};

/// The seed's larger model, used when it is on this machine.
const L12: &str = "sentence-transformers/all-MiniLM-L12-v2";
/// The seed's quality model: its "separate models" code model and its
/// enterprise unified model.
const QUALITY: &str = "sentence-transformers/all-mpnet-base-v2";

/// Options of `vembed-lab experiment`.
#[derive(clap::Args, Debug)]
pub struct ExperimentArgs {
    /// Print the JSON of every sample on stdout instead of the Markdown report.
    #[arg(long)]
    json: bool,
    /// Where report.md, report.json, chart.svg, the index and the logs go.
    #[arg(long, default_value = "vembed-experiment")]
    out: PathBuf,
    /// Starts per configuration, each cold and each warm [default: 5; 2 with --quick].
    #[arg(long)]
    repeat: Option<usize>,
    /// A short run (for tests): fewer repeats, samples and agents.
    #[arg(long)]
    quick: bool,
    /// Concurrent agent processes [default: 4; 2 with --quick].
    #[arg(long)]
    processes: Option<usize>,
    /// Latency samples of each kind [default: 20; 3 with --quick].
    #[arg(long)]
    samples: Option<usize>,
    /// Also measure agents that load sentence-transformers in-process, with
    /// this Python (which must have sentence-transformers installed).
    #[arg(long)]
    baseline_python: Option<PathBuf>,
    /// The tool-selection model of the separate configuration.
    #[arg(long, default_value = DEFAULT_MODEL)]
    tools_model: String,
    /// The code-search model of the separate configuration, and the unified
    /// model [default: all-MiniLM-L12-v2 when it is on this machine, else a
    /// 12-layer timing stand-in made from the tool model].
    #[arg(long)]
    code_model: Option<String>,
    /// The seed's quality model, measured in two more configurations: the
    /// seed's "separate models" (the tool model for tools, this one for
    /// code) and its enterprise unified model (this one for both)
    /// [default: all-mpnet-base-v2 when it is on this machine; `none` skips
    /// them].
    #[arg(long)]
    quality_model: Option<String>,
    /// The source tree indexed for code search.
    #[arg(long, default_value = ".")]
    corpus: PathBuf,
}

fn progress(msg: impl std::fmt::Display) {
    errln!("==> {msg}");
}

/// Checks a `--baseline-python` before anything starts.
fn check_python(python: &Path) -> anyhow::Result<()> {
    let meta = std::fs::metadata(python)
        .with_context(|| format!("--baseline-python {}: no such file", python.display()))?;
    if !meta.is_file() || std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o111 == 0
    {
        bail!("--baseline-python {}: not an executable file", python.display());
    }
    let probe = "import importlib.util as u; print('vembed-probe', 'ok' if u.find_spec('sentence_transformers') and u.find_spec('numpy') else 'missing')";
    let out = Command::new(python)
        .args(["-c", probe])
        .output()
        .with_context(|| format!("--baseline-python {}: cannot run it", python.display()))?;
    match String::from_utf8_lossy(&out.stdout).trim() {
        "vembed-probe ok" => Ok(()),
        "vembed-probe missing" => bail!(
            "--baseline-python {}: sentence-transformers (and numpy) are not installed for it",
            python.display()
        ),
        _ => bail!(
            "--baseline-python {}: not a working Python ({}: {})",
            python.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    }
}

fn code_model(arg: Option<&str>, tools: &ModelDir) -> anyhow::Result<(ModelDir, bool)> {
    if let Some(name) = arg {
        let dir = vembed_models::resolve(name)?;
        let standin = dir.name.starts_with("vembed-standin/");
        return Ok((dir, standin));
    }
    if let Ok(dir) = vembed_models::resolve(L12) {
        return Ok((dir, false));
    }
    let name = vembed_models::standin_name(tools, 12);
    let dir = match vembed_models::resolve(&name) {
        Ok(dir) => dir,
        Err(_) => {
            progress(format!(
                "{L12} is not on this machine: making a 12-layer TIMING STAND-IN from {}",
                tools.name
            ));
            vembed_models::make_standin(tools, 12)?
        }
    };
    Ok((dir, true))
}

fn model_report(dir: &ModelDir, standin: bool) -> ModelReport {
    let mut files = Vec::new();
    subject::files_in(&dir.path, &mut files);
    let files_bytes = files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum();
    ModelReport {
        name: dir.name.clone(),
        path: dir.path.display().to_string(),
        weights_bytes: std::fs::metadata(dir.weights()).map_or(0, |m| m.len()),
        files_bytes,
        standin,
    }
}

/// Builds (or updates) the index code search reads, with the code model.
fn build_index(ctx: &Ctx, config: &Config) -> anyhow::Result<(u64, f64)> {
    let (mut child, mut client) = ctx.start_host(config)?;
    let t = Instant::now();
    let done = client.index(
        IndexRequest {
            repo: ctx.repo.display().to_string(),
            index_dir: Some(ctx.index_dir(&config.code).display().to_string()),
            rebuild: false,
        },
        |_| {},
    );
    let seconds = t.elapsed().as_secs_f64();
    let _ = client.shutdown();
    let _ = child.wait();
    done?;
    let stats = Searcher::open_dir(&ctx.index_dir(&config.code))?.stats()?;
    if stats.snippets == 0 {
        bail!("the corpus {} has no source files to index", ctx.repo.display());
    }
    Ok((stats.snippets, seconds))
}

fn measure(
    ctx: &Ctx,
    config: &Config,
    a: &Sizes,
    llc: u64,
    q: &mut steps::Queries,
) -> anyhow::Result<ConfigReport> {
    let mut starts = Vec::new();
    for r in 0..a.repeat {
        for cold in [true, false] {
            progress(format!(
                "{}: {} start {}/{}",
                config.name,
                if cold { "cold" } else { "warm" },
                r + 1,
                a.repeat
            ));
            starts.push(steps::start_once(ctx, config, cold, &q.next())?);
        }
    }
    progress(format!("{}: {} query latencies of each kind", config.name, a.samples));
    let mut subject = Subject::start(ctx, config)?;
    let inference = steps::inference(&mut subject, a.samples, llc, q);
    subject.stop()?;
    progress(format!("{}: {} agent processes", config.name, a.processes));
    let agents = steps::agents(ctx, config, a.processes, q)?;
    let page_cache_bytes = starts.iter().rev().find(|s| !s.cold).map_or(0, |s| s.resident_after);
    Ok(ConfigReport {
        name: config.name,
        kind: config.kind,
        tools_model: config.tools.name.clone(),
        code_model: config.code.name.clone(),
        disk_bytes: config.models().iter().map(|m| model_report(m, false).files_bytes).sum(),
        eviction_confirmed: starts.iter().filter(|s| s.cold).all(|s| s.resident_before == 0),
        starts,
        page_cache_bytes,
        inference: inference?,
        agents,
    })
}

struct Sizes {
    repeat: usize,
    samples: usize,
    processes: usize,
}

/// Runs `vembed experiment`.
pub fn run(args: &ExperimentArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let load_avg_start = probe::load_avg();
    if let Some(py) = &args.baseline_python {
        check_python(py)?;
    }
    let sizes = Sizes {
        repeat: args.repeat.unwrap_or(if args.quick { 2 } else { 5 }).max(1),
        samples: args.samples.unwrap_or(if args.quick { 3 } else { 20 }).max(1),
        processes: args.processes.unwrap_or(if args.quick { 2 } else { 4 }).max(1),
    };
    let corpus = args
        .corpus
        .canonicalize()
        .with_context(|| format!("--corpus {}", args.corpus.display()))?;
    let tools = vembed_models::resolve(&args.tools_model)?;
    let (code, standin) = code_model(args.code_model.as_deref(), &tools)?;
    let machine = probe::Machine::read();

    std::fs::create_dir_all(&args.out).with_context(|| args.out.display().to_string())?;
    let out = args.out.canonicalize()?;
    let work = tempfile::Builder::new().prefix("vembed-experiment-").tempdir()?;
    let ctx = Ctx::new(
        work.path().to_path_buf(),
        args.baseline_python.clone(),
        corpus.clone(),
        out.clone(),
    )?;

    let mut configs = vec![
        Config { name: "separate", kind: Kind::Host, tools: tools.clone(), code: code.clone() },
        Config { name: "unified", kind: Kind::Host, tools: code.clone(), code: code.clone() },
    ];
    let quality = match args.quality_model.as_deref() {
        Some("none") => None,
        Some(name) => Some(vembed_models::resolve(name)?),
        None => vembed_models::resolve(QUALITY).ok(),
    };
    if let Some(q) = &quality {
        configs.push(Config {
            name: "separate-quality",
            kind: Kind::Host,
            tools: tools.clone(),
            code: q.clone(),
        });
        configs.push(Config {
            name: "unified-quality",
            kind: Kind::Host,
            tools: q.clone(),
            code: q.clone(),
        });
    } else {
        progress(format!(
            "{QUALITY} is not on this machine: the seed's quality configurations are not measured \
             (`vembed model fetch {QUALITY}`)"
        ));
    }
    if args.baseline_python.is_some() {
        configs.push(Config {
            name: "per-process",
            kind: Kind::PerProcess,
            tools: code.clone(),
            code: code.clone(),
        });
    }
    progress(format!("indexing {} with {} for code search", corpus.display(), code.name));
    let (index_chunks, index_seconds) = build_index(&ctx, &configs[1])?;
    if let Some(q) = &quality {
        progress(format!("indexing {} with {} for code search", corpus.display(), q.name));
        build_index(&ctx, configs.iter().find(|c| c.name == "unified-quality").unwrap())?;
    }

    let mut q = steps::Queries::new();
    let mut reports = Vec::new();
    for config in &configs {
        reports.push(measure(&ctx, config, &sizes, machine.llc_bytes, &mut q)?);
    }
    let mut models = vec![model_report(&tools, false)];
    if code.path != tools.path {
        models.push(model_report(&code, standin));
    }
    if let Some(q) = &quality {
        models.push(model_report(q, false));
    }
    let report = Report {
        vembed_version: env!("CARGO_PKG_VERSION"),
        machine,
        quick: args.quick,
        repeat: sizes.repeat,
        samples: sizes.samples,
        processes: sizes.processes,
        corpus: corpus.display().to_string(),
        index_chunks,
        index_seconds,
        models,
        configs: reports,
        load_avg_start,
        load_avg_end: probe::load_avg(),
        seconds: started.elapsed().as_secs_f64(),
    };
    let markdown = report.markdown();
    let json = serde_json::to_string_pretty(&report)?;
    std::fs::write(out.join("report.md"), &markdown)?;
    std::fs::write(out.join("report.json"), &json)?;
    chart::draw(&report, &out.join("chart.svg"))?;
    progress(format!(
        "wrote {} , report.json and chart.svg in {:.0} s",
        out.join("report.md").display(),
        report.seconds
    ));
    if args.json {
        outln!("{json}")?;
    } else {
        out!("{markdown}")?;
    }
    Ok(())
}

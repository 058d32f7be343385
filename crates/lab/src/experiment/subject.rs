//! The configurations under test, and starting one: a real vembed host on
//! a socket of its own (separate or unified models), or a Python process
//! with sentence-transformers in-process (per-process, as Victor today).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use vembed::search::Searcher;
use vembed::tools::{Method, SelectOptions, ToolSet};
use vembed::{Client, ModelRef, Role, SpawnOptions};
use vembed_models::ModelDir;

use super::agent::{AgentProc, TOOLS_JSON};

/// How a configuration embeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// One vembed host serves both roles.
    Host,
    /// Each agent process loads sentence-transformers itself.
    PerProcess,
}

/// One configuration of the experiment.
#[derive(Debug, Clone)]
pub struct Config {
    /// `separate`, `unified`, `per-process`, or with the seed's quality
    /// model `separate-quality` and `unified-quality`.
    pub name: &'static str,
    pub kind: Kind,
    pub tools: ModelDir,
    pub code: ModelDir,
}

impl Config {
    /// The distinct models it loads.
    pub fn models(&self) -> Vec<&ModelDir> {
        let mut m = vec![&self.tools];
        if self.code.path != self.tools.path {
            m.push(&self.code);
        }
        m
    }

    /// Every file of its model folders (what a cold start must read).
    pub fn model_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for m in self.models() {
            files_in(&m.path, &mut out);
        }
        out
    }
}

/// Every file under `dir`, recursively, appended to `out`.
pub fn files_in(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            files_in(&p, out);
        } else if p.is_file() {
            out.push(p);
        }
    }
}

/// What every subject shares: where things go and what they read.
pub struct Ctx {
    pub work: PathBuf,
    pub host_bin: PathBuf,
    pub python: Option<PathBuf>,
    pub repo: PathBuf,
    pub logs: PathBuf,
}

impl Ctx {
    pub fn new(
        work: PathBuf,
        python: Option<PathBuf>,
        repo: PathBuf,
        logs: PathBuf,
    ) -> anyhow::Result<Ctx> {
        let host_bin = SpawnOptions::default().resolve_host_bin()?;
        std::fs::write(work.join("tools.json"), TOOLS_JSON)?;
        std::fs::write(work.join("agent.py"), super::agent::AGENT_PY)?;
        Ok(Ctx { work, host_bin, python, repo, logs })
    }

    /// The index code search reads with `code` as the code model: one per
    /// code model, as an index is built with one model.
    pub fn index_dir(&self, code: &ModelDir) -> PathBuf {
        let name: String = code
            .name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
            .collect();
        self.logs.join(format!("index-{name}"))
    }

    fn log(&self, name: &str) -> anyhow::Result<std::fs::File> {
        let path = self.logs.join(format!("{name}.log"));
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| path.display().to_string())
    }

    fn socket(&self, config: &Config) -> PathBuf {
        self.work.join(format!("{}.sock", config.name))
    }

    /// Starts a host for `config` and waits for its ready line.
    pub fn start_host(&self, config: &Config) -> anyhow::Result<(Child, Client)> {
        let socket = self.socket(config);
        let mut cmd = Command::new(&self.host_bin);
        cmd.arg("--socket").arg(&socket);
        cmd.arg("--unified-embedding-model").arg(&config.tools.path);
        cmd.arg("--embedding-model").arg(&config.tools.path);
        cmd.arg("--codebase-embedding-model").arg(&config.code.path);
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(self.log(config.name)?);
        let mut child = cmd.spawn().with_context(|| self.host_bin.display().to_string())?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("no stdout")?).read_line(&mut line)?;
        if !line.starts_with("vembed-host ready") {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "the {} host did not start: {:?}; see {}",
                config.name,
                line.trim(),
                self.logs.join(format!("{}.log", config.name)).display()
            );
        }
        let client = Client::connect(&socket)?;
        Ok((child, client))
    }

    /// Starts an agent process for `config`: a vembed client of the
    /// config's host, or sentence-transformers in-process.
    pub fn start_agent(&self, config: &Config, n: usize) -> anyhow::Result<AgentProc> {
        let what = format!("{} agent {n}", config.name);
        let cmd = match config.kind {
            Kind::Host => {
                let mut cmd = Command::new(std::env::current_exe()?);
                cmd.arg("experiment-agent").arg("--socket").arg(self.socket(config));
                cmd.arg("--repo").arg(&self.repo);
                cmd.arg("--index-dir").arg(self.index_dir(&config.code));
                cmd
            }
            Kind::PerProcess => self.python_agent(&config.code)?,
        };
        AgentProc::spawn(cmd, &what, self.logs.join(format!("{}-agents.log", config.name)))
    }

    fn python_agent(&self, model: &ModelDir) -> anyhow::Result<Command> {
        let python = self.python.as_ref().context("no --baseline-python")?;
        let mut cmd = Command::new(python);
        cmd.arg(self.work.join("agent.py")).arg("--model").arg(&model.path);
        cmd.arg("--tools-json").arg(self.work.join("tools.json"));
        Ok(cmd)
    }
}

/// A started configuration the experiment measures.
pub enum Subject {
    Host(Box<HostSubject>),
    Process(AgentProc),
}

/// A vembed host and the driver's own client of it.
pub struct HostSubject {
    child: Child,
    client: Client,
    searcher: Searcher,
    set: ToolSet,
}

impl Subject {
    /// Starts `config` and returns it once loaded (the host's ready line,
    /// or the Python process's `ready`).
    pub fn start(ctx: &Ctx, config: &Config) -> anyhow::Result<Subject> {
        match config.kind {
            Kind::Host => {
                let (child, client) = ctx.start_host(config)?;
                let searcher =
                    Searcher::open(&client, &ctx.repo, Some(&ctx.index_dir(&config.code)))?;
                let set = ToolSet::from_json(TOOLS_JSON)?;
                Ok(Subject::Host(Box::new(HostSubject { child, client, searcher, set })))
            }
            Kind::PerProcess => {
                let mut p = ctx.start_agent(config, 0)?;
                p.wait_ready(Duration::from_secs(600))?;
                Ok(Subject::Process(p))
            }
        }
    }

    /// The processes whose memory counts.
    pub fn pid(&self) -> u32 {
        match self {
            Subject::Host(h) => h.child.id(),
            Subject::Process(p) => p.pid(),
        }
    }

    fn timed(f: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<f64> {
        let t = Instant::now();
        f()?;
        Ok(t.elapsed().as_secs_f64() * 1e3)
    }

    /// One tool selection (the first embeds the tool set), in ms.
    pub fn tools(&mut self, query: &str) -> anyhow::Result<f64> {
        match self {
            Subject::Host(h) => Self::timed(|| {
                h.client.select_tools(
                    &h.set,
                    Method::Hybrid,
                    &[query],
                    &SelectOptions::default(),
                )?;
                Ok(())
            }),
            Subject::Process(p) => p.op(super::agent::tools_op(query)),
        }
    }

    /// One code search, in ms.
    pub fn code(&mut self, query: &str) -> anyhow::Result<f64> {
        match self {
            Subject::Host(h) => Self::timed(|| {
                h.searcher.search(&mut h.client, query, 10)?;
                Ok(())
            }),
            Subject::Process(p) => p.op(super::agent::code_op(query)),
        }
    }

    /// One query embedding with a role's model, in ms.
    pub fn embed(&mut self, role: Role, text: &str) -> anyhow::Result<f64> {
        match self {
            Subject::Host(h) => Self::timed(|| {
                h.client.embed_with(&ModelRef::Role(role), &[text])?;
                Ok(())
            }),
            Subject::Process(p) => p.op(super::agent::embed_op(role, text)),
        }
    }

    /// Stops it and waits for the process to end.
    pub fn stop(self) -> anyhow::Result<()> {
        match self {
            Subject::Host(h) => {
                let HostSubject { mut child, mut client, .. } = *h;
                client.shutdown()?;
                let deadline = Instant::now() + Duration::from_secs(30);
                while child.try_wait()?.is_none() {
                    if Instant::now() > deadline {
                        let _ = child.kill();
                        let _ = child.wait();
                        bail!("the host did not stop within 30 s");
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Ok(())
            }
            Subject::Process(p) => {
                p.stop();
                Ok(())
            }
        }
    }
}

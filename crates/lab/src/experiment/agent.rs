//! The agent processes of the experiment and the line protocol they speak.
//!
//! An agent is one process of a coding agent: it starts, says
//! `{"ready": true}`, and then answers one JSON line per command on stdin:
//! `{"op": "tools", "query": Q}` (tool selection), `{"op": "code", "query": Q}`
//! (code search), `{"op": "embed", "role": "tools"|"code", "text": T}` (one
//! query embedding), each with `{"ok": true, "ms": M}`, timed inside the
//! agent. It holds what it loaded until stdin closes. Two kinds speak it:
//! `vembed-lab experiment-agent` (a client of a vembed host) and `agent.py`
//! (sentence-transformers in-process, as Victor runs today).

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};
use vembed::search::Searcher;
use vembed::tools::{Method, SelectOptions, ToolSet};
use vembed::{Client, ModelRef, Role};

/// The tool set every agent selects from (Victor-like coding tools).
pub const TOOLS_JSON: &str = include_str!("../../../../examples/tools/coding-agent.json");
/// The in-process sentence-transformers agent.
pub const AGENT_PY: &str = include_str!("agent.py");

/// Options of the hidden `vembed-lab experiment-agent`.
#[derive(clap::Args, Debug)]
pub struct AgentArgs {
    /// The repository whose index code search reads.
    #[arg(long)]
    repo: PathBuf,
    /// Its index.
    #[arg(long)]
    index_dir: PathBuf,
}

/// Runs `vembed-lab experiment-agent` on a connected client.
pub fn run_agent(client: &mut Client, args: &AgentArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let set = ToolSet::from_json(TOOLS_JSON)?;
    let searcher = Searcher::open(client, &args.repo, Some(&args.index_dir))?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    let ready = json!({"ready": true, "pid": std::process::id(),
        "ms": started.elapsed().as_secs_f64() * 1e3});
    writeln!(out, "{ready}")?;
    out.flush()?;
    for line in std::io::stdin().lock().lines() {
        let cmd: Value = serde_json::from_str(&line?)?;
        let text = |k: &str| cmd[k].as_str().unwrap_or_default().to_string();
        let t = Instant::now();
        let done: anyhow::Result<()> = match cmd["op"].as_str() {
            Some("tools") => client
                .select_tools(&set, Method::Hybrid, &[&text("query")], &SelectOptions::default())
                .map(drop)
                .map_err(Into::into),
            Some("code") => {
                searcher.search(client, &text("query"), 10).map(drop).map_err(Into::into)
            }
            Some("embed") => {
                let role = if cmd["role"] == "code" { Role::Code } else { Role::Tools };
                client
                    .embed_with(&ModelRef::Role(role), &[&text("text")])
                    .map(drop)
                    .map_err(Into::into)
            }
            other => Err(anyhow!("unknown op {other:?}")),
        };
        let ms = t.elapsed().as_secs_f64() * 1e3;
        let reply = match done {
            Ok(()) => json!({"ok": true, "ms": ms}),
            Err(e) => json!({"ok": false, "error": format!("{e:#}")}),
        };
        writeln!(out, "{reply}")?;
        out.flush()?;
    }
    Ok(())
}

/// A running agent process.
pub struct AgentProc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<std::io::Result<String>>,
    what: String,
    log: PathBuf,
}

impl AgentProc {
    /// Starts `cmd` (stdout piped, stderr appended to `log`).
    pub fn spawn(mut cmd: Command, what: &str, log: PathBuf) -> anyhow::Result<AgentProc> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| log.display().to_string())?;
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(file);
        let mut child = cmd.spawn().with_context(|| format!("starting {what}"))?;
        let stdout: ChildStdout = child.stdout.take().context("no stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(AgentProc { stdin: child.stdin.take(), child, lines: rx, what: what.to_string(), log })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn next_line(&mut self, timeout: Duration) -> anyhow::Result<Value> {
        let line = match self.lines.recv_timeout(timeout) {
            Ok(line) => line?,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                bail!("{} gave no answer in {} s", self.what, timeout.as_secs())
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = self.child.wait().map_or_else(|e| e.to_string(), |s| s.to_string());
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(3).collect();
                bail!(
                    "{} exited ({status}): {} (log: {})",
                    self.what,
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
                    self.log.display()
                )
            }
        };
        serde_json::from_str(&line).with_context(|| format!("{}: not JSON: {line}", self.what))
    }

    /// Waits for `{"ready": true}`.
    pub fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let v = self.next_line(timeout)?;
        if v["ready"] != true {
            bail!("{}: {}", self.what, v["error"].as_str().unwrap_or(&v.to_string()));
        }
        Ok(())
    }

    /// Sends one command and returns the agent's own timing, in ms.
    pub fn op(&mut self, cmd: Value) -> anyhow::Result<f64> {
        let stdin = self.stdin.as_mut().context("agent closed")?;
        writeln!(stdin, "{cmd}")?;
        stdin.flush()?;
        let v = self.next_line(Duration::from_secs(300))?;
        match v["ok"].as_bool() {
            Some(true) => v["ms"].as_f64().context("no ms"),
            _ => bail!("{}: {}", self.what, v["error"].as_str().unwrap_or(&v.to_string())),
        }
    }

    /// Closes stdin and waits for the process to end (kills it after 30 s).
    pub fn stop(mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The commands of one agent's turn.
pub fn tools_op(query: &str) -> Value {
    json!({"op": "tools", "query": query})
}
pub fn code_op(query: &str) -> Value {
    json!({"op": "code", "query": query})
}
pub fn embed_op(role: Role, text: &str) -> Value {
    json!({"op": "embed", "role": if role == Role::Code { "code" } else { "tools" }, "text": text})
}

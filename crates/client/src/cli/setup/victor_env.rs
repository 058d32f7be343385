//! Victor's Python environment: which interpreter runs Victor, what it
//! holds, and pip in it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use serde::Deserialize;

/// The victor-ai release whose settings and entry points setup knows.
pub(super) const KNOWN_VICTOR: &str = "0.17.0";

const PROBE: &str = include_str!("probe.py");
const PROOF: &str = include_str!("proof.py");

/// A distribution installed in the environment.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct Dist {
    pub version: String,
}

/// What the probe found in Victor's environment.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct Probe {
    pub executable: PathBuf,
    pub version: String,
    pub prefix: PathBuf,
    pub purelib: PathBuf,
    pub scripts: PathBuf,
    pub victor_ai: Option<Dist>,
    pub victor_coding: Option<Dist>,
    pub vembed: Option<Dist>,
    pub pip: bool,
    pub torch: bool,
    pub writable: bool,
}

/// The interpreter that runs Victor: `--python`, else the one the `victor`
/// command on `PATH` starts (read from its `#!` line, or from the
/// `exec` line pip writes when that path is too long for `#!`).
pub(super) fn find_python(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let Some(script) = std::env::split_paths(&path).map(|d| d.join("victor")).find(|p| p.is_file())
    else {
        bail!(
            "Victor not found: no `victor` command on PATH; install victor-ai ({KNOWN_VICTOR}) \
             or pass --python with the interpreter of Victor's environment"
        );
    };
    interpreter_of(&script)
        .with_context(|| format!("finding the Python that runs {}", script.display()))
}

fn interpreter_of(script: &Path) -> anyhow::Result<PathBuf> {
    let head = std::fs::read(script).with_context(|| format!("reading {}", script.display()))?;
    let head = String::from_utf8_lossy(&head[..head.len().min(4096)]).into_owned();
    let mut lines = head.lines();
    let first = lines.next().unwrap_or_default();
    let Some(shebang) = first.strip_prefix("#!") else {
        bail!("{} is not a script (a `victor` binary?): pass --python", script.display());
    };
    let shebang = shebang.trim();
    if shebang == "/bin/sh" {
        // pip's form for long paths: '''exec' "/path/python" "$0" "$@"
        if let Some(p) =
            lines.find(|l| l.starts_with("'''exec'")).and_then(|line| line.split('"').nth(1))
        {
            return Ok(PathBuf::from(p));
        }
        bail!("{}: no interpreter on its exec line: pass --python", script.display());
    }
    let mut words = shebang.split_whitespace();
    let first = words.next().unwrap_or_default();
    if first.ends_with("/env") {
        let name = words.find(|w| !w.starts_with('-')).unwrap_or("python3");
        return Ok(PathBuf::from(name));
    }
    Ok(PathBuf::from(first))
}

/// Runs the probe with `python`.
pub(super) fn probe(python: &Path) -> anyhow::Result<Probe> {
    let out = Command::new(python)
        .args(["-c", PROBE])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed to describe its environment: {}",
            python.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim().lines().last().unwrap_or_default())
        .with_context(|| format!("{}: unexpected probe output {text:?}", python.display()))
}

/// pip (or `uv pip` where the environment has no pip) in Victor's
/// environment, with `args` after `install`/`uninstall`.
pub(super) fn pip(probe: &Probe, args: &[&str]) -> anyhow::Result<()> {
    let mut cmd = if probe.pip {
        let mut c = Command::new(&probe.executable);
        c.args(["-m", "pip", "--disable-pip-version-check"]);
        c
    } else if let Some(uv) = on_path("uv") {
        let mut c = Command::new(uv);
        c.args(["pip"]);
        c
    } else {
        bail!(
            "{} has no pip and no `uv` is on PATH: install vembed into it yourself, then run setup again",
            probe.executable.display()
        );
    };
    cmd.args(args);
    if !probe.pip {
        cmd.arg("--python").arg(&probe.executable);
    }
    let status = cmd.stdin(Stdio::null()).status().context("running pip")?;
    if !status.success() {
        bail!("pip {} failed ({status})", args.join(" "));
    }
    Ok(())
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

/// What Victor itself did in the proof run.
#[derive(Debug, Deserialize)]
pub(super) struct Proof {
    pub victor: String,
    pub tools: ProofTools,
    pub codebase_vector_store: Option<String>,
    #[serde(default)]
    pub picks: Vec<String>,
    #[serde(default)]
    pub select_ms: f64,
    /// Cosine of the query vector Victor's selector used to the host's own.
    #[serde(default)]
    pub query_cosine: f64,
    pub code: Option<ProofCode>,
    pub sentence_transformers: Option<String>,
    pub torch: bool,
    pub errors: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ProofTools {
    pub provider: String,
    pub model: String,
    pub ollama_base_url: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct ProofCode {
    pub source: String,
    pub ms: f64,
    pub text: String,
    pub query: String,
}

/// Runs Victor's own tool selection and code search in a new process of
/// its environment, as any Victor process there starts.
pub(super) fn prove(probe: &Probe) -> anyhow::Result<Proof> {
    let out = Command::new(&probe.executable)
        .args(["-c", PROOF])
        .env("TOKENIZERS_PARALLELISM", "false")
        .stdin(Stdio::null())
        .output()
        .context("running Victor for the proof")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.trim().lines().last().unwrap_or_default();
    match serde_json::from_str(last) {
        Ok(proof) if out.status.success() => Ok(proof),
        _ => bail!(
            "Victor's proof run failed ({}): {}",
            out.status,
            tail(&String::from_utf8_lossy(&out.stderr), 2000)
        ),
    }
}

fn tail(s: &str, n: usize) -> &str {
    let s = s.trim();
    let mut start = s.len().saturating_sub(n);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interpreter_comes_from_either_form_pip_writes() {
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("a");
        std::fs::write(&short, "#!/opt/v/bin/python3.12\nimport sys\n").unwrap();
        assert_eq!(interpreter_of(&short).unwrap(), PathBuf::from("/opt/v/bin/python3.12"));
        let long = dir.path().join("b");
        std::fs::write(
            &long,
            "#!/bin/sh\n'''exec' \"/very/long/bin/python\" \"$0\" \"$@\"\n' '''\n",
        )
        .unwrap();
        assert_eq!(interpreter_of(&long).unwrap(), PathBuf::from("/very/long/bin/python"));
        let env = dir.path().join("c");
        std::fs::write(&env, "#!/usr/bin/env python3\n").unwrap();
        assert_eq!(interpreter_of(&env).unwrap(), PathBuf::from("python3"));
        let binary = dir.path().join("d");
        std::fs::write(&binary, b"\x7fELF").unwrap();
        assert!(interpreter_of(&binary).unwrap_err().to_string().contains("--python"));
    }
}

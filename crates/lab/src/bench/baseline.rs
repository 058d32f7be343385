//! The in-process Python baselines (`st_baseline.py`, compiled in) and the
//! bench's texts.

use std::path::Path;

use anyhow::{Context, bail};

use super::{Baseline, BenchArgs};

/// The in-process baselines, run by `--baseline-python`.
const ST_BASELINE: &str = include_str!("st_baseline.py");

/// Runs `st_baseline.py` (compiled in) on the same texts.
pub(super) fn run_baseline(
    python: &Path,
    which: Baseline,
    model_dir: &str,
    texts: &[String],
    args: &BenchArgs,
    threads: u32,
) -> anyhow::Result<serde_json::Value> {
    let dir = std::env::temp_dir().join(format!("vembed-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let script = dir.join("st_baseline.py");
    std::fs::write(&script, ST_BASELINE)?;
    let data = dir.join("texts.jsonl");
    write_jsonl(&data, texts)?;
    if !args.json {
        errln!("running the {} baseline with {} ...", which.label(), python.display());
    }
    let out = std::process::Command::new(python)
        .arg(&script)
        .args(["--model", model_dir, "--texts"])
        .arg(&data)
        .args(["--requests", &args.requests.to_string(), "--batch", &args.batch.to_string()])
        .args(["--threads", &threads.to_string(), "--query", &args.query])
        .args(["--engine", which.engine()])
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    let _ = std::fs::remove_dir_all(&dir);
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no output");
        bail!("the {} baseline failed: {last}", which.label());
    }
    serde_json::from_slice(&out.stdout).context("reading the baseline's JSON")
}

/// Writes texts as JSON lines, the format `--texts` and the baseline read.
pub(super) fn write_jsonl(path: &Path, texts: &[String]) -> anyhow::Result<()> {
    let mut out = String::new();
    for t in texts {
        out.push_str(&serde_json::to_string(t)?);
        out.push('\n');
    }
    std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))
}

pub(super) fn read_texts(path: &Path) -> anyhow::Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| match serde_json::from_str::<serde_json::Value>(l) {
            Ok(serde_json::Value::String(s)) => s,
            Ok(serde_json::Value::Object(o)) => {
                o.get("text").and_then(|t| t.as_str()).map_or_else(|| l.to_string(), str::to_string)
            }
            _ => l.to_string(),
        })
        .collect())
}

/// Cuts source files under `dir` (sorted, so runs are comparable) into
/// chunks of `lines` lines, keeping chunks with some substance.
pub fn corpus_chunks(dir: &Path, lines: usize, want: usize) -> anyhow::Result<Vec<String>> {
    const EXTS: [&str; 9] = ["rs", "py", "go", "js", "ts", "c", "h", "java", "cpp"];
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name == "target" || name == "node_modules" {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().and_then(|x| x.to_str()).is_some_and(|x| EXTS.contains(&x)) {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut chunks = Vec::new();
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else { continue };
        let all: Vec<&str> = text.lines().collect();
        for c in all.chunks(lines.max(1)) {
            if c.iter().filter(|l| l.trim().len() > 3).count() >= lines.max(1) / 2 {
                chunks.push(c.join("\n"));
                if chunks.len() >= want {
                    return Ok(chunks);
                }
            }
        }
    }
    Ok(chunks)
}

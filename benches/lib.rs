//! Shared helpers for the benches.
#![warn(missing_docs)]

use std::path::PathBuf;
use std::time::Duration;

/// The real model folder (as fetched by `vembed model fetch`, which `scripts/test` runs); panics when missing.
pub fn model_dir() -> PathBuf {
    let dir = std::env::var_os("VEMBED_TEST_MODEL").map(PathBuf::from).unwrap_or_else(|| {
        vembed_models::paths::cache_dir().join("models/sentence-transformers--all-MiniLM-L6-v2")
    });
    vembed_models::validate_dir(&dir)
        .unwrap_or_else(|e| panic!("{e}; run `./target/release/vembed model fetch` first"));
    dir
}

/// Real code: this repository's own Rust sources cut into 30-line chunks.
pub fn code_chunks(n: usize) -> Vec<String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    code_chunks_from(&[root.join("crates"), root.join("tests")], n)
}

/// Real code: the Rust sources under `roots` cut into 30-line chunks, in
/// sorted path order, repeated if there are fewer than `n`.
pub fn code_chunks_from(roots: &[PathBuf], n: usize) -> Vec<String> {
    let mut files = Vec::new();
    let mut stack = roots.to_vec();
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut chunks = Vec::new();
    for f in files {
        if chunks.len() >= n {
            break;
        }
        let text = std::fs::read_to_string(f).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        for c in lines.chunks(30) {
            chunks.push(c.join("\n"));
        }
    }
    chunks.into_iter().cycle().take(n).collect()
}

/// Snippets of real code for embedding at scale: up to `n` pieces of three
/// non-blank lines (at most 240 characters) from the Rust sources of the
/// crates cargo has unpacked (`~/.cargo/registry/src`: this workspace's
/// locked dependencies give about 590,000), in sorted path order, each
/// piece at most once.
pub fn real_snippets(n: usize) -> Vec<String> {
    let home = PathBuf::from(std::env::var_os("CARGO_HOME").unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cargo").into()
    }));
    let roots = [home.join("registry/src")];
    let mut files = Vec::new();
    let mut stack = roots.to_vec();
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            let Ok(kind) = e.file_type() else { continue };
            if kind.is_dir() {
                stack.push(p);
            } else if kind.is_file() && p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(n);
    'files: for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| l.len() > 8).collect();
        for c in lines.chunks(3) {
            let mut s = c.join("\n");
            s.truncate(s.floor_char_boundary(240));
            if seen.insert(s.clone()) {
                out.push(s);
                if out.len() == n {
                    break 'files;
                }
            }
        }
    }
    assert_eq!(out.len(), n, "only {} distinct snippets of real code on this machine", out.len());
    out
}

/// The embeddings (`n × dim`, row-major) of [`real_snippets`]`(n)` by the
/// model in `model_dir`, computed once per machine and kept in
/// `~/.cache/vembed/bench/real-{n}-{sha}.f32` (embedding 100k snippets
/// takes minutes on two cores).
pub fn real_embeddings(e: &vembed_host::Embedder, n: usize) -> Vec<f32> {
    let dim = e.dim();
    let sha = e.sha256.get(..12).unwrap_or("model").to_string();
    let dir = vembed_models::paths::cache_dir().join("bench");
    let path = dir.join(format!("real-{n}-{sha}.f32"));
    if let Ok(bytes) = std::fs::read(&path)
        && bytes.len() == n * dim * 4
    {
        return bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
    }
    let snippets = real_snippets(n);
    let t = std::time::Instant::now();
    let mut out = Vec::with_capacity(n * dim);
    for (i, group) in snippets.chunks(64).enumerate() {
        let ids: Vec<Vec<u32>> = group.iter().map(|c| e.tokenize(c).unwrap()).collect();
        out.extend(e.embed_ids(&ids).unwrap());
        if i % 100 == 99 {
            eprintln!(
                "embedded {} of {n} real snippets in {:.0} s",
                out.len() / dim,
                t.elapsed().as_secs_f64()
            );
        }
    }
    std::fs::create_dir_all(&dir).unwrap();
    let bytes: Vec<u8> = out.iter().flat_map(|x| x.to_le_bytes()).collect();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    out
}

/// The median and the 99th percentile of `v` (sorted in place).
pub fn percentiles(v: &mut [Duration]) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[(v.len() * 99 / 100).min(v.len() - 1)])
}

/// A duration in milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The load average over 1, 5 and 15 minutes, as `/proc/loadavg` says.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split(' ')
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The CPU's model name, as `/proc/cpuinfo` says.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name").map(|r| r.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default()
}

/// Starts the real host (`vembed-host` beside the running example, i.e.
/// `target/release`) on `dir/host.sock` with the real model, its state in
/// `dir`, and `args` besides; returns once it says it is ready.
pub fn start_host(dir: &std::path::Path, args: &[&str]) -> std::process::Child {
    use std::io::BufRead;
    let host_bin = std::env::current_exe().unwrap().ancestors().nth(2).unwrap().join("vembed-host");
    let mut host = std::process::Command::new(&host_bin)
        .arg("--socket")
        .arg(dir.join("host.sock"))
        .arg("--unified-embedding-model")
        .arg(model_dir())
        .args(args)
        .env("VEMBED_STATE_DIR", dir)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("target/release/vembed-host: build it first");
    let mut line = String::new();
    std::io::BufReader::new(host.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert!(line.starts_with("vembed-host ready"), "{line}");
    host
}

//! Shared helpers for the benches.
#![warn(missing_docs)]

use std::path::PathBuf;

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

//! The code index at scale: build time, size on disk, query latency and
//! recall@10 against exact search, for a few forest settings.
//!
//! Vectors have real structure: the embeddings of real code chunks (this
//! repository's sources, or `VEMBED_SCALE_CORPUS`, embedded in process with
//! the real model); each point is a random mix of two of them plus Gaussian
//! noise, normalized, and so are the queries.
//!
//! ```sh
//! VEMBED_SCALE_N=1000000 VEMBED_SCALE_TREES=16 VEMBED_SCALE_FACTORS=50,100,default,0 \
//!     cargo bench -p vembed-benches --bench index_scale
//! ```
//!
//! `VEMBED_SCALE_TREES` lists forest sizes (`auto` lets arroy choose);
//! `VEMBED_SCALE_FACTORS` lists `search_k` per tree and result, where
//! `default` is a plain search with the index's own choice for its size
//! ([`vembed_index::IndexReader::default_search_k`]; an exact scan below
//! `EXACT_MAX_ITEMS`). The row with factor 0 is the index's exhaustive scan
//! (`IndexReader::search_exact`): where its p50 meets the forest's is the
//! crossover below which a plain search scans (`EXACT_MAX_ITEMS`).

use std::time::Instant;

use rand::{RngExt, SeedableRng};
use vembed_host::{Embedder, Engine};
use vembed_index::{IndexWriter, ModelIdentity, Snippet};

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= n);
}

fn gaussian(rng: &mut rand::rngs::StdRng) -> f32 {
    // Box-Muller.
    let u1: f32 = rng.random_range(1e-7..1.0);
    let u2: f32 = rng.random_range(0.0..1.0);
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    for (x, y) in a.chunks_exact(16).zip(b.chunks_exact(16)) {
        for i in 0..16 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum()
}

fn main() {
    let n: usize = env_or("VEMBED_SCALE_N", 1_000_000);
    let centres: usize = env_or("VEMBED_SCALE_CENTRES", 1000);
    let sigma: f32 = env_or("VEMBED_SCALE_SIGMA", 0.03);
    let settings: String = env_or("VEMBED_SCALE_TREES", "16".to_string());
    // search_k per tree and result; "default" is the index's own choice for
    // its size, 0 its exhaustive scan.
    let factors: String = env_or("VEMBED_SCALE_FACTORS", "15,50,150,default,0".to_string());
    let queries_n = 200;

    vembed_host::init_thread_pool(vembed_host::thread_count(0));
    let e = Embedder::load_named(vembed_benches::model_dir().to_str().unwrap(), Engine::Native)
        .expect("the real model");
    let dim = e.dim();
    let t = Instant::now();
    let chunks = match std::env::var_os("VEMBED_SCALE_CORPUS") {
        Some(dir) => vembed_benches::code_chunks_from(&[dir.into()], centres),
        None => vembed_benches::code_chunks(centres),
    };
    let mut base = Vec::with_capacity(centres * dim);
    for group in chunks.chunks(32) {
        let ids: Vec<Vec<u32>> = group.iter().map(|c| e.tokenize(c).unwrap()).collect();
        base.extend(e.embed_ids(&ids).unwrap());
    }
    eprintln!("embedded {centres} real chunks as centres in {:.1} s", t.elapsed().as_secs_f64());

    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    // A point between two real embeddings, plus noise: vectors lie near the
    // span of real code embeddings without forming separable clusters.
    let make = |rng: &mut rand::rngs::StdRng, c: usize| {
        let d = rng.random_range(0..centres);
        let w: f32 = rng.random_range(0.0..1.0);
        let (a, b) = (&base[c * dim..(c + 1) * dim], &base[d * dim..(d + 1) * dim]);
        let mut v: Vec<f32> =
            a.iter().zip(b).map(|(x, y)| w * x + (1.0 - w) * y + sigma * gaussian(rng)).collect();
        normalize(&mut v);
        v
    };
    let t = Instant::now();
    let mut data = Vec::with_capacity(n * dim);
    for i in 0..n {
        data.extend(make(&mut rng, i % centres));
    }
    let queries: Vec<Vec<f32>> =
        (0..queries_n).map(|i| make(&mut rng, (i * 7919) % centres)).collect();
    eprintln!("generated {n} vectors in {:.1} s", t.elapsed().as_secs_f64());

    // Exact top 10 per query.
    let t = Instant::now();
    let truth: Vec<Vec<u32>> = queries
        .iter()
        .map(|q| {
            let mut scored: Vec<(f32, u32)> =
                data.chunks_exact(dim).enumerate().map(|(i, v)| (dot(q, v), i as u32)).collect();
            scored.select_nth_unstable_by(9, |a, b| b.0.total_cmp(&a.0));
            scored.truncate(10);
            scored.into_iter().map(|(_, i)| i).collect()
        })
        .collect();
    let exact_ms = t.elapsed().as_secs_f64() * 1e3 / queries_n as f64;
    eprintln!("exact search: {exact_ms:.1} ms per query");

    let raw_mib = (n * dim * 4) as f64 / 1048576.0;
    println!(
        "n = {n}, dim = {dim}, {centres} centres, sigma {sigma}; raw vectors {raw_mib:.0} MiB; exact scan {exact_ms:.1} ms/query"
    );
    println!(
        "{:<8} {:>6} {:>10} {:>10} {:>9} {:>10} {:>10} {:>10}",
        "trees", "built", "build s", "disk MiB", "disk/raw", "search_k", "p50 ms", "recall@10"
    );
    for setting in settings.split(',') {
        // "auto" lets arroy choose; a number fixes the forest size.
        let n_trees = setting.parse::<usize>().ok();
        let dir = tempfile::tempdir().unwrap();
        let model = ModelIdentity {
            name: "bench".into(),
            sha256: "0".repeat(64),
            dim: dim as u32,
            identity: "bench".into(),
        };
        let mut w = IndexWriter::open(dir.path(), dir.path(), &model, false).unwrap();
        w.set_n_trees(n_trees);
        w.set_split_after(std::env::var("VEMBED_SCALE_SPLIT").ok().and_then(|v| v.parse().ok()));
        let t = Instant::now();
        let mut batch = w.batch().unwrap();
        for (f, part) in data.chunks(1000 * dim).enumerate() {
            let snippets: Vec<(Snippet, &[f32])> = part
                .chunks_exact(dim)
                .enumerate()
                .map(|(j, v)| {
                    let line = j as u32 * 10 + 1;
                    let s = Snippet {
                        path: format!("src/file_{f}.rs"),
                        start_line: line,
                        end_line: line + 9,
                        symbol: None,
                        text: String::new(),
                    };
                    (s, v)
                })
                .collect();
            batch.put_file(&format!("src/file_{f}.rs"), "h", &snippets).unwrap();
        }
        batch.commit().unwrap();
        let build_s = t.elapsed().as_secs_f64();
        let disk = std::fs::metadata(dir.path().join("data.mdb")).unwrap().len() as f64 / 1048576.0;
        let r = w.reader();
        let trees = r.n_trees().unwrap();
        // Forest searches at three search_k, then the index's own exact scan
        // (search_k 0 here), which plain search() uses below EXACT_MAX_ITEMS.
        for factor in factors.split(',') {
            let (factor, search_k) = match factor.parse::<usize>() {
                Ok(f) => (Some(f), 10 * trees * f),
                Err(_) => (None, r.default_search_k(10).unwrap()),
            };
            let mut lat = Vec::new();
            let mut found = 0usize;
            for (q, want) in queries.iter().zip(&truth) {
                let t = Instant::now();
                let hits = match factor {
                    Some(0) => r.search_exact(q, 10).unwrap(),
                    Some(_) => r.search_with(q, 10, Some(search_k)).unwrap(),
                    None => r.search(q, 10).unwrap(),
                };
                lat.push(t.elapsed().as_secs_f64() * 1e3);
                // Snippet ids are sequential in insertion order: recover the
                // vector index from file and line.
                for h in hits {
                    let f: usize = h.snippet.path["src/file_".len()..h.snippet.path.len() - 3]
                        .parse()
                        .unwrap();
                    let idx = (f * 1000 + (h.snippet.start_line as usize - 1) / 10) as u32;
                    found += usize::from(want.contains(&idx));
                }
            }
            lat.sort_by(f64::total_cmp);
            let p50 = lat[lat.len() / 2];
            let p99 = lat[(lat.len() - 1) * 99 / 100];
            println!(
                "{:<8} {:>6} {:>10.1} {:>10.0} {:>9.2} {:>10} {:>10.2} {:>10.3}   (p99 {:.2} ms)",
                setting,
                trees,
                build_s,
                disk,
                disk / raw_mib,
                search_k,
                p50,
                found as f64 / (10 * queries.len()) as f64,
                p99
            );
        }
    }
}

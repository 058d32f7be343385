//! The code index at scale, on one set of vectors: vembed's sign-bit codes
//! re-ranked exactly (a sweep of candidate counts), its exact scan, arroy's
//! forest (the index before schema 3) and hannoy's HNSW (with the same
//! exact re-rank of what it returns): recall@10 against exact, p50/p99
//! latency, build time and disk size.
//!
//! Vectors are real: [`vembed_benches::real_embeddings`] (snippets of real
//! Rust (the crates cargo unpacked) embedded by the real model, cached per machine). The
//! first `VEMBED_SCALE_REAL` (default 100,000) are indexed as they are;
//! above that, each further vector is a real one plus Gaussian noise
//! (`VEMBED_SCALE_SIGMA` per component, default 0.01, about cosine 0.98 to
//! its source), normalized. Queries are 200 other real embeddings, never
//! indexed.
//!
//! ```sh
//! VEMBED_SCALE_N=1000000 VEMBED_SCALE_METHODS=codes,exact,arroy,hannoy \
//!     cargo bench -p vembed-benches --bench index_scale
//! ```
//!
//! `VEMBED_SCALE_CANDIDATES` lists the code search's candidate counts
//! (`default` is the index's own choice for its size). With
//! `VEMBED_SCALE_KEEP=<dir>` vembed's index is built in `<dir>` (which must
//! not hold one yet) under the real model's identity, and kept, so that
//! `vembed search <any repo> --index-dir <dir> …` can be timed on it.

use std::time::Instant;

use rand::{RngExt, SeedableRng};
use vembed_host::{Embedder, Engine};
use vembed_index::{IndexReader, IndexWriter, ModelIdentity, Snippet};

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
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

const QUERIES: usize = 200;

struct Row {
    method: String,
    build_s: f64,
    disk_mib: f64,
    lat: Vec<f64>,
    found: usize,
}

fn print(r: &mut Row, raw_mib: f64) {
    r.lat.sort_by(f64::total_cmp);
    let p50 = r.lat[r.lat.len() / 2];
    let p99 = r.lat[(r.lat.len() - 1) * 99 / 100];
    println!(
        "{:<28} {:>9.1} {:>9.0} {:>8.2} {:>9.2} {:>9.2} {:>9.3}",
        r.method,
        r.build_s,
        r.disk_mib,
        r.disk_mib / raw_mib,
        p50,
        p99,
        r.found as f64 / (10 * QUERIES) as f64
    );
}

fn disk(dir: &std::path::Path) -> f64 {
    std::fs::metadata(dir.join("data.mdb")).map(|m| m.len()).unwrap_or(0) as f64 / 1048576.0
}

fn main() {
    let n: usize = env_or("VEMBED_SCALE_N", 1_000_000);
    let real: usize = env_or("VEMBED_SCALE_REAL", 100_000);
    let sigma: f32 = env_or("VEMBED_SCALE_SIGMA", 0.01);
    let methods: String = env_or("VEMBED_SCALE_METHODS", "codes,exact,arroy,hannoy".to_string());
    let candidates: String =
        env_or("VEMBED_SCALE_CANDIDATES", "500,1000,1500,2000,3000,default".to_string());

    vembed_host::init_thread_pool(vembed_host::thread_count(0));
    let e = Embedder::load_named(vembed_benches::model_dir().to_str().unwrap(), Engine::Native)
        .expect("the real model");
    let dim = e.dim();
    let t = Instant::now();
    let base = vembed_benches::real_embeddings(&e, real + QUERIES);
    eprintln!("{} real embeddings in {:.1} s", real + QUERIES, t.elapsed().as_secs_f64());
    let (indexed, held_out) = base.split_at(real * dim);
    let queries: Vec<&[f32]> = held_out.chunks_exact(dim).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut data = Vec::with_capacity(n * dim);
    for i in 0..n {
        let src = &indexed[(i % real) * dim..(i % real + 1) * dim];
        if i < real {
            data.extend_from_slice(src);
        } else {
            let mut v: Vec<f32> = src.iter().map(|x| x + sigma * gaussian(&mut rng)).collect();
            normalize(&mut v);
            data.extend(v);
        }
    }
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
    eprintln!("ground truth in {:.1} s", t.elapsed().as_secs_f64());
    let raw_mib = (n * dim * 4) as f64 / 1048576.0;
    println!(
        "n = {n} × {dim} ({real} real, the rest real + noise σ {sigma}); raw f32 {raw_mib:.0} MiB; {QUERIES} held-out real queries, k = 10"
    );
    println!(
        "{:<28} {:>9} {:>9} {:>8} {:>9} {:>9} {:>9}",
        "method", "build s", "disk MiB", "disk/raw", "p50 ms", "p99 ms", "recall@10"
    );
    let methods: Vec<&str> = methods.split(',').collect();
    if methods.iter().any(|m| *m == "codes" || *m == "exact") {
        let model = ModelIdentity {
            name: e.name.clone(),
            sha256: e.sha256.clone(),
            dim: dim as u32,
            identity: e.identity.clone(),
        };
        let (dir, w, build_s) = build_vembed(&data, &model);
        let r = w.reader();
        let run = |name: String, f: &dyn Fn(&IndexReader, &[f32]) -> Vec<u32>| {
            let mut row =
                Row { method: name, build_s, disk_mib: disk(&dir.0), lat: vec![], found: 0 };
            for (q, want) in queries.iter().zip(&truth) {
                let t = Instant::now();
                let ids = f(&r, q);
                row.lat.push(t.elapsed().as_secs_f64() * 1e3);
                row.found += ids.iter().filter(|i| want.contains(i)).count();
            }
            print(&mut row, raw_mib);
        };
        if methods.contains(&"codes") {
            for c in candidates.split(',') {
                let c: Option<usize> = c.parse().ok();
                let shown = c.unwrap_or_else(|| r.default_candidates(10).unwrap());
                let label = if c.is_some() { "" } else { " (default)" };
                run(format!("codes, {shown} re-ranked{label}"), &|r, q| {
                    ids(&r.search_with(q, 10, Some(shown)).unwrap())
                });
            }
        }
        if methods.contains(&"exact") {
            run("exact scan".into(), &|r, q| ids(&r.search_exact(q, 10).unwrap()));
        }
    }
    if methods.contains(&"arroy") {
        bench_arroy(&data, dim, &queries, &truth, raw_mib);
    }
    if methods.contains(&"hannoy") {
        bench_hannoy(&data, dim, &queries, &truth, raw_mib);
    }
}

/// Snippet ids are sequential in insertion order: the vector's index.
fn ids(hits: &[vembed_index::Hit]) -> Vec<u32> {
    hits.iter()
        .map(|h| {
            let f: usize =
                h.snippet.path["src/file_".len()..h.snippet.path.len() - 3].parse().unwrap();
            (f * 1000 + (h.snippet.start_line as usize - 1) / 10) as u32
        })
        .collect()
}

/// An index directory: kept (`VEMBED_SCALE_KEEP`) or a temporary one,
/// removed when this is dropped.
struct IndexDir(std::path::PathBuf, #[allow(dead_code)] Option<tempfile::TempDir>);

fn build_vembed(data: &[f32], model: &ModelIdentity) -> (IndexDir, IndexWriter, f64) {
    let dim = model.dim as usize;
    let dir = match std::env::var_os("VEMBED_SCALE_KEEP") {
        Some(keep) => {
            let keep = std::path::PathBuf::from(keep);
            assert!(!keep.join("data.mdb").exists(), "{} holds an index already", keep.display());
            std::fs::create_dir_all(&keep).unwrap();
            IndexDir(keep, None)
        }
        None => {
            let tmp = tempfile::tempdir().unwrap();
            IndexDir(tmp.path().to_path_buf(), Some(tmp))
        }
    };
    let w = IndexWriter::open(&dir.0, &dir.0, model, false).unwrap();
    let t = Instant::now();
    // Commits of 100 files (100k snippets), as an indexer commits in batches.
    for group in data.chunks(100_000 * dim).enumerate() {
        let (g, group) = group;
        let mut batch = w.batch().unwrap();
        for (j, part) in group.chunks(1000 * dim).enumerate() {
            let f = g * 100 + j;
            let path = format!("src/file_{f}.rs");
            let snippets: Vec<(Snippet, &[f32])> = part
                .chunks_exact(dim)
                .enumerate()
                .map(|(j, v)| {
                    let line = j as u32 * 10 + 1;
                    let s = Snippet {
                        path: path.clone(),
                        start_line: line,
                        end_line: line + 9,
                        symbol: None,
                        text: String::new(),
                    };
                    (s, v)
                })
                .collect();
            batch.put_file(&path, "h", &snippets).unwrap();
        }
        batch.commit().unwrap();
    }
    let build_s = t.elapsed().as_secs_f64();
    (dir, w, build_s)
}

fn lmdb(dir: &std::path::Path) -> heed::Env {
    // SAFETY: a fresh directory of this benchmark's, opened once.
    unsafe { heed::EnvOpenOptions::new().map_size(64 << 30).open(dir) }.unwrap()
}

fn create<KC: 'static, DC: 'static>(env: &heed::Env) -> heed::Database<'static, KC, DC> {
    env.create_databases_and_commit(env.write_txn().unwrap(), |dbo, wtxn| -> heed::Result<_> {
        Ok(heed::CommitOrAbort::<_, ()>::Commit(dbo.create_database(wtxn, None)?))
    })
    .unwrap()
    .commit()
    .expect("never aborted")
}

fn rerank(data: &[f32], dim: usize, q: &[f32], found: Vec<u32>) -> Vec<u32> {
    let mut s: Vec<(f32, u32)> =
        found.into_iter().map(|i| (dot(q, &data[i as usize * dim..][..dim]), i)).collect();
    s.sort_by(|a, b| b.0.total_cmp(&a.0));
    s.into_iter().take(10).map(|(_, i)| i).collect()
}

fn bench_arroy(data: &[f32], dim: usize, queries: &[&[f32]], truth: &[Vec<u32>], raw_mib: f64) {
    use arroy::distances::Cosine;
    let dir = tempfile::tempdir().unwrap();
    let env = lmdb(dir.path());
    let db: arroy::Database<Cosine> = create(&env);
    let mut wtxn = env.write_txn().unwrap();
    let t = Instant::now();
    let writer = arroy::Writer::new(db, 0, dim);
    for (i, v) in data.chunks_exact(dim).enumerate() {
        writer.add_item(&mut wtxn, i as u32, v).unwrap();
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    // 16 trees: vembed's setting before schema 3.
    writer.builder(&mut rng).n_trees(16).build(&mut wtxn).unwrap();
    wtxn.commit().unwrap();
    let build_s = t.elapsed().as_secs_f64();
    let rtxn = env.read_txn().unwrap();
    let reader = arroy::Reader::open(&rtxn, 0, db).unwrap();
    for per_tree in [50usize, 130] {
        let search_k = 10 * 16 * per_tree;
        let mut row = Row {
            method: format!("arroy 16 trees, search_k {search_k}"),
            build_s,
            disk_mib: disk(dir.path()),
            lat: vec![],
            found: 0,
        };
        for (q, want) in queries.iter().zip(truth) {
            let t = Instant::now();
            let mut nns = reader.nns(10);
            nns.search_k(std::num::NonZeroUsize::new(search_k).unwrap());
            let found: Vec<u32> =
                nns.by_vector(&rtxn, q).unwrap().into_iter().map(|x| x.0).collect();
            row.lat.push(t.elapsed().as_secs_f64() * 1e3);
            row.found += found.iter().filter(|i| want.contains(i)).count();
        }
        print(&mut row, raw_mib);
    }
}

fn bench_hannoy(data: &[f32], dim: usize, queries: &[&[f32]], truth: &[Vec<u32>], raw_mib: f64) {
    use hannoy::distances::Cosine;
    let dir = tempfile::tempdir().unwrap();
    let env = lmdb(dir.path());
    let db: hannoy::Database<Cosine> = create(&env);
    let mut wtxn = env.write_txn().unwrap();
    let t = Instant::now();
    let writer = hannoy::Writer::new(db, 0, dim);
    for (i, v) in data.chunks_exact(dim).enumerate() {
        writer.add_item(&mut wtxn, i as u32, v).unwrap();
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    // hannoy's defaults: ef_construction 100, M = 16, M0 = 32 (its README).
    writer.builder(&mut rng).build::<16, 32>(&mut wtxn).unwrap();
    wtxn.commit().unwrap();
    let build_s = t.elapsed().as_secs_f64();
    let rtxn = env.read_txn().unwrap();
    let reader = hannoy::Reader::<Cosine>::open(&rtxn, 0, db).unwrap();
    for ef in [32usize, 64, 128, 256, 512] {
        let mut row = Row {
            method: format!("hannoy ef_search {ef} + re-rank"),
            build_s,
            disk_mib: disk(dir.path()),
            lat: vec![],
            found: 0,
        };
        for (q, want) in queries.iter().zip(truth) {
            let t = Instant::now();
            let found: Vec<u32> = reader
                .nns(ef.max(10))
                .ef_search(ef)
                .by_vector(&rtxn, q)
                .unwrap()
                .into_nns()
                .into_iter()
                .map(|x| x.0)
                .collect();
            let found = rerank(data, dim, q, found);
            row.lat.push(t.elapsed().as_secs_f64() * 1e3);
            row.found += found.iter().filter(|i| want.contains(i)).count();
        }
        print(&mut row, raw_mib);
    }
}

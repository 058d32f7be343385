//! Times one short query through the forward pass, many times (for perf).
use std::time::Instant;
use vembed_host::{Embedder, Engine};
fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(200);
    let threads: u32 = std::env::var("THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    vembed_host::init_thread_pool(vembed_host::thread_count(threads));
    let e = Embedder::load_named(vembed_benches::model_dir().to_str().unwrap(), Engine::Native)
        .unwrap();
    let batch: usize = std::env::var("BATCH").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    let ids: Vec<Vec<u32>> = if batch == 0 {
        vec![e.tokenize("find the function that validates email addresses").unwrap()]
    } else {
        vembed_benches::code_chunks(batch).iter().map(|t| e.tokenize(t).unwrap()).collect()
    };
    println!("{} texts, {} tokens", ids.len(), ids.iter().map(Vec::len).sum::<usize>());
    let mut v = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        e.embed_ids(&ids).unwrap();
        v.push(t.elapsed().as_secs_f64() * 1e3);
    }
    v.sort_by(f64::total_cmp);
    println!("p50 {:.3} ms, min {:.3} ms", v[v.len() / 2], v[0]);
}

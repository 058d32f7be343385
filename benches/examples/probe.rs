//! Times one short query through the forward pass, many times (for perf).
use std::time::Instant;
use vembed_host::model::{Embedder, Engine};
fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(200);
    let threads: u32 = std::env::var("THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    vembed_host::init_thread_pool(vembed_host::thread_count(threads));
    let e = Embedder::load_named(vembed_benches::model_dir().to_str().unwrap(), Engine::Native).unwrap();
    let ids = vec![e.tokenize("find the function that validates email addresses").unwrap()];
    println!("{} tokens", ids[0].len());
    let mut v = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        e.embed_ids(&ids).unwrap();
        v.push(t.elapsed().as_secs_f64() * 1e3);
    }
    v.sort_by(f64::total_cmp);
    println!("p50 {:.3} ms, min {:.3} ms", v[v.len() / 2], v[0]);
}

//! Embeds the real snippets the index benchmark uses, once, into the
//! bench cache (`VEMBED_REAL_N`, default 110,000: 100k to index, the rest
//! as queries).
fn main() {
    let n: usize =
        std::env::var("VEMBED_REAL_N").ok().and_then(|v| v.parse().ok()).unwrap_or(110_000);
    vembed_host::init_thread_pool(vembed_host::thread_count(0));
    let dir = vembed_benches::model_dir();
    let e = vembed_host::Embedder::load_named(dir.to_str().unwrap(), vembed_host::Engine::Native)
        .expect("the real model");
    let t = std::time::Instant::now();
    let v = vembed_benches::real_embeddings(&e, n);
    eprintln!("{} vectors of {} in {:.0} s", v.len() / e.dim(), e.dim(), t.elapsed().as_secs_f64());
}

//! The forward pass in process (no socket), for each engine: one short
//! query, and a batch of 32 real code chunks of up to 256 tokens.
//!
//! `cargo bench -p vembed-benches --bench forward`

use std::sync::OnceLock;

use vembed_host::{Embedder, Engine};

fn main() {
    divan::main();
}

fn embedder(engine: Engine) -> &'static Embedder {
    static NATIVE: OnceLock<Embedder> = OnceLock::new();
    static CANDLE: OnceLock<Embedder> = OnceLock::new();
    let cell = match engine {
        Engine::Native => &NATIVE,
        Engine::Candle => &CANDLE,
        other => panic!("{other:?} has no local forward pass to time"),
    };
    cell.get_or_init(|| {
        let n = vembed_host::thread_count(0);
        vembed_host::init_thread_pool(n);
        let e =
            Embedder::load_named(vembed_benches::model_dir().to_str().unwrap(), engine).unwrap();
        assert_eq!(e.engine(), engine);
        e
    })
}

const ENGINES: [Engine; 2] = [Engine::Native, Engine::Candle];

#[divan::bench(args = ENGINES, sample_count = 50)]
fn short_query(b: divan::Bencher, engine: Engine) {
    let e = embedder(engine);
    let ids = vec![e.tokenize("find the function that validates email addresses").unwrap()];
    b.bench(|| e.embed_ids(divan::black_box(&ids)).unwrap());
}

#[divan::bench(args = ENGINES, sample_count = 5, sample_size = 1)]
fn code_batch_32(b: divan::Bencher, engine: Engine) {
    let e = embedder(engine);
    let ids: Vec<Vec<u32>> =
        vembed_benches::code_chunks(32).iter().map(|t| e.tokenize(t).unwrap()).collect();
    b.counter(divan::counter::ItemsCount::new(ids.len()))
        .bench(|| e.embed_ids(divan::black_box(&ids)).unwrap());
}

#[divan::bench(sample_count = 20)]
fn tokenize_chunk(b: divan::Bencher) {
    let e = embedder(Engine::Native);
    let chunk = vembed_benches::code_chunks(1).remove(0);
    b.bench(|| e.tokenize(divan::black_box(&chunk)).unwrap());
}

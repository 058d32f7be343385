//! Where one short query's time goes: the same query in this process
//! (tokenize, then the forward pass and pooling on this process's own
//! pool of one thread per core) and through the real host on a socket
//! (`vembed::Client::embed`), plus a `ping` round trip (one frame each
//! way, no work), in one run, in alternating blocks so the machine's drift
//! hits every side alike.
//!
//!     cargo run --release -p vembed-benches --example query_overhead [-- WEIGHTS [ROUNDS]]
//!
//! The host's overhead is its p50 minus the in-process p50: the socket hop,
//! the frames' encoding, the queue and the batcher's hand-off.

use std::time::{Duration, Instant};

use vembed_benches::{cpu_model, loadavg, ms, percentiles};
use vembed_host::{Embedder, Engine, Precision};

const QUERY: &str = "how to authenticate users?";

fn main() {
    let weights = std::env::args().nth(1).unwrap_or_else(|| "f32".into());
    let rounds: usize = std::env::args().nth(2).and_then(|a| a.parse().ok()).unwrap_or(20);
    let per_round = 50;
    let precision: Precision = weights.parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("host.sock");
    let mut host = vembed_benches::start_host(dir.path(), &["--weights", &weights]);

    vembed_host::init_thread_pool(vembed_host::thread_count(0));
    let model = vembed_benches::model_dir();
    let e = Embedder::load_named_with(model.to_str().unwrap(), Engine::Native, precision).unwrap();
    let mut client = vembed::Client::connect(&socket).unwrap();
    let ids = e.tokenize(QUERY).unwrap();
    // The host and this process compute the same vector.
    let here = e.embed_ids(&[&ids]).unwrap();
    let there = client.embed(&[QUERY]).unwrap().remove(0);
    assert_eq!(here, there, "in process and through the host: the same bits");

    println!("CPU: {}; {} threads", cpu_model(), vembed_host::threads());
    println!("load average at start: {}", loadavg());
    println!("query {QUERY:?} ({} tokens), weights {weights}", ids.len());
    let (mut ping, mut hosted, mut tokenize, mut forward, mut local) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..50 {
        client.embed(&[QUERY]).unwrap();
        e.embed_ids(&[&ids]).unwrap();
    }
    for _ in 0..rounds {
        for _ in 0..per_round {
            let t = Instant::now();
            client.ping().unwrap();
            ping.push(t.elapsed());
        }
        for _ in 0..per_round {
            let t = Instant::now();
            let v = client.embed(&[QUERY]).unwrap();
            hosted.push(t.elapsed());
            assert_eq!(v[0].len(), here.len());
        }
        for _ in 0..per_round {
            let t = Instant::now();
            let ids = e.tokenize(QUERY).unwrap();
            let t1 = Instant::now();
            let v = e.embed_ids(&[&ids]).unwrap();
            let t2 = Instant::now();
            tokenize.push(t1 - t);
            forward.push(t2 - t1);
            local.push(t2 - t);
            assert_eq!(v.len(), here.len());
        }
    }
    let p = |v: &mut Vec<Duration>| percentiles(v);
    let ((ping50, ping99), (host50, host99)) = (p(&mut ping), p(&mut hosted));
    let ((tok50, _), (fwd50, fwd99), (loc50, _)) =
        (p(&mut tokenize), p(&mut forward), p(&mut local));
    println!("{} requests per side:", hosted.len());
    println!(
        "  in process: tokenize p50 {:.3} ms, forward and pooling p50 {:.3} ms (p99 {:.3}), together p50 {:.3} ms",
        ms(tok50),
        ms(fwd50),
        ms(fwd99),
        ms(loc50)
    );
    println!(
        "  through the host (vembed::Client::embed): p50 {:.3} ms, p99 {:.3} ms",
        ms(host50),
        ms(host99)
    );
    println!("  ping round trip (no work): p50 {:.3} ms, p99 {:.3} ms", ms(ping50), ms(ping99));
    println!(
        "  the host's overhead: p50 {:+.3} ms ({:.2}x in process)",
        ms(host50) - ms(loc50),
        host50.as_secs_f64() / loc50.as_secs_f64()
    );
    println!("load average at the end: {}", loadavg());
    client.shutdown().ok();
    let _ = host.wait();
}

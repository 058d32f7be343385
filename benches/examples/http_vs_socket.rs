//! The HTTP front door against the socket protocol, on one host, in one run.
//!
//!     cargo run --release -p vembed-benches --example http_vs_socket [-- ROUNDS]
//!
//! Starts the real host (`target/release/vembed-host`) with `--http-listen`
//! on a free loopback port and a socket in a temp dir, then, alternating the
//! sides round by round so that the machine's drift hits both alike:
//! 1. one short query per request, one client: the socket (`vembed::Client`),
//!    OpenAI's `/v1/embeddings` and Ollama's `/api/embeddings` (ureq, a
//!    keep-alive agent): p50 and p99, and the ratio to the socket;
//! 2. 64 concurrent clients, each sending one query per request for a fixed
//!    time: requests per second over HTTP against the socket.
//!
//! Prints the CPU and the load average at the start and the end.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use vembed_benches::{cpu_model, loadavg, ms, percentiles};

const QUERY: &str = "find the function that validates email addresses";

fn main() {
    let rounds: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    let per_round = 100;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("host.sock");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let mut host = vembed_benches::start_host(dir.path(), &["--http-listen", &listen]);
    let base = format!("http://127.0.0.1:{port}");

    println!("CPU: {}", cpu_model());
    println!("load average at start: {}", loadavg());
    let mut socket_client = vembed::Client::connect(&socket).unwrap();
    let agent = ureq::AgentBuilder::new().build();
    let openai_body = serde_json::json!({"model": "all-minilm", "input": [QUERY]}).to_string();
    let ollama_body = serde_json::json!({"model": "all-minilm", "prompt": QUERY}).to_string();
    let post = |path: &str, body: &str| {
        let r = agent
            .post(&format!("{base}{path}"))
            .set("content-type", "application/json")
            .send_string(body)
            .unwrap();
        let _ = r.into_string().unwrap();
    };
    // Warm both paths.
    for _ in 0..20 {
        socket_client.embed(&[QUERY]).unwrap();
        post("/v1/embeddings", &openai_body);
    }
    let (mut sock, mut openai, mut ollama) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        for _ in 0..per_round {
            let t = Instant::now();
            socket_client.embed(&[QUERY]).unwrap();
            sock.push(t.elapsed());
            let t = Instant::now();
            post("/v1/embeddings", &openai_body);
            openai.push(t.elapsed());
            let t = Instant::now();
            post("/api/embeddings", &ollama_body);
            ollama.push(t.elapsed());
        }
    }
    let (s50, s99) = percentiles(&mut sock);
    println!("\none query, {} requests each, alternating:", sock.len());
    println!(
        "  {:<28} p50 {:>8.3} ms   p99 {:>8.3} ms",
        "socket (vembed::Client)",
        ms(s50),
        ms(s99)
    );
    for (name, v) in [("HTTP /v1/embeddings", &mut openai), ("HTTP /api/embeddings", &mut ollama)] {
        let (p50, p99) = percentiles(v);
        println!(
            "  {name:<28} p50 {:>8.3} ms   p99 {:>8.3} ms   overhead p50 {:+.3} ms ({:.2}x), p99 {:+.3} ms",
            ms(p50),
            ms(p99),
            ms(p50) - ms(s50),
            p50.as_secs_f64() / s50.as_secs_f64(),
            ms(p99) - ms(s99)
        );
    }

    println!("\n64 concurrent clients, one query per request, 10 s per side, 2 rounds each:");
    let mut socket_rps = Vec::new();
    let mut http_rps = Vec::new();
    for _ in 0..2 {
        socket_rps.push(load(64, Duration::from_secs(10), |stop, n| {
            let mut c = vembed::Client::connect(&socket).unwrap();
            while !stop.load(Ordering::Relaxed) {
                c.embed(&[QUERY]).unwrap();
                n.fetch_add(1, Ordering::Relaxed);
            }
        }));
        http_rps.push(load(64, Duration::from_secs(10), |stop, n| {
            let agent = ureq::AgentBuilder::new().build();
            while !stop.load(Ordering::Relaxed) {
                let r = agent
                    .post(&format!("{base}/v1/embeddings"))
                    .set("content-type", "application/json")
                    .send_string(&openai_body)
                    .unwrap();
                let _ = r.into_string().unwrap();
                n.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[0] + v[v.len() - 1]) / 2.0
    };
    let (s, h) = (med(&mut socket_rps), med(&mut http_rps));
    println!("  socket: {s:.1} requests/s   HTTP: {h:.1} requests/s   HTTP/socket {:.3}", h / s);
    println!("\nload average at end: {}", loadavg());
    let _ = nix_kill(host.id());
    let _ = host.wait();
}

/// Runs `clients` threads of `work` for `time`; requests per second.
fn load(clients: usize, time: Duration, work: impl Fn(&AtomicBool, &AtomicU64) + Sync) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let n = AtomicU64::new(0);
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..clients {
            s.spawn(|| work(&stop, &n));
        }
        std::thread::sleep(time);
        stop.store(true, Ordering::Relaxed);
    });
    n.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

fn nix_kill(pid: u32) -> std::io::Result<()> {
    std::process::Command::new("kill").arg(pid.to_string()).status().map(|_| ())
}

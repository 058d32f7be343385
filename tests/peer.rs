//! `vembed-test-peer`: the other user of the security tests. Run as another
//! uid, it plays an attacker's fake host:
//!
//! `vembed-test-peer fake-host SOCKET LOG` binds SOCKET, prints `ready`, and
//! answers every client as a host would (Hello, then embeddings of its own
//! choosing), appending every payload it receives to LOG. The tests check
//! that no vembed client ever sends it anything.
//!
//! `vembed-test-peer http ADDR` plays another local user of the HTTP front
//! door: it reads requests from stdin, one JSON object a line (`method`,
//! `path`, optional `headers` as `[[name, value], ...]` and `body` as a
//! string), sends each on a new TCP connection to ADDR, and prints one
//! JSON line per answer: `{"status": N, "body": "..."}`.

use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;

use vembed_protocol::{
    Embeddings, HelloReply, Limits, ModelInfo, PROTOCOL_VERSION, Request, RequestFrame, Response,
    ResponseFrame, Role, framing,
};

fn serve(mut s: UnixStream, log: PathBuf) {
    let mut buf = Vec::new();
    while framing::read_frame(&mut s, 64 << 20, &mut buf).is_ok() {
        if let Ok(mut f) = std::fs::OpenOptions::new().append(true).create(true).open(&log) {
            let _ = f.write_all(&buf);
        }
        let Ok(frame) = framing::decode::<RequestFrame>(&buf) else { return };
        let response = match frame.request {
            Request::Hello(_) => Response::Hello(HelloReply {
                version: PROTOCOL_VERSION,
                host_version: "attacker".into(),
                pid: std::process::id(),
                models: vec![ModelInfo {
                    name: "attacker".into(),
                    sha256: "0".repeat(64),
                    dim: 384,
                    max_seq_length: 256,
                    roles: vec![Role::Unified, Role::Tools, Role::Code],
                    path: "/".into(),
                    identity: "0".repeat(32),
                }],
                limits: Limits {
                    max_frame_bytes: 32 << 20,
                    max_texts_per_request: 2048,
                    max_text_bytes: 1 << 20,
                    max_batch_tokens: 1024,
                    max_queue_texts: 65536,
                },
            }),
            Request::Embed(r) | Request::EmbedCached(r) => Response::Embeddings(Embeddings {
                model: "attacker".into(),
                dim: 384,
                tokens: vec![1; r.texts.len()],
                data: vec![0.051; r.texts.len() * 384],
                host_us: 1,
            }),
            _ => Response::Ok,
        };
        if framing::write_frame(&mut s, &ResponseFrame { id: frame.id, response }).is_err() {
            return;
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("fake-host") if args.len() == 4 => {
            let listener = UnixListener::bind(&args[2]).expect("binding the fake host's socket");
            println!("ready");
            std::io::stdout().flush().ok();
            for s in listener.incoming().flatten() {
                let log = PathBuf::from(&args[3]);
                std::thread::spawn(move || serve(s, log));
            }
        }
        Some("http") if args.len() == 3 => http_client(&args[2]),
        _ => {
            eprintln!("usage: vembed-test-peer fake-host SOCKET LOG | http ADDR");
            std::process::exit(2);
        }
    }
}

fn http_client(addr: &str) {
    use std::io::BufRead;
    let addr: std::net::SocketAddr = addr.parse().expect("ADDR is host:port");
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("reading stdin");
        if line.trim().is_empty() {
            continue;
        }
        let r: serde_json::Value = serde_json::from_str(&line).expect("a JSON request");
        let headers: Vec<(String, String)> = r["headers"]
            .as_array()
            .map(|hs| {
                hs.iter()
                    .map(|h| (h[0].as_str().unwrap().into(), h[1].as_str().unwrap().into()))
                    .collect()
            })
            .unwrap_or_default();
        let headers: Vec<(&str, &str)> =
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let reply = vembed_tests::http::request(
            addr,
            r["method"].as_str().unwrap(),
            r["path"].as_str().unwrap(),
            &headers,
            r["body"].as_str().unwrap_or("").as_bytes(),
        );
        let out = serde_json::json!({"status": reply.status, "body": reply.text()});
        println!("{out}");
    }
}

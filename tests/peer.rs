//! `vembed-test-peer`: the other user of the security tests. Run as another
//! uid, it plays an attacker's fake host:
//!
//! `vembed-test-peer fake-host SOCKET LOG` binds SOCKET, prints `ready`, and
//! answers every client as a host would (Hello, then embeddings of its own
//! choosing), appending every payload it receives to LOG. The tests check
//! that no vembed client ever sends it anything.

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
        _ => {
            eprintln!("usage: vembed-test-peer fake-host SOCKET LOG");
            std::process::exit(2);
        }
    }
}

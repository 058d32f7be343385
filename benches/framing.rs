//! Encoding and decoding frames: the CPU side of the IPC cost.

use vembed_protocol::framing;
use vembed_protocol::{
    EmbedRequest, Embeddings, ModelRef, Request, RequestFrame, Response, ResponseFrame, Role,
};

fn main() {
    divan::main();
}

fn query() -> RequestFrame {
    RequestFrame {
        id: 42,
        request: Request::Embed(EmbedRequest {
            model: ModelRef::Role(Role::Tools),
            texts: vec!["find the function that validates email addresses".into()],
        }),
    }
}

fn reply(n: usize) -> ResponseFrame {
    ResponseFrame {
        id: 42,
        response: Response::Embeddings(Embeddings {
            model: "sentence-transformers/all-MiniLM-L6-v2".into(),
            dim: 384,
            tokens: vec![10; n],
            data: (0..n * 384).map(|i| i as f32 * 1e-3).collect(),
            host_us: 1000,
        }),
    }
}

#[divan::bench]
fn encode_query(b: divan::Bencher) {
    let q = query();
    let mut out = Vec::with_capacity(256);
    b.bench_local(|| {
        out.clear();
        framing::encode_frame(divan::black_box(&q), &mut out).unwrap();
    });
}

#[divan::bench(args = [1, 32])]
fn encode_reply(b: divan::Bencher, n: usize) {
    let r = reply(n);
    let mut out = Vec::with_capacity(n * 384 * 4 + 128);
    b.bench_local(|| {
        out.clear();
        framing::encode_frame(divan::black_box(&r), &mut out).unwrap();
    });
}

#[divan::bench(args = [1, 32])]
fn decode_reply(b: divan::Bencher, n: usize) {
    let mut wire = Vec::new();
    framing::encode_frame(&reply(n), &mut wire).unwrap();
    let payload = &wire[4..];
    b.bench_local(|| framing::decode::<ResponseFrame>(divan::black_box(payload)).unwrap());
}

#[divan::bench]
fn decode_query(b: divan::Bencher) {
    let mut wire = Vec::new();
    framing::encode_frame(&query(), &mut wire).unwrap();
    let payload = &wire[4..];
    b.bench_local(|| framing::decode::<RequestFrame>(divan::black_box(payload)).unwrap());
}

/// A full round trip over a real Unix socket pair, one thread each side:
/// the floor under the host's IPC overhead.
#[divan::bench]
fn socket_round_trip(b: divan::Bencher) {
    use std::os::unix::net::UnixStream;
    let (mut client, mut server) = UnixStream::pair().unwrap();
    let echo = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut out = Vec::new();
        let r = reply(1);
        while framing::read_frame(&mut server, 1 << 20, &mut buf).is_ok() {
            let _: RequestFrame = framing::decode(&buf).unwrap();
            out.clear();
            framing::encode_frame(&r, &mut out).unwrap();
            std::io::Write::write_all(&mut server, &out).unwrap();
        }
    });
    let q = query();
    let mut buf = Vec::new();
    b.bench_local(|| {
        framing::write_frame(&mut client, &q).unwrap();
        framing::read_frame(&mut client, 1 << 20, &mut buf).unwrap();
        framing::decode::<ResponseFrame>(&buf).unwrap()
    });
    drop(client);
    echo.join().unwrap();
}

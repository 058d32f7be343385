use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use vembed::{ErrorCode, ModelRef, Role};
use vembed_protocol::framing::{self, FrameError};
use vembed_protocol::{
    EmbedRequest, Hello, PROTOCOL_VERSION, Request, RequestFrame, Response, ResponseFrame,
};
use vembed_tests::Env;

fn raw(env: &Env) -> UnixStream {
    // Make sure a host runs, then talk to it without the client library.
    drop(env.client());
    let s = UnixStream::connect(&env.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

fn send(s: &mut UnixStream, id: u64, request: Request) {
    framing::write_frame(s, &RequestFrame { id, request }).unwrap();
}

fn recv(s: &mut UnixStream) -> Result<ResponseFrame, FrameError> {
    let mut buf = Vec::new();
    framing::read_frame(s, 256 << 20, &mut buf)?;
    framing::decode(&buf)
}

fn hello(s: &mut UnixStream) {
    send(s, 0, Request::Hello(Hello { version: PROTOCOL_VERSION, client: "test".into() }));
    match recv(s).unwrap().response {
        Response::Hello(h) => assert_eq!(h.version, PROTOCOL_VERSION),
        other => panic!("{other:?}"),
    }
}

fn expect_error(s: &mut UnixStream, code: ErrorCode) -> String {
    match recv(s).unwrap().response {
        Response::Error(e) => {
            assert_eq!(e.code, code, "{}", e.message);
            e.message
        }
        other => panic!("expected {code:?}, got {other:?}"),
    }
}

fn expect_closed(s: &mut UnixStream) {
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(0) => {}
        // Closing with our unread bytes still queued resets the connection.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("host should close the connection, got {other:?}"),
    }
}

fn ping_ok(s: &mut UnixStream) {
    send(s, 99, Request::Ping);
    assert_eq!(recv(s).unwrap(), ResponseFrame { id: 99, response: Response::Ok });
}

/// After abuse, a fresh client is served normally.
fn still_serves(env: &Env) {
    let v = env.client().embed(&["still serving"]).unwrap();
    assert_eq!(v[0].len(), 384);
}

#[test]
fn garbage_bytes_get_an_error_and_close() {
    let env = Env::new();
    let mut s = raw(&env);
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let msg = expect_error(&mut s, ErrorCode::FrameTooLarge);
    assert!(msg.contains("exceeds"), "{msg}");
    expect_closed(&mut s);

    let mut s = raw(&env);
    s.write_all(&40u32.to_le_bytes()).unwrap();
    s.write_all(&[0xffu8; 40]).unwrap();
    expect_error(&mut s, ErrorCode::HandshakeRequired);
    expect_closed(&mut s);
    still_serves(&env);
}

#[test]
fn request_before_handshake_is_refused() {
    let env = Env::new();
    let mut s = raw(&env);
    send(&mut s, 5, Request::Ping);
    expect_error(&mut s, ErrorCode::HandshakeRequired);
    expect_closed(&mut s);
}

#[test]
fn wrong_protocol_version_is_a_clear_error() {
    let env = Env::new();
    let mut s = raw(&env);
    send(&mut s, 1, Request::Hello(Hello { version: 999, client: "future".into() }));
    let msg = expect_error(&mut s, ErrorCode::VersionMismatch);
    assert!(msg.contains("999") && msg.contains(&PROTOCOL_VERSION.to_string()), "{msg}");
    expect_closed(&mut s);
    still_serves(&env);
}

#[test]
fn malformed_frame_after_handshake_keeps_the_connection() {
    let env = Env::new();
    let mut s = raw(&env);
    hello(&mut s);
    let mut junk = 7u64.to_le_bytes().to_vec();
    junk.extend_from_slice(&[0xee; 30]);
    s.write_all(&(junk.len() as u32).to_le_bytes()).unwrap();
    s.write_all(&junk).unwrap();
    let reply = recv(&mut s).unwrap();
    assert_eq!(reply.id, 7, "the error names the request id it could read");
    assert!(matches!(reply.response, Response::Error(ref e) if e.code == ErrorCode::Malformed));
    ping_ok(&mut s);
}

#[test]
fn oversized_frame_is_skipped_and_the_connection_survives() {
    let env = Env::new();
    let mut s = raw(&env);
    hello(&mut s);
    let limit = env.client().hello().limits.max_frame_bytes;
    let len = limit + 1;
    s.write_all(&len.to_le_bytes()).unwrap();
    let chunk = vec![0u8; 1 << 20];
    let mut left = len as usize;
    while left > 0 {
        let n = left.min(chunk.len());
        s.write_all(&chunk[..n]).unwrap();
        left -= n;
    }
    expect_error(&mut s, ErrorCode::FrameTooLarge);
    ping_ok(&mut s);
}

#[test]
fn too_many_texts_and_huge_text_get_typed_errors() {
    let env = Env::new();
    let mut s = raw(&env);
    hello(&mut s);
    let many = vec!["x".to_string(); 100_000];
    send(
        &mut s,
        1,
        Request::Embed(EmbedRequest { model: ModelRef::Role(Role::Unified), texts: many }),
    );
    let msg = expect_error(&mut s, ErrorCode::TooManyTexts);
    assert!(msg.contains("100000"), "{msg}");
    ping_ok(&mut s);

    let huge = "a".repeat(10 << 20);
    send(
        &mut s,
        2,
        Request::Embed(EmbedRequest { model: ModelRef::Role(Role::Unified), texts: vec![huge] }),
    );
    expect_error(&mut s, ErrorCode::TextTooLarge);
    ping_ok(&mut s);

    send(
        &mut s,
        3,
        Request::Embed(EmbedRequest {
            model: ModelRef::Name("no/such-model".into()),
            texts: vec!["x".into()],
        }),
    );
    let msg = expect_error(&mut s, ErrorCode::UnknownModel);
    assert!(msg.contains("all-MiniLM-L6-v2"), "names what is served: {msg}");
    ping_ok(&mut s);

    // Through the library the same limits come back as typed errors.
    let mut c = env.client();
    let err = c.embed(&[&"b".repeat(10 << 20)]).unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::TextTooLarge), "{err}");
    still_serves(&env);
}

#[test]
fn a_client_stalled_mid_frame_blocks_nobody() {
    let env = Env::new();
    let mut stalled = raw(&env);
    hello(&mut stalled);
    // Announce 1000 bytes, send 10, go silent.
    stalled.write_all(&1000u32.to_le_bytes()).unwrap();
    stalled.write_all(&[1u8; 10]).unwrap();
    let started = Instant::now();
    let mut other = env.client();
    for i in 0..5 {
        let v = other.embed(&[&format!("others are served {i}")]).unwrap();
        assert_eq!(v[0].len(), 384);
    }
    assert!(started.elapsed() < Duration::from_secs(8), "other clients waited on the stalled one");
    // The host drops the stalled connection after its frame timeout.
    stalled.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut b = [0u8; 1];
    assert_eq!(stalled.read(&mut b).unwrap_or(0), 0);
    still_serves(&env);
}

#[test]
fn a_full_queue_answers_overloaded_at_once_and_loses_nothing() {
    let mut env = Env::new();
    env.host_args.extend(["--max-queue-texts".into(), "8".into()]);
    let mut s = raw(&env);
    hello(&mut s);
    let long = "tokens ".repeat(250);
    for id in 1..=12u64 {
        let texts = vec![format!("{id} {long}"); 4];
        send(
            &mut s,
            id,
            Request::Embed(EmbedRequest { model: ModelRef::Role(Role::Unified), texts }),
        );
    }
    let mut ok = 0;
    let mut overloaded = 0;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..12 {
        let r = recv(&mut s).unwrap();
        assert!(seen.insert(r.id), "duplicate reply {}", r.id);
        match r.response {
            Response::Embeddings(e) => {
                assert_eq!(e.len(), 4);
                ok += 1;
            }
            Response::Error(e) if e.code == ErrorCode::Overloaded => overloaded += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(seen.len(), 12, "every request got exactly one reply");
    assert!(ok >= 2, "accepted work is done ({ok})");
    assert!(overloaded >= 1, "a full queue refuses at once ({overloaded})");
    ping_ok(&mut s);
}

/// Thousands of random payloads (with plausible ids and request tags, so the
/// decoder gets past the first bytes) never take the host down: each gets a
/// typed answer and the connection stays in sync.
#[test]
fn random_payloads_never_break_the_host() {
    let env = Env::new();
    let mut s = raw(&env);
    hello(&mut s);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..3000u64 {
        let len = (next() % 200) as usize;
        let mut payload = round.to_le_bytes().to_vec();
        // Hello, Embed, Status, Ping or nonsense; never Shutdown (tag 3).
        let tag = [0u32, 1, 1, 1, 2, 4, 5, 0xffff_ffff][(next() % 8) as usize];
        payload.extend_from_slice(&tag.to_le_bytes());
        payload.extend((0..len).map(|_| next() as u8));
        // Sometimes a huge length prefix for the first vector or string.
        if len >= 12 && next() % 4 == 0 {
            payload[12..20].copy_from_slice(&(next() | (1 << 40)).to_le_bytes());
        }
        s.write_all(&(payload.len() as u32).to_le_bytes()).unwrap();
        s.write_all(&payload).unwrap();
        let reply = recv(&mut s).unwrap_or_else(|e| panic!("round {round}: no reply ({e})"));
        assert!(reply.id == round || reply.id == 0, "round {round}: reply id {}", reply.id);
    }
    ping_ok(&mut s);
    still_serves(&env);
}

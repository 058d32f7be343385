//! Issue 10: a panic anywhere in the host is an `Internal` error for exactly
//! the requests it touched, and the host keeps serving. The host's test-only
//! fault hook (`VEMBED_TEST_FAULT`) panics on purpose on a marked text.

use std::ffi::OsString;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use vembed::{Client, ErrorCode};
use vembed_protocol::{
    EmbedRequest, Hello, ModelRef, PROTOCOL_VERSION, Request, RequestFrame, Response, Role, framing,
};
use vembed_tests::{Env, cosine};

/// The text the host's fault hook reacts to (`fault::MARKER` in the host).
const MARKER: &str = "vembed test fault marker";

fn faulty(env: &Env, faults: &str) -> Client {
    let mut opts = env.spawn_options();
    opts.host_env.push((OsString::from("VEMBED_TEST_FAULT"), OsString::from(faults)));
    let client = Client::connect_or_spawn_with(opts).expect("a host with test faults");
    armed(env);
    client
}

/// Fails clearly when the host was built without its fault hooks.
pub(crate) fn armed(env: &Env) {
    let log = env.path("state/host.log");
    vembed_tests::wait_until(
        Duration::from_secs(30),
        "\"test faults armed\" in the host's log: build the host with its fault hooks \
         (cargo build --release --bins --features vembed-host/fault-injection; scripts/test does)",
        || std::fs::read_to_string(&log).is_ok_and(|l| l.contains("test faults armed")),
    );
}

/// Sends three pipelined requests on one connection (so they can share a
/// batch) and returns the replies by request id.
fn pipelined(env: &Env, texts: [&str; 3]) -> Vec<Response> {
    let mut s = UnixStream::connect(&env.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let hello = Request::Hello(Hello { version: PROTOCOL_VERSION, client: "test".into() });
    let mut wire = Vec::new();
    framing::encode_frame(&RequestFrame { id: 0, request: hello }, &mut wire).unwrap();
    for (i, t) in texts.iter().enumerate() {
        let req = EmbedRequest { model: ModelRef::Role(Role::Unified), texts: vec![t.to_string()] };
        framing::encode_frame(
            &RequestFrame { id: 1 + i as u64, request: Request::Embed(req) },
            &mut wire,
        )
        .unwrap();
    }
    std::io::Write::write_all(&mut s, &wire).unwrap();
    let mut out: Vec<Option<Response>> = vec![None, None, None];
    let mut buf = Vec::new();
    for _ in 0..4 {
        framing::read_frame(&mut s, 64 << 20, &mut buf).unwrap();
        let f: vembed_protocol::ResponseFrame = framing::decode(&buf).unwrap();
        if f.id > 0 {
            out[f.id as usize - 1] = Some(f.response);
        }
    }
    out.into_iter().map(|r| r.expect("every request answered")).collect()
}

fn vector(r: &Response) -> &[f32] {
    match r {
        Response::Embeddings(e) => &e.data,
        other => panic!("expected embeddings, got {other:?}"),
    }
}

fn internal(r: &Response) -> String {
    match r {
        Response::Error(e) if e.code == ErrorCode::Internal => e.message.clone(),
        other => panic!("expected an Internal error, got {other:?}"),
    }
}

/// Every other request of the batch is answered with its own right vector.
fn check_neighbours(client: &mut Client, replies: &[Response], texts: [&str; 3]) {
    for (i, t) in texts.iter().enumerate() {
        if *t == MARKER {
            continue;
        }
        let alone = client.embed(&[t]).unwrap();
        let c = cosine(vector(&replies[i]), &alone[0]);
        assert!(c >= 0.99999, "request {i} ({t:?}) got another vector: cosine {c}");
    }
}

#[test]
fn a_backend_panic_fails_only_its_own_request() {
    let env = Env::new();
    let mut client = faulty(&env, "backend");
    let texts = ["where are retries configured", MARKER, "parse the config file"];
    let replies = pipelined(&env, texts);
    let msg = internal(&replies[1]);
    assert!(msg.contains("panicked") && msg.contains("injected fault"), "{msg}");
    check_neighbours(&mut client, &replies, texts);
    // A request holding the marker among others fails as one request.
    let e = client.embed(&["fine", MARKER]).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Internal), "{e}");
    assert_eq!(client.embed(&["still serving"]).unwrap()[0].len(), 384);
}

#[test]
fn a_panic_in_a_team_chunk_fails_only_that_query() {
    let env = Env::new();
    let mut client = faulty(&env, "team");
    let e = client.embed(&[MARKER]).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Internal), "{e}");
    assert!(e.to_string().contains("team chunk panics"), "{e}");
    // The team (and the host) go on: many more small queries, all right.
    let again = client.embed(&["open the settings file"]).unwrap();
    for _ in 0..20 {
        let v = client.embed(&["open the settings file"]).unwrap();
        assert!(cosine(&v[0], &again[0]) >= 0.99999);
    }
}

#[test]
fn a_panic_while_answering_fails_only_that_request() {
    let env = Env::new();
    let mut client = faulty(&env, "finish");
    let texts = ["first neighbour", MARKER, "second neighbour"];
    let replies = pipelined(&env, texts);
    let msg = internal(&replies[1]);
    assert!(msg.contains("answering"), "{msg}");
    check_neighbours(&mut client, &replies, texts);
}

#[test]
fn a_panicking_indexer_job_leaves_the_table_and_the_next_one_runs() {
    let env = Env::new();
    drop(faulty(&env, "indexer"));
    let repo = env.path("repo");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(repo.join("a.py"), "def retry():\n    return 1\n").unwrap();
    let dir = env.path("index");
    let args = ["index", repo.to_str().unwrap(), "--index-dir", dir.to_str().unwrap(), "--json"];
    let first = env.vembed(&args, "");
    let err = String::from_utf8_lossy(&first.stderr);
    assert!(!first.status.success() && err.contains("internal error while indexing"), "{err}");
    let second = env.vembed(&args, "");
    assert!(second.status.success(), "{}", String::from_utf8_lossy(&second.stderr));
    let s: serde_json::Value = serde_json::from_slice(&second.stdout).unwrap();
    assert_eq!(s["indexed"], 1, "{s}");
}

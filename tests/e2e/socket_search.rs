//! Issue 26: a search on the socket runs off the connection's reader, so a
//! slow search does not hold up a request pipelined behind it on the same
//! connection. The test host's `search` fault makes a search whose query
//! holds the marker take seconds.

use std::ffi::OsString;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use vembed::Client;
use vembed_protocol::{
    EmbedRequest, Hello, ModelRef, PROTOCOL_VERSION, RankedSearchRequest, Request, RequestFrame,
    Response, ResponseFrame, Role, SearchMode, framing,
};
use vembed_tests::Env;

/// The text the host's fault hook reacts to (`fault::MARKER` in the host).
const MARKER: &str = "vembed test fault marker";

#[test]
fn a_slow_search_does_not_delay_an_embed_pipelined_behind_it() {
    let env = Env::new();
    let mut opts = env.spawn_options();
    opts.host_env.push((OsString::from("VEMBED_TEST_FAULT"), OsString::from("search")));
    let mut client = Client::connect_or_spawn_with(opts).expect("a host with test faults");
    crate::faults::armed(&env);
    let repo = env.path("repo");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(repo.join("retry.py"), "def retry_with_backoff(call):\n    return call()\n")
        .unwrap();
    let index = env.path("index");
    let request = vembed_protocol::IndexRequest {
        repo: repo.display().to_string(),
        index_dir: Some(index.display().to_string()),
        rebuild: false,
    };
    client.index(request, |_| {}).unwrap();

    let mut s = UnixStream::connect(&env.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let frames = [
        Request::Hello(Hello { version: PROTOCOL_VERSION, client: "test".into() }),
        // Slow: the fault holds this search for seconds before it runs.
        Request::SearchRanked(RankedSearchRequest {
            repo: repo.display().to_string(),
            index_dir: Some(index.display().to_string()),
            query: format!("retry with backoff {MARKER}"),
            k: 5,
            mode: SearchMode::Lexical,
        }),
        Request::Embed(EmbedRequest {
            model: ModelRef::Role(Role::Unified),
            texts: vec!["sent after the search, on the same connection".into()],
        }),
    ];
    let mut wire = Vec::new();
    for (id, request) in frames.into_iter().enumerate() {
        framing::encode_frame(&RequestFrame { id: id as u64, request }, &mut wire).unwrap();
    }
    std::io::Write::write_all(&mut s, &wire).unwrap();
    let mut order = Vec::new();
    let mut buf = Vec::new();
    for _ in 0..3 {
        framing::read_frame(&mut s, 64 << 20, &mut buf).unwrap();
        let f: ResponseFrame = framing::decode(&buf).unwrap();
        match (&f.id, &f.response) {
            (0, Response::Hello(_)) => continue,
            (1, Response::RankedResults(hits)) => {
                assert!(hits.iter().any(|h| h.hit.path == "retry.py"), "{hits:?}");
            }
            (2, Response::Embeddings(e)) => assert_eq!(e.len(), 1),
            other => panic!("unexpected reply {other:?}"),
        }
        order.push(f.id);
    }
    // Answered in the order they finished: the embed did not wait for the
    // search ahead of it (a reader that ran searches itself answers 1, 2).
    assert_eq!(order, vec![2, 1], "the embed waited behind the slow search");
}

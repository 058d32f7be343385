//! `vembed-wire-fixtures DIR`: writes one frame per Request and Response
//! variant (and per value of every enum inside them) as `NAME.bin`, with
//! `NAME.json`, the same frame as serde JSON, for the Python package's test
//! to decode, compare and re-encode byte for byte.
//!
//! It checks its own coverage: a frame tagged one past the last variant it
//! wrote must fail to decode, so a variant appended to the protocol without a
//! fixture here stops the test suite.

use std::path::{Path, PathBuf};

use vembed_protocol::*;

fn limits() -> Limits {
    Limits {
        max_frame_bytes: 64 << 20,
        max_texts_per_request: 2048,
        max_text_bytes: 1 << 20,
        max_batch_tokens: 16384,
        max_queue_texts: 65536,
    }
}

fn info() -> ModelInfo {
    ModelInfo {
        name: "sentence-transformers/all-MiniLM-L6-v2".into(),
        sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db".into(),
        dim: 384,
        max_seq_length: 256,
        roles: vec![Role::Unified, Role::Tools, Role::Code],
        path: "/home/u/.cache/vembed/models/m".into(),
        identity: "0f1e".into(),
    }
}

fn tool(name: &str) -> ToolSpec {
    ToolSpec {
        name: name.into(),
        description: "Read the contents of a file, ünïcode too.".into(),
        parameters: vec!["path".into(), "start_line".into()],
        use_cases: vec!["open a config file".into()],
    }
}

fn requests() -> Vec<(String, Request)> {
    let embed =
        |model| EmbedRequest { model, texts: vec!["a".into(), String::new(), "日本語".into()] };
    let mut out = vec![
        ("hello".into(), Request::Hello(Hello { version: PROTOCOL_VERSION, client: "py".into() })),
        ("embed-unified".into(), Request::Embed(embed(ModelRef::Role(Role::Unified)))),
        ("embed-tools".into(), Request::Embed(embed(ModelRef::Role(Role::Tools)))),
        ("embed-code".into(), Request::Embed(embed(ModelRef::Role(Role::Code)))),
        (
            "embed-name".into(),
            Request::Embed(embed(ModelRef::Name("BAAI/bge-small-en-v1.5".into()))),
        ),
        ("status".into(), Request::Status),
        ("shutdown".into(), Request::Shutdown),
        ("ping".into(), Request::Ping),
        ("embed-cached".into(), Request::EmbedCached(embed(ModelRef::Role(Role::Tools)))),
        (
            "index".into(),
            Request::Index(IndexRequest {
                repo: "/src/app".into(),
                index_dir: None,
                rebuild: true,
            }),
        ),
        (
            "index-dir".into(),
            Request::Index(IndexRequest {
                repo: "/src/app".into(),
                index_dir: Some("/tmp/ix".into()),
                rebuild: false,
            }),
        ),
        (
            "search".into(),
            Request::Search(SearchRequest {
                repo: "/src/app".into(),
                index_dir: Some("/tmp/ix".into()),
                query: "parse a header".into(),
                k: 10,
            }),
        ),
    ];
    let methods = [ToolMethod::Plain, ToolMethod::Split, ToolMethod::MaxSim, ToolMethod::Hybrid];
    for (i, method) in methods.into_iter().enumerate() {
        let fallback = if i % 2 == 0 { ToolFallback::All } else { ToolFallback::TopK };
        out.push((
            format!("select-tools-{i}"),
            Request::SelectTools(SelectToolsRequest {
                model: ModelRef::Role(Role::Tools),
                tools: vec![tool("read_file"), tool("write_file")],
                method,
                queries: vec!["open the config".into()],
                k: 5,
                threshold: 0.15,
                fallback,
            }),
        ));
    }
    for mode in [SearchMode::Semantic, SearchMode::Lexical, SearchMode::Hybrid] {
        out.push((
            format!("search-ranked-{}", mode.name()),
            Request::SearchRanked(RankedSearchRequest {
                repo: "/src/app".into(),
                index_dir: (mode == SearchMode::Lexical).then(|| "/tmp/ix".into()),
                query: "parse_header".into(),
                k: 10,
                mode,
            }),
        ));
    }
    out.push(("upstreams".into(), Request::Upstreams));
    out.push(("indexes".into(), Request::Indexes));
    out
}

fn responses() -> Vec<(String, Response)> {
    let codes = [
        ErrorCode::VersionMismatch,
        ErrorCode::Malformed,
        ErrorCode::FrameTooLarge,
        ErrorCode::TooManyTexts,
        ErrorCode::TextTooLarge,
        ErrorCode::Overloaded,
        ErrorCode::UnknownModel,
        ErrorCode::PermissionDenied,
        ErrorCode::HandshakeRequired,
        ErrorCode::ShuttingDown,
        ErrorCode::Internal,
        ErrorCode::Index,
        ErrorCode::InvalidRequest,
        ErrorCode::Upstream,
    ];
    let mut out: Vec<(String, Response)> = codes
        .iter()
        .map(|&code| {
            let message = format!("{code}: what to do");
            (format!("error-{code}"), Response::Error(ErrorReply { code, message }))
        })
        .collect();
    let data: Vec<f32> = (0..8).map(|i| (i as f32 - 3.5) / 7.0).collect();
    out.extend([
        (
            "hello".into(),
            Response::Hello(HelloReply {
                version: PROTOCOL_VERSION,
                host_version: "0.1.0".into(),
                pid: 4242,
                models: vec![info()],
                limits: limits(),
            }),
        ),
        (
            "embeddings".into(),
            Response::Embeddings(Embeddings {
                model: "m".into(),
                dim: 4,
                tokens: vec![3, 2],
                data,
                host_us: 1234,
            }),
        ),
        (
            "status".into(),
            Response::Status(Box::new(HostStatus {
                pid: 4242,
                host_version: "0.1.0".into(),
                uptime_ms: 99,
                socket: "/run/user/1000/vembed/host.sock".into(),
                models: vec![ModelStatus {
                    info: info(),
                    files: vec![FileResidency {
                        path: "/m/model.safetensors".into(),
                        bytes: 90_868_376,
                        resident_bytes: 4096,
                    }],
                }],
                memory: MemoryStatus { rss: 1, pss: 2, rss_anon: 3, rss_file: 4, peak_rss: 5 },
                clients: 2,
                connections_total: 7,
                requests: 10,
                texts: 20,
                errors: 1,
                batches: 5,
                queue_texts: 0,
                latency_p50_us: 3000,
                latency_p99_us: 9000,
                threads: 2,
                idle_timeout_secs: 600,
                limits: limits(),
                cache: CacheStatus { hits: 1, disk_hits: 2, misses: 3, entries: 4 },
            })),
        ),
        ("ok".into(), Response::Ok),
        (
            "index-progress".into(),
            Response::IndexProgress(IndexProgress {
                files_seen: 10,
                files_to_index: 4,
                files_indexed: 2,
                chunks_added: 17,
            }),
        ),
        (
            "index-done".into(),
            Response::IndexDone(IndexSummary {
                index_dir: "/ix".into(),
                files_seen: 10,
                indexed: 4,
                unchanged: 6,
                deleted: 1,
                skipped: 0,
                chunks_added: 40,
                chunks_removed: 3,
                tokens: 9000,
                seconds: 1.25,
            }),
        ),
        (
            "search-results".into(),
            Response::SearchResults(vec![
                SearchHit {
                    path: "src/mail.py".into(),
                    start_line: 1,
                    end_line: 3,
                    symbol: Some("send_welcome_email".into()),
                    score: 0.625,
                    text: "def send_welcome_email(user):".into(),
                },
                SearchHit {
                    path: "README".into(),
                    start_line: 5,
                    end_line: 9,
                    symbol: None,
                    score: -0.125,
                    text: "".into(),
                },
            ]),
        ),
        (
            "ranked-results".into(),
            Response::RankedResults(vec![
                RankedSearchHit {
                    hit: SearchHit {
                        path: "src/http.py".into(),
                        start_line: 10,
                        end_line: 30,
                        symbol: Some("parse_header".into()),
                        score: 0.875,
                        text: "def parse_header(line):".into(),
                    },
                    semantic: Some(Rank { rank: 3, score: 0.5 }),
                    lexical: Some(Rank { rank: 1, score: 7.25 }),
                },
                RankedSearchHit {
                    hit: SearchHit {
                        path: "README".into(),
                        start_line: 1,
                        end_line: 2,
                        symbol: None,
                        score: 0.25,
                        text: "headers".into(),
                    },
                    semantic: None,
                    lexical: Some(Rank { rank: 2, score: 1.5 }),
                },
                RankedSearchHit {
                    hit: SearchHit {
                        path: "a.rs".into(),
                        start_line: 1,
                        end_line: 1,
                        symbol: None,
                        score: 0.125,
                        text: String::new(),
                    },
                    semantic: Some(Rank { rank: 9, score: 0.125 }),
                    lexical: None,
                },
            ]),
        ),
        (
            "tool-selections".into(),
            Response::ToolSelections(ToolSelections {
                model: "m".into(),
                selections: vec![
                    vec![
                        ToolPick { name: "read_file".into(), score: 1.25 },
                        ToolPick { name: "write_file".into(), score: 0.5 },
                    ],
                    vec![],
                ],
                tools_cached: true,
                host_us: 77,
            }),
        ),
        (
            "upstreams".into(),
            Response::Upstreams(vec![
                UpstreamStatus {
                    model: "team-gpu".into(),
                    provider: "tei".into(),
                    url: "http://gpu-box:8080".into(),
                    remote_model: "BAAI/bge-large-en-v1.5".into(),
                    dim: 1024,
                    concurrency: 4,
                    calls: 12,
                    texts: 700,
                    errors: 1,
                    retries: 2,
                    in_flight: 3,
                    latency_p50_us: 41_000,
                    latency_p99_us: 90_500,
                    last_error: Some("upstream answered HTTP 503: overloaded".into()),
                },
                UpstreamStatus {
                    model: "openai".into(),
                    provider: "openai".into(),
                    url: "https://api.openai.com/v1".into(),
                    remote_model: "text-embedding-3-small".into(),
                    dim: 256,
                    concurrency: 2,
                    calls: 0,
                    texts: 0,
                    errors: 0,
                    retries: 0,
                    in_flight: 0,
                    latency_p50_us: 0,
                    latency_p99_us: 0,
                    last_error: None,
                },
            ]),
        ),
        (
            "indexes".into(),
            Response::Indexes(vec![
                IndexStatus {
                    root: "/src/app".into(),
                    index_dir: "/home/u/.cache/vembed/indexes/app-0123456789abcdef".into(),
                    model: "sentence-transformers/all-MiniLM-L6-v2 (53aa5117, 384)".into(),
                    files: 120,
                    snippets: 950,
                    disk_bytes: 4 << 20,
                    updated_unix: 1_796_000_000,
                    jobs: 3,
                    files_embedded: 125,
                    searches: 41,
                    last_used_unix: 1_796_000_100,
                    clients: vec![4242, 0, 17],
                },
                IndexStatus {
                    root: "/src/empty".into(),
                    index_dir: "/ix".into(),
                    model: String::new(),
                    files: 0,
                    snippets: 0,
                    disk_bytes: 0,
                    updated_unix: 0,
                    jobs: 0,
                    files_embedded: 0,
                    searches: 0,
                    last_used_unix: 0,
                    clients: vec![],
                },
            ]),
        ),
    ]);
    out
}

/// A frame whose payload is `id`, then `tag`, then zeros: decoding it as `T`
/// fails with an unknown variant exactly when `tag` is past the last one.
fn past_the_end<T: serde::de::DeserializeOwned>(tag: u32) -> bool {
    let mut payload = 1u64.to_le_bytes().to_vec();
    payload.extend(tag.to_le_bytes());
    payload.extend([0u8; 256]);
    match bincode::serde::decode_from_slice::<T, _>(&payload, CONFIG) {
        Ok(_) => false,
        // serde's own message for an enum index out of range.
        Err(e) => e
            .to_string()
            .contains(&format!("invalid value: integer `{tag}`, expected variant index")),
    }
}

fn tag(payload: &[u8]) -> u32 {
    u32::from_le_bytes(payload[8..12].try_into().expect("a frame has an id and a tag"))
}

fn write<T: serde::Serialize>(dir: &Path, name: &str, frame: &T) -> u32 {
    let mut wire = Vec::new();
    framing::write_frame(&mut wire, frame).expect("a fixture frame encodes");
    std::fs::write(dir.join(format!("{name}.bin")), &wire).expect("write fixture");
    let json = serde_json::to_string_pretty(frame).expect("a fixture frame is JSON");
    std::fs::write(dir.join(format!("{name}.json")), json).expect("write fixture");
    tag(&wire[4..])
}

fn main() {
    let dir: PathBuf = std::env::args_os().nth(1).expect("usage: vembed-wire-fixtures DIR").into();
    std::fs::create_dir_all(&dir).expect("create the fixture dir");
    let mut request_tags = Vec::new();
    for (i, (name, request)) in requests().into_iter().enumerate() {
        let frame = RequestFrame { id: 1000 + i as u64, request };
        request_tags.push(write(&dir, &format!("request-{name}"), &frame));
    }
    let mut response_tags = Vec::new();
    for (i, (name, response)) in responses().into_iter().enumerate() {
        let frame = ResponseFrame { id: 2000 + i as u64, response };
        response_tags.push(write(&dir, &format!("response-{name}"), &frame));
    }
    for (what, tags, end) in [
        ("Request", &mut request_tags, past_the_end::<RequestFrame> as fn(u32) -> bool),
        ("Response", &mut response_tags, past_the_end::<ResponseFrame>),
    ] {
        tags.sort_unstable();
        tags.dedup();
        let n = tags.len() as u32;
        assert_eq!(*tags, (0..n).collect::<Vec<_>>(), "{what} fixtures skip a variant");
        assert!(end(n), "{what} has a variant {n} with no fixture: add one here");
    }
    println!(
        "wrote {} request and {} response fixtures to {}",
        request_tags.len(),
        response_tags.len(),
        dir.display()
    );
}

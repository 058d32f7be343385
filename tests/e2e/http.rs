//! The HTTP front door on the real host and model: each API shape gives the
//! socket's vectors, and bad input gets its status while the host goes on
//! serving.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::json;
use vembed_tests::http::{HttpHost, get, metric, openai_rows, post, request, rows};
use vembed_tests::{Env, cosine, golden};

const TEXTS: [&str; 3] =
    ["find the email validator", "", "def parse(x):\n    return int(x)  # 日本語"];

fn assert_same(a: &[Vec<f32>], b: &[Vec<f32>]) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert_eq!(x.len(), y.len(), "row {i}");
        let c = cosine(x, y);
        assert!(c >= 0.99999, "row {i}: cosine {c}");
    }
}

#[test]
fn every_api_shape_returns_the_sockets_vectors() {
    let env = Env::new();
    let host = HttpHost::start(&env, &[]);
    let mut client = vembed::Client::connect(&env.socket).unwrap();
    let direct = client.embed(&TEXTS).unwrap();
    let a = host.addr;

    // OpenAI, float and base64, and several model names.
    for model in [
        "all-minilm",
        "sentence-transformers/all-MiniLM-L6-v2",
        "all-MiniLM-L6-v2",
        "unified",
        "tools",
    ] {
        let r = post(a, "/v1/embeddings", &json!({"model": model, "input": TEXTS}));
        assert_eq!(r.status, 200, "{model}: {}", r.text());
        let v = r.json();
        assert_same(&openai_rows(&v), &direct);
        assert_eq!(v["model"], "sentence-transformers/all-MiniLM-L6-v2");
        assert_eq!(v["object"], "list");
    }
    let v = post(
        a,
        "/v1/embeddings",
        &json!({"model": "all-minilm", "input": TEXTS, "encoding_format": "base64"}),
    )
    .json();
    let decoded: Vec<Vec<f32>> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(d["embedding"].as_str().unwrap())
                .unwrap();
            bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
        })
        .collect();
    assert_same(&decoded, &direct);
    // usage counts the model's own tokens: [CLS] and [SEP] for the empty text.
    let g = golden();
    let one = post(a, "/v1/embeddings", &json!({"model": "all-minilm", "input": g[0].text})).json();
    assert_eq!(one["usage"]["prompt_tokens"], g[0].n_tokens as u64, "{}", one["usage"]);
    assert!(cosine(&openai_rows(&one)[0], &g[0].embedding) >= 0.9999);
    let empty = post(a, "/v1/embeddings", &json!({"model": "all-minilm", "input": ""})).json();
    assert_eq!(empty["usage"]["prompt_tokens"], 2);
    // dimensions: the first d floats, renormalized.
    let cut = post(
        a,
        "/v1/embeddings",
        &json!({"model": "all-minilm", "input": TEXTS[0], "dimensions": 64}),
    )
    .json();
    let row = &openai_rows(&cut)[0];
    assert_eq!(row.len(), 64);
    let norm: f32 = row.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "{norm}");
    assert!(cosine(row, &direct[0][..64]) > 0.99999);
    // cl100k token ids (what LangChain's OpenAIEmbeddings sends) are the text.
    let bpe = tiktoken_rs::cl100k_base_singleton();
    let lists: Vec<Vec<u32>> = TEXTS.iter().map(|t| bpe.encode_ordinary(t)).collect();
    let ids = post(a, "/v1/embeddings", &json!({"model": "all-minilm", "input": lists})).json();
    assert_same(&openai_rows(&ids), &direct);
    let one_list =
        post(a, "/v1/embeddings", &json!({"model": "all-minilm", "input": lists[0]})).json();
    assert_same(&openai_rows(&one_list), &direct[..1]);
    let models = get(a, "/v1/models").json();
    assert_eq!(models["data"][0]["id"], "sentence-transformers/all-MiniLM-L6-v2", "{models}");
    assert_eq!(
        get(a, "/v1/models/all-minilm").json()["id"],
        "sentence-transformers/all-MiniLM-L6-v2"
    );

    // Ollama: /api/embed (batch), /api/embeddings (Victor's), the probes.
    let v = post(a, "/api/embed", &json!({"model": "all-minilm", "input": TEXTS, "keep_alive": "5m", "options": {"temperature": 0}, "truncate": true})).json();
    assert_same(&rows(&v["embeddings"]), &direct);
    assert_eq!(v["model"], "all-minilm");
    assert!(v["prompt_eval_count"].as_u64().unwrap() > 2);
    let v = post(a, "/api/embed", &json!({"model": "all-minilm:l6-v2", "input": TEXTS[0]})).json();
    assert_same(&rows(&v["embeddings"]), &direct[..1]);
    let v = post(a, "/api/embed", &json!({"model": "all-minilm", "input": []})).json();
    assert_eq!(v["embeddings"], json!([]));
    for (i, t) in TEXTS.iter().enumerate() {
        let v = post(a, "/api/embeddings", &json!({"model": "all-minilm", "prompt": t})).json();
        let e: Vec<f32> =
            v["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
        assert!(cosine(&e, &direct[i]) >= 0.99999, "{i}");
    }
    let tags = get(a, "/api/tags").json();
    let names: Vec<&str> =
        tags["models"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert!(
        names.contains(&"all-minilm:latest") && names.contains(&"all-minilm:l6-v2"),
        "{names:?}"
    );
    assert!(get(a, "/api/version").json()["version"].is_string());
    let root = get(a, "/");
    assert_eq!((root.status, root.text().as_str()), (200, "Ollama is running"));
    assert_eq!(request(a, "HEAD", "/", &[], b"").status, 200);
    let show = post(a, "/api/show", &json!({"model": "all-minilm"})).json();
    assert_eq!(show["model_info"]["bert.embedding_length"], 384);

    // TEI.
    let v = post(a, "/embed", &json!({"inputs": TEXTS})).json();
    assert_same(&rows(&v), &direct);
    let v =
        post(a, "/embed", &json!({"inputs": TEXTS[0], "normalize": true, "truncate": true})).json();
    assert_same(&rows(&v), &direct[..1]);
    let tok = post(a, "/tokenize", &json!({"inputs": g[1].text})).json();
    let ids: Vec<u32> =
        tok[0].as_array().unwrap().iter().map(|t| t["id"].as_u64().unwrap() as u32).collect();
    let mut full = g[1].input_ids.clone();
    full.truncate(ids.len());
    assert_eq!(ids, full, "{tok}");
    assert_eq!(tok[0][0]["special"], true);
    assert_eq!(tok[0][0]["start"], serde_json::Value::Null);
    let first = &tok[0][1];
    let (s, e) =
        (first["start"].as_u64().unwrap() as usize, first["stop"].as_u64().unwrap() as usize);
    assert_eq!(first["text"].as_str().unwrap(), &g[1].text[s..e]);
    let info = get(a, "/info").json();
    assert_eq!(info["model_id"], "sentence-transformers/all-MiniLM-L6-v2");
    assert_eq!(info["max_input_length"], 256);
    assert_eq!(info["model_type"]["embedding"]["pooling"], "mean");
    assert_eq!(get(a, "/health").status, 200);
}

/// Every bad request gets its API's status and shape, and the next request
/// is served normally.
#[test]
fn bad_input_gets_the_right_status_and_the_host_goes_on() {
    let env = Env::new();
    let host = HttpHost::start(&env, &[]);
    let a = host.addr;
    let ok = || {
        let r =
            post(a, "/v1/embeddings", &json!({"model": "all-minilm", "input": "still serving"}));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(openai_rows(&r.json())[0].len(), 384);
    };
    let raw = |method: &str, path: &str, body: &[u8]| request(a, method, path, &[], body);
    let openai_error =
        |r: &vembed_tests::http::Reply| r.json()["error"]["message"].as_str().unwrap().to_string();

    // Malformed JSON, in each API's shape.
    let r = raw("POST", "/v1/embeddings", b"{\"input\": [\"a\",");
    assert_eq!(r.status, 400);
    assert!(openai_error(&r).contains("not valid"), "{}", r.text());
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    let r = raw("POST", "/api/embed", b"not json");
    assert_eq!(r.status, 400);
    assert!(r.json()["error"].is_string(), "{}", r.text());
    let r = raw("POST", "/embed", b"{");
    assert_eq!((r.status, r.json()["error_type"].as_str()), (400, Some("Validation")));
    let r = raw("POST", "/v1/embeddings", b"");
    assert_eq!(r.status, 400);
    ok();

    // Wrong types, missing fields, an empty list.
    for (path, body) in [
        ("/v1/embeddings", json!({"model": "all-minilm", "input": 5})),
        ("/v1/embeddings", json!({"model": "all-minilm", "input": ["a", 1]})),
        ("/v1/embeddings", json!({"model": 7, "input": "a"})),
        ("/v1/embeddings", json!({"model": "all-minilm"})),
        ("/v1/embeddings", json!({"model": "all-minilm", "input": []})),
        ("/v1/embeddings", json!({"model": "all-minilm", "input": "a", "encoding_format": "int8"})),
        ("/v1/embeddings", json!({"model": "all-minilm", "input": "a", "dimensions": 0})),
        ("/v1/embeddings", json!({"model": "all-minilm", "input": "a", "dimensions": 385})),
        ("/v1/embeddings", json!({"model": "all-minilm", "input": [[4294967295u64]]})),
        ("/api/embed", json!({"model": "all-minilm", "input": {"a": 1}})),
        ("/api/embed", json!({"input": "no model"})),
        ("/api/embeddings", json!({"model": "all-minilm"})),
        ("/embed", json!({"inputs": 3})),
        ("/embed", json!({"inputs": "a", "normalize": false})),
        ("/embed", json!({"inputs": "a", "truncation_direction": "Left"})),
    ] {
        let r = post(a, path, &body);
        assert_eq!(r.status, 400, "{path} {body}: {}", r.text());
    }
    let r = post(a, "/embed", &json!({"inputs": []}));
    assert_eq!((r.status, r.json()["error_type"].as_str()), (400, Some("Empty")));
    ok();

    // Too long for the model with truncation off: TEI 413, Ollama 400.
    let long = "word ".repeat(400);
    let r = post(a, "/embed", &json!({"inputs": long}));
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r.json()["error"].as_str().unwrap().contains("256"));
    let r =
        post(a, "/api/embed", &json!({"model": "all-minilm", "input": long, "truncate": false}));
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(post(a, "/api/embed", &json!({"model": "all-minilm", "input": long})).status, 200);

    // A 10 MB string; 100,000 inputs; a body over the limit.
    let big = "x".repeat(10 << 20);
    let r = post(a, "/v1/embeddings", &json!({"model": "all-minilm", "input": big}));
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(openai_error(&r).contains("bytes"), "{}", r.text());
    let many: Vec<&str> = vec!["a"; 100_000];
    let r = post(a, "/v1/embeddings", &json!({"model": "all-minilm", "input": many}));
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(openai_error(&r).contains("100000 inputs"), "{}", r.text());
    let r = request(a, "POST", "/api/embed", &[("content-length", "999999999")], b"");
    assert!(r.status == 413 || r.status == 400, "{}", r.status);
    ok();

    // Unknown models: 404 in each shape, naming what is served.
    let r = post(a, "/v1/embeddings", &json!({"model": "nomic-embed-text", "input": "a"}));
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], "model_not_found");
    assert!(openai_error(&r).contains("sentence-transformers/all-MiniLM-L6-v2"), "{}", r.text());
    let r = post(a, "/api/embeddings", &json!({"model": "nomic-embed-text", "prompt": "a"}));
    assert_eq!(r.status, 404);
    assert!(r.json()["error"].as_str().unwrap().contains("all-minilm"), "{}", r.text());
    let r = post(a, "/api/embed", &json!({"model": "/etc/passwd", "input": "a"}));
    assert_eq!(r.status, 404, "{}", r.text());
    let r = post(a, "/api/embed", &json!({"model": "nobody/no-such-model", "input": "a"}));
    assert_eq!(r.status, 404, "{}", r.text());

    // Routes and methods.
    assert_eq!(get(a, "/v1/embeddings").status, 405);
    assert_eq!(get(a, "/nope").status, 404);
    assert_eq!(get(a, "/v1/nope").json()["error"]["type"], "invalid_request_error");
    ok();
}

/// A client sending its headers a byte a second holds its own connection
/// only: others are answered meanwhile, and it is cut off after the header
/// deadline.
#[test]
fn a_trickling_client_does_not_delay_others() {
    let env = Env::new();
    let host = HttpHost::start(&env, &[]);
    let a = host.addr;
    let mut slow = TcpStream::connect(a).unwrap();
    // A connection that sends nothing at all, and one idle after a request.
    let mut silent = TcpStream::connect(a).unwrap();
    let mut idle = TcpStream::connect(a).unwrap();
    idle.write_all(b"GET /api/version HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
    let started = Instant::now();
    let head = b"POST /v1/embeddings HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n";
    let trickler = std::thread::spawn(move || {
        for b in head.iter().cycle() {
            if slow.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
            if started.elapsed() > Duration::from_secs(40) {
                break;
            }
        }
        let mut rest = Vec::new();
        slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = slow.read_to_end(&mut rest);
        started.elapsed()
    });
    // Others are served while it trickles.
    std::thread::sleep(Duration::from_millis(1500));
    for i in 0..20 {
        let r = post(
            a,
            "/api/embeddings",
            &json!({"model": "all-minilm", "prompt": format!("query {i}")}),
        );
        assert_eq!(r.status, 200);
    }
    assert!(!trickler.is_finished(), "the slow client is still sending while others were served");
    let cut_after = trickler.join().unwrap();
    assert!(
        cut_after < Duration::from_secs(40),
        "the slow client was never cut off ({cut_after:?})"
    );
    assert_eq!(
        post(a, "/api/embeddings", &json!({"model": "all-minilm", "prompt": "after"})).status,
        200
    );
    // Both were closed by the header deadline too (read_to_end ends at EOF).
    for (name, c) in [("silent", &mut silent), ("idle keep-alive", &mut idle)] {
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut rest = Vec::new();
        assert!(c.read_to_end(&mut rest).is_ok(), "the {name} connection was not closed");
    }
}

/// 1,000 connections at once against a small queue: each gets 200 or 429,
/// never a hang or a dropped connection, and the host serves afterwards.
#[test]
fn a_thousand_connections_stay_bounded_and_get_429_when_the_queue_is_full() {
    let env = Env::new();
    let host = HttpHost::start(&env, &["--max-queue-texts", "64"]);
    let a = host.addr;
    let texts: Vec<String> = (0..16).map(|i| format!("concurrent text number {i}")).collect();
    let body = json!({"model": "all-minilm", "input": texts}).to_string();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(1000));
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..1000)
            .map(|_| {
                let (barrier, body) = (barrier.clone(), body.clone());
                std::thread::Builder::new()
                    .stack_size(128 << 10)
                    .spawn_scoped(s, move || {
                        // Connect after the barrier: a connection made
                        // before it could sit idle past the host's header
                        // timeout (10 s) while a loaded machine starts the
                        // other threads, and be closed unanswered.
                        barrier.wait();
                        let mut c = TcpStream::connect(a).unwrap();
                        c.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
                        vembed_tests::http::exchange(
                            &mut c,
                            "POST",
                            "/v1/embeddings",
                            &[],
                            body.as_bytes(),
                        )
                        .status
                    })
                    .unwrap()
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = statuses.iter().filter(|&&s| s == 200).count();
    let busy = statuses.iter().filter(|&&s| s == 429).count();
    assert_eq!(
        ok + busy,
        1000,
        "only 200 and 429: {:?}",
        statuses.iter().filter(|&&s| s != 200 && s != 429).collect::<Vec<_>>()
    );
    assert!(ok > 0 && busy > 0, "{ok} served, {busy} refused");
    let r = post(a, "/v1/embeddings", &json!({"model": "all-minilm", "input": texts}));
    assert_eq!(r.status, 200);
    let m = get(a, "/metrics").text();
    assert_eq!(
        metric(&m, "vembed_http_requests_total{endpoint=\"/v1/embeddings\",status=\"429\"}")
            as usize,
        busy
    );
    // Every connection is closed again (the scrape's own is the one open).
    // A client's close reaches the host's task a moment after the client
    // has its answer, so the gauge may lag the last request: poll it.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let m = get(a, "/metrics").text();
        let open = metric(&m, "vembed_http_connections");
        if open == 1.0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "connections left open: {m}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `GET /metrics` parses as Prometheus text and its counters move by exactly
/// the requests made.
#[test]
fn metrics_count_exactly_the_requests_made() {
    let env = Env::new();
    let host = HttpHost::start(&env, &[]);
    let a = host.addr;
    let before = get(a, "/metrics").text();
    for i in 0..7 {
        assert_eq!(
            post(
                a,
                "/v1/embeddings",
                &json!({"model": "all-minilm", "input": [format!("m{i}"), "x"]})
            )
            .status,
            200
        );
    }
    for _ in 0..3 {
        assert_eq!(post(a, "/api/embed", &json!({"model": "nope", "input": "x"})).status, 404);
    }
    let after = get(a, "/metrics");
    assert_eq!(after.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    let after = after.text();
    let delta = |series: &str| metric(&after, series) - metric(&before, series);
    assert_eq!(
        delta("vembed_http_requests_total{endpoint=\"/v1/embeddings\",status=\"200\"}"),
        7.0
    );
    assert_eq!(delta("vembed_http_requests_total{endpoint=\"/api/embed\",status=\"404\"}"), 3.0);
    assert_eq!(
        delta("vembed_http_request_duration_seconds_count{endpoint=\"/v1/embeddings\"}"),
        7.0
    );
    assert_eq!(delta("vembed_texts_total"), 14.0);
    assert_eq!(delta("vembed_embed_requests_total"), 7.0);
    assert_eq!(
        metric(&after, "vembed_http_requests_total{endpoint=\"/metrics\",status=\"200\"}"),
        1.0
    );
    assert!(metric(&after, "vembed_host_memory_bytes{kind=\"pss\"}") > 1e6);
    assert!(metric(&after, "vembed_batch_texts_count") >= 7.0);
    assert_eq!(metric(&after, "vembed_queue_texts"), 0.0);
    // Every sample line is `name{labels} value` with a numeric value, and
    // every family has its TYPE line.
    for line in after.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        assert!(value.parse::<f64>().is_ok(), "{line}");
        let family = series.split('{').next().unwrap();
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .fold(family, |f, s| f.strip_suffix(s).unwrap_or(f));
        assert!(
            after.contains(&format!("# TYPE {base} "))
                || after.contains(&format!("# TYPE {family} ")),
            "{line}"
        );
    }
}

/// With a token file, every request must carry the token; a token file
/// others can read stops the host from starting.
#[test]
fn a_bearer_token_is_required_when_configured() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let token_file = env.path("token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut refused = env.start_host(&[
        "--http-listen",
        "127.0.0.1:0",
        "--http-token-file",
        token_file.to_str().unwrap(),
    ]);
    let line = vembed_tests::http::ready_line(&mut refused);
    assert!(line.starts_with("vembed-host error") && line.contains("chmod 600"), "{line}");
    let _ = refused.wait();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let host = HttpHost::start(&env, &["--http-token-file", token_file.to_str().unwrap()]);
    let a = host.addr;
    let body =
        json!({"model": "all-minilm", "input": "a", "prompt": "a", "inputs": "a"}).to_string();
    for path in ["/v1/embeddings", "/api/embed", "/api/embeddings", "/embed"] {
        let r = request(a, "POST", path, &[], body.as_bytes());
        assert_eq!(r.status, 401, "{path}");
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        let r = request(a, "POST", path, &[("authorization", "Bearer wrong")], body.as_bytes());
        assert_eq!(r.status, 401, "{path}");
        let r =
            request(a, "POST", path, &[("authorization", "Bearer s3cret-token")], body.as_bytes());
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    }
    assert_eq!(get(a, "/metrics").status, 401);
    assert!(!get(a, "/v1/models").text().contains("all-MiniLM"), "nothing leaks without the token");
}

/// HTTP on a Unix socket path (0600), for clients such as httpx's
/// `HTTPTransport(uds=...)`.
#[test]
fn http_is_served_on_a_unix_socket() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let path = env.path("run/http.sock");
    let host = HttpHost::start(&env, &["--http-socket", path.to_str().unwrap()]);
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let mut s = std::os::unix::net::UnixStream::connect(&path).unwrap();
    let body = json!({"model": "all-minilm", "prompt": "over a unix socket"}).to_string();
    let r = vembed_tests::http::exchange(&mut s, "POST", "/api/embeddings", &[], body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["embedding"].as_array().unwrap().len(), 384);
    drop(host);
    assert!(!path.exists(), "the socket file is removed when the host stops");
}

/// While HTTP is served the host does not idle out; without it, it does.
#[test]
fn a_host_serving_http_never_idles_out() {
    let env = Env::new();
    let host = HttpHost::start(&env, &["--idle-timeout-secs", "1"]);
    std::thread::sleep(Duration::from_secs(4));
    assert!(vembed_tests::pid_alive(host.pid()), "the HTTP host idled out");
    let status = vembed::Client::connect(&env.socket).unwrap().status().unwrap();
    assert_eq!(status.idle_timeout_secs, 0);
    drop(host);
    let env2 = Env::new();
    let mut plain = env2.start_host(&["--idle-timeout-secs", "1"]);
    assert!(vembed_tests::http::ready_line(&mut plain).starts_with("vembed-host ready"));
    assert!(
        vembed_tests::wait_pid_gone(plain.id(), Duration::from_secs(20))
            || plain.try_wait().unwrap().is_some()
    );
}

/// systemd socket activation: the host serves the listening socket it is
/// given as fd 3 (`LISTEN_FDS=1`, `LISTEN_PID` its own pid).
#[test]
fn a_socket_passed_by_systemd_is_served() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt as _;
    let env = Env::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let fd = listener.as_raw_fd();
    // `sh` sets LISTEN_PID to its own pid, which exec keeps for the host.
    let host_bin = vembed_tests::bin("vembed-host");
    let mut cmd = std::process::Command::new("sh");
    cmd.envs(env.vars())
        .env("VEMBED_UNIFIED_EMBEDDING_MODEL", vembed_tests::model_dir())
        .env("LISTEN_FDS", "1")
        .arg("-c")
        .arg(format!("LISTEN_PID=$$ exec {} --socket {}", host_bin.display(), env.socket.display()))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    // SAFETY: only async-signal-safe calls (dup2, fcntl) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::fcntl(3, libc::F_SETFD, 0);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let line = vembed_tests::http::ready_line(&mut child);
    assert!(line.starts_with("vembed-host ready"), "{line}");
    drop(listener);
    let r = post(addr, "/api/embed", &json!({"model": "all-minilm", "input": ["activated"]}));
    assert_eq!(r.status, 200, "{}", r.text());
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
}

/// A request of more inputs than one socket request may carry (2,048) is
/// queued as several jobs and answered together, in input order.
#[test]
fn a_request_over_the_socket_limit_is_split_and_answered_in_order() {
    let env = Env::new();
    let host = HttpHost::start(&env, &[]);
    let texts: Vec<String> = (0..5000).map(|i| format!("snippet number {i}")).collect();
    let r = post(host.addr, "/v1/embeddings", &json!({"model": "all-minilm", "input": texts}));
    assert_eq!(r.status, 200, "{}", r.text());
    let got = openai_rows(&r.json());
    assert_eq!(got.len(), 5000);
    let mut client = vembed::Client::connect(&env.socket).unwrap();
    for i in [0usize, 2047, 2048, 4095, 4096, 4999] {
        let want = client.embed(&[texts[i].as_str()]).unwrap();
        assert!(cosine(&got[i], &want[0]) >= 0.99999, "input {i} out of order or wrong");
    }
    assert!(cosine(&got[0], &got[1]) < 0.9999, "distinct inputs, distinct vectors");
}

/// A Hugging Face name of a model on disk that the host has not loaded is
/// loaded on first use (off the reactor), as over the socket; a path never is.
#[test]
fn a_hub_name_on_disk_is_loaded_on_first_use() {
    let env = Env::new();
    let snap = env.path("hf/models--acme--cls-mini/snapshots/0123abc");
    vembed_tests::link_model(
        &snap,
        Some(
            r#"{"word_embedding_dimension": 384, "pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false}"#,
        ),
    );
    let host = HttpHost::start(&env, &[]);
    let a = host.addr;
    let r = post(a, "/api/embed", &json!({"model": "acme/cls-mini", "input": [TEXTS[0]]}));
    assert_eq!(r.status, 200, "{}", r.text());
    let cls = rows(&r.json()["embeddings"]);
    let mean = rows(
        &post(a, "/api/embed", &json!({"model": "all-minilm", "input": [TEXTS[0]]})).json()["embeddings"],
    );
    assert!(cosine(&cls[0], &mean[0]) < 0.999, "CLS pooling gives another vector");
    let names: Vec<String> = get(a, "/v1/models").json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    let path = snap.display().to_string();
    assert_eq!(post(a, "/api/embed", &json!({"model": path, "input": "x"})).status, 404);
}

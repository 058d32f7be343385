//! Remote models: host B sends its forward passes to host A's HTTP
//! endpoints (a second real vembed host, in the OpenAI, Ollama and TEI
//! shapes) and keeps its own socket, queue, cache and index writer.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Child;
use std::time::Duration;

use vembed::{ErrorCode, ModelRef, Role};
use vembed_tests::http::{HttpHost, post, ready_line};
use vembed_tests::{Env, cosine, golden, model_dir, parse_embed_lines, wait_pid_gone};

use crate::index::{fixture, index_json, search_json, write};

/// A `[remote.NAME]` table pointing at host A.
fn table(name: &str, provider: &str, a: SocketAddr, extra: &str) -> String {
    let url = match provider {
        "openai" => format!("http://{a}/v1"),
        _ => format!("http://{a}"),
    };
    format!(
        "[remote.{name}]\nprovider = \"{provider}\"\nurl = \"{url}\"\nmodel = \"all-minilm\"\n{extra}\n"
    )
}

/// An environment for host B with `config` as its config file, and its
/// unified model (and so tools and code, unless `config` names others)
/// `unified`.
fn env_b(config: &str, unified: &str) -> Env {
    let mut env = Env::new();
    std::fs::write(env.path("config.toml"), config).unwrap();
    env.host_args = vec![
        "--unified-embedding-model".into(),
        unified.into(),
        "--idle-timeout-secs".into(),
        "120".into(),
    ];
    env
}

/// Host B, stopped (SIGTERM, then waited for) when dropped.
struct HostB(Child);

impl Drop for HostB {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.0.wait();
    }
}

/// Starts host B and waits until it is ready.
fn start(env: &Env) -> HostB {
    let mut child = env.start_host(&[]);
    let line = ready_line(&mut child);
    let b = HostB(child);
    assert!(line.starts_with("vembed-host ready"), "host B did not start: {line}");
    b
}

fn rows(e: &vembed::Embeddings) -> Vec<Vec<f32>> {
    e.rows().map(<[f32]>::to_vec).collect()
}

fn assert_close(a: &[Vec<f32>], b: &[Vec<f32>], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert_eq!(x.len(), y.len(), "{what}: row {i}");
        let c = cosine(x, y);
        assert!(c >= 0.99999, "{what}: row {i}: cosine {c}");
    }
}

fn host_log(env: &Env) -> String {
    std::fs::read_to_string(env.path("state/host.log")).unwrap_or_default()
}

/// The example tool set of a coding agent.
fn example_tools() -> vembed::tools::ToolSet {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/tools/coding-agent.json");
    vembed::tools::ToolSet::load(&path).unwrap()
}

/// The top hits of a search: path and score.
fn search(env: &Env, repo: &Path, dir: &Path, query: &str) -> Vec<(String, f64)> {
    search_json(env, repo, dir, query)
        .iter()
        .map(|h| (h["path"].as_str().unwrap().to_string(), h["score"].as_f64().unwrap()))
        .collect()
}

/// Texts, a 10,000-line `embed --jsonl`, tool selection and a code index
/// through B equal A's own, in each request shape; the identity is the
/// remote one, so A refuses B's index.
#[test]
fn a_remote_model_gives_the_upstreams_vectors_texts_jsonl_tools_and_index() {
    let env_a = Env::new();
    let host_a = HttpHost::start(&env_a, &[]);
    let a = host_a.addr;
    let tok = format!("tokenizer = {:?}", model_dir().display().to_string());
    let config = [
        table("via-openai", "openai", a, &tok),
        table("via-ollama", "ollama", a, ""),
        table("via-tei", "tei", a, "max_texts_per_call = 7\nconcurrency = 3"),
    ]
    .join("\n");
    let env = env_b(&config, "via-openai");
    let _b = start(&env);

    let mut client_a = vembed::Client::connect(&env_a.socket).unwrap();
    let mut client_b = vembed::Client::connect(&env.socket).unwrap();
    let info = &client_b.hello().models[0];
    assert_eq!((info.name.as_str(), info.dim, info.max_seq_length), ("via-openai", 384, 256));
    assert_ne!(info.identity, client_a.hello().models[0].identity, "a remote identity");
    assert!(info.path.starts_with("http://"), "{info:?}");

    // Single texts, in every shape, by role and by name.
    let items = golden();
    let texts: Vec<&str> = items.iter().map(|g| g.text.as_str()).collect();
    let direct = client_a.embed_with(&ModelRef::Role(Role::Unified), &texts).unwrap();
    for name in ["via-openai", "via-ollama", "via-tei"] {
        let e = client_b.embed_with(&ModelRef::Name(name.into()), &texts).unwrap();
        assert_close(&rows(&e), &rows(&direct), name);
        if name == "via-openai" {
            // Its local tokenizer counts what A's model reads.
            assert_eq!(e.tokens, direct.tokens);
        }
    }
    for text in &texts[..3] {
        let one = client_b.embed(&[text]).unwrap();
        assert_close(&one, &client_a.embed(&[text]).unwrap(), "alone");
    }
    // The cache answers a repeat without a call, with the same vector.
    let first = client_b.embed_cached(&ModelRef::Role(Role::Code), &texts[..4]).unwrap();
    let calls = client_b.upstreams().unwrap()[0].calls;
    let again = client_b.embed_cached(&ModelRef::Role(Role::Code), &texts[..4]).unwrap();
    assert_eq!(first.data, again.data);
    assert_eq!(client_b.upstreams().unwrap()[0].calls, calls, "cached: no call");

    // 10,000 lines through B's CLI equal A's.
    let lines: String = (0..10_000)
        .map(|i| format!("{}\n", serde_json::json!(format!("line {i}: {}", i * 7))))
        .collect();
    let out_b = env.vembed(&["embed", "--jsonl"], &lines);
    assert!(out_b.status.success(), "{}", String::from_utf8_lossy(&out_b.stderr));
    let out_a = env_a.vembed(&["embed", "--jsonl"], &lines);
    let (rb, ra) = (parse_embed_lines(&out_b.stdout), parse_embed_lines(&out_a.stdout));
    assert_eq!(rb.len(), 10_000);
    let unzip = |r: Vec<(Vec<f32>, u32)>| r.into_iter().map(|(v, _)| v).collect::<Vec<_>>();
    assert_close(&unzip(rb), &unzip(ra), "jsonl");

    // Tool selection through B picks what A picks, with A's scores.
    let set = example_tools();
    let queries = ["run pytest and tell me what fails", "spin up the postgres container"];
    let opts = vembed::tools::SelectOptions::default();
    let method = vembed::tools::Method::Hybrid;
    let sel_b = client_b.select_tools(&set, method, &queries, &opts).unwrap();
    let sel_a = client_a.select_tools(&set, method, &queries, &opts).unwrap();
    for (pb, pa) in sel_b.selections.iter().zip(&sel_a.selections) {
        let names =
            |p: &[vembed::tools::ToolPick]| p.iter().map(|t| t.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(pb), names(pa));
        for (x, y) in pb.iter().zip(pa) {
            assert!((x.score - y.score).abs() < 1e-4, "{x:?} vs {y:?}");
        }
    }

    // An index built through B equals A's: the same hits, the same scores.
    let repo = env.path("repo");
    fixture(&repo);
    let (dir_a, dir_b) = (env.path("index-a"), env.path("index-b"));
    for (e, dir) in [(&env_a, &dir_a), (&env, &dir_b)] {
        index_json(e, &repo, dir);
    }
    for q in [
        "derive a hash to store a user's secret login phrase",
        "retry with a growing delay",
        "sum the shopping cart",
    ] {
        let (hb, ha) = (search(&env, &repo, &dir_b, q), search(&env_a, &repo, &dir_a, q));
        assert_eq!(
            hb.iter().map(|h| &h.0).collect::<Vec<_>>(),
            ha.iter().map(|h| &h.0).collect::<Vec<_>>(),
            "{q}"
        );
        for (x, y) in hb.iter().zip(&ha) {
            assert!((x.1 - y.1).abs() < 1e-4, "{q}: {x:?} vs {y:?}");
        }
    }
    // Vectors of different models never mix: A refuses B's index.
    let out = env_a.vembed(
        &["search", "x", "--repo", repo.to_str().unwrap(), "--index-dir", dir_b.to_str().unwrap()],
        "",
    );
    assert!(!out.status.success(), "A searched an index built by a remote model");

    // Status: each remote model's URL, calls, errors and latency.
    let out = env.vembed(&["status"], "");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("remote model via-tei: tei http://{a}")), "{text}");
    assert!(
        text.contains(&format!(
            "model via-openai (dim 384, max_seq_length 256, remote http://{a}/v1)"
        )),
        "{text}"
    );
    let ups = client_b.upstreams().unwrap();
    assert_eq!(ups.len(), 3, "{ups:?}");
    for u in &ups {
        assert!(u.calls > 0 && u.errors == 0 && u.latency_p50_us > 0, "{u:?}");
        assert!(u.latency_p99_us >= u.latency_p50_us, "{u:?}");
    }
    let tei = ups.iter().find(|u| u.model == "via-tei").unwrap();
    // Its texts, and the one call at load that found its dimension.
    assert_eq!((tei.concurrency, tei.texts), (3, texts.len() as u64 + 1), "{tei:?}");
}

/// A remote model of 256 dimensions (A shortens its vectors, as OpenAI's
/// `dimensions` asks) through B's socket, cache, index, tool selection,
/// CLI and HTTP endpoints.
#[test]
fn a_remote_model_of_256_dimensions_works_end_to_end() {
    let env_a = Env::new();
    let host_a = HttpHost::start(&env_a, &[]);
    let a = host_a.addr;
    let tok = format!("tokenizer = {:?}\ndimensions = 256", model_dir().display().to_string());
    let env = env_b(&table("short", "openai", a, &tok), "short");
    let b = HttpHost::start(&env, &[]);
    let mut client = vembed::Client::connect(&env.socket).unwrap();
    assert_eq!(client.hello().models[0].dim, 256);

    let texts = ["find the email validator", "def parse(x): return int(x)"];
    let e = client.embed_with(&ModelRef::Role(Role::Unified), &texts).unwrap();
    assert_eq!((e.dim, e.data.len()), (256, 512));
    let want = post(
        a,
        "/v1/embeddings",
        &serde_json::json!({"model": "all-minilm", "input": texts, "dimensions": 256}),
    );
    let want = vembed_tests::http::openai_rows(&want.json());
    assert_close(&rows(&e), &want, "256 via socket");
    let cached = client.embed_cached(&ModelRef::Role(Role::Tools), &texts).unwrap();
    let again = client.embed_cached(&ModelRef::Role(Role::Tools), &texts).unwrap();
    assert_eq!((cached.dim, &cached.data), (256, &again.data));

    // B's own HTTP endpoints, every shape.
    let v = post(b.addr, "/v1/embeddings", &serde_json::json!({"model": "short", "input": texts}))
        .json();
    assert_close(&vembed_tests::http::openai_rows(&v), &want, "B openai");
    let v =
        post(b.addr, "/api/embed", &serde_json::json!({"model": "short", "input": texts})).json();
    assert_close(&vembed_tests::http::rows(&v["embeddings"]), &want, "B ollama");
    let v = post(b.addr, "/embed", &serde_json::json!({"inputs": texts})).json();
    assert_close(&vembed_tests::http::rows(&v), &want, "B tei");

    // The CLI, tool selection and a code index of 256-float vectors.
    let out = env.vembed(&["embed", "--jsonl"], "\"hello\"\n");
    assert_eq!(parse_embed_lines(&out.stdout)[0].0.len(), 256);
    let set = example_tools();
    let sel = client
        .select_tools(
            &set,
            vembed::tools::Method::Hybrid,
            &["run pytest and tell me what fails"],
            &Default::default(),
        )
        .unwrap();
    assert_eq!(sel.selections[0][0].name, "run_tests", "{sel:?}");
    let repo = env.path("repo");
    fixture(&repo);
    index_json(&env, &repo, &env.path("index"));
    let hits = search(
        &env,
        &repo,
        &env.path("index"),
        "derive a hash to store a user's secret login phrase",
    );
    assert_eq!(hits[0].0, "auth/passwords.py", "{hits:?}");
}

/// A killed mid-index: B's job fails with `Upstream` errors (fast: refused
/// connections are retried twice, then reported), B stays up and its local
/// model serves; with A back on its port, `vembed index` completes what
/// was not committed.
#[test]
fn a_dead_upstream_fails_fast_and_indexing_resumes_once_it_is_back() {
    let env_a = Env::new();
    let host_a = HttpHost::start(&env_a, &[]);
    let a = host_a.addr;
    let config = format!(
        "codebase_embedding_model = \"far\"\n\n{}",
        table(
            "far",
            "tei",
            a,
            "dimensions = 384\nmax_input_tokens = 64\nmax_texts_per_call = 16\nconcurrency = 2"
        )
    );
    let env = env_b(&config, model_dir().to_str().unwrap());
    let _b = start(&env);
    let repo = env.path("repo");
    let dir = env.path("index");
    for i in 0..200 {
        let body: String = (0..6)
            .map(|j| format!("def handler_{i}_{j}(request):\n    \"\"\"Handle request kind {j} of module {i}.\"\"\"\n    return respond(request, {j})\n\n\n"))
            .collect();
        write(&repo, &format!("pkg{}/module_{i}.py", i % 10), &body);
    }
    let mut client = vembed::Client::connect(&env.socket).unwrap();
    let req = vembed::IndexRequest {
        repo: repo.display().to_string(),
        index_dir: Some(dir.display().to_string()),
        rebuild: false,
    };
    let pid_a = host_a.pid();
    let mut host_a = Some(host_a);
    let result = client.index(req, |p| {
        if p.chunks_added > 0 {
            drop(host_a.take());
        }
    });
    assert!(wait_pid_gone(pid_a, Duration::from_secs(10)));
    match result {
        Err(vembed::Error::Host { code: ErrorCode::Upstream, message }) => {
            assert!(message.contains(&format!("http://{a}/embed")), "{message}");
        }
        other => panic!("expected an Upstream error, got {other:?}"),
    }
    // B is up: its local model serves, and a call to the dead service is
    // the same typed error.
    client.ping().unwrap();
    let local = client.embed_with(&ModelRef::Role(Role::Tools), &["still here"]).unwrap();
    assert_eq!(local.dim, 384);
    match client.embed_with(&ModelRef::Role(Role::Code), &["fn f() {}"]) {
        Err(vembed::Error::Host { code: ErrorCode::Upstream, message }) => {
            assert!(message.contains("upstream unreachable"), "{message}");
        }
        other => panic!("expected an Upstream error, got {other:?}"),
    }
    let ups = client.upstreams().unwrap();
    assert!(ups[0].errors >= 2 && ups[0].retries >= 2, "{ups:?}");
    assert!(ups[0].last_error.as_deref().is_some_and(|e| e.contains("unreachable")), "{ups:?}");

    let committed = vembed::search::Searcher::open_dir(&dir).unwrap().stats().unwrap().files;
    assert!(committed > 0 && committed < 200, "{committed} files committed");
    let _a = HttpHost::start_on(&env_a, a, &[]);
    let s = index_json(&env, &repo, &dir);
    assert_eq!(s["unchanged"].as_u64().unwrap(), committed, "{s}");
    assert_eq!(s["indexed"].as_u64().unwrap(), 200 - committed, "{s}");
    let searcher = vembed::search::Searcher::open_dir(&dir).unwrap();
    assert_eq!(searcher.stats().unwrap().files, 200);
    assert_eq!(search(&env, &repo, &dir, "handle request kind 2 of module 150").len(), 3);
}

/// A slow service holds up only its own model: while a call to it waits,
/// B's local model answers other clients; a call over its timeout fails
/// as `Upstream` without a retry.
#[test]
fn a_slow_upstream_does_not_delay_the_local_model() {
    let mut env_a = Env::new();
    env_a.vars.push(("VEMBED_TEST_FAULT".into(), "delay".into()));
    let host_a = HttpHost::start(&env_a, &[]);
    let a = host_a.addr;
    let config = format!(
        "codebase_embedding_model = \"slow\"\n\n{}\n{}",
        table("slow", "ollama", a, "dimensions = 384"),
        table("impatient", "ollama", a, "dimensions = 384\ntimeout_ms = 1000\nretries = 3"),
    );
    let env = env_b(&config, model_dir().to_str().unwrap());
    let _b = start(&env);
    let socket = env.socket.clone();
    let slow = std::thread::spawn(move || {
        let mut c = vembed::Client::connect(&socket).unwrap();
        c.embed_with(&ModelRef::Role(Role::Code), &["vembed test fault marker"])
    });
    let mut client = vembed::Client::connect(&env.socket).unwrap();
    // Wait until the slow call is out.
    while client.upstreams().unwrap().iter().all(|u| u.in_flight == 0) {
        assert!(!slow.is_finished(), "the slow call ended before it was seen in flight");
        std::thread::sleep(Duration::from_millis(5));
    }
    for i in 0..20 {
        let e = client.embed_with(&ModelRef::Role(Role::Tools), &[&format!("query {i}")]).unwrap();
        assert_eq!(e.dim, 384);
    }
    assert!(!slow.is_finished(), "20 local queries waited for the slow service");
    assert_eq!(slow.join().unwrap().unwrap().dim, 384);

    match client.embed_with(&ModelRef::Name("impatient".into()), &["vembed test fault marker"]) {
        Err(vembed::Error::Host { code: ErrorCode::Upstream, message }) => {
            assert!(message.to_lowercase().contains("timed out"), "{message}");
        }
        other => panic!("expected an Upstream timeout, got {other:?}"),
    }
    let ups = client.upstreams().unwrap();
    let impatient = ups.iter().find(|u| u.model == "impatient").unwrap();
    assert_eq!(
        (impatient.errors, impatient.retries),
        (1, 0),
        "a timeout is not retried: {impatient:?}"
    );
}

/// The API key goes to the service and nowhere else: a right key works; a
/// missing or wrong one is a clear `Upstream` 401 error; the key shows in
/// no error, status or log.
#[test]
fn api_keys_are_sent_and_never_shown() {
    use std::os::unix::fs::PermissionsExt;
    let env_a = Env::new();
    let key = "sk-vembed-test-3f9a1c77d2";
    let token = env_a.path("token");
    std::fs::write(&token, format!("{key}\n")).unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let host_a = HttpHost::start(&env_a, &["--http-token-file", token.to_str().unwrap()]);
    let a = host_a.addr;

    let wrong = "sk-wrong-key-000111222";
    let config = [
        table("keyed", "openai", a, "api_key_env = \"VEMBED_TEST_REMOTE_KEY\"\ndimensions = 384"),
        table("wrong", "openai", a, "api_key_env = \"VEMBED_TEST_WRONG_KEY\"\ndimensions = 384"),
        table("keyless", "openai", a, "dimensions = 384"),
    ]
    .join("\n");
    let mut env = env_b(&config, "keyed");
    env.vars.push(("VEMBED_TEST_REMOTE_KEY".into(), key.into()));
    env.vars.push(("VEMBED_TEST_WRONG_KEY".into(), wrong.into()));
    let _b = start(&env);
    let mut client = vembed::Client::connect(&env.socket).unwrap();
    let ok = client.embed(&["a keyed call"]).unwrap();
    assert_eq!(ok[0].len(), 384);

    let mut messages = Vec::new();
    for name in ["wrong", "keyless"] {
        match client.embed_with(&ModelRef::Name(name.into()), &["x"]) {
            Err(vembed::Error::Host { code: ErrorCode::Upstream, message }) => {
                assert!(message.contains("HTTP 401") && message.contains("API key"), "{message}");
                messages.push(message);
            }
            other => panic!("{name}: expected an Upstream 401, got {other:?}"),
        }
    }
    // A key file that others can read is refused, by name, without its content.
    let loose = env.path("loose.key");
    std::fs::write(&loose, key).unwrap();
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    let bad = env_b(
        &table(
            "loose",
            "openai",
            a,
            &format!("api_key_file = {:?}\ndimensions = 384", loose.display().to_string()),
        ),
        "loose",
    );
    let out = bad
        .command("vembed-host")
        .args(&bad.host_args)
        .arg("--socket")
        .arg(&bad.socket)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("chmod 600"), "{err}");
    messages.push(err.to_string());

    let status = String::from_utf8_lossy(&env.vembed(&["status", "--json"], "").stdout).to_string();
    assert!(status.contains("\"upstreams\""), "{status}");
    messages.push(status);
    // The log is written off-thread: wait for the failures to reach it.
    vembed_tests::wait_until(Duration::from_secs(30), "HTTP 401 in the host's log", || {
        host_log(&env).contains("HTTP 401")
    });
    messages.push(host_log(&env));
    for m in &messages {
        assert!(!m.contains(key) && !m.contains(wrong), "a key leaked: {m}");
    }
    assert!(host_log(&env).contains("HTTP 401"), "the log records the failures");
}

/// `vembed-lab bench --via-remote 1,2` measures a private host A directly and
/// through a private host B per concurrency, on the same texts, with ratios.
#[test]
fn bench_measures_the_cost_of_going_through_a_remote_model() {
    let env = Env::new();
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates");
    let args = [
        "bench",
        "--json",
        "--bulk-texts",
        "8",
        "--requests",
        "5",
        "--corpus",
        corpus.to_str().unwrap(),
        "--via-remote",
        "1,2",
    ];
    let out = env.run("vembed-lab", &args, "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let hosts = &v["hosts"];
    let direct = &hosts["direct"];
    for name in ["direct", "remote-c1", "remote-c2"] {
        let h = &hosts[name];
        for key in ["single_query_p50_ms", "bulk_tokens_per_s", "host_pss_idle_bytes"] {
            assert!(h[key].as_f64().is_some_and(|x| x > 0.0), "{name} {key} in {v}");
        }
        // B counts tokens with A's tokenizer: the same texts, the same tokens.
        assert_eq!(h["bulk_mean_tokens"], direct["bulk_mean_tokens"], "{name}");
        assert_eq!(
            h["model"],
            if name == "direct" { direct["model"].clone() } else { "upstream".into() }
        );
    }
    assert_ne!(hosts["remote-c1"]["host_pid"], hosts["remote-c2"]["host_pid"]);
    let r = v["ratios"]["remote-c2/direct"]["bulk_tokens_per_s"].as_f64().unwrap();
    let want = hosts["remote-c2"]["bulk_tokens_per_s"].as_f64().unwrap()
        / direct["bulk_tokens_per_s"].as_f64().unwrap();
    assert!((r - want).abs() < 1e-9, "{r} vs {want}");
}

//! all-mpnet-base-v2 (MPNet: relative position bias, positions from the
//! padding index, no token types, 768 dimensions) on the real host with its
//! real weights: sentence-transformers' token ids and vectors (the golden
//! file `scripts/make-golden` wrote), alone and batched, through the socket,
//! HTTP, tool selection, the code index and the embedding cache; candle's
//! refusal, and the architecture table's.

use std::path::{Path, PathBuf};

use serde_json::json;
use vembed::tools::{Method, SelectOptions, Selector, ToolSet};
use vembed::{ModelRef, Role};
use vembed_host::{Embedder, Engine};
use vembed_tests::http::{HttpHost, openai_rows, post, request, rows};
use vembed_tests::{Env, assert_golden_through, cosine, golden_mpnet, link_model, mpnet_dir};

const NAME: &str = "sentence-transformers/all-mpnet-base-v2";

/// An environment whose host serves all-mpnet-base-v2 for every role.
fn mpnet_env() -> Env {
    let mut env = Env::new();
    env.host_args.extend(["--unified-embedding-model".into(), mpnet_dir().display().to_string()]);
    env
}

#[test]
fn token_ids_are_sentence_transformers() {
    let e = Embedder::load_named(mpnet_dir().to_str().unwrap(), Engine::Native).unwrap();
    assert_eq!(e.max_seq_length(), 384, "sentence_bert_config.json's max_seq_length");
    assert_eq!(e.dim(), 768);
    let items = golden_mpnet();
    assert!(items.iter().filter(|i| i.n_tokens == 384).count() >= 3, "texts cut at 384 tokens");
    assert!(items.iter().any(|i| i.input_ids.contains(&1)), "a literal <pad> in a text");
    for item in &items {
        let ids = e.tokenize(&item.text).unwrap();
        assert_eq!(ids, item.input_ids, "input_ids of {:?}", item.text);
        assert_eq!((ids[0], *ids.last().unwrap()), (0, 2), "<s> … </s>");
    }
}

#[test]
fn golden_vectors_alone_and_batched_through_the_socket() {
    let env = mpnet_env();
    let mut client = env.client();
    let m = &client.hello().models[0];
    assert_eq!((m.name.as_str(), m.dim, m.max_seq_length), (NAME, 768, 384));
    let items = golden_mpnet();
    let texts: Vec<&str> = items.iter().map(|i| i.text.as_str()).collect();
    let (batch, alone) = assert_golden_through(&mut client, &items);
    assert_eq!(batch.dim, 768);
    for ((item, a), b) in items.iter().zip(&alone).zip(batch.rows()) {
        assert!(cosine(a, b) >= 0.99999, "alone vs batched for {:?}", item.text);
    }
    // The cache keeps 768 floats per text, and answers them again.
    let first = client.embed_cached(&ModelRef::Role(Role::Code), &texts[..4]).unwrap();
    let again = client.embed_cached(&ModelRef::Role(Role::Code), &texts[..4]).unwrap();
    assert_eq!(first.data, again.data);
    assert_eq!(again.dim, 768);
    let status = client.status().unwrap();
    assert!(status.cache.hits >= 4, "{:?}", status.cache);
    assert_eq!(status.models[0].info.dim, 768);
}

#[test]
fn candle_refuses_mpnet_and_says_why() {
    let err = match Embedder::load_named(mpnet_dir().to_str().unwrap(), Engine::Candle) {
        Ok(_) => panic!("candle has no MPNet, yet it loaded"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("candle-transformers has no encoder for model_type \"mpnet\""), "{err}");
    assert!(err.contains("engine = \"native\""), "says what to do: {err}");
    let env = mpnet_env();
    let out = env.command("vembed-host").args(&env.host_args).args(["--engine", "candle"]).output();
    let said = said_by(&out.unwrap());
    assert!(said.contains("has no encoder for model_type \"mpnet\""), "{said}");
}

/// What a host that must not start said (its ready line is on stdout, so
/// its refusal is too), after checking it did not start.
fn said_by(out: &std::process::Output) -> String {
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "the host started: {text}");
    text
}

/// A copy of the real MiniLM folder whose config.json says `model_type`.
fn folder_of_type(dst: &Path, model_type: &str) -> PathBuf {
    link_model(dst, None);
    let config = dst.join("config.json");
    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    value["model_type"] = json!(model_type);
    std::fs::write(&config, serde_json::to_vec(&value).unwrap()).unwrap();
    dst.to_path_buf()
}

#[test]
fn an_architecture_the_host_does_not_run_is_refused_by_name() {
    let env = Env::new();
    let said = |text: &str| {
        text.contains("model_type \"distilbert\" is not an architecture vembed runs")
            && text.contains("it runs bert, mpnet")
    };
    // At start.
    let dir = folder_of_type(&env.path("distil"), "distilbert");
    let out = env
        .command("vembed-host")
        .args(["--socket", env.path("run/other.sock").to_str().unwrap()])
        .args(["--unified-embedding-model", dir.to_str().unwrap()])
        .output()
        .unwrap();
    let text = said_by(&out);
    assert!(said(&text), "{text}");
    // On request over the socket: UnknownModel, with the reason.
    let mut client = env.client();
    let err = client.embed_with(&ModelRef::Name(dir.display().to_string()), &["x"]).unwrap_err();
    assert_eq!(err.code(), Some(vembed::ErrorCode::UnknownModel), "{err}");
    assert!(said(&err.to_string()), "{err}");
    drop(client);
    // Over HTTP, a hub name on disk: 404 in each API's shape, with the
    // reason for the owner (the token; any other local user is told no more
    // than "not on this host's disk, or it failed to load").
    folder_of_type(&env.path("hf/models--acme--distil/snapshots/0123abc"), "distilbert");
    let token = env.path("token");
    std::fs::write(&token, "mpnet-test-token\n").unwrap();
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let host = HttpHost::start(
        &env,
        &[
            "--socket",
            env.path("run/http.sock").to_str().unwrap(),
            "--http-token-file",
            token.to_str().unwrap(),
        ],
    );
    let owner = |path: &str, body: serde_json::Value| {
        let body = serde_json::to_vec(&body).unwrap();
        let headers =
            [("content-type", "application/json"), ("authorization", "Bearer mpnet-test-token")];
        request(host.addr, "POST", path, &headers, &body)
    };
    let r = owner("/v1/embeddings", json!({"model": "acme/distil", "input": "a"}));
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "model_not_found");
    assert!(said(r.json()["error"]["message"].as_str().unwrap()), "{}", r.text());
    let r = owner("/api/embed", json!({"model": "acme/distil", "input": "a"}));
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(said(r.json()["error"].as_str().unwrap()), "{}", r.text());
    let r = post(host.addr, "/v1/embeddings", &json!({"model": "acme/distil", "input": "a"}));
    assert_eq!(r.status, 401, "without the token, nothing: {}", r.text());
}

#[test]
fn every_http_shape_serves_768_dimensions() {
    let env = mpnet_env();
    let host = HttpHost::start(&env, &[]);
    let texts = ["find the email validator", "", "def parse(x):\n    return int(x)"];
    let mut client = vembed::Client::connect(&env.socket).unwrap();
    let direct = client.embed(&texts).unwrap();
    let same = |got: &[Vec<f32>]| {
        assert_eq!(got.len(), direct.len());
        for (g, d) in got.iter().zip(&direct) {
            assert_eq!(g.len(), 768);
            assert!(cosine(g, d) >= 0.99999);
        }
    };
    let a = host.addr;
    let r = post(a, "/v1/embeddings", &json!({"model": NAME, "input": texts}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["model"], NAME);
    same(&openai_rows(&r.json()));
    // dimensions: the first d floats, renormalized; more than 768 is refused.
    let r =
        post(a, "/v1/embeddings", &json!({"model": "unified", "input": texts, "dimensions": 256}));
    let short = openai_rows(&r.json());
    for (s, d) in short.iter().zip(&direct) {
        assert_eq!(s.len(), 256);
        assert!(cosine(s, &d[..256]) >= 0.99999);
    }
    let r =
        post(a, "/v1/embeddings", &json!({"model": "unified", "input": "a", "dimensions": 769}));
    assert_eq!(r.status, 400, "{}", r.text());
    let r = post(a, "/api/embed", &json!({"model": NAME, "input": texts}));
    assert_eq!(r.status, 200, "{}", r.text());
    same(&rows(&r.json()["embeddings"]));
    let r = post(a, "/embed", &json!({"inputs": texts}));
    assert_eq!(r.status, 200, "{}", r.text());
    same(&rows(&r.json()));
}

#[test]
fn tool_selection_and_the_code_index_run_on_768_dimensions() {
    let env = mpnet_env();
    let mut client = env.client();
    let tools =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/tools/coding-agent.json");
    let set = ToolSet::load(&tools).unwrap();
    let selector = Selector::new(&mut client, &set, Method::Hybrid).unwrap();
    for (request, want) in [
        ("run pytest and tell me what fails", "run_tests"),
        ("how many rows are in the orders table", "database_query"),
        ("spin up the postgres container", "docker_control"),
    ] {
        let picks = selector.select(&mut client, request, &SelectOptions::default()).unwrap();
        assert_eq!(picks[0].name, want, "{request:?}: {picks:?}");
    }
    drop(client);

    let repo = env.path("repo");
    let dir = env.path("index");
    crate::index::fixture(&repo);
    let built = crate::index::index_json(&env, &repo, &dir);
    assert_eq!(built["indexed"], 5, "{built}");
    for (query, want) in [
        ("derive a hash to store a user's secret login phrase", "auth/passwords.py"),
        ("try an operation again with exponential waiting between attempts", "net/retry.rs"),
    ] {
        let hits = crate::index::search_json(&env, &repo, &dir, query);
        assert_eq!(hits[0]["path"], want, "{query:?}: {hits:?}");
    }
    // A host of all-MiniLM-L6-v2 (384 dimensions) is refused on this index.
    let other = Env::new();
    let out = other.vembed(
        &[
            "search",
            "backoff",
            "--repo",
            repo.to_str().unwrap(),
            "--index-dir",
            dir.to_str().unwrap(),
        ],
        "",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("was built with"), "{err}");
}

/// A remote model whose service is a host of all-mpnet-base-v2: host B
/// learns its 768 dimensions by asking (none declared), counts tokens with
/// the local tokenizer, and serves A's vectors through its own socket.
#[test]
fn a_remote_model_of_mpnet_serves_768_dimensions() {
    let env_a = mpnet_env();
    let host_a = HttpHost::start(&env_a, &[]);
    let mut b = Env::new();
    let table = format!(
        "[remote.quality]\nprovider = \"openai\"\nurl = \"http://{}/v1\"\nmodel = \"{NAME}\"\n\
         tokenizer = {:?}\n",
        host_a.addr,
        mpnet_dir().display().to_string()
    );
    std::fs::write(b.path("config.toml"), table).unwrap();
    b.host_args = vec!["--unified-embedding-model".into(), "quality".into()];
    let mut client = b.client();
    let m = &client.hello().models[0];
    assert_eq!((m.dim, m.max_seq_length), (768, 384), "{m:?}");
    let texts = ["find the email validator", "def parse(x):\n    return int(x)"];
    let via_b = client.embed(&texts).unwrap();
    let direct = vembed::Client::connect(&env_a.socket).unwrap().embed(&texts).unwrap();
    for (x, y) in via_b.iter().zip(&direct) {
        assert_eq!(x.len(), 768);
        assert!(cosine(x, y) >= 0.99999);
    }
}

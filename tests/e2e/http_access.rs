//! Issue 31: who may reach what over HTTP. The host runs as root (CI's
//! user); another local user is played by `vembed-test-peer http` running
//! as uid 65534 against the host's loopback port. It may embed, tokenize
//! and read public model information; it may not search code or learn a
//! path of the host's user. The host's user, over the Unix-socket HTTP
//! listener or with the token, searches as the socket does, but only
//! repositories this host indexed at their default place.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use vembed_tests::http::{HttpHost, exchange};
use vembed_tests::{Env, bin, model_dir};

use crate::index::fixture;

const NOBODY: u32 = 65534;
const TOKEN: &str = "t0ken-of-the-host-user";

/// One request as the peer takes it.
fn req(method: &str, path: &str, body: Value) -> Value {
    let body = if body.is_null() { String::new() } else { body.to_string() };
    json!({"method": method, "path": path, "body": body})
}

fn with_token(mut r: Value) -> Value {
    r["headers"] = json!([["authorization", format!("Bearer {TOKEN}")]]);
    r
}

/// Sends `requests` to `addr` as uid 65534; returns (status, body) of each.
fn as_nobody(addr: std::net::SocketAddr, requests: &[Value]) -> Vec<(u16, String)> {
    // The test binaries may live where uid 65534 cannot reach: copy the peer.
    let dir = tempfile::Builder::new().prefix("vembed-peer-").tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let peer = dir.path().join("vembed-test-peer");
    std::fs::copy(bin("vembed-test-peer"), &peer).unwrap();
    std::fs::set_permissions(&peer, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut child = Command::new(&peer)
        .arg("http")
        .arg(addr.to_string())
        .current_dir(dir.path())
        .env_clear()
        .uid(NOBODY)
        .gid(NOBODY)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = String::new();
    for r in requests {
        input.push_str(&r.to_string());
        input.push('\n');
    }
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the peer failed: {}", String::from_utf8_lossy(&out.stderr));
    let replies: Vec<(u16, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["status"].as_u64().unwrap() as u16, v["body"].as_str().unwrap().to_string())
        })
        .collect();
    assert_eq!(replies.len(), requests.len());
    replies
}

/// The host user's places that no answer to uid 65534 may name.
fn private_places(env: &Env) -> Vec<String> {
    let mut places = vec![
        std::env::var("HOME").expect("HOME is set"),
        env.path("").display().to_string(),
        env.path("cache").display().to_string(),
        model_dir().display().to_string(),
    ];
    places.retain(|p| p.len() > 1);
    for p in places.clone() {
        if let Ok(c) = Path::new(&p).canonicalize() {
            places.push(c.display().to_string());
        }
    }
    places
}

fn assert_no_place(body: &str, places: &[String], what: &str) {
    for p in places {
        assert!(!body.contains(p.as_str()), "{what}: the answer names {p}: {body}");
    }
}

/// A repository indexed at its default place by the host's user.
fn indexed_repo(env: &Env) -> PathBuf {
    let repo = env.path("repo");
    fixture(&repo);
    let o = env.vembed(&["index", repo.to_str().unwrap()], "");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    repo
}

#[test]
fn another_user_on_loopback_embeds_but_never_searches_or_sees_a_path() {
    vembed_tests::require_root("plays another local user (uid 65534)");
    let env = Env::new().with_private_cache();
    let http_sock = env.path("run/http.sock");
    let host = HttpHost::start(&env, &["--http-socket", http_sock.to_str().unwrap()]);
    let repo = indexed_repo(&env);
    let r = repo.to_str().unwrap();
    let places = private_places(&env);
    let search = json!({"repo": r, "query": "password hash", "k": 2, "mode": "lexical"});
    let with_dir = json!({"repo": r, "index_dir": env.path("ix"), "query": "password"});
    let requests = [
        req("POST", "/vembed/v1/search", search.clone()),
        req("POST", "/vembed/v1/search", with_dir),
        req("GET", "/vembed/v1/search", Value::Null),
        req("POST", "/v1/embeddings", json!({"model": "all-minilm", "input": ["hello"]})),
        req("POST", "/v1/embeddings", json!({"model": "nobody/nothing", "input": "x"})),
        req("POST", "/v1/embeddings", json!({"model": "/etc/passwd", "input": "x"})),
        req("POST", "/v1/embeddings", json!({"input": 5})),
        req("GET", "/v1/models", Value::Null),
        req("GET", "/v1/models/all-minilm", Value::Null),
        req("GET", "/v1/models/nobody%2Fnothing", Value::Null),
        req("POST", "/api/embed", json!({"model": "all-minilm", "input": "hi"})),
        req("POST", "/api/embeddings", json!({"model": "unified", "prompt": "hi"})),
        req("POST", "/api/embeddings", json!({"model": "nobody/nothing", "prompt": "hi"})),
        req("GET", "/api/tags", Value::Null),
        req("GET", "/api/ps", Value::Null),
        req("POST", "/api/show", json!({"model": "all-minilm"})),
        req("POST", "/api/show", json!({"model": "nobody/nothing"})),
        req("GET", "/api/version", Value::Null),
        req("GET", "/", Value::Null),
        req("POST", "/embed", json!({"inputs": "hi"})),
        req("POST", "/embed", json!({"inputs": "hi", "normalize": false})),
        req("POST", "/tokenize", json!({"inputs": "hi"})),
        req("GET", "/info", Value::Null),
        req("GET", "/health", Value::Null),
        req("GET", "/metrics", Value::Null),
        req("GET", "/nowhere", Value::Null),
        req("DELETE", "/v1/embeddings", Value::Null),
    ];
    let replies = as_nobody(host.addr, &requests);
    for (r, (status, body)) in requests.iter().zip(&replies) {
        let what = format!("{} {} -> {status}", r["method"], r["path"]);
        assert_no_place(body, &places, &what);
        assert!(!body.contains("PBKDF2") && !body.contains("hash_password"), "{what}: {body}");
    }
    // Search is refused with a 403 that says how to enable it.
    for (status, body) in &replies[..3] {
        assert_eq!(*status, 403, "{body}");
        assert!(body.contains("http_token_file") && body.contains("http_socket"), "{body}");
    }
    // What an anonymous caller may do, it can.
    let ok: Vec<u16> = [3, 7, 8, 10, 11, 13, 14, 15, 17, 18, 19, 21, 22, 23, 24]
        .iter()
        .map(|&i| replies[i].0)
        .collect();
    assert!(ok.iter().all(|&s| s == 200), "{ok:?}: {replies:?}");
    assert_eq!(replies[4].0, 404, "{}", replies[4].1);
    assert!(replies[4].1.contains("nobody/nothing"), "{}", replies[4].1);
    assert_eq!(replies[5].0, 404, "no path is taken as a model name: {}", replies[5].1);

    // The owner, over the Unix-socket listener, is told where the host
    // looked: so the checks above would have caught a leak.
    let mut s = std::os::unix::net::UnixStream::connect(&http_sock).unwrap();
    let body = json!({"model": "nobody/nothing", "input": "x"}).to_string();
    let own = exchange(&mut s, "POST", "/v1/embeddings", &[], body.as_bytes());
    assert_eq!(own.status, 404);
    assert!(places.iter().any(|p| own.text().contains(p.as_str())), "{}", own.text());
    // And searches.
    let mut s = std::os::unix::net::UnixStream::connect(&http_sock).unwrap();
    let own = exchange(&mut s, "POST", "/vembed/v1/search", &[], search.to_string().as_bytes());
    assert_eq!(own.status, 200, "{}", own.text());
    assert!(own.text().contains("hash_password"), "{}", own.text());
}

#[test]
fn with_the_token_search_serves_only_repositories_the_host_indexed() {
    vembed_tests::require_root("plays another local user (uid 65534)");
    let env = Env::new().with_private_cache();
    let token_file = env.path("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let host = HttpHost::start(&env, &["--http-token-file", token_file.to_str().unwrap()]);
    let repo = indexed_repo(&env);
    let r = repo.to_str().unwrap();
    // Indexed only elsewhere, and never indexed at all.
    let elsewhere = env.path("elsewhere");
    fixture(&elsewhere);
    let ix = env.path("elsewhere-ix");
    let o = env
        .vembed(&["index", elsewhere.to_str().unwrap(), "--index-dir", ix.to_str().unwrap()], "");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let never = env.path("never");
    fixture(&never);
    // The answers name the repositories asked about (in the test's temp
    // dir), but never the user's home, the index cache or the model.
    let places: Vec<String> = private_places(&env)
        .into_iter()
        .filter(|p| !repo.starts_with(p) && !Path::new("/no/such/dir").starts_with(p))
        .collect();
    assert!(places.len() >= 3, "{places:?}");
    let q = |repo: &Path| json!({"repo": repo, "query": "hash a password", "k": 3});
    let requests = [
        with_token(req("POST", "/vembed/v1/search", q(&repo))),
        with_token(req(
            "POST",
            "/vembed/v1/search",
            json!({"repo": r, "index_dir": ix, "query": "hash a password"}),
        )),
        with_token(req("POST", "/vembed/v1/search", q(&elsewhere))),
        with_token(req("POST", "/vembed/v1/search", q(&never))),
        with_token(req("POST", "/vembed/v1/search", q(Path::new("/no/such/dir")))),
        req("POST", "/vembed/v1/search", q(&repo)),
    ];
    let replies = as_nobody(host.addr, &requests);
    let (status, body) = &replies[0];
    assert_eq!(*status, 200, "{body}");
    let hits: Value = serde_json::from_str(body).unwrap();
    assert_eq!(hits["hits"][0]["path"], "auth/passwords.py", "{hits}");
    // The same ranking as `vembed search` of the same index.
    let o = env.vembed(&["search", "hash a password", "--repo", r, "-k", "3", "--json"], "");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cli: Value = serde_json::from_slice(&o.stdout).unwrap();
    let paths = |v: &Value| -> Vec<(String, u64)> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|h| (h["path"].as_str().unwrap().into(), h["start_line"].as_u64().unwrap()))
            .collect()
    };
    assert_eq!(paths(&hits["hits"]), paths(&cli));

    let (status, body) = &replies[1];
    assert_eq!(*status, 400, "index_dir is refused even with the token: {body}");
    assert!(body.contains("index_dir"), "{body}");
    for (i, (status, body)) in replies.iter().enumerate().skip(2).take(3) {
        assert_eq!(*status, 404, "{i}: {body}");
        assert!(body.contains("vembed index"), "{i}: {body}");
        assert_no_place(body, &places, &format!("request {i}"));
        assert!(!body.contains("PBKDF2"), "{i}: {body}");
    }
    // An unindexed directory and a missing one get the same answer.
    let shape = |b: &str| b.replace(never.to_str().unwrap(), "R").replace("/no/such/dir", "R");
    assert_eq!(shape(&replies[3].1), shape(&replies[4].1));
    assert_eq!(replies[5].0, 401, "without the token nothing is served");
}

#[test]
fn callers_without_the_token_get_at_most_half_the_queue() {
    let env = Env::new();
    let http_sock = env.path("run/http.sock");
    let host = HttpHost::start(
        &env,
        &["--http-socket", http_sock.to_str().unwrap(), "--max-queue-texts", "64"],
    );
    let texts = |n: usize| json!({"model": "all-minilm", "input": vec!["some text"; n]});
    // Over loopback TCP without a token this test is any local user.
    let r = vembed_tests::http::post(host.addr, "/v1/embeddings", &texts(33));
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(r.text().contains("at most 32 texts"), "{}", r.text());
    let r = vembed_tests::http::post(host.addr, "/v1/embeddings", &texts(32));
    assert_eq!(r.status, 200, "{}", r.text());
    // The share is given back: the next request fits again.
    let r = vembed_tests::http::post(host.addr, "/api/embed", &texts(32));
    assert_eq!(r.status, 200, "{}", r.text());
    // The host's own user, over the Unix-socket listener, has the whole queue.
    let mut s = std::os::unix::net::UnixStream::connect(&http_sock).unwrap();
    let body = texts(60).to_string();
    let r = exchange(&mut s, "POST", "/v1/embeddings", &[], body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["data"].as_array().unwrap().len(), 60);
}

/// Runs `vembed ARGS` with stdin `input` and its stdout's reader closed
/// before it writes: it must end quietly (status 0, nothing on stderr).
fn closed_pipe(env: &Env, args: &[&str], input: &str) {
    let mut child = env
        .command("vembed")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(input.as_bytes());
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "vembed {args:?}: {:?}, stderr: {err}", out.status);
    assert!(err.is_empty(), "vembed {args:?} wrote to stderr: {err}");
}

#[test]
fn every_command_ends_quietly_when_its_output_pipe_closes() {
    let env = Env::new();
    let repo = env.path("repo");
    fixture(&repo);
    let (r, ix) = (repo.to_str().unwrap(), env.path("ix"));
    let o = env.vembed(&["index", r, "--index-dir", ix.to_str().unwrap()], "");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let tools =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/tools/coding-agent.json");
    let lines: String = (0..2000).map(|i| format!("\"text number {i}\"\n")).collect();
    closed_pipe(&env, &["status", "--json"], "");
    closed_pipe(&env, &["status", "--json", "--no-spawn"], "");
    closed_pipe(&env, &["status"], "");
    closed_pipe(&env, &["embed", "--jsonl"], &lines);
    closed_pipe(&env, &["embed", "one", "two"], "");
    let queries = "\"hash a password\"\n\"retry with backoff\"\n";
    let ix = ix.to_str().unwrap();
    closed_pipe(&env, &["search", "--repo", r, "--index-dir", ix, "--jsonl"], queries);
    closed_pipe(&env, &["search", "--repo", r, "--index-dir", ix, "--json", "x"], "");
    closed_pipe(&env, &["index", r, "--index-dir", ix, "--json"], "");
    closed_pipe(&env, &["tools", "select", "--tools", tools.to_str().unwrap(), "--jsonl"], queries);
    closed_pipe(&env, &["tools", "select", "--tools", tools.to_str().unwrap(), "run tests"], "");
    closed_pipe(&env, &["model", "list"], "");
    closed_pipe(&env, &["model", "list", "--json"], "");
}

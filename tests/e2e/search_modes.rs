//! Search modes through every door (in process, `--via-host`, HTTP, the
//! Rust API) against the real host, model and LMDB; and one snapshot for
//! the vectors and the words while the host re-indexes.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vembed::search::Searcher;
use vembed::{IndexRequest, ModelRef, RankedSearchRequest, Role, SearchMode};
use vembed_tests::Env;
use vembed_tests::http::{HttpHost, exchange};

use crate::index::{fixture, write};

const QUERIES: [&str; 3] =
    ["derive a storage hash from a user's password", "retry_with_backoff", "cart total with tax"];

/// The parts of a hit every door must agree on, and its score.
fn key(h: &Value) -> (String, u64, Option<u64>, Option<u64>, f64) {
    (
        h["path"].as_str().unwrap().to_string(),
        h["start_line"].as_u64().unwrap(),
        h["semantic_rank"].as_u64(),
        h["lexical_rank"].as_u64(),
        h["score"].as_f64().unwrap(),
    )
}

fn assert_same_ranking(a: &[Value], b: &[Value], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: {a:?} vs {b:?}");
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (key(x), key(y));
        assert_eq!((&x.0, x.1, x.2, x.3), (&y.0, y.1, y.2, y.3), "{what}");
        assert!((x.4 - y.4).abs() <= 1e-5, "{what}: score {} vs {}", x.4, y.4);
    }
}

#[test]
fn every_door_ranks_alike_in_every_mode() {
    // HTTP search is the host user's (here over the Unix-socket listener,
    // whose peer's uid is checked) and of indexes at their default place:
    // this environment's own cache.
    let env = Env::new().with_private_cache();
    let http_sock = env.path("run/http.sock");
    let _host = HttpHost::start(&env, &["--http-socket", http_sock.to_str().unwrap()]);
    let http = |body: &Value| {
        let mut s = std::os::unix::net::UnixStream::connect(&http_sock).unwrap();
        exchange(&mut s, "POST", "/vembed/v1/search", &[], body.to_string().as_bytes())
    };
    let repo = env.path("repo");
    fixture(&repo);
    let r = repo.to_str().unwrap();
    let o = env.vembed(&["index", r], "");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cli = |q: &str, mode: &str, via_host: bool| -> Vec<Value> {
        let mut args = vec!["search", q, "--repo", r, "-k", "5", "--json"];
        args.extend(["--mode", mode]);
        if via_host {
            args.push("--via-host");
        }
        let o = env.vembed(&args, "");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let mut client = env.client();
    for q in QUERIES {
        for mode in ["semantic", "lexical", "hybrid"] {
            let here = cli(q, mode, false);
            assert!(!here.is_empty(), "{mode} {q:?} found nothing");
            assert_same_ranking(&here, &cli(q, mode, true), &format!("--via-host {mode} {q:?}"));
            let reply = http(&json!({"repo": r, "query": q, "k": 5, "mode": mode}));
            assert_eq!(reply.status, 200, "{}", reply.text());
            let v = reply.json();
            assert_eq!(v["mode"], mode);
            assert_same_ranking(&here, v["hits"].as_array().unwrap(), &format!("HTTP {mode}"));
            // The Rust API, through the host.
            let hits = client
                .search_ranked(RankedSearchRequest {
                    repo: r.into(),
                    index_dir: None,
                    query: q.into(),
                    k: 5,
                    mode: SearchMode::from_name(mode).unwrap(),
                })
                .unwrap();
            let api: Vec<Value> = hits
                .into_iter()
                .map(|h| {
                    json!({
                        "path": h.hit.path,
                        "start_line": h.hit.start_line,
                        "semantic_rank": h.semantic.map(|r| r.rank),
                        "lexical_rank": h.lexical.map(|r| r.rank),
                        "score": h.hit.score,
                    })
                })
                .collect();
            assert_same_ranking(&here, &api, &format!("search_ranked {mode}"));
        }
    }
    // HTTP defaults to hybrid and k = 10.
    let v = http(&json!({"repo": r, "query": "x"})).json();
    assert_eq!(v["mode"], "hybrid");
    assert!(v["hits"].as_array().unwrap().len() <= 10);

    // Bad requests get a status and a message that names the fault.
    let bad = |body: Value, status: u16, words: &str| {
        let reply = http(&body);
        assert_eq!(reply.status, status, "{body}: {}", reply.text());
        let msg = reply.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(msg.contains(words), "{body}: {msg}");
    };
    bad(json!({"repo": r, "query": "x", "mode": "fuzzy"}), 400, "fuzzy");
    bad(json!({"repo": "repo", "query": "x"}), 400, "absolute");
    bad(json!({"repo": r, "query": "x", "bogus": 1}), 400, "bogus");
    bad(json!({"query": "x"}), 400, "repo");
    bad(json!({"repo": r, "query": "x", "k": 20000}), 400, "10000");
    bad(json!({"repo": r, "index_dir": env.path("ix"), "query": "x"}), 400, "index_dir");
    let none = env.path("no-index");
    std::fs::create_dir_all(&none).unwrap();
    bad(json!({"repo": none, "query": "x"}), 404, "vembed index");
    // --candidates stays a knob of the in-process search (--search-k is
    // its old name).
    for flag in ["--candidates", "--search-k"] {
        let o = env.vembed(&["search", "x", "--repo", r, "--via-host", flag, "9"], "");
        assert!(!o.status.success());
        assert!(
            String::from_utf8_lossy(&o.stderr)
                .contains("--candidates is for a search in this process")
        );
    }
    // The host went on serving.
    assert!(!cli("hash a password", "hybrid", true).is_empty());
}

/// Files in a snapshot, for the searcher to check.
fn paths(hits: &[vembed::RankedSearchHit]) -> BTreeSet<String> {
    hits.iter().map(|h| h.hit.path.clone()).collect()
}

#[test]
fn search_during_reindex_sees_one_snapshot() {
    let env = Env::new();
    let repo = env.path("repo");
    let index = env.path("index");
    // Every file holds the query's word, and there are fewer snippets than
    // hybrid search's depth: in a consistent snapshot, every snippet is in
    // both rankings, so every hit carries a semantic and a lexical rank.
    let body = |name: &str, round: usize| {
        format!(
            "def {name}(order):\n    \"\"\"Zebraquux step {round} of the {name} pipeline.\"\"\"\n    return order.zebraquux({round})\n"
        )
    };
    let keep: Vec<String> = (0..8).map(|i| format!("keep_{i}.py")).collect();
    for (n, k) in keep.iter().enumerate() {
        write(&repo, k, &body(&format!("keep{n}"), 0));
    }
    let request = || IndexRequest {
        repo: repo.display().to_string(),
        index_dir: Some(index.display().to_string()),
        rebuild: false,
    };
    let mut client = env.client();
    client.index(request(), |_| {}).unwrap();
    let searcher = Searcher::open(&client, &repo, Some(&index)).unwrap();
    let query = "zebraquux pipeline step";
    let vector = client.embed_with(&ModelRef::Role(Role::Code), &[query]).unwrap().data;

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let (stop2, done2) = (stop.clone(), done.clone());
    let keep2 = keep.clone();
    let reader = std::thread::spawn(move || {
        let mut seen: BTreeSet<BTreeSet<String>> = BTreeSet::new();
        while !stop2.load(Ordering::Acquire) {
            let hits = searcher.search_mode(SearchMode::Hybrid, query, &vector, 100).unwrap();
            for h in &hits {
                assert!(
                    h.semantic.is_some() && h.lexical.is_some(),
                    "{} was in one ranking only: vectors and words from two snapshots",
                    h.hit.path
                );
            }
            let files = paths(&hits);
            assert_eq!(files.len(), hits.len(), "one snippet per file: {files:?}");
            for k in &keep2 {
                assert!(files.contains(k), "{k} went missing mid re-index: {files:?}");
            }
            seen.insert(files);
            done2.fetch_add(1, Ordering::AcqRel);
        }
        seen
    });

    // Each round deletes the last round's files, adds new ones and changes
    // a kept one, while the reader searches.
    let rounds = 6;
    for round in 1..=rounds {
        for j in 0..6 {
            let _ = std::fs::remove_file(repo.join(format!("r{}_{j}.py", round - 1)));
            write(&repo, &format!("r{round}_{j}.py"), &body(&format!("step{round}_{j}"), round));
        }
        write(&repo, &keep[round % keep.len()], &body("changed", round));
        let s = client.index(request(), |_| {}).unwrap();
        assert_eq!(s.indexed, 7, "round {round}: {s:?}");
        // Let the reader see the finished round before the next begins.
        let at = done.load(Ordering::Acquire);
        let deadline = Instant::now() + Duration::from_secs(60);
        while done.load(Ordering::Acquire) < at + 2 {
            assert!(Instant::now() < deadline, "the searcher stalled");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    stop.store(true, Ordering::Release);
    let seen = reader.join().expect("the searcher's checks failed");
    // The reader saw every round's finished state.
    for round in 1..=rounds {
        let want = format!("r{round}_0.py");
        assert!(seen.iter().any(|s| s.contains(&want)), "round {round} never seen");
    }
    assert!(done.load(Ordering::Acquire) >= 2 * rounds);
}

/// `vembed status` shows each index the host opened: its counts, the jobs
/// and searches it served, and the processes that used it.
#[test]
fn status_shows_each_index_and_its_clients() {
    let env = Env::new();
    let repo = env.path("repo");
    fixture(&repo);
    let index = env.path("index");
    let (r, i) = (repo.to_str().unwrap(), index.to_str().unwrap());
    let o = env.vembed(&["index", r, "--index-dir", i], "");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut client = env.client();
    for _ in 0..2 {
        client
            .search_ranked(RankedSearchRequest {
                repo: r.into(),
                index_dir: Some(i.into()),
                query: "hash a password".into(),
                k: 3,
                mode: SearchMode::Hybrid,
            })
            .unwrap();
    }
    let all = client.indexes().unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    let ix = &all[0];
    let canonical = repo.canonicalize().unwrap();
    assert_eq!(ix.root, canonical.display().to_string());
    assert_eq!(ix.index_dir, i);
    assert!(ix.files >= 5 && ix.snippets >= ix.files, "{ix:?}");
    assert_eq!((ix.jobs, ix.files_embedded, ix.searches), (1, ix.files, 2), "{ix:?}");
    // This process searched last; the CLI process indexed before it.
    assert_eq!(ix.clients.len(), 2, "{ix:?}");
    assert_eq!(ix.clients[0], std::process::id(), "{ix:?}");
    assert!(ix.model.contains("all-MiniLM-L6-v2"), "{ix:?}");
    let o = env.vembed(&["status"], "");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains(&format!("index of {}", canonical.display())), "{text}");
    assert!(text.contains("1 jobs") && text.contains("2 searches"), "{text}");
    let o = env.vembed(&["status", "--json"], "");
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["indexes"][0]["searches"], 2, "{v}");
}

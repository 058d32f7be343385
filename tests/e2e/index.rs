//! The code index: chunking with the real tokenizer.

use std::path::Path;
use vembed_host::{Embedder, Engine};
use vembed_index::chunk::chunk_file;

use vembed_tests::{Env, link_model, model_dir};

/// No chunk exceeds the model's token limit, counted by the real tokenizer
/// without truncation: one 3,000-line function, and a minified one-line
/// JavaScript file.
#[test]
fn no_chunk_exceeds_the_models_token_limit() {
    let e = Embedder::load_named(model_dir().to_str().unwrap(), Engine::Native).unwrap();
    let max = e.max_seq_length();
    let count = |s: &str| e.count_tokens(s).unwrap();
    assert!(count(&"word ".repeat(1000)) > max, "the counter does not truncate");

    let mut huge = String::from("def process_everything(records):\n");
    for i in 0..3000 {
        huge.push_str(&format!("    total_{i} = normalize(records[{i}]) * weight_{i} + bias\n"));
    }
    let minified: String = (0..4000)
        .map(|i| format!("function f{i}(a,b){{return a*{i}+b}};var v{i}=f{i}(1,2);"))
        .collect();
    for (path, text) in [("big.py", huge.as_str()), ("app.min.js", minified.as_str())] {
        let chunks = chunk_file(path, text, max, &count);
        assert!(chunks.len() > 20, "{path}: {} chunks", chunks.len());
        for c in &chunks {
            let n = count(&c.embed_text);
            assert!(
                n <= max,
                "{path} lines {}-{}: {n} tokens > {max}",
                c.snippet.start_line,
                c.snippet.end_line
            );
        }
        // Truncation never drops anything: the model sees each chunk whole.
        for c in chunks.iter().take(5) {
            assert_eq!(e.tokenize(&c.embed_text).unwrap().len(), count(&c.embed_text));
        }
    }
}

pub(crate) fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// A small repository: a few files per language, each function with a clear job.
pub(crate) fn fixture(root: &Path) {
    write(
        root,
        "auth/passwords.py",
        "import hashlib\n\n\ndef hash_password(password, salt):\n    \"\"\"Derive a storage hash from a user's password with PBKDF2.\"\"\"\n    return hashlib.pbkdf2_hmac('sha256', password.encode(), salt, 100_000)\n\n\ndef check_password(password, salt, stored):\n    return hash_password(password, salt) == stored\n",
    );
    write(
        root,
        "net/retry.rs",
        "use std::time::Duration;\n\n/// Calls `f` until it succeeds, sleeping twice as long after each failure.\npub fn retry_with_backoff<T, E>(mut f: impl FnMut() -> Result<T, E>, tries: u32) -> Result<T, E> {\n    let mut delay = Duration::from_millis(50);\n    let mut last = f();\n    for _ in 1..tries {\n        if last.is_ok() { break; }\n        std::thread::sleep(delay);\n        delay *= 2;\n        last = f();\n    }\n    last\n}\n",
    );
    write(
        root,
        "web/cart.js",
        "export function cartTotal(items) {\n  // Sum price times quantity over the shopping cart, then apply tax.\n  const subtotal = items.reduce((s, i) => s + i.price * i.qty, 0);\n  return subtotal * 1.2;\n}\n\nexport const emptyCart = () => [];\n",
    );
    write(
        root,
        "cmd/server.go",
        "package main\n\nimport \"net/http\"\n\n// healthHandler answers the load balancer's liveness probe.\nfunc healthHandler(w http.ResponseWriter, r *http.Request) {\n\tw.WriteHeader(http.StatusOK)\n\tw.Write([]byte(\"ok\"))\n}\n",
    );
    write(
        root,
        "docs/notes.md",
        "# Notes\n\nThe billing service sends invoices on the first day of every month.\n",
    );
    write(root, ".gitignore", "secrets/\n*.log\n");
    write(root, "secrets/keys.py", "API_KEY = 'do-not-index-me'\n");
    write(root, "build.log", "compiler output that must not be indexed\n");
}

pub(crate) fn index_json(env: &Env, repo: &Path, dir: &Path) -> serde_json::Value {
    let out = env.vembed(
        &["index", repo.to_str().unwrap(), "--index-dir", dir.to_str().unwrap(), "--json"],
        "",
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

pub(crate) fn search_json(
    env: &Env,
    repo: &Path,
    dir: &Path,
    query: &str,
) -> Vec<serde_json::Value> {
    let out = env.vembed(
        &[
            "search",
            query,
            "--repo",
            repo.to_str().unwrap(),
            "--index-dir",
            dir.to_str().unwrap(),
            "-k",
            "3",
            "--json",
        ],
        "",
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn paths(hits: &[serde_json::Value]) -> Vec<String> {
    hits.iter().map(|h| h["path"].as_str().unwrap().to_string()).collect()
}

#[test]
fn index_search_and_update_incrementally() {
    let env = Env::new();
    let repo = env.path("repo");
    let dir = env.path("index");
    fixture(&repo);

    let s = index_json(&env, &repo, &dir);
    // .gitignore'd files and hidden files (.gitignore itself) are not seen.
    assert_eq!(s["files_seen"], 5, "{s}");
    assert_eq!((s["indexed"].as_u64(), s["skipped"].as_u64()), (Some(5), Some(0)), "{s}");
    let total = s["chunks_added"].as_u64().unwrap();

    // Paraphrases of what a function does find it in the top 3.
    for (query, want) in [
        ("derive a hash to store a user's secret login phrase", "auth/passwords.py"),
        ("try an operation again with exponential waiting between attempts", "net/retry.rs"),
        ("add up what is in the basket including VAT", "web/cart.js"),
        ("endpoint the load balancer polls to see if the service is alive", "cmd/server.go"),
    ] {
        let hits = search_json(&env, &repo, &dir, query);
        assert!(paths(&hits).contains(&want.to_string()), "{query:?}: {:?}", paths(&hits));
        let h = &hits[0];
        assert!(
            h["start_line"].as_u64().unwrap() >= 1
                && h["end_line"].as_u64() >= h["start_line"].as_u64()
        );
        assert!(h["score"].as_f64().unwrap() > 0.0 && !h["text"].as_str().unwrap().is_empty());
    }
    let all = search_json(&env, &repo, &dir, "API_KEY do-not-index-me compiler output");
    assert!(paths(&all).iter().all(|p| !p.starts_with("secrets/") && p != "build.log"));

    // Nothing changed: nothing is embedded.
    let s = index_json(&env, &repo, &dir);
    assert_eq!((s["indexed"].as_u64(), s["unchanged"].as_u64()), (Some(0), Some(5)), "{s}");

    // One file changes: only its snippets are replaced.
    let before = status_snippets(&env, &repo, &dir);
    assert_eq!(before, total);
    write(&repo, "web/cart.js", "export function cartTotal(items) {\n  return items.length;\n}\n");
    let s = index_json(&env, &repo, &dir);
    assert_eq!((s["indexed"].as_u64(), s["unchanged"].as_u64()), (Some(1), Some(4)), "{s}");
    let (added, removed) =
        (s["chunks_added"].as_u64().unwrap(), s["chunks_removed"].as_u64().unwrap());
    assert!(added >= 1 && removed >= 1);
    assert_eq!(status_snippets(&env, &repo, &dir), before - removed + added);

    // A deleted file's snippets go; an ignored new file is not indexed.
    std::fs::remove_file(repo.join("cmd/server.go")).unwrap();
    write(&repo, "secrets/more.py", "TOKEN = 'x'\n");
    let s = index_json(&env, &repo, &dir);
    assert_eq!(
        (s["deleted"].as_u64(), s["indexed"].as_u64(), s["files_seen"].as_u64()),
        (Some(1), Some(0), Some(4)),
        "{s}"
    );
    let hits = search_json(
        &env,
        &repo,
        &dir,
        "endpoint the load balancer polls to see if the service is alive",
    );
    assert!(!paths(&hits).contains(&"cmd/server.go".to_string()), "{:?}", paths(&hits));

    // Search through the host gives the same first result.
    let out = env.vembed(
        &[
            "search",
            "--via-host",
            "try an operation again with exponential waiting",
            "--repo",
            repo.to_str().unwrap(),
            "--index-dir",
            dir.to_str().unwrap(),
            "-k",
            "1",
            "--json",
        ],
        "",
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let via: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(via[0]["path"], "net/retry.rs");
}

fn status_snippets(env: &Env, repo: &Path, dir: &Path) -> u64 {
    let out = env.vembed(
        &[
            "index",
            repo.to_str().unwrap(),
            "--index-dir",
            dir.to_str().unwrap(),
            "--status",
            "--json",
        ],
        "",
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["snippets"].as_u64().unwrap()
}

#[test]
fn search_jsonl_answers_two_thousand_queries_in_order() {
    let env = Env::new();
    let repo = env.path("repo");
    let dir = env.path("index");
    fixture(&repo);
    index_json(&env, &repo, &dir);
    let queries =
        ["hash a password", "retry with backoff", "shopping cart total", "health check handler"];
    let mut input = String::new();
    for i in 0..2000 {
        let q = queries[i % 4];
        input.push_str(&if i % 2 == 0 {
            serde_json::to_string(q).unwrap()
        } else {
            serde_json::json!({"query": q}).to_string()
        });
        input.push('\n');
    }
    let out = env.vembed(
        &[
            "search",
            "--jsonl",
            "--repo",
            repo.to_str().unwrap(),
            "--index-dir",
            dir.to_str().unwrap(),
            "-k",
            "2",
        ],
        &input,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<Vec<serde_json::Value>> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2000);
    let expect = ["auth/passwords.py", "net/retry.rs", "web/cart.js", "cmd/server.go"];
    for (i, hits) in lines.iter().enumerate() {
        assert_eq!(hits[0]["path"], expect[i % 4], "line {i}");
    }
}

#[test]
fn an_index_of_another_model_is_a_clear_error() {
    let env = Env::new();
    let repo = env.path("repo");
    let dir = env.path("index");
    fixture(&repo);
    index_json(&env, &repo, &dir);
    // A host whose code model is another model (the same weights with CLS
    // pooling, under another name).
    let other = env.path("cls-model");
    link_model(
        &other,
        Some(r#"{"word_embedding_dimension": 384, "pooling_mode_cls_token": true}"#),
    );
    let mut env2 = Env::new();
    env2.host_args.extend(["--codebase-embedding-model".into(), other.display().to_string()]);
    // The second environment's client starts a host with that model.
    let c = env2.client();
    assert!(c.hello().models.iter().any(|m| m.path.ends_with("cls-model")));
    drop(c);
    let cmd = |args: &[&str]| {
        let mut cmd = env2.command("vembed");
        cmd.args(args).arg("--socket").arg(&env2.socket);
        cmd.output().unwrap()
    };
    let out = cmd(&[
        "search",
        "anything",
        "--repo",
        repo.to_str().unwrap(),
        "--index-dir",
        dir.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("was built with") && err.contains("rebuild"),
        "{err}"
    );
    let out = cmd(&["index", repo.to_str().unwrap(), "--index-dir", dir.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("rebuild"), "{err}");
}

/// A larger repository: `n` Python files of a few functions each.
fn many_files(root: &Path, n: usize, version: &str) {
    for i in 0..n {
        let mut text = String::new();
        for j in 0..6 {
            text.push_str(&format!(
                "def handler_{i}_{j}(request, retries={j}):\n    \"\"\"Version {version}: handle request kind {j} of module {i}.\"\"\"\n    value = request.payload.get('field_{j}', {i})\n    for attempt in range(retries):\n        value = transform_{j}(value, attempt)\n    return respond(value, status={i})\n\n\n"
            ));
        }
        write(root, &format!("pkg{}/module_{i}.py", i % 10), &text);
    }
}

/// Readers never wait for the writer and always see a whole commit: a
/// client searches in a loop while the host re-indexes the repository.
#[test]
fn searches_during_reindexing_all_succeed_on_consistent_snapshots() {
    let env = Env::new();
    let repo = env.path("repo");
    let dir = env.path("index");
    many_files(&repo, 120, "one");
    index_json(&env, &repo, &dir);
    let mut client = env.client();
    let searcher = vembed::search::Searcher::open(&client, &repo, Some(dir.as_path())).unwrap();
    let q = client
        .embed_with(
            &vembed::ModelRef::Role(vembed::Role::Code),
            &["handle request kind 3 of module 7"],
        )
        .unwrap()
        .data;
    let before = searcher.stats().unwrap().snippets;

    // Change every file, and re-index in the background.
    many_files(&repo, 120, "two");
    let env_ref = &env;
    let (repo_ref, dir_ref) = (&repo, &dir);
    std::thread::scope(|s| {
        let indexing = s.spawn(move || index_json(env_ref, repo_ref, dir_ref));
        let mut searches = 0;
        while !indexing.is_finished() {
            let hits = searcher.search_vector(&q, 10).unwrap();
            assert_eq!(hits.len(), 10, "a search during re-indexing came back short");
            // The codes and the vectors they are re-ranked from come from one
            // snapshot too: a code without its vector is an error.
            let coded = searcher.search_vector_with(&q, 10, Some(40)).unwrap();
            assert_eq!(coded.len(), 10, "a code search during re-indexing came back short");
            let stats = searcher.stats().unwrap();
            // Every commit replaces whole files: the count never drops below
            // what one version of every file holds.
            assert!(stats.snippets >= before, "{} < {before}", stats.snippets);
            searches += 1;
        }
        let s = indexing.join().unwrap();
        assert_eq!(s["indexed"], 120, "{s}");
        assert!(searches > 5, "only {searches} searches ran during indexing");
    });
    let hits = searcher.search_vector(&q, 10).unwrap();
    assert!(hits.iter().all(|h| h.text.contains("Version two")), "all new after the last commit");
    // Every code re-ranked is the exact scan: the codes match the vectors.
    let every = searcher.search_vector_with(&q, 10, Some(before as usize)).unwrap();
    let ids = |h: &[vembed::SearchHit]| {
        h.iter().map(|h| (h.path.clone(), h.start_line)).collect::<Vec<_>>()
    };
    assert_eq!(ids(&every), ids(&hits));
    assert_eq!(searcher.stats().unwrap().snippets, before);
}

/// The host is killed in the middle of indexing: the index still opens and
/// serves what was committed, and the next `vembed index` completes it.
#[test]
fn a_host_killed_mid_index_leaves_a_usable_index_that_the_next_run_completes() {
    let env = Env::new();
    let repo = env.path("repo");
    let dir = env.path("index");
    many_files(&repo, 200, "one");
    let pid = env.client().hello().pid;
    // A client that may not start a host: it sees the death (one that may
    // start one retries instead, see the next test).
    let mut client = vembed::Client::connect(&env.socket).unwrap();
    let req = vembed::IndexRequest {
        repo: repo.display().to_string(),
        index_dir: Some(dir.display().to_string()),
        rebuild: false,
    };
    // Kill the host after its first commit.
    let result = client.index(req, |p| {
        if p.chunks_added > 0 {
            // SAFETY: kill(2) on the host this test started; no memory is involved.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    });
    assert!(result.is_err(), "the host died mid-job: {result:?}");
    assert!(vembed_tests::wait_pid_gone(pid, std::time::Duration::from_secs(10)));

    let searcher = vembed::search::Searcher::open_dir(&dir).unwrap();
    let committed = searcher.stats().unwrap();
    assert!(committed.files > 0 && committed.files < 200, "{committed:?}");
    drop(searcher);

    // The next run (a new host) indexes only what is missing.
    let s = index_json(&env, &repo, &dir);
    assert_eq!(s["unchanged"].as_u64().unwrap(), committed.files, "{s}");
    assert_eq!(s["indexed"].as_u64().unwrap(), 200 - committed.files, "{s}");
    let mut client = env.client();
    let searcher = vembed::search::Searcher::open(&client, &repo, Some(dir.as_path())).unwrap();
    assert_eq!(searcher.stats().unwrap().files, 200);
    let hits = searcher.search(&mut client, "handle request kind 2 of module 150", 5).unwrap();
    assert_eq!(hits.len(), 5);
}

/// Two clients that index the same repository at once share one job: the
/// host embeds every snippet once, and both get the same summary.
#[test]
fn two_clients_indexing_one_repository_share_one_job() {
    let env = Env::new();
    let repo = env.path("repo");
    let dir = env.path("index");
    many_files(&repo, 120, "one");
    let run = |started: Option<std::sync::mpsc::Sender<()>>| {
        let mut client = env.client();
        let req = vembed::IndexRequest {
            repo: repo.display().to_string(),
            index_dir: Some(dir.display().to_string()),
            rebuild: false,
        };
        client
            .index(req, |_| {
                if let Some(tx) = &started {
                    let _ = tx.send(());
                }
            })
            .unwrap()
    };
    let (a, b) = std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::channel();
        let a = s.spawn(move || run(Some(tx)));
        // The second request arrives while the first job runs: after its
        // first report (the walk is done, the embedding begins).
        rx.recv().expect("the first job reports its walk");
        let b = s.spawn(move || run(None));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(a, b, "both clients got the one job's summary");
    assert_eq!(a.indexed, 120);
    let texts = env.client().status().unwrap().texts;
    assert_eq!(texts, a.chunks_added, "every snippet embedded once");
}

/// Issue 9, finding 9: `vembed index` finishes after a host SIGKILL in the
/// middle of indexing, with no user action: it starts a new host and the job
/// resumes from what the old one committed.
#[test]
fn r9_9_vembed_index_survives_a_host_killed_mid_job() {
    let env = Env::new();
    let repo = env.path("repo");
    let dir = env.path("index");
    many_files(&repo, 200, "one");
    let pid = env.client().hello().pid;
    let child = env
        .command("vembed")
        .args(["index", repo.to_str().unwrap(), "--index-dir", dir.to_str().unwrap(), "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Kill the host once a first commit is visible to readers.
    let started = std::time::Instant::now();
    loop {
        let files = vembed::search::Searcher::open_dir(&dir)
            .and_then(|s| Ok(s.stats()?.files))
            .unwrap_or(0);
        if files > 0 {
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(120), "no commit seen");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SAFETY: kill(2) on the host this test started; no memory is involved.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(s["unchanged"].as_u64().unwrap() > 0, "resumed from the commits: {s}");
    assert_eq!(s["unchanged"].as_u64().unwrap() + s["indexed"].as_u64().unwrap(), 200, "{s}");
    assert_ne!(env.client().hello().pid, pid, "a new host runs");
    let searcher = vembed::search::Searcher::open_dir(&dir).unwrap();
    assert_eq!(searcher.stats().unwrap().files, 200);
}

/// Issue 9, finding 7: an index on a full disk (a 3 MB tmpfs) fails with a
/// message that names the directory and says the disk is full; the host
/// keeps serving and what was committed stays searchable.
#[test]
fn r9_7_a_full_disk_is_named_as_such() {
    vembed_tests::require_root("mounts a tmpfs");
    let env = Env::new();
    let repo = env.path("repo");
    many_files(&repo, 400, "one");
    let small = env.path("small");
    std::fs::create_dir(&small).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"])
        .arg(&small)
        .status()
        .unwrap();
    assert!(mounted.success(), "mount -t tmpfs failed");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(small.clone());
    let dir = small.join("index");
    let out = env.vembed(
        &["index", repo.to_str().unwrap(), "--index-dir", dir.to_str().unwrap(), "--json"],
        "",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("r9_7: {err}");
    assert!(!out.status.success(), "3 MB cannot hold this index");
    assert!(err.contains("disk is full") && err.contains(dir.to_str().unwrap()), "{err}");
    assert!(err.contains("free on its file system"), "{err}");
    assert_eq!(env.client().embed(&["still serving"]).unwrap()[0].len(), 384);
    // What was committed before the disk filled is a usable index.
    let searcher = vembed::search::Searcher::open_dir(&dir).unwrap();
    let stats = searcher.stats().unwrap();
    assert!(stats.files < 400, "{stats:?}");
    search_json(&env, &repo, &dir, "handle request kind 2");
}

/// A file indexed long after its last change has its stat recorded, and a
/// later job takes it as unchanged from the stat alone; any change to it,
/// even one that keeps its size and puts its mtime back, is seen (the
/// change time moved).
#[test]
fn settled_files_are_checked_by_stat_and_every_change_is_seen() {
    let env = Env::new();
    let repo = env.path("repo");
    let dir = env.path("index");
    fixture(&repo);
    let old = |rel: &str| {
        let s = std::process::Command::new("touch")
            .args(["-m", "-d", "2020-01-01 00:00:00"])
            .arg(repo.join(rel))
            .status()
            .unwrap();
        assert!(s.success());
    };
    let first = index_json(&env, &repo, &dir);
    let files = first["files_seen"].as_u64().unwrap();
    // The files were written just now, so their changes are too recent to
    // trust a stat; wait until they have settled, as a user's files have.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let again = index_json(&env, &repo, &dir);
    assert_eq!((again["indexed"].as_u64(), again["unchanged"].as_u64()), (Some(0), Some(files)));
    // Same size, new content, mtime put back: the change time differs.
    let rel = "auth/passwords.py";
    let text = std::fs::read_to_string(repo.join(rel)).unwrap().replace("PBKDF2", "scrypt");
    std::fs::write(repo.join(rel), &text).unwrap();
    old(rel);
    let edited = index_json(&env, &repo, &dir);
    assert_eq!(edited["indexed"], 1, "{edited}");
    let hits = search_json(&env, &repo, &dir, "scrypt");
    assert_eq!(hits[0]["path"], rel, "{hits:?}");
}

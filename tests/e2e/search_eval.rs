//! `vembed-lab search-eval`: labelled queries against a real index, model
//! and host.

use vembed_tests::Env;

use crate::index::{fixture, write};

fn eval(env: &Env, args: &[&str]) -> std::process::Output {
    let mut all = vec!["search-eval"];
    all.extend_from_slice(args);
    env.run("vembed-lab", &all, "")
}

#[test]
fn eval_scores_every_method_on_labelled_queries() {
    let env = Env::new();
    let repo = env.path("repo");
    fixture(&repo);
    let cases = env.path("cases.jsonl");
    let lines = [
        ("derive a storage hash from a user's password", "auth/passwords.py"),
        ("call a function again and again, waiting longer after each failure", "net/retry.rs"),
        ("sum the prices in the shopping cart and add tax", "web/cart.js"),
        ("answer the load balancer's liveness probe", "cmd/server.go"),
    ];
    let text: String = lines
        .iter()
        .map(|(q, p)| serde_json::json!({"query": q, "path": p}).to_string() + "\n")
        .collect();
    std::fs::write(&cases, text).unwrap();
    let index = env.path("index");
    let (r, c, i) = (repo.to_str().unwrap(), cases.to_str().unwrap(), index.to_str().unwrap());
    let o = eval(&env, &[c, "--repo", r, "--index-dir", i, "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["cases"], 4);
    assert!(report["snippets"].as_u64().unwrap() >= 4);
    assert!(report["index_chunks_added"].as_u64().unwrap() >= 4);
    assert!(report["index_seconds"].as_f64().unwrap() > 0.0);
    let methods = report["methods"].as_array().unwrap();
    let names: Vec<&str> = methods.iter().map(|m| m["method"].as_str().unwrap()).collect();
    assert_eq!(names, ["semantic", "semantic-exact", "semantic-codes", "lexical", "hybrid"]);
    for m in methods {
        let (mrr, r1, r10) = (
            m["mrr_at_10"].as_f64().unwrap(),
            m["recall_at_1"].as_f64().unwrap(),
            m["recall_at_10"].as_f64().unwrap(),
        );
        assert!(r1 <= mrr && mrr <= r10 && r10 <= 1.0, "{m}");
        assert!(m["search_p50_ms"].as_f64().unwrap() > 0.0);
    }
    let mrr = |i: usize| methods[i]["mrr_at_10"].as_f64().unwrap();
    assert!(mrr(4) >= mrr(0) && mrr(4) >= mrr(3), "hybrid at least as good as each mode alone");
    // A small index is searched exactly: the default and the exact scan agree.
    assert_eq!(methods[0]["mrr_at_10"], methods[1]["mrr_at_10"]);
    assert_eq!(methods[1]["recall_at_10"], 1.0, "every function found in the top 10");
    assert!(methods[1]["mrr_at_10"].as_f64().unwrap() >= 0.75, "{}", methods[1]);

    // Text output: a row per method; --no-index searches the index as it is.
    let o = eval(&env, &[c, "--repo", r, "--index-dir", i, "--no-index"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && out.contains("MRR@10") && out.contains("semantic-exact"),
        "{out}"
    );
    assert!(!out.contains("added in"), "not indexed again: {out}");

    // Bad cases are named.
    write(&env.path("."), "bad.jsonl", "{\"query\": \"x\", \"path\": \"no/such/file.py\"}\n");
    let o = eval(
        &env,
        &[env.path("bad.jsonl").to_str().unwrap(), "--repo", r, "--index-dir", i, "--no-index"],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("no/such/file.py"), "{err}");
    write(&env.path("."), "bad2.jsonl", "{\"query\": \"x\"}\n");
    let o = eval(&env, &[env.path("bad2.jsonl").to_str().unwrap(), "--repo", r, "--index-dir", i]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("line 1"), "{err}");
    // search-eval takes cases, not a query.
    let o = env.run("vembed-lab", &["search-eval", c, "a query", "--repo", r], "");
    assert!(!o.status.success());
}

/// Forty files, each calling its own oddly named helper from a function
/// about something else: the helper's exact name finds its caller first
/// lexically and in hybrid search, where meaning alone (all the names look
/// alike to the model) ranks it outside the top 10.
#[test]
fn an_exact_identifier_is_found_first_by_lexical_and_hybrid_search() {
    let env = Env::new();
    let repo = env.path("repo");
    let topics = [
        "parse the config file",
        "open a database connection",
        "send an email",
        "resize an image",
        "hash a password",
        "read a csv file",
        "retry a request",
        "format a date",
        "sort users by age",
        "compress a folder",
        "render a template",
        "validate an address",
        "merge two lists",
        "count words in text",
        "download a file",
        "encrypt a message",
        "log an error",
        "schedule a job",
        "parse command line flags",
        "cache a result",
        "upload to storage",
        "compute a checksum",
        "paginate results",
        "escape html",
        "watch a directory",
        "spawn a worker",
        "throttle calls",
        "build a url",
        "diff two strings",
        "load a plugin",
        "trim whitespace",
        "round a price",
        "check a license",
        "mock a clock",
        "seed a random",
        "pick a color",
        "split a path",
        "join a thread",
        "flush a buffer",
        "close a socket",
    ];
    for (i, t) in topics.iter().enumerate() {
        let name = t.replace(' ', "_");
        let helper = format!("qz{}x{}", i * 7919 % 97, i * 31 % 53);
        write(
            &repo,
            &format!("m{i}.py"),
            &format!("def {name}(x):\n    \"\"\"{t}.\"\"\"\n    return {helper}(x)\n"),
        );
    }
    let target = 17;
    let query = format!("qz{}x{}", target * 7919 % 97, target * 31 % 53);
    let want = format!("m{target}.py");
    let (r, i) = (repo.to_str().unwrap().to_string(), env.path("index"));
    let o = env.vembed(&["index", &r, "--index-dir", i.to_str().unwrap()], "");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let search = |mode: &str| -> Vec<serde_json::Value> {
        let o = env.vembed(
            &[
                "search",
                &query,
                "--repo",
                &r,
                "--index-dir",
                i.to_str().unwrap(),
                "-k",
                "10",
                "--json",
                "--mode",
                mode,
            ],
            "",
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let semantic = search("semantic");
    let paths: Vec<&str> = semantic.iter().map(|h| h["path"].as_str().unwrap()).collect();
    assert!(
        !paths.contains(&want.as_str()),
        "the fixture needs a query the meaning misses: {paths:?}"
    );
    for mode in ["lexical", "hybrid"] {
        let hits = search(mode);
        assert_eq!(hits[0]["path"], want.as_str(), "{mode}: {hits:?}");
        assert_eq!(hits[0]["lexical_rank"], 1, "{mode}: the hit carries its lexical rank");
        assert!(hits[0]["lexical_score"].as_f64().unwrap() > 0.0);
    }
    assert!(semantic.iter().all(|h| h["semantic_rank"].is_u64() && h["lexical_rank"].is_null()));
}

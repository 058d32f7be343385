//! Tool selection on the example tool set, against the real host and model.

use std::path::PathBuf;

use vembed::tools::{Fallback, METHODS, Method, SelectOptions, Selector, Tool, ToolSet};
use vembed::{ModelRef, Role};
use vembed_tests::{Env, link_model};

fn example_tools() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/tools/coding-agent.json")
}

fn ok_stdout(out: &std::process::Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn paraphrased_requests_pick_the_intended_tool_first() {
    let env = Env::new();
    let mut client = env.client();
    let set = ToolSet::load(&example_tools()).unwrap();
    let selector = Selector::new(&mut client, &set, Method::Hybrid).unwrap();
    for (request, want) in [
        ("run pytest and tell me what fails", "run_tests"),
        ("how many rows are in the orders table", "database_query"),
        ("look for the text 'connection refused' across the code", "grep_search"),
        ("spin up the postgres container", "docker_control"),
        ("which functions call parse_header", "find_references"),
        ("save this work in version control with a message", "git_commit"),
    ] {
        let picks = selector.select(&mut client, request, &SelectOptions::default()).unwrap();
        assert_eq!(picks[0].name, want, "{request:?}: {picks:?}");
        assert!(picks.len() <= 5 && picks.iter().all(|p| p.score >= 0.15), "{picks:?}");
        assert!(picks.windows(2).all(|w| w[0].score >= w[1].score), "ranked: {picks:?}");
    }
}

#[test]
fn cli_select_json_and_jsonl() {
    let env = Env::new();
    let tools = example_tools();
    let tools = tools.to_str().unwrap();
    let out = ok_stdout(&env.vembed(
        &[
            "tools",
            "select",
            "--tools",
            tools,
            "-k",
            "3",
            "--json",
            "commit the fix with a message",
        ],
        "",
    ));
    let picks: Vec<serde_json::Value> = serde_json::from_str(out.trim()).unwrap();
    assert!(!picks.is_empty() && picks.len() <= 3, "{out}");
    assert_eq!(picks[0]["name"], "git_commit", "{out}");
    assert!(picks[0]["score"].as_f64().unwrap() > 0.15);

    let input = "\"run the unit tests\"\n{\"query\": \"start the docker container\"}\n\n\"make a folder for assets\"\n";
    let out = ok_stdout(&env.vembed(&["tools", "select", "--tools", tools, "--jsonl"], input));
    let lines: Vec<Vec<serde_json::Value>> =
        out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let firsts: Vec<&str> = lines.iter().map(|l| l[0]["name"].as_str().unwrap()).collect();
    assert_eq!(firsts, ["run_tests", "docker_control", "create_directory"]);

    // Nothing reaches an impossible threshold: the fallback decides.
    let all =
        ok_stdout(&env.vembed(
            &["tools", "select", "--tools", tools, "--threshold", "2", "--json", "hello"],
            "",
        ));
    assert_eq!(serde_json::from_str::<Vec<serde_json::Value>>(&all).unwrap().len(), 32);
    let top = ok_stdout(&env.vembed(
        &[
            "tools",
            "select",
            "--tools",
            tools,
            "--threshold",
            "2",
            "--fallback",
            "top-k",
            "--json",
            "hello",
        ],
        "",
    ));
    assert_eq!(serde_json::from_str::<Vec<serde_json::Value>>(&top).unwrap().len(), 5);
}

/// Counts from the host: texts run through the model, and the cache's counters.
fn counters(env: &Env) -> (u64, u64, u64, u64) {
    let s = vembed::Client::connect(&env.socket).unwrap().status().unwrap();
    (s.texts, s.cache.hits, s.cache.disk_hits, s.cache.misses)
}

#[test]
fn tool_vectors_are_cached_across_processes_restarts_and_edits() {
    let env = Env::new().with_private_cache();
    let tools = example_tools();
    let set = ToolSet::load(&tools).unwrap();
    // Hybrid embeds each tool's text and each use case.
    let n: u64 = set.tools.iter().map(|t| 1 + t.use_cases.len() as u64).sum();
    let tools_arg = tools.to_str().unwrap();

    // First process: every text is embedded once.
    ok_stdout(&env.vembed(&["tools", "embed", "--tools", tools_arg], ""));
    assert_eq!(counters(&env), (n, 0, 0, n));

    // A second process selects: only its query goes through the model (the
    // host holds the set's vectors, so even the cache is not asked).
    ok_stdout(&env.vembed(&["tools", "select", "--tools", tools_arg, "run the tests"], ""));
    assert_eq!(counters(&env), (n + 1, 0, 0, n));

    // A restarted host reads the vectors back from disk.
    let mut host = vembed::Client::connect(&env.socket).unwrap();
    let pid = host.hello().pid;
    host.shutdown().unwrap();
    assert!(
        vembed_tests::wait_pid_gone(pid, std::time::Duration::from_secs(60)),
        "host {pid} stays"
    );
    ok_stdout(&env.vembed(&["tools", "select", "--tools", tools_arg, "run the tests"], ""));
    assert_eq!(counters(&env), (1, 0, n, 0), "after a restart: only the query is embedded");

    // Editing one tool's description re-embeds exactly that tool's text.
    let mut edited = set.clone();
    edited.tools[3].description = "List what a folder holds, one entry per line.".into();
    let path = env.path("edited.json");
    std::fs::write(&path, serde_json::to_string(&edited.tools).unwrap()).unwrap();
    ok_stdout(&env.vembed(&["tools", "embed", "--tools", path.to_str().unwrap()], ""));
    let (texts, hits, disk_hits, misses) = counters(&env);
    assert_eq!((texts, misses), (2, 1), "one text embedded for one edited tool");
    assert_eq!(hits + disk_hits, 2 * n - 1);
}

#[test]
fn bad_tool_files_are_clear_errors() {
    let env = Env::new();
    let cases: Vec<(String, &str)> = vec![
        ("[{\"name\": \"a\", \"description\": ".into(), "invalid tool set JSON at line 1"),
        (
            r#"[{"name":"a","description":"x"},{"name":"a","description":"y"}]"#.into(),
            "duplicate tool name \"a\"",
        ),
        (r#"[{"name":"a","description":""}]"#.into(), "tool \"a\" has an empty description"),
        (
            serde_json::to_string(
                &(0..10_000)
                    .map(|i| serde_json::json!({"name": format!("t{i}"), "description": "d"}))
                    .collect::<Vec<_>>(),
            )
            .unwrap(),
            "10000 tools; a tool set holds at most 1000",
        ),
    ];
    for (i, (json, want)) in cases.iter().enumerate() {
        let path = env.path(&format!("bad{i}.json"));
        std::fs::write(&path, json).unwrap();
        let out = env.vembed(&["tools", "select", "--tools", path.to_str().unwrap(), "query"], "");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "case {i} should fail");
        assert!(err.contains(want), "case {i}: {err}");
        assert!(err.contains(path.to_str().unwrap()), "names the file: {err}");
    }
}

#[test]
fn tools_and_code_share_one_model_unless_configured_apart() {
    // Default settings: tool selection and code search run on one instance.
    let env = Env::new();
    let mut client = env.client();
    let set = ToolSet::load(&example_tools()).unwrap();
    Selector::new(&mut client, &set, Method::Hybrid).unwrap();
    client.embed_with(&ModelRef::Role(Role::Code), &["fn main() {}"]).unwrap();
    let models = client.status().unwrap().models;
    assert_eq!(models.len(), 1, "one model in memory");
    let roles = &models[0].info.roles;
    assert!([Role::Unified, Role::Tools, Role::Code].iter().all(|r| roles.contains(r)));

    // A tool-selection model configured apart (the same weights with CLS
    // pooling: another model as far as vectors go) is a second instance.
    let apart = env.path("cls-model");
    link_model(
        &apart,
        Some(r#"{"word_embedding_dimension": 384, "pooling_mode_cls_token": true}"#),
    );
    let mut env2 = Env::new();
    env2.host_args.extend(["--embedding-model".into(), apart.display().to_string()]);
    let mut client = env2.client();
    let tools = Selector::new(&mut client, &set, Method::Plain).unwrap();
    assert_eq!(tools.names().len(), 32);
    let models = client.status().unwrap().models;
    assert_eq!(models.len(), 2, "{models:?}");
    let tools_model = models.iter().find(|m| m.info.roles.contains(&Role::Tools)).unwrap();
    assert_eq!(tools_model.info.roles, [Role::Tools]);
    assert!(tools_model.info.path.ends_with("cls-model"), "{}", tools_model.info.path);
}

/// The host's `SelectTools` ranks as the in-process `Selector` does (one
/// scoring, `crates/tools`), keeps the set's vectors, and refuses bad input
/// with typed errors.
#[test]
fn the_host_ranks_tool_sets_like_the_library_and_refuses_bad_ones() {
    let env = Env::new();
    let mut client = env.client();
    let set = ToolSet::load(&example_tools()).unwrap();
    let queries = ["run pytest and tell me what fails", "spin up the postgres container", "zzz"];
    let opts = SelectOptions { k: 4, threshold: 0.2, fallback: Fallback::TopK };
    for method in METHODS {
        let local = Selector::new(&mut client, &set, method).unwrap();
        let first = client.select_tools(&set, method, &queries, &opts).unwrap();
        let again = client.select_tools(&set, method, &queries, &opts).unwrap();
        assert!(!first.tools_cached, "{method:?}: a new set");
        assert!(again.tools_cached, "{method:?}: the host kept the set");
        assert_eq!(first.selections.len(), queries.len());
        for (q, (host, again)) in queries.iter().zip(first.selections.iter().zip(&again.selections))
        {
            let mine = local.select(&mut client, q, &opts).unwrap();
            let names = |p: &[vembed::tools::ToolPick]| {
                p.iter().map(|p| p.name.clone()).collect::<Vec<_>>()
            };
            assert_eq!(names(host), names(&mine), "{method:?} {q:?}");
            assert_eq!(names(host), names(again), "{method:?} {q:?}");
            for (a, b) in host.iter().zip(&mine) {
                assert!((a.score - b.score).abs() < 1e-5, "{method:?} {q:?}: {a:?} vs {b:?}");
            }
        }
    }
    // No queries: the set is embedded and kept, nothing is ranked.
    let warm = client.select_tools(&set, Method::Hybrid, &[], &opts).unwrap();
    assert!(warm.selections.is_empty() && warm.tools_cached);

    let host_error = |r: vembed::Result<vembed::ToolSelections>| match r {
        Err(vembed::Error::Host { code, message }) => (code, message),
        other => panic!("expected a host error, got {other:?}"),
    };
    let tool = |name: &str, description: &str| Tool {
        name: name.into(),
        description: description.into(),
        parameters: vec![],
        use_cases: vec![],
    };
    let raw = |tools: Vec<Tool>, queries: Vec<String>| vembed::SelectToolsRequest {
        model: ModelRef::Role(Role::Tools),
        tools,
        method: Method::Hybrid,
        queries,
        k: 5,
        threshold: 0.15,
        fallback: Fallback::All,
    };
    for (tools, want) in [
        (vec![], "the tool set is empty"),
        (vec![tool("a", "x"), tool("a", "y")], "duplicate tool name \"a\""),
        (vec![tool(" ", "x")], "tool 0 has an empty name"),
        (vec![tool("a", "")], "tool \"a\" has an empty description"),
    ] {
        let (code, message) = host_error(client.select_tools_request(raw(tools, vec!["q".into()])));
        assert_eq!(code, vembed::ErrorCode::InvalidRequest, "{message}");
        assert!(message.contains(want), "{message}");
    }
    let many: Vec<String> = (0..3000).map(|i| format!("query {i}")).collect();
    let (code, _) = host_error(client.select_tools_request(raw(vec![tool("a", "x")], many)));
    assert_eq!(code, vembed::ErrorCode::TooManyTexts);
    let huge = vec!["x".repeat(2 << 20)];
    let (code, _) = host_error(client.select_tools_request(raw(vec![tool("a", "x")], huge)));
    assert_eq!(code, vembed::ErrorCode::TextTooLarge);
    let mut unknown = raw(vec![tool("a", "x")], vec!["q".into()]);
    unknown.model = ModelRef::Name("no-such/model".into());
    assert_eq!(host_error(client.select_tools_request(unknown)).0, vembed::ErrorCode::UnknownModel);
    // The connection is still good.
    assert_eq!(
        client.select_tools(&set, Method::Hybrid, &["commit it"], &opts).unwrap().selections.len(),
        1
    );
}

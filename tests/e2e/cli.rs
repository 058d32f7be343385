use vembed_tests::{Env, cosine, parse_embed_lines};

fn stderr_line(out: &std::process::Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success(),
        "expected failure, stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(err.trim_end().lines().count(), 1, "one clear line on stderr: {err:?}");
    assert!(err.starts_with("vembed: error: ") || err.starts_with("vembed-lab: error: "), "{err}");
    err
}

#[test]
fn embed_prints_one_json_object_per_text() {
    let env = Env::new();
    let out = env.vembed(&["embed", "hello world", "", "fn main() {}"], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows = parse_embed_lines(&out.stdout);
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|(e, _)| e.len() == 384));
    assert_eq!(rows[1].1, 2, "empty text is [CLS] [SEP]");
    assert_eq!(rows[0].1, 4);
    let direct = env.client().embed(&["hello world"]).unwrap();
    assert!(cosine(&rows[0].0, &direct[0]) > 0.99999);
}

#[test]
fn embed_jsonl_handles_ten_thousand_lines_in_order() {
    let env = Env::new();
    let texts: Vec<String> = (0..10_000).map(|i| format!("line {i}")).collect();
    let mut input = String::new();
    for (i, t) in texts.iter().enumerate() {
        let line = if i % 2 == 0 {
            serde_json::to_string(t).unwrap()
        } else {
            serde_json::json!({ "text": t }).to_string()
        };
        input.push_str(&line);
        input.push('\n');
    }
    let out = env.vembed(&["embed", "--jsonl"], &input);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows = parse_embed_lines(&out.stdout);
    assert_eq!(rows.len(), 10_000);
    let mut client = env.client();
    for i in [0usize, 1, 4_999, 9_998, 9_999] {
        let alone = client.embed(&[texts[i].as_str()]).unwrap();
        assert!(cosine(&rows[i].0, &alone[0]) > 0.99999, "line {i} out of order");
    }
}

#[test]
fn status_json_reports_process_models_memory_and_latency() {
    let env = Env::new();
    env.client().embed(&["warm"]).unwrap();
    let out = env.vembed(&["status", "--json"], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["pid"].as_u64().unwrap() > 0);
    assert!(v["uptime_ms"].is_u64());
    let m = &v["models"][0]["info"];
    assert_eq!(m["name"], "sentence-transformers/all-MiniLM-L6-v2");
    assert_eq!(m["sha256"], "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db");
    assert_eq!(m["dim"], 384);
    assert_eq!(m["max_seq_length"], 256);
    for key in ["rss", "pss", "rss_anon", "rss_file"] {
        assert!(v["memory"][key].as_u64().unwrap() > 0, "memory.{key}");
    }
    let files = v["models"][0]["files"].as_array().unwrap();
    assert!(files.iter().any(|f| f["path"].as_str().unwrap().ends_with("model.safetensors")
        && f["bytes"].as_u64().unwrap() > 80_000_000
        && f["resident_bytes"].is_u64()));
    assert!(v["clients"].as_u64().unwrap() >= 1, "the status client itself is connected");
    assert!(v["requests"].as_u64().unwrap() >= 1);
    assert!(v["latency_p50_us"].as_u64().unwrap() > 0);
    assert!(v["latency_p99_us"].as_u64().unwrap() >= v["latency_p50_us"].as_u64().unwrap());
    // Human form too.
    let out = env.vembed(&["status"], "");
    assert!(String::from_utf8_lossy(&out.stdout).contains("page cache"));
}

#[test]
fn errors_are_one_line_on_stderr_with_a_nonzero_exit() {
    let env = Env::new();
    stderr_line(&env.vembed(&["embed"], ""));
    let err = stderr_line(&env.vembed(&["embed", "--jsonl"], "\"ok\"\n[1, 2]\n"));
    assert!(err.contains("line 2"), "{err}");
    let err = stderr_line(&env.vembed(&["--no-spawn", "status"], ""));
    assert!(err.contains("no vembed host is running"), "{err}");
    let err = stderr_line(&env.vembed(&["embed", "--model", "no/such-model", "x"], ""));
    assert!(err.contains("no/such-model"), "{err}");
    let out = env.vembed(&["--help"], "");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("embed"));
}

#[test]
fn bench_reports_latency_throughput_ipc_and_memory() {
    let env = Env::new();
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates");
    let corpus = corpus.to_str().unwrap();
    let args = ["bench", "--json", "--bulk-texts", "6", "--requests", "5", "--corpus", corpus];
    let out = env.run("vembed-lab", &args, "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in [
        "single_query_p50_ms",
        "single_query_p99_ms",
        "bulk_chunks_per_s",
        "bulk_tokens_per_s",
        "ipc_overhead_p50_us",
        "ping_p50_us",
        "peak_rss_bytes",
        "host_pss_bytes",
    ] {
        assert!(v[key].as_f64().is_some_and(|x| x > 0.0), "{key} in {v}");
    }
    assert_eq!(v["bulk_texts"], 6);
    // A baseline interpreter that fails is a clear error, not a crash.
    let mut with_baseline = args.to_vec();
    with_baseline.extend(["--baseline-python", "/bin/false"]);
    let err = stderr_line(&env.run("vembed-lab", &with_baseline, ""));
    assert!(err.contains("baseline failed"), "{err}");
}

/// `vembed-lab bench --weights f32,f16` measures a private host per precision
/// on the same texts and reports each, their ratios, and idle and
/// after-bulk memory; the running host is left alone.
#[test]
fn bench_compares_weight_precisions_side_by_side() {
    let env = Env::new();
    let running = env.client().hello().pid;
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates");
    let args = [
        "bench",
        "--json",
        "--bulk-texts",
        "6",
        "--requests",
        "5",
        "--corpus",
        corpus.to_str().unwrap(),
        "--weights",
        "f32,f16",
    ];
    let out = env.run("vembed-lab", &args, "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (a, b) = (&v["weights"]["f32"], &v["weights"]["f16"]);
    for key in [
        "single_query_p50_ms",
        "bulk_tokens_per_s",
        "host_pss_idle_bytes",
        "host_pss_bulk_max_bytes",
        "host_pss_bytes",
    ] {
        assert!(a[key].as_f64().is_some_and(|x| x > 0.0), "{key} in {v}");
        assert!(b[key].as_f64().is_some_and(|x| x > 0.0), "{key} in {v}");
    }
    assert_ne!(a["host_pid"], b["host_pid"], "a host per precision");
    assert!(a["host_pid"] != running && b["host_pid"] != running, "private hosts");
    assert_eq!(a["bulk_mean_tokens"], b["bulk_mean_tokens"], "the same texts");
    let r = v["ratios"]["f16/f32"]["single_query_p50"].as_f64().unwrap();
    let want =
        b["single_query_p50_ms"].as_f64().unwrap() / a["single_query_p50_ms"].as_f64().unwrap();
    assert!((r - want).abs() < 1e-9, "{r} vs {want}");
    // f16 holds the linear layers in half the bytes of f32.
    assert!(b["host_pss_idle_bytes"].as_u64() < a["host_pss_idle_bytes"].as_u64(), "{v}");
    // The private hosts are gone; the running one still answers.
    assert_eq!(env.client().hello().pid, running);
    let err = stderr_line(&env.run("vembed-lab", &["--no-spawn", "bench", "--weights", "f16"], ""));
    assert!(err.contains("--no-spawn"), "{err}");
    let err =
        stderr_line(&env.run("vembed-lab", &["bench", "--weights", "f9", "--requests", "1"], ""));
    assert!(err.contains("f9"), "{err}");
}

/// The `vembed` users install carries no measurement tooling: `bench` and
/// `search --eval` are `vembed-lab`'s.
#[test]
fn the_vembed_binary_has_no_lab_commands() {
    let env = Env::new();
    let o = env.vembed(&["bench", "--requests", "1"], "");
    assert!(!o.status.success(), "vembed bench still runs");
    let help = String::from_utf8_lossy(&env.vembed(&["--help"], "").stdout).to_string();
    assert!(!help.contains("bench"), "{help}");
    let o = env.vembed(&["search", "--eval", "cases.jsonl"], "");
    assert!(!o.status.success(), "vembed search --eval still runs");
}

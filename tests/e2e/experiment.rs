//! `vembed-lab experiment`: real hosts, the real model and its 12-layer timing
//! stand-in, a real index, and real agent processes.

use std::path::Path;

use serde_json::Value;
use vembed_tests::{Env, model_dir, mpnet_dir};

/// A copy of the model in the environment, so that no other test's host
/// maps these files and the cold starts can evict them from the page cache.
fn private_model(env: &Env) -> String {
    let dst = env.path("models/all-MiniLM-L6-v2");
    copy_dir(&model_dir(), &dst);
    dst.display().to_string()
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), to).unwrap();
        }
    }
}

fn corpus(env: &Env) -> String {
    let dir = env.path("corpus");
    std::fs::create_dir_all(&dir).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/client/src");
    for name in ["client.rs", "connect.rs", "search.rs", "spawn.rs", "tools.rs"] {
        std::fs::copy(root.join(name), dir.join(name)).unwrap();
    }
    dir.display().to_string()
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

#[test]
fn a_quick_experiment_measures_every_table_with_consistent_values() {
    let env = Env::new().with_private_cache();
    let tools_model = private_model(&env);
    let out = env.path("report");
    let corpus = corpus(&env);
    let o = env.run(
        "vembed-lab",
        &[
            "experiment",
            "--quick",
            "--json",
            "--repeat",
            "3",
            "--out",
            out.to_str().unwrap(),
            "--corpus",
            &corpus,
            "--tools-model",
            &tools_model,
        ],
        "",
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("making a 12-layer TIMING STAND-IN"), "{stderr}");
    assert!(stderr.contains("separate: cold start 1/3"), "progress: {stderr}");
    let r: Value = serde_json::from_slice(&o.stdout).expect("JSON on stdout");
    for f in ["report.md", "report.json", "chart.svg"] {
        assert!(out.join(f).is_file(), "{f} written to --out");
    }
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    for table in [
        "Memory impact",
        "Memory usage",
        "Startup time",
        "Inference latency",
        "concurrent agent processes",
    ] {
        assert!(md.contains(table), "report has {table}");
    }
    // Every row of a table has as many cells as its header.
    let mut cells = None;
    for line in md.lines() {
        let n = line.starts_with('|').then(|| line.matches('|').count());
        match (cells, n) {
            (Some(c), Some(n)) => assert_eq!(c, n, "row of another width: {line}"),
            _ => cells = n,
        }
    }
    assert!(std::fs::read_to_string(out.join("chart.svg")).unwrap().starts_with("<svg"));
    assert!(r["machine"]["cpu_model"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(num(&r["machine"]["llc_bytes"]) > 0.0);
    assert!(num(&r["index_chunks"]) > 0.0);
    let models = r["models"].as_array().unwrap();
    assert_eq!(models.len(), 2);
    assert_eq!(models[1]["standin"], true, "the 12-layer model is labelled a stand-in");
    assert!(models[1]["name"].as_str().unwrap().contains("stand"));

    let configs = r["configs"].as_array().unwrap();
    let names: Vec<&str> = configs.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["separate", "unified"], "no per-process without --baseline-python");
    let mut pss_after = Vec::new();
    for c in configs {
        let name = c["name"].as_str().unwrap();
        assert!(num(&c["disk_bytes"]) > 50e6, "{name}: disk");
        assert!(num(&c["page_cache_bytes"]) > 0.0, "{name}: page cache");
        assert_eq!(
            c["eviction_confirmed"], true,
            "{name}: cold starts began with 0 bytes resident"
        );
        let starts = c["starts"].as_array().unwrap();
        assert_eq!(starts.len(), 6, "{name}: 3 cold + 3 warm");
        let (mut cold, mut warm) = (Vec::new(), Vec::new());
        for s in starts {
            let m = &s["memory"];
            for step in ["idle", "after_tools", "after_code"] {
                for k in ["rss", "pss", "rss_anon", "rss_file"] {
                    assert!(num(&m[step][k]) > 0.0, "{name}: {step}.{k}");
                }
            }
            assert!(num(&m["peak_rss"]) >= num(&m["idle"]["rss"]), "{name}: peak >= idle");
            assert!(num(&m["after_code"]["rss"]) >= num(&m["idle"]["rss"]) * 0.9);
            assert!(num(&s["resident_after"]) > 0.0, "{name}: weights resident after the start");
            assert!(num(&s["first_selection_ms"]) > num(&s["ready_ms"]));
            if s["cold"] == true {
                assert_eq!(num(&s["resident_before"]), 0.0, "{name}: evicted before a cold start");
                cold.push(num(&s["first_selection_ms"]));
            } else {
                assert!(num(&s["resident_before"]) > 0.0, "{name}: read in before a warm start");
                warm.push(num(&s["first_selection_ms"]));
            }
        }
        assert!(
            median(cold.clone()) >= median(warm.clone()),
            "{name}: cold {cold:?} vs warm {warm:?}"
        );
        pss_after
            .push(median(starts.iter().map(|s| num(&s["memory"]["after_code"]["pss"])).collect()));
        let inf = &c["inference"];
        for k in ["tools_cold", "tools_warm", "code_cold", "code_warm", "code_after_tools"] {
            let v = inf[k].as_array().unwrap();
            assert_eq!(v.len(), 3, "{name}: {k}");
            assert!(v.iter().all(|s| num(&s["value"]) > 0.0 && num(&s["load_avg"]) >= 0.0));
        }
        assert!(
            inf["counters"].is_string() ^ inf["counters_unavailable"].is_string(),
            "{name}: cache counters, or why not"
        );
        let a = &c["agents"];
        assert_eq!(a["agents"].as_array().unwrap().len(), 2);
        assert!(num(&a["host"]["pss"]) > 0.0);
        assert!(num(&a["total_pss"]) > num(&a["host"]["pss"]));
    }
    assert!(
        pss_after[1] < pss_after[0],
        "unified PSS {} < separate {}",
        pss_after[1],
        pss_after[0]
    );
}

#[test]
fn a_bad_baseline_python_is_refused_before_anything_starts() {
    let env = Env::new();
    let out = env.path("never");
    let o = env.run(
        "vembed-lab",
        &[
            "experiment",
            "--quick",
            "--out",
            out.to_str().unwrap(),
            "--baseline-python",
            "/no/such/python",
        ],
        "",
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--baseline-python /no/such/python: no such file"), "{err}");
    assert!(!err.contains("==>"), "nothing started: {err}");
    assert!(!out.exists(), "nothing written");
    // A Python without sentence-transformers: named as such.
    let o = env.run(
        "vembed-lab",
        &[
            "experiment",
            "--quick",
            "--out",
            out.to_str().unwrap(),
            "--baseline-python",
            "/bin/true",
        ],
        "",
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--baseline-python /bin/true"), "{err}");
    assert!(!out.exists(), "nothing written");
}

/// The seed's quality model with its real weights: its "separate models"
/// configuration and its enterprise unified model are measured beside the
/// default ones, and the report gives the seed's figures with verdicts.
#[test]
fn the_seeds_quality_configurations_are_measured_with_all_mpnet_base_v2() {
    let env = Env::new().with_private_cache();
    let tools_model = private_model(&env);
    let quality = env.path("models/all-mpnet-base-v2");
    copy_dir(&mpnet_dir(), &quality);
    let out = env.path("report");
    let corpus = corpus(&env);
    let o = env.run(
        "vembed-lab",
        &[
            "experiment",
            "--quick",
            "--json",
            "--repeat",
            "1",
            "--processes",
            "1",
            "--out",
            out.to_str().unwrap(),
            "--corpus",
            &corpus,
            "--tools-model",
            &tools_model,
            "--code-model",
            &tools_model,
            "--quality-model",
            quality.to_str().unwrap(),
        ],
        "",
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let r: Value = serde_json::from_slice(&o.stdout).expect("JSON on stdout");
    let config = |name: &str| {
        r["configs"].as_array().unwrap().iter().find(|c| c["name"] == name).cloned().unwrap()
    };
    let sep = config("separate-quality");
    let uni = config("unified-quality");
    assert_eq!(sep["tools_model"], config("separate")["tools_model"]);
    assert!(sep["code_model"].as_str().unwrap().ends_with("all-mpnet-base-v2"), "{sep}");
    assert_eq!(uni["tools_model"], uni["code_model"]);
    // 438 MB of weights: more than the default configurations' one small model.
    let disk = |c: &Value| num(&c["disk_bytes"]);
    assert!(disk(&uni) > 400e6 && disk(&sep) > disk(&uni), "{} {}", disk(&sep), disk(&uni));
    for c in [&sep, &uni] {
        let code: Vec<f64> = c["inference"]["code_warm"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| num(&s["value"]))
            .collect();
        assert!(!code.is_empty() && code.iter().all(|&ms| ms > 0.0), "{c}");
    }
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("## The seed's quality model"), "{md}");
    let row = md
        .lines()
        .find(|l| l.starts_with("| unified-quality |") && l.contains("| 420MB |"))
        .unwrap_or_else(|| panic!("the quality table's row with the seed's 420MB:\n{md}"));
    assert!(row.contains("~15ms"), "{row}");
    assert!(
        ["confirmed", "better than the seed", "worse than the seed"]
            .iter()
            .any(|v| row.contains(v))
    );
}

//! Reduced-precision weights (`weights = "f16" | "bf16" | "int8"`) through the real
//! host: every precision at every kernel level against sentence-transformers'
//! golden vectors and the f32 host's, one packed copy giving a text the same
//! vector alone and in a batch, the quality gate's verdict in the log, and
//! an index of one precision refused by a host of another.

use std::io::Read;
use std::path::Path;

use vembed_tests::{Env, GoldenItem, cosine, golden, golden_mpnet, mpnet_dir};

/// An environment whose hosts hold their weights in `weights` and run the
/// kernel level `simd` ("" for the widest this CPU has; "avx2 no-vnni" for
/// AVX2 without either VNNI form, as on CPUs without them).
fn env_with(weights: &str, simd: &str) -> Env {
    let mut env = Env::new();
    env.host_args.extend(["--weights".into(), weights.into()]);
    let (level, no_vnni) = match simd.strip_suffix(" no-vnni") {
        Some(level) => (level, true),
        None => (simd, false),
    };
    if !level.is_empty() {
        env.vars.push(("VEMBED_SIMD".into(), level.into()));
    }
    if no_vnni {
        env.vars.push(("VEMBED_VNNI".into(), "off".into()));
    }
    env
}

/// The integer kernel a host at kernel level `simd` (as for [`env_with`])
/// runs `int8-dynamic`'s products with, by this CPU's flags.
fn integer_kernel(simd: &str) -> &'static str {
    let flags = cpu_flags();
    let has = |f: &str| flags.iter().any(|g| g == f);
    match simd {
        "" if has("avx512_vnni") && has("avx512bw") => "avx512-vnni",
        "" | "avx2" if has("avx_vnni") => "avx-vnni",
        "scalar" => "generic",
        _ => "avx2",
    }
}

/// Least cosine to sentence-transformers each precision must keep on the
/// golden texts: f32 is the parity bar; the reduced formats lose at most
/// their quality gate (0.999 to f32, 0.99 for int8) on top of it.
fn golden_bar(weights: &str) -> f32 {
    match weights {
        "f32" => 0.9999,
        "int8" | "int8-dynamic" => 0.989,
        _ => 0.999,
    }
}

/// This CPU's feature flags, as Linux's cpuinfo lists them.
fn cpu_flags() -> Vec<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags = info.lines().find(|l| l.starts_with("flags")).unwrap_or("");
    flags.split_whitespace().map(str::to_string).collect()
}

/// Whether this CPU has AMX-BF16 tiles.
fn cpu_has_amx() -> bool {
    let flags = cpu_flags();
    ["amx_bf16", "amx_tile"].iter().all(|f| flags.iter().any(|g| g == f))
}

/// The gate: least cosine to f32's vector.
fn gate(weights: &str) -> f32 {
    if weights.starts_with("int8") { 0.99 } else { 0.999 }
}

/// The host's log once it holds `needle` (the log is written by a
/// background thread, so a line may land a moment after the host answers),
/// or as it is after 20 s.
fn log_with(env: &Env, needle: &str) -> String {
    let started = std::time::Instant::now();
    loop {
        let log = std::fs::read_to_string(env.path("state/host.log")).unwrap_or_default();
        if log.contains(needle) || started.elapsed() > std::time::Duration::from_secs(20) {
            return log;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn every_precision_at_every_kernel_level_passes_its_gate_through_the_host() {
    let all = ["f32", "f16", "bf16", "int8", "int8-dynamic"];
    every_precision_at_every_kernel_level(&[], &golden(), &all, &all);
}

/// all-mpnet-base-v2: the same gates and bars on its own golden texts, for
/// the forms that pass its gate (int8 does not: see below). The scalar
/// level runs f32 only: a reduced form's gate there costs minutes on a
/// model of 110M parameters, and the scalar kernels are the ones the
/// MiniLM test above checks for every form.
#[test]
fn every_precision_of_mpnet_at_every_kernel_level_passes_its_gate() {
    let model = ["--unified-embedding-model".to_string(), mpnet_dir().display().to_string()];
    every_precision_at_every_kernel_level(
        &model,
        &golden_mpnet(),
        &["f32", "f16", "bf16"],
        &["f32"],
    );
}

/// Weight-only int8 (one scale per output column) loses too much on
/// all-mpnet-base-v2: the gate refuses it at start, with its figures,
/// rather than serve vectors at cosine 0.95 to f32; and so does
/// int8-dynamic (0.953 on the text of one word repeated to 256 tokens).
#[test]
fn int8_weights_of_mpnet_are_refused_by_the_gate() {
    for weights in ["int8", "int8-dynamic"] {
        let env = Env::new();
        let mut cmd = env.command("vembed-host");
        cmd.arg("--socket").arg(&env.socket).args(["--weights", weights]);
        cmd.args(["--unified-embedding-model", mpnet_dir().to_str().unwrap()]);
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{text}");
        for want in [
            format!("weights = \"{weights}\" refused"),
            "least cosine to f32 over 16 probe texts is 0.".to_string(),
            "the gate is 0.99".to_string(),
        ] {
            assert!(text.contains(&want), "{want:?} in {text}");
        }
        assert!(text.len() < 600, "the worst probe text is quoted short: {text}");
    }
}

/// Every precision of `forms` (and amx-bf16 where the CPU has it) at every
/// kernel level (the scalar one for `scalar_forms` only), on a host of the
/// model `model` names (host flags; none for the default model), against
/// `items`.
fn every_precision_at_every_kernel_level(
    model: &[String],
    items: &[GoldenItem],
    forms: &[&'static str],
    scalar_forms: &[&str],
) {
    let texts: Vec<&str> = items.iter().map(|i| i.text.as_str()).collect();
    let mut f32_alone: Option<Vec<Vec<f32>>> = None;
    let mut identities = Vec::new();
    let mut all = forms.to_vec();
    if cpu_has_amx() {
        all.push("amx-bf16");
    }
    for &weights in &all {
        for simd in ["", "avx2", "avx2 no-vnni", "scalar"] {
            if simd == "scalar" && !scalar_forms.contains(&weights) {
                continue;
            }
            // VNNI matters to int8-dynamic's products alone.
            if simd.ends_with("no-vnni") && weights != "int8-dynamic" {
                continue;
            }
            let at = format!("weights {weights}, VEMBED_SIMD={simd:?}");
            let mut env = env_with(weights, simd);
            env.host_args.extend_from_slice(model);
            let mut client = env.client();
            identities.push((weights, client.hello().models[0].identity.clone()));
            let level = simd.trim_end_matches(" no-vnni");
            let said = format!("{weights} weights, {level}");
            let log = log_with(&env, &said);
            assert!(log.contains(&said), "{at}: the host says what it runs:\n{log}");
            if weights == "int8-dynamic" {
                let products = format!("{} integer products", integer_kernel(simd));
                assert!(log.contains(&products), "{at}: {products:?} in the log:\n{log}");
            }
            let alone: Vec<Vec<f32>> =
                texts.iter().map(|t| client.embed(&[t]).unwrap().remove(0)).collect();
            let batch = client.embed(&texts).unwrap();
            for ((item, a), b) in items.iter().zip(&alone).zip(&batch) {
                let c = cosine(a, &item.embedding);
                assert!(c >= golden_bar(weights), "{at}: cosine {c} to golden for {:?}", item.text);
                if weights == "f32" {
                    // gemm for the batch, the panel kernel alone: same sums, other order.
                    let c = cosine(a, b);
                    assert!(c >= 0.99999, "{at}: batch vs alone {c} for {:?}", item.text);
                } else {
                    // One packed copy, read in one order whatever the batch.
                    assert_eq!(a, b, "{at}: batch vs alone for {:?}", item.text);
                }
                let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
                assert!((norm - 1.0).abs() < 1e-4, "{at}: norm {norm}");
            }
            // Across levels int8-dynamic's integer products agree, but its
            // f32 parts (attention's products through gemm, LayerNorm, GELU)
            // round differently per level, as on CPUs of each kind, and so
            // may a value's rounding to int8: the gate holds at each level.
            match &f32_alone {
                None => f32_alone = Some(alone),
                Some(reference) => {
                    for ((item, a), r) in items.iter().zip(&alone).zip(reference) {
                        let c = cosine(a, r);
                        assert!(c >= gate(weights), "{at}: cosine {c} to f32 for {:?}", item.text);
                    }
                }
            }
        }
    }
    // The precision is part of the identity; the kernel level is not.
    for &w in &all {
        let ids: Vec<&String> =
            identities.iter().filter(|(x, _)| *x == w).map(|(_, i)| i).collect();
        assert!(ids.windows(2).all(|p| p[0] == p[1]), "{w}: {ids:?}");
    }
    let distinct: std::collections::HashSet<&String> = identities.iter().map(|(_, i)| i).collect();
    assert_eq!(distinct.len(), all.len(), "{identities:?}");
}

/// The host logs the gate's figures for a reduced precision.
#[test]
fn the_gate_reports_its_figures_in_the_host_log() {
    let env = env_with("bf16", "");
    drop(env.client());
    let log = log_with(&env, "bf16 weights pass the quality gate");
    let line = log
        .lines()
        .find(|l| l.contains("bf16 weights pass the quality gate"))
        .unwrap_or_else(|| panic!("no gate line in the log:\n{log}"));
    assert!(line.contains("least cosine to f32 0.99") && line.contains("16 probe texts"), "{line}");
}

/// A precision that falls short of the gate is refused, with the figures:
/// bf16 keeps a least cosine of about 0.99997 on this model, so a stricter
/// bar of 0.999999 refuses it (and f16, at about 0.9999995, still passes).
#[test]
fn a_precision_below_the_gate_is_refused_with_the_figures() {
    let env = Env::new();
    let mut cmd = env.command("vembed-host");
    cmd.arg("--socket").arg(&env.socket).args(&env.host_args).args(["--weights", "bf16"]);
    cmd.env("VEMBED_WEIGHTS_MIN_COSINE", "0.999999");
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    for want in [
        "weights = \"bf16\" refused",
        "least cosine to f32 over 16 probe texts is 0.9999",
        "the gate is 0.999999",
    ] {
        assert!(text.contains(want), "{want:?} in {text}");
    }
    let mut env = env_with("f16", "");
    env.vars.push(("VEMBED_WEIGHTS_MIN_COSINE".into(), "0.999999".into()));
    let mut client = env.client();
    assert_eq!(client.embed(&["still served"]).unwrap()[0].len(), 384);
}

/// Settings the host cannot honour are clear errors at start, not silent f32.
#[test]
fn unknown_or_unavailable_precisions_are_refused_at_start() {
    let env = Env::new();
    for (args, want) in [
        (
            &["--weights", "f8"][..],
            "weights must be f32, f16, bf16, int8, int8-dynamic or amx-bf16",
        ),
        (
            &["--weights", "int4"][..],
            "weights must be f32, f16, bf16, int8, int8-dynamic or amx-bf16",
        ),
        (
            &["--weights", "f16", "--engine", "candle"][..],
            "the candle engine runs f32 weights only",
        ),
    ] {
        let mut child = env.start_host(args);
        let mut out = String::new();
        child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success() && out.contains(want), "{args:?}: {out}");
    }
    // amx-bf16 without AMX tiles (this CPU's, or switched off): refused,
    // saying why. Where the CPU has them, the precision matrix runs it.
    let mut cmd = env.command("vembed-host");
    cmd.arg("--socket").arg(&env.socket).args(&env.host_args).args(["--weights", "amx-bf16"]);
    cmd.env("VEMBED_AMX", "off");
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("weights = \"amx-bf16\" refused") && text.contains("no AMX-BF16"),
        "{text}"
    );
}

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// An index built by an f32 host is refused by an f16 host (search and
/// incremental indexing), until it is rebuilt in f16.
#[test]
fn an_index_built_in_one_precision_is_refused_by_a_host_in_another() {
    let f32_env = Env::new();
    let repo = f32_env.path("repo");
    let dir = f32_env.path("index");
    write(&repo, "auth/passwords.py", "def hash_password(pw):\n    return bcrypt.hashpw(pw)\n");
    write(&repo, "net/retry.rs", "fn retry_with_backoff() { sleep(delay * 2); }\n");
    let (r, d) = (repo.to_str().unwrap(), dir.to_str().unwrap());
    let out = f32_env.vembed(&["index", r, "--index-dir", d], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let f16_env = env_with("f16", "");
    drop(f16_env.client());
    let run = |args: &[&str]| {
        let mut cmd = f16_env.command("vembed");
        cmd.args(args).arg("--socket").arg(&f16_env.socket);
        cmd.output().unwrap()
    };
    let out = run(&["search", "hash a password", "--repo", r, "--index-dir", d]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("was built with") && err.contains("rebuild"),
        "{err}"
    );
    let out = run(&["search", "hash a password", "--repo", r, "--index-dir", d, "--via-host"]);
    assert!(!out.status.success(), "via the host too: {}", String::from_utf8_lossy(&out.stdout));
    let out = run(&["index", r, "--index-dir", d]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("rebuild"), "{err}");

    let out = run(&["index", r, "--index-dir", d, "--rebuild"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out =
        run(&["search", "hash a password", "--repo", r, "--index-dir", d, "--json", "-k", "1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let hits: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(hits[0]["path"], "auth/passwords.py", "{hits}");
    // And now the f32 host is the one refused.
    let out = f32_env.vembed(&["search", "hash a password", "--repo", r, "--index-dir", d], "");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("was built with"), "{err}");
}

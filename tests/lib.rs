//! Test harness: a private environment per test (socket, state and config in
//! a temp dir), the real `vembed-host` and `vembed` binaries, and the real
//! all-MiniLM-L6-v2 model fetched by `vembed model fetch` (which `scripts/test` runs first).
#![warn(missing_docs)]

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub mod http;
use vembed::{Client, SpawnOptions};

/// The golden file from sentence-transformers.
pub fn golden_path() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        std::env::var_os("VEMBED_GOLDEN").map(PathBuf::from),
        Some(here.join("golden/all-MiniLM-L6-v2.json")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("golden file not found; set VEMBED_GOLDEN"))
}

/// One golden item.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct GoldenItem {
    /// The input.
    pub text: String,
    /// Token ids after truncation.
    pub input_ids: Vec<u32>,
    /// Token count.
    pub n_tokens: usize,
    /// sentence-transformers' normalized embedding.
    pub embedding: Vec<f32>,
}

#[derive(serde::Deserialize)]
struct Golden {
    items: Vec<GoldenItem>,
}

/// The golden items.
pub fn golden() -> Vec<GoldenItem> {
    read_golden(&golden_path())
}

/// all-mpnet-base-v2's golden items (`golden/all-mpnet-base-v2.json`,
/// written by `scripts/make-golden` from sentence-transformers).
pub fn golden_mpnet() -> Vec<GoldenItem> {
    read_golden(&Path::new(env!("CARGO_MANIFEST_DIR")).join("golden/all-mpnet-base-v2.json"))
}

fn read_golden(path: &Path) -> Vec<GoldenItem> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice::<Golden>(&bytes).expect("parsing golden file").items
}

/// Embeds every golden item through `client`'s unified model, all in one
/// batch and then each alone, and checks both against sentence-transformers
/// (cosine >= 0.9999, the same token counts, unit norm). Returns the batch
/// and the vectors embedded alone.
pub fn assert_golden_through(
    client: &mut Client,
    items: &[GoldenItem],
) -> (vembed::Embeddings, Vec<Vec<f32>>) {
    let texts: Vec<&str> = items.iter().map(|i| i.text.as_str()).collect();
    let role = vembed::ModelRef::Role(vembed::Role::Unified);
    let batch = client.embed_with(&role, &texts).unwrap();
    assert_eq!(batch.len(), items.len());
    for ((item, row), &tokens) in items.iter().zip(batch.rows()).zip(&batch.tokens) {
        let c = cosine(row, &item.embedding);
        assert!(c >= 0.9999, "batch: cosine {c} for {:?}", item.text);
        assert_eq!(tokens as usize, item.n_tokens, "tokens of {:?}", item.text);
        let norm: f32 = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "normalized: {norm}");
    }
    let alone: Vec<Vec<f32>> = items
        .iter()
        .map(|item| {
            let alone = client.embed(&[item.text.as_str()]).unwrap().remove(0);
            let c = cosine(&alone, &item.embedding);
            assert!(c >= 0.9999, "alone: cosine {c} for {:?}", item.text);
            alone
        })
        .collect();
    (batch, alone)
}

/// The real all-mpnet-base-v2 folder, which `scripts/test` fetches (the
/// hub, else its five PyPI parts). Fails loudly when it is missing.
pub fn mpnet_dir() -> PathBuf {
    let dir = std::env::var_os("VEMBED_TEST_MPNET").map(PathBuf::from).unwrap_or_else(|| {
        vembed_models::paths::cache_dir().join("models/sentence-transformers--all-mpnet-base-v2")
    });
    if let Err(e) = vembed_models::validate_dir(&dir) {
        panic!(
            "all-mpnet-base-v2 is missing ({e}). Run `scripts/test` (it fetches it) or \
             `vembed model fetch sentence-transformers/all-mpnet-base-v2` first, or point \
             VEMBED_TEST_MPNET at a copy"
        );
    }
    dir
}

/// The real model folder. Fails loudly when it is missing: tests never skip.
pub fn model_dir() -> PathBuf {
    let dir = std::env::var_os("VEMBED_TEST_MODEL").map(PathBuf::from).unwrap_or_else(|| {
        vembed_models::paths::cache_dir().join("models/sentence-transformers--all-MiniLM-L6-v2")
    });
    if let Err(e) = vembed_models::validate_dir(&dir) {
        panic!(
            "the real model is missing ({e}). Run `scripts/test` (it fetches the model) or `vembed model fetch` first, \
             or point VEMBED_TEST_MODEL at an all-MiniLM-L6-v2 folder"
        );
    }
    dir
}

/// A built binary of this workspace (`vembed` or `vembed-host`), next to the test binary.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    for dir in exe.ancestors().skip(1).take(2) {
        let p = dir.join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "{name} is not built next to {}; run `cargo build --release --bins` first",
        exe.display()
    )
}

/// Cosine similarity.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dimension mismatch");
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    (dot / (na * nb).max(1e-12)) as f32
}

/// A private vembed environment: its own socket, state, config and caches.
pub struct Env {
    dir: TempDir,
    /// The socket.
    pub socket: PathBuf,
    /// Extra host arguments for hosts started from this environment.
    pub host_args: Vec<String>,
    /// Extra environment variables for every process of this environment
    /// (such as `VEMBED_SIMD` for the hosts it starts).
    pub vars: Vec<(String, String)>,
    /// `VEMBED_CACHE_DIR` of this environment's processes.
    cache_dir: PathBuf,
}

impl Default for Env {
    fn default() -> Self {
        Env::new()
    }
}

impl Env {
    /// A fresh environment serving the real model as the unified model.
    pub fn new() -> Env {
        let model = model_dir();
        let dir = tempfile::Builder::new().prefix("vembed-test-").tempdir().expect("tempdir");
        let socket = dir.path().join("run/host.sock");
        let env = Env {
            dir,
            socket,
            cache_dir: vembed_models::paths::cache_dir(),
            host_args: vec![
                "--unified-embedding-model".into(),
                model.display().to_string(),
                "--idle-timeout-secs".into(),
                "120".into(),
            ],
            vars: Vec::new(),
        };
        std::fs::create_dir_all(env.path("run")).unwrap();
        env
    }

    /// Gives this environment a cache dir of its own (so the host's
    /// embedding cache starts empty), with the shared weights-hash cache
    /// copied in so hosts start without re-hashing the weights.
    pub fn with_private_cache(mut self) -> Env {
        let dir = self.path("cache");
        std::fs::create_dir_all(&dir).unwrap();
        let hashes = vembed_models::paths::cache_dir().join("sha256-cache.json");
        if hashes.exists() {
            std::fs::copy(&hashes, dir.join("sha256-cache.json")).unwrap();
        }
        self.cache_dir = dir;
        self
    }

    /// A path inside the environment's temp dir.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The variables every process of this environment gets.
    pub fn vars(&self) -> Vec<(OsString, OsString)> {
        let v = |k: &str, p: PathBuf| (OsString::from(k), p.into_os_string());
        let extra = self.vars.iter().map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let mut vars = vec![
            v("VEMBED_SOCKET", self.socket.clone()),
            v("VEMBED_RUNTIME_DIR", self.path("run")),
            v("VEMBED_STATE_DIR", self.path("state")),
            v("VEMBED_CONFIG", self.path("config.toml")),
            v("HF_HUB_CACHE", self.path("hf")),
            v("SENTENCE_TRANSFORMERS_HOME", self.path("st")),
            // The shared cache keeps the weights' hash, so hosts start without re-hashing.
            v("VEMBED_CACHE_DIR", self.cache_dir.clone()),
            (OsString::from("HF_HUB_OFFLINE"), OsString::from("1")),
        ];
        vars.extend(extra);
        vars
    }

    /// How clients of this environment start a host.
    pub fn spawn_options(&self) -> SpawnOptions {
        SpawnOptions {
            socket: self.socket.clone(),
            host_bin: Some(bin("vembed-host")),
            host_args: self.host_args.iter().map(OsString::from).collect(),
            host_env: self.vars(),
            timeout: Duration::from_secs(60),
            timeouts: vembed::Timeouts::default(),
        }
    }

    /// A client, starting the host if needed.
    pub fn client(&self) -> Client {
        Client::connect_or_spawn_with(self.spawn_options()).expect("connect_or_spawn")
    }

    /// A command for one of the binaries, inside this environment.
    pub fn command(&self, name: &str) -> Command {
        let mut cmd = Command::new(bin(name));
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("VEMBED_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(self.vars());
        cmd.env("VEMBED_HOST_BIN", bin("vembed-host"));
        cmd.env("VEMBED_UNIFIED_EMBEDDING_MODEL", model_dir());
        cmd.env("VEMBED_IDLE_TIMEOUT_SECS", "120");
        cmd
    }

    /// Runs `vembed ARGS` with `stdin`, and returns its output.
    pub fn vembed(&self, args: &[&str], stdin: &str) -> Output {
        self.run("vembed", args, stdin)
    }

    /// Runs the binary `name` (`vembed`, `vembed-lab`) with `args` and
    /// `stdin`, and returns its output.
    pub fn run(&self, name: &str, args: &[&str], stdin: &str) -> Output {
        let mut child = self
            .command(name)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning vembed");
        let mut input = child.stdin.take().unwrap();
        let data = stdin.as_bytes().to_vec();
        let feeder = std::thread::spawn(move || {
            let _ = input.write_all(&data);
        });
        let out = child.wait_with_output().expect("waiting for vembed");
        feeder.join().unwrap();
        out
    }

    /// Starts a host directly (not through a client), returning the child.
    pub fn start_host(&self, extra: &[&str]) -> std::process::Child {
        self.command("vembed-host")
            .arg("--socket")
            .arg(&self.socket)
            .args(&self.host_args)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning vembed-host")
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // Stop this environment's host, if one runs.
        if let Ok(mut c) = Client::connect(&self.socket) {
            let pid = c.hello().pid;
            let _ = c.shutdown();
            wait_pid_gone(pid, Duration::from_secs(20));
        }
    }
}

/// Fails the test loudly unless it runs as root (CI does): `why` says what
/// the test needs root for.
pub fn require_root(why: &str) {
    assert_eq!(
        vembed_models::private_dir::euid(),
        0,
        "this test {why} and needs root (CI runs as root)"
    );
}

/// Whether a process is alive (and not a zombie).
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

/// Waits until a process is gone; returns whether it went in time.
pub fn wait_pid_gone(pid: u32, limit: Duration) -> bool {
    let started = Instant::now();
    while pid_alive(pid) {
        if started.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// Waits until `done()` holds, looking every 10 ms; panics naming `what`
/// after `limit`. A condition, never a fixed sleep, is what tests wait on.
pub fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "waited {limit:?} for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Parses `vembed embed` output: one `{"embedding", "tokens"}` per line.
pub fn parse_embed_lines(stdout: &[u8]) -> Vec<(Vec<f32>, u32)> {
    #[derive(serde::Deserialize)]
    struct Line {
        embedding: Vec<f32>,
        tokens: u32,
    }
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| {
            let line: Line =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}"));
            (line.embedding, line.tokens)
        })
        .collect()
}

/// A model folder that shares the real weights (symlinked) with its own configs.
pub fn link_model(dst: &Path, pooling: Option<&str>) {
    let src = model_dir();
    std::fs::create_dir_all(dst.join("1_Pooling")).unwrap();
    for f in [
        "config.json",
        "tokenizer.json",
        "modules.json",
        "sentence_bert_config.json",
        "tokenizer_config.json",
    ] {
        if src.join(f).exists() {
            std::fs::copy(src.join(f), dst.join(f)).unwrap();
        }
    }
    std::os::unix::fs::symlink(src.join("model.safetensors"), dst.join("model.safetensors"))
        .unwrap();
    let pool = pooling
        .map(str::to_string)
        .unwrap_or_else(|| std::fs::read_to_string(src.join("1_Pooling/config.json")).unwrap());
    std::fs::write(dst.join("1_Pooling/config.json"), pool).unwrap();
}

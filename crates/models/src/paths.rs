//! Where vembed keeps its socket, logs, caches and config.
//!
//! Every location can be moved with an environment variable, which is how
//! tests run a private host in a temp dir.

use std::env;
use std::path::{Path, PathBuf};

fn env_path(var: &str) -> Option<PathBuf> {
    env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from)
}

fn home() -> PathBuf {
    env_path("HOME").unwrap_or_else(|| PathBuf::from("/"))
}

/// The current user's uid.
pub fn uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// The directory holding the host's socket and lock file:
/// `$VEMBED_RUNTIME_DIR`, else `$XDG_RUNTIME_DIR/vembed`, else
/// `$TMPDIR/vembed-$UID`. The host creates it 0700.
pub fn runtime_dir() -> PathBuf {
    if let Some(p) = env_path("VEMBED_RUNTIME_DIR") {
        return p;
    }
    if let Some(p) = env_path("XDG_RUNTIME_DIR") {
        return p.join("vembed");
    }
    env::temp_dir().join(format!("vembed-{}", uid()))
}

/// The host's socket: `$VEMBED_SOCKET`, else `runtime_dir()/host.sock`.
pub fn socket_path() -> PathBuf {
    env_path("VEMBED_SOCKET").unwrap_or_else(|| runtime_dir().join("host.sock"))
}

/// The lock file beside a socket. It is never unlinked.
pub fn lock_path_for(socket: &std::path::Path) -> PathBuf {
    let mut name = socket.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".lock");
    socket.with_file_name(name)
}

/// Logs and other state: `$VEMBED_STATE_DIR`, else `$XDG_STATE_HOME/vembed`,
/// else `~/.local/state/vembed`.
pub fn state_dir() -> PathBuf {
    env_path("VEMBED_STATE_DIR")
        .or_else(|| env_path("XDG_STATE_HOME").map(|p| p.join("vembed")))
        .unwrap_or_else(|| home().join(".local/state/vembed"))
}

/// Downloaded models and caches: `$VEMBED_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/vembed`, else `~/.cache/vembed`.
pub fn cache_dir() -> PathBuf {
    env_path("VEMBED_CACHE_DIR")
        .or_else(|| env_path("XDG_CACHE_HOME").map(|p| p.join("vembed")))
        .unwrap_or_else(|| home().join(".cache/vembed"))
}

/// The config file: `$VEMBED_CONFIG`, else `$XDG_CONFIG_HOME/vembed/config.toml`,
/// else `~/.config/vembed/config.toml`.
pub fn config_path() -> PathBuf {
    env_path("VEMBED_CONFIG").unwrap_or_else(|| {
        env_path("XDG_CONFIG_HOME")
            .unwrap_or_else(|| home().join(".config"))
            .join("vembed/config.toml")
    })
}

/// The Hugging Face hub cache: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
/// `~/.cache/huggingface/hub`.
pub fn hf_hub_cache() -> PathBuf {
    env_path("HF_HUB_CACHE").or_else(|| env_path("HF_HOME").map(|p| p.join("hub"))).unwrap_or_else(
        || {
            env_path("XDG_CACHE_HOME")
                .unwrap_or_else(|| home().join(".cache"))
                .join("huggingface/hub")
        },
    )
}

/// The legacy sentence-transformers cache: `$SENTENCE_TRANSFORMERS_HOME`, else
/// `~/.cache/torch/sentence_transformers`.
pub fn legacy_st_cache() -> PathBuf {
    env_path("SENTENCE_TRANSFORMERS_HOME").unwrap_or_else(|| {
        env_path("TORCH_HOME")
            .unwrap_or_else(|| {
                env_path("XDG_CACHE_HOME").unwrap_or_else(|| home().join(".cache")).join("torch")
            })
            .join("sentence_transformers")
    })
}

/// Where the code index of `repo` lives unless `--index-dir` says otherwise:
/// `<cache>/indexes/<folder name>-<16 hex digits of sha256 of its canonical
/// path>`. Client and host compute the same place.
pub fn default_index_dir(repo: &Path) -> PathBuf {
    use sha2::Digest;
    let canonical = repo.canonicalize().unwrap_or_else(|_| repo.to_path_buf());
    let digest = sha2::Sha256::digest(canonical.as_os_str().as_encoded_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let name = canonical
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "root".into());
    let name: String = name
        .chars()
        .map(|c| if c.is_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
        .collect();
    cache_dir().join("indexes").join(format!("{name}-{hex}"))
}

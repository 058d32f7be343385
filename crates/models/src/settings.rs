//! vembed's settings: defaults, then the config file, then environment
//! variables, then command-line flags (each later source wins).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::remote::RemoteModel;

/// The default unified model: the one any machine with a package registry
/// can get offline.
pub const DEFAULT_MODEL: &str = "sentence-transformers/all-MiniLM-L6-v2";

/// Every setting, resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The model both jobs use unless a role names another.
    pub unified_embedding_model: String,
    /// The tool-selection model; `None` means the unified model.
    pub embedding_model: Option<String>,
    /// The code-search model; `None` means the unified model.
    pub codebase_embedding_model: Option<String>,
    /// Seconds with no client connected before the host exits; 0 = never.
    pub idle_timeout_secs: u64,
    /// Tokens per forward pass (the candle engine counts padding:
    /// batch × longest text).
    pub max_batch_tokens: u32,
    /// Texts waiting in the queue before new requests get `Overloaded`.
    pub max_queue_texts: u32,
    /// Inference threads; 0 = one per core.
    pub threads: u32,
    /// The encoder implementation: `"native"` (vembed's own forward pass,
    /// the default) or `"candle"` (candle-transformers' `BertModel`).
    pub engine: String,
    /// How the native encoder holds its linear layers' weights: `"f32"`
    /// (as stored, the default), `"f16"` or `"bf16"` (half the memory and
    /// memory traffic), `"int8"` (a quarter; weights only, a scale per
    /// output column), or `"amx-bf16"` (bf16 weights and activations on
    /// Intel AMX tiles, where the CPU has them). Each must pass a quality
    /// gate against f32 on the model at load, or the host refuses it. The precision is
    /// part of the model's identity: an index built with one is refused by
    /// a host running another.
    pub weights: String,
    /// Milliseconds a client waits to connect and for the handshake, and for
    /// a liveness check of a host that has been silent that long.
    pub connect_timeout_ms: u64,
    /// Seconds a client waits for one reply from a host that is alive,
    /// before `request_timeout_per_text_ms` for each text in flight.
    pub request_timeout_secs: u64,
    /// Milliseconds added to the reply deadline per text in flight (bulk
    /// requests take longer).
    pub request_timeout_per_text_ms: u64,
    /// Serve the HTTP endpoints (OpenAI, Ollama and TEI shapes) on this TCP
    /// address, such as `127.0.0.1:11435` (or `127.0.0.1:11434` to stand in
    /// for Ollama). Off when unset. Any local user can reach a loopback port.
    pub http_listen: Option<String>,
    /// Also serve the HTTP endpoints on this Unix socket path (created 0600;
    /// only this user's processes are answered).
    pub http_socket: Option<PathBuf>,
    /// A file (mode 0600, owned by this user) holding the bearer token every
    /// HTTP request must send; no token is asked for when unset.
    pub http_token_file: Option<PathBuf>,
    /// Remote models by name (`[remote.NAME]` tables): embedding services
    /// the host sends forward passes to. A role names one like any model.
    pub remote: BTreeMap<String, RemoteModel>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            unified_embedding_model: DEFAULT_MODEL.to_string(),
            embedding_model: None,
            codebase_embedding_model: None,
            idle_timeout_secs: 600,
            max_batch_tokens: 1024,
            max_queue_texts: 65_536,
            threads: 0,
            engine: "native".to_string(),
            weights: "f32".to_string(),
            connect_timeout_ms: 5000,
            request_timeout_secs: 60,
            request_timeout_per_text_ms: 250,
            http_listen: None,
            http_socket: None,
            http_token_file: None,
            remote: BTreeMap::new(),
        }
    }
}

/// The environment variable of each setting.
pub const ENV_VARS: &[(&str, &str)] = &[
    ("unified_embedding_model", "VEMBED_UNIFIED_EMBEDDING_MODEL"),
    ("embedding_model", "VEMBED_EMBEDDING_MODEL"),
    ("codebase_embedding_model", "VEMBED_CODEBASE_EMBEDDING_MODEL"),
    ("idle_timeout_secs", "VEMBED_IDLE_TIMEOUT_SECS"),
    ("max_batch_tokens", "VEMBED_MAX_BATCH_TOKENS"),
    ("max_queue_texts", "VEMBED_MAX_QUEUE_TEXTS"),
    ("threads", "VEMBED_THREADS"),
    ("engine", "VEMBED_ENGINE"),
    ("weights", "VEMBED_WEIGHTS"),
    ("connect_timeout_ms", "VEMBED_CONNECT_TIMEOUT_MS"),
    ("request_timeout_secs", "VEMBED_REQUEST_TIMEOUT_SECS"),
    ("request_timeout_per_text_ms", "VEMBED_REQUEST_TIMEOUT_PER_TEXT_MS"),
    ("http_listen", "VEMBED_HTTP_LISTEN"),
    ("http_socket", "VEMBED_HTTP_SOCKET"),
    ("http_token_file", "VEMBED_HTTP_TOKEN_FILE"),
];

impl Settings {
    /// Defaults, then the config file (if it exists), then the environment.
    pub fn load() -> Result<Settings, Error> {
        let mut s = Settings::from_file(&crate::paths::config_path())?;
        s.apply_env()?;
        Ok(s)
    }

    /// Defaults overlaid with one config file; a missing file is not an error.
    pub fn from_file(path: &Path) -> Result<Settings, Error> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let bad = |message: String| Error::Config { path: path.to_path_buf(), message };
                let s: Settings =
                    toml::from_str(&text).map_err(|e| bad(e.message().to_string()))?;
                for (name, remote) in &s.remote {
                    remote.validate(name).map_err(bad)?;
                }
                Ok(s)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Settings::default()),
            Err(e) => Err(Error::Io { path: path.to_path_buf(), source: e }),
        }
    }

    /// Overlays the `VEMBED_*` environment variables.
    pub fn apply_env(&mut self) -> Result<(), Error> {
        for (key, var) in ENV_VARS {
            if let Some(value) = std::env::var(var).ok().filter(|v| !v.is_empty()) {
                self.set(key, &value).map_err(|message| Error::Config {
                    path: PathBuf::from(format!("${var}")),
                    message,
                })?;
            }
        }
        Ok(())
    }

    /// Sets one setting by its name, as a flag or env var would.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        fn num<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, String> {
            v.trim().parse().map_err(|_| format!("{key} must be a non-negative integer, got {v:?}"))
        }
        match key {
            "unified_embedding_model" => self.unified_embedding_model = value.to_string(),
            "embedding_model" => self.embedding_model = Some(value.to_string()),
            "codebase_embedding_model" => self.codebase_embedding_model = Some(value.to_string()),
            "idle_timeout_secs" => self.idle_timeout_secs = num(key, value)?,
            "max_batch_tokens" => self.max_batch_tokens = num(key, value)?,
            "max_queue_texts" => self.max_queue_texts = num(key, value)?,
            "threads" => self.threads = num(key, value)?,
            "connect_timeout_ms" => self.connect_timeout_ms = num(key, value)?,
            "request_timeout_secs" => self.request_timeout_secs = num(key, value)?,
            "request_timeout_per_text_ms" => self.request_timeout_per_text_ms = num(key, value)?,
            "http_listen" => self.http_listen = non_empty(value),
            "http_socket" => self.http_socket = non_empty(value).map(PathBuf::from),
            "http_token_file" => self.http_token_file = non_empty(value).map(PathBuf::from),
            "engine" => match value {
                "native" | "candle" => self.engine = value.to_string(),
                other => return Err(format!("engine must be native or candle, got {other:?}")),
            },
            "weights" => match value {
                "f32" | "f16" | "bf16" | "int8" | "amx-bf16" => self.weights = value.to_string(),
                other => {
                    return Err(format!(
                        "weights must be f32, f16, bf16, int8 or amx-bf16, got {other:?}"
                    ));
                }
            },
            _ => return Err(format!("unknown setting {key:?}")),
        }
        Ok(())
    }

    /// Whether an HTTP listener is configured (the host then never idles out).
    pub fn http_configured(&self) -> bool {
        self.http_listen.as_deref().is_some_and(|s| !s.trim().is_empty())
            || self.http_socket.as_ref().is_some_and(|p| !p.as_os_str().is_empty())
    }

    /// The model name a role uses.
    pub fn tools_model(&self) -> &str {
        self.embedding_model.as_deref().unwrap_or(&self.unified_embedding_model)
    }

    /// The model name code search uses.
    pub fn code_model(&self) -> &str {
        self.codebase_embedding_model.as_deref().unwrap_or(&self.unified_embedding_model)
    }

    /// The remote model a name refers to, if it names one.
    pub fn remote_model(&self, name: &str) -> Option<&RemoteModel> {
        self.remote.get(name)
    }
}

/// `None` for an empty or blank value ("off").
fn non_empty(value: &str) -> Option<String> {
    let v = value.trim();
    (!v.is_empty()).then(|| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_set() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            "embedding_model = \"BAAI/bge-small-en-v1.5\"\nidle_timeout_secs = 5\n",
        )
        .unwrap();
        let mut s = Settings::from_file(&path).unwrap();
        assert_eq!(s.tools_model(), "BAAI/bge-small-en-v1.5");
        assert_eq!(s.code_model(), DEFAULT_MODEL);
        assert_eq!(s.idle_timeout_secs, 5);
        s.set("codebase_embedding_model", "x").unwrap();
        assert_eq!(s.code_model(), "x");
        assert!(s.set("threads", "-1").is_err());
        assert!(s.set("nope", "1").is_err());
        std::fs::write(&path, "unknown_key = 1\n").unwrap();
        let err = Settings::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("unknown_key"), "{err}");
        assert_eq!(Settings::from_file(&dir.path().join("missing")).unwrap(), Settings::default());
        let mut s = Settings::default();
        assert!(!s.http_configured());
        s.set("http_listen", "127.0.0.1:11435").unwrap();
        assert!(s.http_configured());
        s.set("http_listen", " ").unwrap();
        assert!(!s.http_configured());
        std::fs::write(&path, "http_socket = \"/run/x.sock\"\n").unwrap();
        assert!(Settings::from_file(&path).unwrap().http_configured());
    }
}

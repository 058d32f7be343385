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

/// Declares every setting once: its field (the config key, in
/// `config.toml`), its doc, its type and default, and, for a setting of
/// fixed choices, the choices. The environment variable (`VEMBED_` and the
/// key upper-cased), the host's flag (`--` and the key with dashes),
/// [`Settings::set`] and [`SETTINGS`] all come from this one declaration.
macro_rules! settings {
    ($(
        $(#[doc = $doc:literal])*
        $key:ident: $ty:ty = $default:expr $(, one_of $choices:expr)?;
    )*) => {
        /// Every setting, resolved.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct Settings {
            $( $(#[doc = $doc])* pub $key: $ty, )*
            /// Remote models by name (`[remote.NAME]` tables): embedding services
            /// the host sends forward passes to. A role names one like any model.
            pub remote: BTreeMap<String, RemoteModel>,
        }

        impl Default for Settings {
            fn default() -> Self {
                Settings { $( $key: $default, )* remote: BTreeMap::new() }
            }
        }

        /// Every setting that a flag or environment variable can set, in
        /// declaration order.
        pub const SETTINGS: &[Setting] = &[ $( Setting {
            key: stringify!($key),
            doc: concat!($($doc, "\n"),*),
        }, )* ];

        impl Settings {
            /// Sets one setting by its key, as a flag or environment variable
            /// would: a number must parse, a choice must be one of its
            /// choices, and an empty value turns an optional setting off.
            pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
                match key {
                    $( stringify!($key) => {
                        let v = <$ty as Value>::parse(key, value)?;
                        $( one_of(key, &v, $choices)?; )?
                        self.$key = v;
                    } )*
                    _ => return Err(format!("unknown setting {key:?}")),
                }
                Ok(())
            }
        }
    };
}

settings! {
    /// The model both jobs use unless a role names another.
    unified_embedding_model: String = DEFAULT_MODEL.to_string();
    /// The tool-selection model; unset, the unified model.
    embedding_model: Option<String> = None;
    /// The code-search model; unset, the unified model.
    codebase_embedding_model: Option<String> = None;
    /// Seconds with no client connected before the host exits; 0 = never.
    idle_timeout_secs: u64 = 600;
    /// Tokens per forward pass (the candle engine counts padding:
    /// batch × longest text).
    max_batch_tokens: u32 = 1024;
    /// Texts waiting in the queue before new requests get `Overloaded`.
    max_queue_texts: u32 = 65_536;
    /// Inference threads; 0 = one per core.
    threads: u32 = 0;
    /// The encoder implementation: `"native"` (vembed's own forward pass,
    /// the default) or `"candle"` (candle-transformers' `BertModel`).
    engine: String = "native".to_string(), one_of &["native", "candle"];
    /// How the native encoder holds its linear layers' weights: `"f32"`
    /// (as stored, the default), `"f16"` or `"bf16"` (half the memory and
    /// memory traffic), `"int8"` (a quarter; weights only, a scale per
    /// output column), `"int8-dynamic"` (int8 weights and activations,
    /// integer products on VNNI or AVX2), or `"amx-bf16"` (bf16 weights and activations on
    /// Intel AMX tiles, where the CPU has them). Each must pass a quality
    /// gate against f32 on the model at load, or the host refuses it. The
    /// precision is part of the model's identity: an index built with one
    /// is refused by a host running another.
    weights: String = "f32".to_string(), one_of &["f32", "f16", "bf16", "int8", "int8-dynamic", "amx-bf16"];
    /// Milliseconds a client waits to connect and for the handshake, and for
    /// a liveness check of a host that has been silent that long.
    connect_timeout_ms: u64 = 5000;
    /// Seconds a client waits for one reply from a host that is alive,
    /// before `request_timeout_per_text_ms` for each text in flight.
    request_timeout_secs: u64 = 60;
    /// Milliseconds added to the reply deadline per text in flight (bulk
    /// requests take longer).
    request_timeout_per_text_ms: u64 = 250;
    /// Serve the HTTP endpoints (OpenAI, Ollama and TEI shapes) on this TCP
    /// address, such as `127.0.0.1:11435` (or `127.0.0.1:11434` to stand in
    /// for Ollama). Off when unset. Any local user can reach a loopback port.
    http_listen: Option<String> = None;
    /// Also serve the HTTP endpoints on this Unix socket path (created 0600;
    /// only this user's processes are answered).
    http_socket: Option<PathBuf> = None;
    /// A file (mode 0600, owned by this user) holding the bearer token every
    /// HTTP request must send; no token is asked for when unset.
    http_token_file: Option<PathBuf> = None;
}

/// One setting as [`SETTINGS`] lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// Its key in `config.toml` and in [`Settings::set`].
    pub key: &'static str,
    /// Its documentation, one line per doc-comment line.
    pub doc: &'static str,
}

impl Setting {
    /// Its environment variable: `VEMBED_` and the key upper-cased.
    pub fn env_var(&self) -> String {
        format!("VEMBED_{}", self.key.to_ascii_uppercase())
    }

    /// Its command-line flag, without the dashes: the key with `-` for `_`.
    pub fn flag(&self) -> String {
        self.key.replace('_', "-")
    }

    /// Its documentation as one paragraph (for `--help`).
    pub fn help(&self) -> String {
        self.doc.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
    }
}

/// A setting's type, as a flag or environment variable gives it.
trait Value: Sized {
    fn parse(key: &str, value: &str) -> Result<Self, String>;
}

impl Value for String {
    fn parse(_: &str, value: &str) -> Result<String, String> {
        Ok(value.to_string())
    }
}

/// An optional setting: an empty or blank value turns it off.
impl Value for Option<String> {
    fn parse(_: &str, value: &str) -> Result<Option<String>, String> {
        Ok(non_empty(value))
    }
}

impl Value for Option<PathBuf> {
    fn parse(_: &str, value: &str) -> Result<Option<PathBuf>, String> {
        Ok(non_empty(value).map(PathBuf::from))
    }
}

macro_rules! number {
    ($($t:ty),*) => {$(
        impl Value for $t {
            fn parse(key: &str, value: &str) -> Result<$t, String> {
                value
                    .trim()
                    .parse()
                    .map_err(|_| format!("{key} must be a non-negative integer, got {value:?}"))
            }
        }
    )*};
}
number!(u32, u64);

/// Refuses a value that is none of `choices` ("engine must be native or
/// candle, got \"x\"").
fn one_of(key: &str, value: &str, choices: &[&str]) -> Result<(), String> {
    if choices.contains(&value) {
        return Ok(());
    }
    let listed = match choices.split_last() {
        Some((last, [])) => (*last).to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    };
    Err(format!("{key} must be {listed}, got {value:?}"))
}

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

    /// Overlays the `VEMBED_*` environment variables ([`Setting::env_var`]).
    pub fn apply_env(&mut self) -> Result<(), Error> {
        for setting in SETTINGS {
            let var = setting.env_var();
            if let Some(value) = std::env::var(&var).ok().filter(|v| !v.is_empty()) {
                self.set(setting.key, &value).map_err(|message| Error::Config {
                    path: PathBuf::from(format!("${var}")),
                    message,
                })?;
            }
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

    #[test]
    fn each_setting_is_declared_once_and_its_env_var_and_flag_follow_its_key() {
        let w = SETTINGS.iter().find(|s| s.key == "weights").unwrap();
        assert_eq!((w.env_var().as_str(), w.flag().as_str()), ("VEMBED_WEIGHTS", "weights"));
        let h = SETTINGS.iter().find(|s| s.key == "http_token_file").unwrap();
        assert_eq!(h.env_var(), "VEMBED_HTTP_TOKEN_FILE");
        assert_eq!(h.flag(), "http-token-file");
        assert!(h.help().starts_with("A file (mode 0600") && !h.help().contains('\n'));
        // Every field but the remote tables is a setting, and each one sets.
        let table = toml::Value::try_from(Settings {
            embedding_model: Some("a".into()),
            codebase_embedding_model: Some("b".into()),
            http_listen: Some("127.0.0.1:1".into()),
            http_socket: Some("/s".into()),
            http_token_file: Some("/t".into()),
            ..Settings::default()
        })
        .unwrap();
        let mut fields: Vec<&str> = table
            .as_table()
            .unwrap()
            .keys()
            .map(String::as_str)
            .filter(|k| *k != "remote")
            .collect();
        let mut keys: Vec<&str> = SETTINGS.iter().map(|s| s.key).collect();
        fields.sort_unstable();
        keys.sort_unstable();
        assert_eq!(fields, keys);
        let mut s = Settings::default();
        for (key, value) in table.as_table().unwrap() {
            let text = match value {
                toml::Value::String(v) => v.clone(),
                toml::Value::Integer(i) => i.to_string(),
                _ => continue,
            };
            s.set(key, &text).unwrap();
        }
        assert_eq!(toml::Value::try_from(&s).unwrap(), table);
        // Choices, numbers, and an empty value turning an option off.
        assert_eq!(
            s.set("engine", "cuda").unwrap_err(),
            "engine must be native or candle, got \"cuda\""
        );
        assert_eq!(
            s.set("weights", "f8").unwrap_err(),
            "weights must be f32, f16, bf16, int8, int8-dynamic or amx-bf16, got \"f8\""
        );
        assert!(s.set("max_batch_tokens", "many").unwrap_err().contains("non-negative integer"));
        s.set("embedding_model", " ").unwrap();
        assert_eq!(s.embedding_model, None);
    }
}

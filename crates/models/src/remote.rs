//! Settings of a remote model: an embedding service in the OpenAI, Ollama or
//! TEI request shape (a team's fleet behind a load balancer, a GPU box) that
//! the host sends forward passes to, while it keeps its own socket, queue,
//! cache and index writer. A `[remote.NAME]` table in `config.toml` defines
//! one; NAME is then a model name like any other, for any role:
//!
//! ```toml
//! codebase_embedding_model = "team-gpu"
//!
//! [remote.team-gpu]
//! provider = "tei"                 # or "openai", "ollama"
//! url = "http://gpu-box:8080"      # openai: the base URL with /v1
//! model = "BAAI/bge-large-en-v1.5"
//! api_key_env = "TEAM_EMBED_KEY"   # or api_key_file = "/path/0600"
//! ```

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The request shape a remote service speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// `POST {url}/embeddings` with `{model, input, encoding_format}`
    /// (OpenAI and every server that copies its API; `url` ends in `/v1`).
    Openai,
    /// `POST {url}/api/embed` with `{model, input, truncate}` (Ollama).
    Ollama,
    /// `POST {url}/embed` with `{inputs, truncate, normalize}`
    /// (text-embeddings-inference).
    Tei,
}

impl Provider {
    /// The name settings use.
    pub fn name(self) -> &'static str {
        match self {
            Provider::Openai => "openai",
            Provider::Ollama => "ollama",
            Provider::Tei => "tei",
        }
    }

    /// Tokens per input when neither the settings nor a local tokenizer
    /// say: OpenAI's embedding models take 8191, BERT-sized models 512.
    pub fn default_max_input_tokens(self) -> u32 {
        match self {
            Provider::Openai => 8191,
            Provider::Ollama | Provider::Tei => 512,
        }
    }
}

/// One remote model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteModel {
    /// The request shape.
    pub provider: Provider,
    /// The service's base URL: `http://gpu-box:8080` (TEI),
    /// `http://host:11434` (Ollama), `https://api.openai.com/v1` (OpenAI).
    pub url: String,
    /// The model name sent in each request (TEI serves one model and
    /// ignores it).
    #[serde(default)]
    pub model: String,
    /// The environment variable holding the API key (sent as
    /// `Authorization: Bearer`). Never put the key itself in settings.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// A file holding the API key: this user's, mode 0600 or stricter.
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    /// Floats per vector. Declared, the host starts without reaching the
    /// service and checks every answer against it (and asks OpenAI-shaped
    /// services for it: `dimensions`, which shortens text-embedding-3
    /// vectors); otherwise one call at load discovers it.
    #[serde(default)]
    pub dimensions: Option<u32>,
    /// Tokens the service reads of one input; the indexer chunks code to
    /// fit. Default: the local tokenizer's model's limit, else the
    /// provider's (OpenAI 8191, others 512).
    #[serde(default)]
    pub max_input_tokens: Option<u32>,
    /// A local model (name or folder) whose tokenizer counts tokens for
    /// chunking and token counts, when it is the remote model's own.
    /// Without it, OpenAI-shaped models count in cl100k_base and others
    /// are estimated at 4 bytes per token.
    #[serde(default)]
    pub tokenizer: Option<String>,
    /// Most texts in one call.
    #[serde(default = "defaults::max_texts_per_call")]
    pub max_texts_per_call: u32,
    /// Calls in flight at once.
    #[serde(default = "defaults::concurrency")]
    pub concurrency: u32,
    /// Milliseconds one call may take, connecting and retries included: a
    /// failing service is reported within it.
    #[serde(default = "defaults::timeout_ms")]
    pub timeout_ms: u64,
    /// Retries of a call that failed on the way or got 408, 429 or 5xx,
    /// after 100 ms, 200 ms, 400 ms ... each with ±50% jitter.
    #[serde(default = "defaults::retries")]
    pub retries: u32,
}

mod defaults {
    pub fn max_texts_per_call() -> u32 {
        64
    }
    pub fn concurrency() -> u32 {
        2
    }
    pub fn timeout_ms() -> u64 {
        30_000
    }
    pub fn retries() -> u32 {
        2
    }
}

impl RemoteModel {
    /// Checks values that parse but cannot work; the message says which.
    pub fn validate(&self, name: &str) -> Result<(), String> {
        let bad = |m: String| Err(format!("[remote.{name}]: {m}"));
        let url = self.url.trim();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return bad(format!("url must start with http:// or https://, got {:?}", self.url));
        }
        if self.provider != Provider::Tei && self.model.trim().is_empty() {
            return bad(format!("model is required for provider {}", self.provider.name()));
        }
        if self.api_key_env.is_some() && self.api_key_file.is_some() {
            return bad("set api_key_env or api_key_file, not both".into());
        }
        for (key, v) in [
            ("max_texts_per_call", self.max_texts_per_call),
            ("concurrency", self.concurrency),
            ("dimensions", self.dimensions.unwrap_or(1)),
            ("max_input_tokens", self.max_input_tokens.unwrap_or(1)),
        ] {
            if v == 0 {
                return bad(format!("{key} must be at least 1"));
            }
        }
        if self.concurrency > 64 {
            return bad(format!("concurrency is at most 64, got {}", self.concurrency));
        }
        if self.timeout_ms < 100 {
            return bad(format!("timeout_ms must be at least 100, got {}", self.timeout_ms));
        }
        Ok(())
    }

    /// The URL without user info, query or fragment: what logs, status and
    /// the model's identity show.
    pub fn public_url(&self) -> String {
        public_url(&self.url)
    }
}

/// `url` without `user:password@`, `?query` and `#fragment`, and without a
/// trailing slash.
pub fn public_url(url: &str) -> String {
    let url = url.trim();
    let url = url.split(['?', '#']).next().unwrap_or(url);
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let joined = if path.is_empty() { host.to_string() } else { format!("{host}/{path}") };
    let joined = joined.trim_end_matches('/');
    if scheme.is_empty() { joined.to_string() } else { format!("{scheme}://{joined}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_urls_drop_secrets() {
        assert_eq!(public_url("https://u:sk-123@api.x.com/v1/?key=sk-9#f"), "https://api.x.com/v1");
        assert_eq!(public_url("http://127.0.0.1:8080"), "http://127.0.0.1:8080");
        assert_eq!(public_url("http://h:1/a/b/"), "http://h:1/a/b");
    }

    #[test]
    fn tables_parse_with_defaults_and_are_checked() {
        let m: RemoteModel =
            toml::from_str("provider = \"tei\"\nurl = \"http://h:8080\"\n").unwrap();
        assert_eq!((m.max_texts_per_call, m.concurrency, m.retries), (64, 2, 2));
        m.validate("x").unwrap();
        let bad: RemoteModel =
            toml::from_str("provider = \"openai\"\nurl = \"ftp://h\"\nmodel = \"m\"\n").unwrap();
        assert!(bad.validate("x").unwrap_err().contains("http://"));
        let bad: RemoteModel =
            toml::from_str("provider = \"ollama\"\nurl = \"http://h\"\n").unwrap();
        assert!(bad.validate("x").unwrap_err().contains("model is required"));
        assert!(
            toml::from_str::<RemoteModel>("provider = \"grpc\"\nurl = \"http://h\"\n").is_err()
        );
        assert!(
            toml::from_str::<RemoteModel>(
                "provider = \"tei\"\nurl = \"http://h\"\napi_key = \"k\"\n"
            )
            .is_err()
        );
    }
}

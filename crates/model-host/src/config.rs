//! A model folder's configuration files, each read once: `config.json` (the
//! encoder's architecture, from the table of those the host runs, and its
//! shape, as the native encoder and candle's BERT need it) and the JSON
//! reader every other config file goes through.

use std::path::{Path, PathBuf};

use candle_transformers::models::bert::Config as BertConfig;

/// A config file that is missing, unreadable, or asks for what vembed does
/// not implement.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file is missing or invalid.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// `config.json` names an architecture (`model_type`) the host does not
    /// run.
    #[error(
        "{path}: model_type {model_type:?} is not an architecture vembed runs (it runs {})",
        supported()
    )]
    Architecture {
        /// The file.
        path: PathBuf,
        /// The model's `model_type`.
        model_type: String,
    },
    /// The folder uses a sentence-transformers module vembed does not implement.
    #[error("{path}: unsupported {what}: {name}")]
    Unsupported {
        /// The file that names it.
        path: PathBuf,
        /// What kind of thing.
        what: &'static str,
        /// Its name.
        name: String,
    },
}

impl ConfigError {
    /// `path` is wrong in the way `message` says.
    pub fn invalid(path: &Path, message: impl std::fmt::Display) -> ConfigError {
        ConfigError::Invalid { path: path.to_path_buf(), message: message.to_string() }
    }
}

/// Reads a JSON file; `None` when it does not exist.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(
    path: &Path,
) -> Result<Option<T>, ConfigError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).map(Some).map_err(|e| ConfigError::invalid(path, e))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ConfigError::invalid(path, e)),
    }
}

/// An encoder architecture the host runs, by `config.json`'s `model_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Architecture {
    /// `config.json`'s `model_type`.
    pub model_type: &'static str,
    /// The native encoder's family for it.
    pub arch: bert::Arch,
    /// Whether candle-transformers has it too (the `candle` engine, and the
    /// fallback for a config the native encoder does not implement).
    pub candle: bool,
}

/// Every architecture the host runs. A `config.json` without a
/// `model_type` is BERT, as transformers' old BERT checkpoints are.
pub const ARCHITECTURES: &[Architecture] = &[
    Architecture { model_type: "bert", arch: bert::Arch::Bert, candle: true },
    // candle-transformers 0.11 has no MPNet.
    Architecture { model_type: "mpnet", arch: bert::Arch::MPNet, candle: false },
];

/// The supported `model_type`s, for errors.
pub fn supported() -> String {
    ARCHITECTURES.iter().map(|a| a.model_type).collect::<Vec<_>>().join(", ")
}

/// `config.json`, read and parsed once, in the forms its readers take.
#[derive(Debug, Clone)]
pub struct EncoderConfig {
    /// The file.
    pub path: PathBuf,
    /// What it is.
    pub architecture: Architecture,
    /// As candle-transformers' BERT reads it, for an architecture candle has.
    pub candle: Option<BertConfig>,
    /// As the native encoder reads it.
    pub native: bert::Config,
}

impl EncoderConfig {
    /// Reads `dir/config.json`: its architecture first (a clear refusal of
    /// one the host does not run), then its shape.
    pub fn read(dir: &Path) -> Result<EncoderConfig, ConfigError> {
        let path = dir.join("config.json");
        let value: serde_json::Value =
            read_json(&path)?.ok_or_else(|| ConfigError::invalid(&path, "missing"))?;
        let model_type = match value.get("model_type") {
            None | Some(serde_json::Value::Null) => "bert",
            Some(serde_json::Value::String(t)) => t.as_str(),
            Some(other) => {
                return Err(ConfigError::invalid(&path, format!("model_type is {other}")));
            }
        };
        let architecture =
            *ARCHITECTURES.iter().find(|a| a.model_type == model_type).ok_or_else(|| {
                ConfigError::Architecture { path: path.clone(), model_type: model_type.to_string() }
            })?;
        let native =
            bert::Config::deserialize(&value).map_err(|e| ConfigError::invalid(&path, e))?;
        let candle = match architecture.candle {
            true => {
                Some(BertConfig::deserialize(&value).map_err(|e| ConfigError::invalid(&path, e))?)
            }
            false => None,
        };
        Ok(EncoderConfig { path, architecture, candle, native })
    }

    /// The most tokens a text can have, special tokens included: the
    /// encoder's positions past those its family reserves.
    pub fn max_tokens(&self) -> usize {
        self.native.max_tokens(self.architecture.arch)
    }
}

use serde::Deserialize as _;

use crate::bert;

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(config: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), config).unwrap();
        dir
    }

    const SHAPE: &str = r#""hidden_size": 8, "num_attention_heads": 2, "num_hidden_layers": 1,
        "intermediate_size": 16, "max_position_embeddings": 514, "vocab_size": 10,
        "hidden_act": "gelu""#;

    #[test]
    fn an_unknown_architecture_is_refused_by_name() {
        let dir = folder(&format!(r#"{{"model_type": "distilbert", {SHAPE}}}"#));
        let e = EncoderConfig::read(dir.path()).unwrap_err();
        assert!(
            matches!(&e, ConfigError::Architecture { model_type, .. } if model_type == "distilbert")
        );
        let message = e.to_string();
        assert!(message.contains("\"distilbert\""), "{message}");
        assert!(message.contains("bert, mpnet"), "names what runs: {message}");
    }

    #[test]
    fn mpnet_reserves_positions_and_needs_no_token_types() {
        let dir = folder(&format!(r#"{{"model_type": "mpnet", {SHAPE}}}"#));
        let c = EncoderConfig::read(dir.path()).unwrap();
        assert_eq!(c.architecture.arch, bert::Arch::MPNet);
        assert!(c.candle.is_none());
        assert_eq!(c.max_tokens(), 512, "positions 0 and 1 are the padding's");
        let dir = folder(&format!(
            r#"{{"type_vocab_size": 2, "hidden_dropout_prob": 0.1, "initializer_range": 0.02,
                "layer_norm_eps": 1e-12, "pad_token_id": 0, {SHAPE}}}"#
        ));
        let c = EncoderConfig::read(dir.path()).unwrap();
        assert_eq!(c.architecture.model_type, "bert", "no model_type is BERT");
        assert_eq!(c.max_tokens(), 514);
    }
}

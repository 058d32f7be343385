//! A model folder's configuration files, each read once: `config.json` (the
//! encoder's shape, as candle's BERT and the native encoder both need it)
//! and the JSON reader every other config file goes through.

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

/// `config.json`, read and parsed once, in the two forms its readers take.
#[derive(Debug, Clone)]
pub struct EncoderConfig {
    /// The file.
    pub path: PathBuf,
    /// As candle-transformers' BERT reads it.
    pub candle: BertConfig,
    /// As the native encoder reads it.
    pub native: crate::bert::Config,
}

impl EncoderConfig {
    /// Reads `dir/config.json`.
    pub fn read(dir: &Path) -> Result<EncoderConfig, ConfigError> {
        let path = dir.join("config.json");
        let value: serde_json::Value =
            read_json(&path)?.ok_or_else(|| ConfigError::invalid(&path, "missing"))?;
        let candle = BertConfig::deserialize(&value).map_err(|e| ConfigError::invalid(&path, e))?;
        let native =
            crate::bert::Config::deserialize(&value).map_err(|e| ConfigError::invalid(&path, e))?;
        Ok(EncoderConfig { path, candle, native })
    }

    /// Positions the encoder has: the most tokens a text can have.
    pub fn max_positions(&self) -> usize {
        self.native.max_position_embeddings
    }
}

use serde::Deserialize as _;

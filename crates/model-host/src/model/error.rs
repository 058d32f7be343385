//! Why a model could not be loaded or tokenize a text.

use crate::backend::BackendError;
use crate::backend::remote::RemoteError;
use crate::bert;
use crate::config::ConfigError;

/// Errors loading or running a model.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// A config file is missing, invalid or unsupported.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The tokenizer failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// Model lookup failed.
    #[error("{0}")]
    Store(String),
    /// The native encoder failed to load.
    #[error(transparent)]
    Native(#[from] bert::BertError),
    /// The warm-up forward pass failed, or candle could not load the model.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// A remote model could not be set up.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// Reduced-precision weights were asked for and cannot be used: they
    /// failed the quality gate on this model, or the engine has no such form.
    #[error("{model}: weights = \"{precision}\" refused: {message}")]
    Precision {
        /// The model.
        model: String,
        /// The precision asked for.
        precision: &'static str,
        /// Why, with the gate's figures.
        message: String,
    },
}

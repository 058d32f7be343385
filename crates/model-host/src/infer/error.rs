//! Why the door did not embed a request: every refusal is typed, with the
//! wire code it is answered as.

use vembed_protocol::ErrorCode;

use crate::queue::JobError;

/// Why a request was not embedded.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum InferError {
    /// More texts than the door that sent them takes at once.
    #[error("{n} texts in one request; the limit is {limit} (split the request)")]
    TooManyTexts {
        /// Texts sent.
        n: usize,
        /// The limit.
        limit: usize,
    },
    /// A text longer than the limit.
    #[error("text {index} is {bytes} bytes; the limit is {limit} bytes")]
    TextTooLarge {
        /// Which text, in the whole request.
        index: usize,
        /// Its length.
        bytes: usize,
        /// The limit.
        limit: u32,
    },
    /// A text with more tokens than the model takes, when the caller asked
    /// for an error rather than truncation.
    #[error(
        "input {index} is {tokens} tokens; the model takes at most {max} (send truncate: true \
         to cut it, as sentence-transformers does)"
    )]
    TooLong {
        /// Which text.
        index: usize,
        /// Its tokens.
        tokens: usize,
        /// The model's limit.
        max: usize,
    },
    /// The model is not served and cannot be loaded.
    #[error("cannot serve model {model}: {reason} (serving: {})", served.join(", "))]
    UnknownModel {
        /// What the request named, as the user wrote it.
        model: String,
        /// Why it cannot be loaded.
        reason: String,
        /// The models served.
        served: Vec<String>,
    },
    /// The host is stopping.
    #[error("the host is shutting down")]
    ShuttingDown,
    /// The queue is full.
    #[error("queue full: {queued} texts waiting, limit {limit}")]
    Overloaded {
        /// Texts waiting.
        queued: usize,
        /// The bound.
        limit: usize,
    },
    /// The tokenizer failed (or panicked) on a text.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The job failed in the queue.
    #[error(transparent)]
    Job(#[from] JobError),
}

impl InferError {
    /// The wire error code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            InferError::TooManyTexts { .. } => ErrorCode::TooManyTexts,
            InferError::TextTooLarge { .. } | InferError::TooLong { .. } => ErrorCode::TextTooLarge,
            InferError::UnknownModel { .. } => ErrorCode::UnknownModel,
            InferError::ShuttingDown => ErrorCode::ShuttingDown,
            InferError::Overloaded { .. } => ErrorCode::Overloaded,
            InferError::Job(e) => e.code(),
            InferError::Tokenizer(_) => ErrorCode::Internal,
        }
    }
}

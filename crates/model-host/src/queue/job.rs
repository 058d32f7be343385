//! What the queue carries: a [`Job`] (a model, its tokenized input, and
//! where the result goes) and why one can fail or be refused.

use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Sender;
use vembed_protocol::Embeddings;

use crate::backend::BackendError;
use crate::cache::{Entry, TextHash};
use crate::model::Embedder;

/// One embed request, tokenized.
pub struct Job {
    /// The model, loaded: the batcher and the lanes never look one up.
    pub model: Arc<Embedder>,
    /// What to embed.
    pub input: Input,
    /// Where the result goes, once.
    pub reply: Box<dyn Respond>,
    /// When the request was read.
    pub received: Instant,
    /// For `EmbedCached`: the texts answered from the cache; `input` is the rest.
    pub cached: Option<CachedJob>,
}

/// What a job embeds.
#[derive(Debug, Clone)]
pub enum Input {
    /// Token ids per text, already truncated, for a local model (the batcher).
    Ids(Vec<Vec<u32>>),
    /// Texts, for a remote model, whose service tokenizes them (its lane).
    Texts {
        /// The texts.
        texts: Vec<String>,
        /// Tokens per text, capped at the model's limit; 0 when the model
        /// has no exact count.
        tokens: Vec<u32>,
    },
}

impl Input {
    /// Texts to embed.
    pub fn len(&self) -> usize {
        match self {
            Input::Ids(ids) => ids.len(),
            Input::Texts { texts, .. } => texts.len(),
        }
    }

    /// Whether there is nothing to embed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Tokens per text, as the answer reports them.
    pub fn tokens(&self) -> Vec<u32> {
        match self {
            Input::Ids(ids) => ids.iter().map(|t| t.len() as u32).collect(),
            Input::Texts { tokens, .. } => tokens.clone(),
        }
    }
}

impl Job {
    /// The token ids of a local model's job (none for a remote model's).
    pub(super) fn ids(&self) -> &[Vec<u32>] {
        match &self.input {
            Input::Ids(ids) => ids,
            Input::Texts { .. } => &[],
        }
    }
}

/// Why a job got no embeddings. Every variant is the host's fault, never
/// the input's: the front doors answer it as `Internal`.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// The forward pass failed or panicked.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// A vector came out NaN or infinite (corrupt weights).
    #[error("{NON_FINITE}")]
    NonFinite,
    /// The batcher itself panicked while holding the job.
    #[error("internal error in the batcher: {0}")]
    Panicked(String),
}

impl JobError {
    /// The wire code: `Upstream` for a remote model's service, else `Internal`.
    pub fn code(&self) -> vembed_protocol::ErrorCode {
        match self {
            JobError::Backend(BackendError::Upstream { .. }) => {
                vembed_protocol::ErrorCode::Upstream
            }
            _ => vembed_protocol::ErrorCode::Internal,
        }
    }
}

/// Where a job's result goes: called exactly once, from the batcher.
pub trait Respond: Send {
    /// Delivers the result; a receiver that is gone drops it.
    fn respond(self: Box<Self>, result: Result<Embeddings, JobError>);
}

/// A host thread waiting on a channel (the indexer).
impl Respond for Sender<Result<Embeddings, JobError>> {
    fn respond(self: Box<Self>, result: Result<Embeddings, JobError>) {
        let _ = self.send(result);
    }
}

/// The cached part of an `EmbedCached` job.
pub struct CachedJob {
    /// The model's identity in the cache.
    pub identity: String,
    /// One per text of the request: its cached embedding, or `None` when it
    /// is among the job's `ids` (in order).
    pub hits: Vec<Option<Entry>>,
    /// The cache keys of the texts in `ids`.
    pub miss_hashes: Vec<TextHash>,
}

/// Why a job was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The queue holds too many texts already.
    #[error("queue full: {queued} texts waiting, limit {limit}")]
    Overloaded {
        /// Texts waiting now.
        queued: usize,
        /// The bound.
        limit: usize,
    },
    /// The host is stopping.
    #[error("host is shutting down")]
    ShuttingDown,
}

/// Why a job whose vector came out NaN or infinite fails.
pub(super) const NON_FINITE: &str = "the model produced a non-finite embedding (NaN or infinity): its weights \
    are probably corrupt; fetch or import the model again (vembed model fetch)";

//! The inference layer: the one entry point every front door calls to embed.
//!
//! It validates a request against the limits, resolves the model (loading
//! one named on first use), answers what it can from the embedding cache,
//! tokenizes the rest, and queues the job; every failure on the way is an
//! [`InferError`], whose [`InferError::code`] is the wire `ErrorCode`. The
//! result comes later through the [`Respond`] the caller builds.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use vembed_protocol::{EmbedRequest, ErrorCode, Limits, ModelRef};

use crate::cache::{self, EmbedCache, TextHash};
use crate::model::Embedder;
use crate::queue::{CachedJob, Input, Job, JobError, Queue, Respond, SubmitError};
use crate::registry::Registry;

/// Why a request was not embedded.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum InferError {
    /// More texts than the limit.
    #[error("{n} texts in one request; the limit is {limit} (split the request)")]
    TooManyTexts {
        /// Texts sent.
        n: usize,
        /// The limit.
        limit: u32,
    },
    /// A text longer than the limit.
    #[error("text {index} is {bytes} bytes; the limit is {limit} bytes")]
    TextTooLarge {
        /// Which text.
        index: usize,
        /// Its length.
        bytes: usize,
        /// The limit.
        limit: u32,
    },
    /// The model is not served and cannot be loaded.
    #[error("cannot serve model {model}: {reason} (serving: {})", served.join(", "))]
    UnknownModel {
        /// What the request named.
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
            InferError::TextTooLarge { .. } => ErrorCode::TextTooLarge,
            InferError::UnknownModel { .. } => ErrorCode::UnknownModel,
            InferError::ShuttingDown => ErrorCode::ShuttingDown,
            InferError::Overloaded { .. } => ErrorCode::Overloaded,
            InferError::Job(e) => e.code(),
            InferError::Tokenizer(_) => ErrorCode::Internal,
        }
    }
}

/// What every front door shares to embed.
pub struct Infer {
    /// The models.
    pub registry: Arc<Registry>,
    /// The embedding cache of `EmbedCached`.
    pub cache: Arc<EmbedCache>,
    /// The one queue.
    pub queue: Queue,
    /// The limits a request must keep.
    pub limits: Limits,
    /// Set when the host stops taking work.
    pub stop: Arc<AtomicBool>,
    /// The tool sets whose vectors `SelectTools` keeps.
    pub tools: Arc<crate::tool_select::Rankers>,
}

impl Infer {
    /// Embeds `req` (from the cache first when `cached`). `reply` is given
    /// the size of the reply to expect, in bytes, and returns where the
    /// result goes; it is called only once the request is valid.
    pub fn embed(
        &self,
        req: EmbedRequest,
        cached: bool,
        reply: impl FnOnce(usize) -> Box<dyn Respond>,
    ) -> Result<(), InferError> {
        self.check(&req.texts)?;
        let model = self.resolve(&req.model)?;
        self.embed_on(model, &req.texts, cached, reply)
    }

    /// Checks texts against the limits: how many, and how long each is.
    pub fn check(&self, texts: &[String]) -> Result<(), InferError> {
        let limits = self.limits;
        if texts.len() > limits.max_texts_per_request as usize {
            return Err(InferError::TooManyTexts {
                n: texts.len(),
                limit: limits.max_texts_per_request,
            });
        }
        if let Some((index, t)) =
            texts.iter().enumerate().find(|(_, t)| t.len() > limits.max_text_bytes as usize)
        {
            return Err(InferError::TextTooLarge {
                index,
                bytes: t.len(),
                limit: limits.max_text_bytes,
            });
        }
        Ok(())
    }

    /// The registry index of the model a request names, loading a model the
    /// host was not started with if it is on disk.
    pub fn resolve(&self, model: &ModelRef) -> Result<usize, InferError> {
        // Loading runs third-party code on files: a panic is this request's error.
        let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.registry.lookup_or_load(model)
        }))
        .unwrap_or_else(|_| Err(crate::model::ModelError::Store("loading it panicked".into())));
        loaded.map_err(|e| InferError::UnknownModel {
            model: format!("{model:?}"),
            reason: e.to_string(),
            served: self.registry.all().iter().map(|m| m.name.clone()).collect(),
        })
    }

    /// Embeds texts, already checked against the limits, with the model at
    /// registry index `model` (see [`Infer::embed`]).
    pub fn embed_on(
        &self,
        model: usize,
        texts: &[String],
        cached: bool,
        reply: impl FnOnce(usize) -> Box<dyn Respond>,
    ) -> Result<(), InferError> {
        if self.stop.load(Ordering::Acquire) {
            return Err(InferError::ShuttingDown);
        }
        let received = Instant::now();
        let embedder = self.registry.get(model);
        // Cached texts are answered from the cache; only the others are embedded.
        let all = texts;
        let (texts, cached) = if cached {
            let hashes: Vec<TextHash> = all.iter().map(|t| cache::text_hash(t)).collect();
            let hits = self.cache.get(&embedder.identity, embedder.dim(), &hashes);
            let mut misses = Vec::new();
            let mut miss_hashes = Vec::new();
            for ((t, h), hit) in all.iter().zip(&hashes).zip(&hits) {
                if hit.is_none() {
                    misses.push(t.as_str());
                    miss_hashes.push(*h);
                }
            }
            (misses, Some(CachedJob { identity: embedder.identity.clone(), hits, miss_hashes }))
        } else {
            (all.iter().map(String::as_str).collect(), None)
        };
        let input = prepare(&embedder, &texts)?;
        let reply_bytes = vembed_protocol::embeddings_reply_bytes(all.len(), embedder.dim());
        let job = Job { model, input, reply: reply(reply_bytes), received, cached };
        self.queue.submit(job).map_err(|e| match e {
            SubmitError::Overloaded { queued, limit } => InferError::Overloaded { queued, limit },
            SubmitError::ShuttingDown => InferError::ShuttingDown,
        })
    }
}

/// What a job of `embedder` embeds for `texts`: their token ids for a local
/// model; for a remote one, whose service tokenizes, the texts with their
/// token counts (capped at its input limit; 0 when they would be guesses).
pub fn prepare<T: AsRef<str>>(embedder: &Embedder, texts: &[T]) -> Result<Input, InferError> {
    if embedder.is_remote() {
        let max = embedder.max_seq_length();
        let exact = embedder.counts_exactly();
        let mut tokens = Vec::with_capacity(texts.len());
        for t in texts {
            let n = if exact { guarded(|| embedder.count_tokens(t.as_ref()))?.min(max) } else { 0 };
            tokens.push(n as u32);
        }
        let texts = texts.iter().map(|t| t.as_ref().to_string()).collect();
        return Ok(Input::Texts { texts, tokens });
    }
    let ids = texts
        .iter()
        .map(|t| guarded(|| embedder.tokenize(t.as_ref())))
        .collect::<Result<_, _>>()?;
    Ok(Input::Ids(ids))
}

/// Runs the tokenizer, third-party code fed untrusted text: a panic in it
/// becomes this request's error, not a dead connection.
fn guarded<R>(f: impl FnOnce() -> Result<R, crate::model::ModelError>) -> Result<R, InferError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(crate::model::ModelError::Tokenizer("tokenizer panicked".into())))
        .map_err(|e| InferError::Tokenizer(e.to_string()))
}

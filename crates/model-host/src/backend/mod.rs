//! The compute behind a model: a small sync trait, as TEI has it. A backend
//! embeds batches of token ids into finished sentence embeddings (pooled and
//! normalized as the model's pipeline says). vembed's own forward pass
//! ([`native`]) and candle-transformers' `BertModel` ([`candle`]) implement
//! it; a remote embedding service is the next one.

pub mod candle;
pub mod native;

use crate::model::Engine;

/// Why a batch could not be embedded. `Clone`, so one failure can answer
/// every request of the batch.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The engine reported an error.
    #[error("the {engine:?} engine failed: {message}")]
    Failed {
        /// Which engine.
        engine: Engine,
        /// What it said.
        message: String,
    },
    /// The forward pass panicked (a bug): the batch's requests get `Internal`.
    #[error("the forward pass panicked: {0}")]
    Panicked(String),
}

/// One batch: token ids per text, special tokens included, already
/// truncated to the model's limit.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    /// The texts' token ids.
    pub ids: &'a [&'a [u32]],
}

/// A model's compute.
pub trait Backend: Send + Sync {
    /// Embeds every text of the batch: `ids.len() × dim()` floats, in order.
    fn embed(&self, batch: Batch<'_>) -> Result<Vec<f32>, BackendError>;
    /// Floats per embedding.
    fn dim(&self) -> usize;
    /// Whether a batch costs `texts × longest` tokens (padding) rather than
    /// its real token count.
    fn pads(&self) -> bool;
    /// Which engine this is.
    fn engine(&self) -> Engine;
    /// Frees what a large batch left behind.
    fn release_buffers(&self) {}
}

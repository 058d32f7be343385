//! A loaded model: its name, identity and limits, its tokens and the
//! [`Backend`] that embeds. Every layer above holds it by `Arc`.

use std::path::PathBuf;

use super::error::ModelError;
use super::tokenize::{TokenInfo, Tokens};
use crate::backend::{Backend, BackendError, Batch, Engine, Runner};
use crate::pipeline::Pipeline;
use crate::precision::Precision;

/// A loaded model, ready to embed.
pub struct Embedder {
    /// Canonical name.
    pub name: String,
    /// Hex sha256 of the weights.
    pub sha256: String,
    /// The folder.
    pub path: PathBuf,
    /// Files worth reporting page-cache residency for.
    pub files: Vec<PathBuf>,
    /// What makes two instances give the same vectors: the weights' sha256
    /// and the pipeline, hashed (32 hex digits), and the weights' precision
    /// when it is not f32. Keys the embedding cache; indexes store it.
    pub identity: String,
    /// How the linear layers' weights are held.
    pub precision: Precision,
    /// None for a remote model: its service pools and normalizes.
    pub(super) pipeline: Option<Pipeline>,
    /// Its tokenizer and counter.
    pub(super) tokens: Tokens,
    pub(super) max_seq_length: usize,
    pub(super) backend: Box<dyn Backend>,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder").field("name", &self.name).field("path", &self.path).finish()
    }
}

impl Embedder {
    /// Embedding dimension.
    pub fn dim(&self) -> usize {
        self.backend.dim()
    }

    /// Tokens kept per text: word pieces for a local model, the service's
    /// input limit for a remote one.
    pub fn max_seq_length(&self) -> usize {
        self.max_seq_length
    }

    /// The pipeline read from the folder; none for a remote model.
    pub fn pipeline(&self) -> Option<&Pipeline> {
        self.pipeline.as_ref()
    }

    /// Whether its vectors come out unit length: as its pipeline says for a
    /// local model; always for a remote one (OpenAI's and Ollama's are, and
    /// TEI is asked to normalize).
    pub fn normalizes(&self) -> bool {
        self.pipeline.as_ref().is_none_or(|p| p.normalize)
    }

    /// Whether this model reads texts and runs its own calls (a remote
    /// model: its service tokenizes and embeds).
    pub fn is_remote(&self) -> bool {
        self.backend.runner().is_some()
    }

    /// Whether [`Embedder::count_tokens`] is exact rather than an estimate.
    pub fn counts_exactly(&self) -> bool {
        self.tokens.counts_exactly()
    }

    /// Tokens of one text (special tokens included), without truncation:
    /// what the model would see if it had no limit. An estimate for a remote
    /// model without a tokenizer ([`Embedder::counts_exactly`]).
    pub fn count_tokens(&self, text: &str) -> Result<usize, ModelError> {
        self.tokens.count(text)
    }

    /// Token ids of one text, with special tokens, truncated to `max_seq_length`.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        self.tokens.ids(text)
    }

    /// Token ids of one text, with special tokens, without truncation (as
    /// many as [`Embedder::count_tokens`] counts; the same ids as
    /// [`Embedder::tokenize`] for a text within `max_seq_length`).
    pub fn tokenize_untruncated(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        self.tokens.ids_untruncated(text)
    }

    /// The tokens of one text as TEI's `/tokenize` lists them: id, text,
    /// whether it is a special token, and its byte range in `text` (none
    /// for special tokens). Truncated to `max_seq_length` when `truncate`.
    pub fn tokens_of(
        &self,
        text: &str,
        add_special_tokens: bool,
        truncate: bool,
    ) -> Result<Vec<TokenInfo>, ModelError> {
        self.tokens.tokens_of(text, add_special_tokens, truncate)
    }

    /// Which engine runs this model.
    pub fn engine(&self) -> Engine {
        self.backend.engine()
    }

    /// Whether a batch costs its padded size (`texts × longest`) rather
    /// than its real token count.
    pub fn pads_batches(&self) -> bool {
        self.backend.pads()
    }

    /// Frees buffers a large batch left behind.
    pub fn release_buffers(&self) {
        self.backend.release_buffers();
    }

    /// What takes a remote model's jobs of texts (its lanes); none for a
    /// local model, whose jobs of token ids go through the batcher.
    pub fn runner(&self) -> Option<&dyn Runner> {
        self.backend.runner()
    }

    /// A remote model's service and counters.
    pub fn upstream(&self) -> Option<vembed_protocol::UpstreamStatus> {
        self.backend.upstream()
    }

    /// Embeds texts given as token ids in one forward pass.
    /// Returns `ids.len() * dim()` floats.
    pub fn embed_ids<T: AsRef<[u32]>>(&self, ids: &[T]) -> Result<Vec<f32>, BackendError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        struct Disarm;
        impl Drop for Disarm {
            fn drop(&mut self) {
                crate::fault::after_forward();
            }
        }
        let _disarm = Disarm;
        crate::fault::before_forward(ids);
        let rows: Vec<&[u32]> = ids.iter().map(AsRef::as_ref).collect();
        self.backend.embed(Batch { ids: &rows, texts: &[] })
    }
}

//! What goes in at the door ([`Work`]) and where its one result comes out
//! ([`Reply`]).

use std::sync::Arc;

use vembed_protocol::{Embeddings, ModelRef};

use super::error::InferError;
use crate::model::Embedder;

/// The model a request is for.
#[derive(Debug, Clone)]
pub enum Model {
    /// As the request names it: a role, a name, a path or a sha256; a model
    /// the host was not started with is loaded if it is on disk.
    Named(ModelRef),
    /// A model the caller resolved already ([`super::Infer::model`]).
    Loaded(Arc<Embedder>),
}

/// How a request waits for room in a full queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// A client is waiting: refused at once with `Overloaded`, so it can
    /// retry or back off (and never waits behind a flood).
    Interactive,
    /// The host's own bulk work (indexing): waits for room, behind clients.
    Background,
}

/// One embedding request, from any door.
#[derive(Debug, Clone)]
pub struct Work {
    /// The texts, in order.
    pub texts: Vec<String>,
    /// The model.
    pub model: Model,
    /// Answer what the embedding cache holds from it (`EmbedCached`), and
    /// keep what is embedded.
    pub cached: bool,
    /// Cut a text longer than the model's limit (sentence-transformers'
    /// behaviour); when false such a text is [`InferError::TooLong`].
    pub truncate: bool,
    /// How it waits in a full queue.
    pub class: Class,
    /// Most texts the sending door takes in one request (the socket's
    /// `max_texts_per_request`, HTTP's larger bound); the door splits them
    /// into jobs of the host's size either way.
    pub max_texts: usize,
}

impl Work {
    /// An interactive request of `texts` for `model`, truncating, not cached.
    pub fn new(texts: Vec<String>, model: Model, max_texts: usize) -> Work {
        Work { texts, model, cached: false, truncate: true, class: Class::Interactive, max_texts }
    }
}

/// Where a request's result goes: called exactly once, with every vector in
/// input order or one error.
pub trait Reply: Send {
    /// Delivers the result; a receiver that is gone drops it.
    fn reply(self: Box<Self>, result: Result<Embeddings, InferError>);
}

/// A host thread waiting on a channel (the indexer).
impl Reply for crossbeam_channel::Sender<Result<Embeddings, InferError>> {
    fn reply(self: Box<Self>, result: Result<Embeddings, InferError>) {
        let _ = self.send(result);
    }
}

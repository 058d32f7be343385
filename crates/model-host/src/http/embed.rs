//! Texts in, vectors out: every HTTP shape embeds through here, and this
//! goes through the inference door exactly as the socket does (the door
//! splits a request of many inputs into jobs of the host's size and answers
//! them together in input order).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::oneshot;
use vembed_protocol::Embeddings;

use super::caller::{Caller, shown_name};
use super::error::{ApiError, Kind};
use super::{MAX_INPUTS, State};
use crate::infer::{InferError, Model, Reply, Work};
use crate::model::Embedder;
use crate::pipeline::normalize;

/// The vectors of one request, in input order.
pub(crate) struct Output {
    /// The canonical name of the model, as the caller may see it.
    pub model: String,
    /// Floats per vector.
    pub dim: usize,
    /// The model's own tokens per input, after truncation.
    pub tokens: Vec<u32>,
    /// `tokens.len() * dim` floats.
    pub data: Vec<f32>,
}

impl Output {
    /// The vectors, one slice per input.
    pub fn rows(&self) -> impl Iterator<Item = &[f32]> {
        self.data.chunks_exact(self.dim.max(1))
    }

    /// Keeps the first `dims` floats of every vector and renormalizes each
    /// (the `dimensions` of OpenAI and Ollama, sentence-transformers'
    /// `truncate_dim` followed by normalization).
    pub fn cut(&mut self, dims: usize) {
        if dims >= self.dim {
            return;
        }
        let mut data = Vec::with_capacity(self.tokens.len() * dims);
        for row in self.data.chunks_exact(self.dim) {
            let start = data.len();
            data.extend_from_slice(&row[..dims]);
            normalize(&mut data[start..]);
        }
        self.data = data;
        self.dim = dims;
    }

    /// L2-normalizes every vector.
    pub fn normalize(&mut self) {
        let dim = self.dim.max(1);
        for row in self.data.chunks_exact_mut(dim) {
            normalize(row);
        }
    }

    /// The model's tokens over all inputs.
    pub fn total_tokens(&self) -> u64 {
        self.tokens.iter().map(|&t| u64::from(t)).sum()
    }
}

/// Checks a `dimensions` request against the model's dimension.
pub(crate) fn check_dimensions(
    requested: Option<i64>,
    dim: usize,
) -> Result<Option<usize>, ApiError> {
    match requested {
        None => Ok(None),
        Some(d) if d >= 1 && d as u64 <= dim as u64 => Ok(Some(d as usize)),
        Some(d) => Err(ApiError::bad(format!(
            "dimensions must be between 1 and {dim} (the model's dimension), got {d}"
        ))),
    }
}

/// The door's result, handed to the waiting request.
struct OneShot(oneshot::Sender<Result<Embeddings, InferError>>);

impl Reply for OneShot {
    fn reply(self: Box<Self>, result: Result<Embeddings, InferError>) {
        let _ = self.0.send(result);
    }
}

/// Embeds `texts` with `model`. With `truncate` off, an input longer than
/// the model's `max_seq_length` is an error ([`Kind::TooLong`]) instead of
/// being cut.
pub(crate) async fn embed(
    state: &Arc<State>,
    who: Caller,
    model: Arc<Embedder>,
    texts: Vec<String>,
    truncate: bool,
) -> Result<Output, ApiError> {
    if texts.len() > MAX_INPUTS {
        return Err(ApiError::new(
            Kind::TooLarge,
            format!(
                "{} inputs in one request; the limit is {MAX_INPUTS} (split the request)",
                texts.len()
            ),
        ));
    }
    let _share = match who {
        Caller::Owner => None,
        Caller::Anonymous => Some(AnonymousShare::take(state, texts.len())?),
    };
    let name = shown_name(&model.name, &model.sha256, who).into_owned();
    // Checking lengths and tokenizing take real CPU time: off the reactor,
    // unless the request is a few short texts (a query: tens of
    // microseconds), where the hop to a blocking thread would cost more.
    let small =
        texts.len() <= INLINE_TEXTS && texts.iter().map(String::len).sum::<usize>() <= INLINE_BYTES;
    let work = Work { truncate, ..Work::new(texts, Model::Loaded(model), MAX_INPUTS) };
    let (tx, rx) = oneshot::channel();
    let infer = state.infer.clone();
    if small {
        infer.embed(work, |_| Box::new(OneShot(tx)));
    } else {
        tokio::task::spawn_blocking(move || infer.embed(work, |_| Box::new(OneShot(tx))))
            .await
            .map_err(|e| {
                ApiError::new(Kind::Internal, format!("the request's task failed: {e}"))
            })?;
    }
    let e = rx
        .await
        .map_err(|_| ApiError::new(Kind::ShuttingDown, "the host stopped before answering"))?
        .map_err(ApiError::from)?;
    Ok(Output { model: name, dim: e.dim as usize, tokens: e.tokens, data: e.data })
}

/// Texts of anonymous callers held by requests in flight, against their
/// share of the queue: [`AnonymousShare::limit`].
#[derive(Default)]
pub(crate) struct AnonymousTexts(AtomicUsize);

/// One anonymous request's part of the anonymous share, given back when
/// the request ends (answered, failed or dropped).
struct AnonymousShare<'a> {
    held: &'a AtomicUsize,
    texts: usize,
}

impl<'a> AnonymousShare<'a> {
    /// Callers without the token (any local user) may hold at most half of
    /// the queue's texts at once, so that another user filling the queue
    /// cannot make the host's own user's requests fail with `Overloaded`
    /// (Victor would then fall back to random vectors).
    fn limit(state: &State) -> usize {
        (state.infer.limits().max_queue_texts as usize / 2).max(1)
    }

    fn take(state: &'a State, texts: usize) -> Result<AnonymousShare<'a>, ApiError> {
        let held = &state.anonymous_texts.0;
        let limit = Self::limit(state);
        let before = held.fetch_add(texts, Ordering::AcqRel);
        if before + texts > limit {
            held.fetch_sub(texts, Ordering::AcqRel);
            return Err(ApiError::new(
                Kind::Overloaded,
                format!(
                    "callers without the host's token may have at most {limit} texts queued at \
                     once (half the queue; the rest is kept for the host's own user), and \
                     {before} are; retry shortly, or send fewer texts per request"
                ),
            ));
        }
        Ok(AnonymousShare { held, texts })
    }
}

impl Drop for AnonymousShare<'_> {
    fn drop(&mut self) {
        self.held.fetch_sub(self.texts, Ordering::AcqRel);
    }
}

/// Requests of at most this many texts ...
const INLINE_TEXTS: usize = 8;
/// ... and this many bytes are tokenized on the reactor thread itself.
const INLINE_BYTES: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_renormalizes_each_row() {
        let mut o = Output {
            model: "m".into(),
            dim: 4,
            tokens: vec![1, 1],
            data: vec![3.0, 4.0, 100.0, 100.0, 0.0, 2.0, 5.0, 5.0],
        };
        o.cut(2);
        assert_eq!(o.dim, 2);
        assert_eq!(o.data, vec![0.6, 0.8, 0.0, 1.0]);
        o.cut(3);
        assert_eq!(o.data.len(), 4);
        assert!(check_dimensions(Some(0), 384).is_err());
        assert!(check_dimensions(Some(385), 384).is_err());
        assert_eq!(check_dimensions(Some(384), 384).unwrap(), Some(384));
    }
}

//! Texts in, vectors out: every HTTP shape embeds through here, and this
//! calls the inference layer exactly as the socket does. A request of more
//! inputs than one socket request may carry is queued as several jobs of
//! the host's size, answered together in input order.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::oneshot;
use vembed_protocol::Embeddings;

use super::caller::{Caller, shown_name};
use super::error::{ApiError, Kind};
use super::{MAX_INPUTS, State};
use crate::infer::Infer;
use crate::model::Embedder;
use crate::pipeline::normalize;
use crate::queue::{JobError, Respond};

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

/// A job's result, handed to the waiting request.
struct Reply(oneshot::Sender<Result<Embeddings, JobError>>);

impl Respond for Reply {
    fn respond(self: Box<Self>, result: Result<Embeddings, JobError>) {
        let _ = self.0.send(result);
    }
}

/// Embeds `texts` with the model at registry index `model`. With
/// `truncate` off, an input longer than the model's `max_seq_length` is an
/// error ([`Kind::TooLong`]) instead of being cut.
pub(crate) async fn embed(
    state: &Arc<State>,
    who: Caller,
    model: usize,
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
    let infer = state.infer.clone();
    let embedder = infer.registry.get(model);
    let name = shown_name(&embedder.name, &embedder.sha256, who).into_owned();
    if texts.is_empty() {
        let dim = embedder.dim();
        return Ok(Output { model: name, dim, tokens: vec![], data: vec![] });
    }
    // Checking lengths and tokenizing take real CPU time: off the reactor,
    // unless the request is a few short texts (a query: tens of
    // microseconds), where the hop to a blocking thread would cost more.
    let small =
        texts.len() <= INLINE_TEXTS && texts.iter().map(String::len).sum::<usize>() <= INLINE_BYTES;
    let queued = if small {
        submit(&infer, &embedder, model, &texts, truncate)?
    } else {
        tokio::task::spawn_blocking(move || submit(&infer, &embedder, model, &texts, truncate))
            .await
            .map_err(|e| {
                ApiError::new(Kind::Internal, format!("the request's task failed: {e}"))
            })??
    };

    let mut out: Option<Output> = None;
    for rx in queued {
        let part = rx
            .await
            .map_err(|_| ApiError::new(Kind::ShuttingDown, "the host stopped before answering"))?
            .map_err(ApiError::from)?;
        match &mut out {
            None => {
                out = Some(Output {
                    model: name.clone(),
                    dim: part.dim as usize,
                    tokens: part.tokens,
                    data: part.data,
                })
            }
            Some(o) => {
                o.tokens.extend_from_slice(&part.tokens);
                o.data.extend_from_slice(&part.data);
            }
        }
    }
    out.ok_or_else(|| ApiError::new(Kind::Internal, "no result"))
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
        (state.infer.limits.max_queue_texts as usize / 2).max(1)
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

/// Checks `texts` against the limits (and, without `truncate`, the model's
/// length), tokenizes them and queues them in jobs of the host's size.
fn submit(
    infer: &Infer,
    embedder: &Embedder,
    model: usize,
    texts: &[String],
    truncate: bool,
) -> Result<Vec<oneshot::Receiver<Result<Embeddings, JobError>>>, ApiError> {
    let step = (infer.limits.max_texts_per_request as usize).max(1);
    for (c, chunk) in texts.chunks(step).enumerate() {
        infer.check(chunk).map_err(|e| ApiError::from(renumber(e, c * step)))?;
    }
    // A remote model without an exact count leaves its limit to its service.
    if !truncate && embedder.counts_exactly() {
        let max = embedder.max_seq_length();
        for (index, text) in texts.iter().enumerate() {
            let n = embedder
                .count_tokens(text)
                .map_err(|e| ApiError::new(Kind::Internal, e.to_string()))?;
            if n > max {
                return Err(ApiError::new(
                    Kind::TooLong,
                    format!(
                        "input {index} is {n} tokens; the model takes at most {max} \
                         (send truncate: true to cut it, as sentence-transformers does)"
                    ),
                ));
            }
        }
    }
    let mut replies = Vec::new();
    for chunk in texts.chunks(step) {
        let (tx, rx) = oneshot::channel();
        infer.embed_on(model, chunk, false, |_| Box::new(Reply(tx)))?;
        replies.push(rx);
    }
    Ok(replies)
}

/// An error about a text of the chunk that starts at input `start`, with
/// the text numbered in the whole request.
fn renumber(e: crate::infer::InferError, start: usize) -> crate::infer::InferError {
    use crate::infer::InferError;
    match e {
        InferError::TextTooLarge { index, bytes, limit } => {
            InferError::TextTooLarge { index: start + index, bytes, limit }
        }
        other => other,
    }
}

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

//! Texts into what a job carries, for its model: token ids for a local
//! model; for a remote one, whose service tokenizes, the texts with their
//! token counts. The tokenizer is third-party code fed untrusted text: a
//! panic in it is this request's error.

use super::error::InferError;
use crate::model::{Embedder, ModelError};
use crate::queue::Input;

/// What a job of `embedder` embeds for `texts`, whose places in the whole
/// request are `index`. With `truncate` off, a text longer than the model
/// takes is [`InferError::TooLong`]; its tokens are counted in the same pass
/// that yields its ids, so nothing is tokenized twice. A remote model's
/// counts are capped at its input limit, and 0 when they would be guesses
/// (its service then keeps its own limit).
pub(super) fn input(
    embedder: &Embedder,
    texts: &[&str],
    index: impl Fn(usize) -> usize,
    truncate: bool,
) -> Result<Input, InferError> {
    let max = embedder.max_seq_length();
    let too_long = |i: usize, tokens: usize| -> Result<(), InferError> {
        match truncate || tokens <= max {
            true => Ok(()),
            false => Err(InferError::TooLong { index: index(i), tokens, max }),
        }
    };
    if embedder.is_remote() {
        let exact = embedder.counts_exactly();
        let mut tokens = Vec::with_capacity(texts.len());
        for (i, t) in texts.iter().enumerate() {
            let n = if exact { guarded(|| embedder.count_tokens(t))? } else { 0 };
            too_long(i, n)?;
            tokens.push(n.min(max) as u32);
        }
        let texts = texts.iter().map(|t| t.to_string()).collect();
        return Ok(Input::Texts { texts, tokens });
    }
    let mut ids = Vec::with_capacity(texts.len());
    for (i, t) in texts.iter().enumerate() {
        if truncate {
            ids.push(guarded(|| embedder.tokenize(t))?);
        } else {
            let all = guarded(|| embedder.tokenize_untruncated(t))?;
            too_long(i, all.len())?;
            ids.push(all);
        }
    }
    Ok(Input::Ids(ids))
}

/// Runs the tokenizer: a panic in it becomes this request's error, not a
/// dead connection.
fn guarded<R>(f: impl FnOnce() -> Result<R, ModelError>) -> Result<R, InferError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(ModelError::Tokenizer("tokenizer panicked".into())))
        .map_err(|e| InferError::Tokenizer(e.to_string()))
}

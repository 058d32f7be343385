//! Texts into what a job carries, for its model: token ids for a local
//! model; for a remote one, whose service tokenizes, the texts with their
//! token counts. The tokenizer is third-party code fed untrusted text: a
//! panic in it is this request's error.

use super::error::InferError;
use crate::model::{Embedder, ModelError};
use crate::queue::Input;

/// What a job of `embedder` embeds for `texts` (remote counts are capped at
/// the model's input limit, and 0 when they would be guesses).
pub(super) fn input<T: AsRef<str>>(embedder: &Embedder, texts: &[T]) -> Result<Input, InferError> {
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

/// Refuses a text longer than the model takes (when the caller asked not
/// to truncate). A remote model without an exact count leaves its limit to
/// its service.
pub(super) fn check_lengths(embedder: &Embedder, texts: &[String]) -> Result<(), InferError> {
    if !embedder.counts_exactly() {
        return Ok(());
    }
    let max = embedder.max_seq_length();
    for (index, text) in texts.iter().enumerate() {
        let tokens = guarded(|| embedder.count_tokens(text))?;
        if tokens > max {
            return Err(InferError::TooLong { index, tokens, max });
        }
    }
    Ok(())
}

/// Runs the tokenizer: a panic in it becomes this request's error, not a
/// dead connection.
fn guarded<R>(f: impl FnOnce() -> Result<R, ModelError>) -> Result<R, InferError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(ModelError::Tokenizer("tokenizer panicked".into())))
        .map_err(|e| InferError::Tokenizer(e.to_string()))
}

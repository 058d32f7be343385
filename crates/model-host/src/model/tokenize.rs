//! A model's tokenizer and token counter, as its folder configures them:
//! truncation at the pipeline's `max_seq_length`, no padding (batches are
//! built from the ids), and an untruncated copy that counts a text's full
//! length. A remote model has no tokenizer (its service tokenizes) and
//! counts with cl100k for OpenAI's models, its configured tokenizer, or an
//! estimate.

use std::path::Path;

use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use super::error::ModelError;
use crate::config::ConfigError;

/// One token of a text (see [`Embedder::tokens_of`](crate::Embedder::tokens_of)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// Its id in the model's vocabulary.
    pub id: u32,
    /// The text it covers (the token itself for a special token).
    pub text: String,
    /// `[CLS]`, `[SEP]` and the like.
    pub special: bool,
    /// Its byte range in the input; none for a special token.
    pub range: Option<(usize, usize)>,
}

/// How a model counts a text's tokens.
pub(super) enum Counter {
    /// Exactly, with the model's tokenizer (truncation off).
    Tokenizer(Box<Tokenizer>),
    /// Exactly for OpenAI's embedding models: cl100k_base.
    Cl100k,
    /// An estimate for a remote model without a local tokenizer: one
    /// token per 4 bytes.
    Estimate,
}

/// Bytes per token a remote model without a tokenizer is estimated at.
const BYTES_PER_TOKEN: usize = 4;

/// What turns a model's texts into tokens.
pub(super) struct Tokens {
    /// The model's name, for errors.
    name: String,
    /// None for a remote model: its service tokenizes.
    tokenizer: Option<Tokenizer>,
    /// Counts a text's full length.
    counter: Counter,
}

impl Tokens {
    /// A local model's: `tokenizer.json` in `dir`, truncating at `max_seq_length`.
    pub(super) fn local(
        name: &str,
        dir: &Path,
        max_seq_length: usize,
    ) -> Result<Tokens, ModelError> {
        let path = dir.join("tokenizer.json");
        let counter = Counter::Tokenizer(Box::new(untruncated(&path)?));
        let mut tokenizer =
            Tokenizer::from_file(&path).map_err(|e| ConfigError::invalid(&path, e))?;
        // tokenizer.json may carry its own truncation and fixed padding (all-MiniLM-L6-v2:
        // 128 and 128). sentence-transformers truncates at max_seq_length and pads per batch.
        tokenizer
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length: max_seq_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        tokenizer.with_padding(None);
        Ok(Tokens { name: name.to_string(), tokenizer: Some(tokenizer), counter })
    }

    /// A remote model's: no tokenizer, counted by `counter`.
    pub(super) fn remote(name: &str, counter: Counter) -> Tokens {
        Tokens { name: name.to_string(), tokenizer: None, counter }
    }

    /// Whether [`Tokens::count`] is exact rather than an estimate.
    pub(super) fn counts_exactly(&self) -> bool {
        !matches!(self.counter, Counter::Estimate)
    }

    /// Tokens of one text (special tokens included), without truncation.
    pub(super) fn count(&self, text: &str) -> Result<usize, ModelError> {
        match &self.counter {
            Counter::Tokenizer(t) => {
                let enc =
                    t.encode_fast(text, true).map_err(|e| ModelError::Tokenizer(e.to_string()))?;
                Ok(enc.get_ids().len())
            }
            Counter::Cl100k => Ok(tiktoken_rs::cl100k_base_singleton().encode_ordinary(text).len()),
            Counter::Estimate => Ok(text.len().div_ceil(BYTES_PER_TOKEN)),
        }
    }

    /// Token ids of one text, with special tokens, not truncated (a local
    /// model's counter). Up to `max_seq_length` they are the ids
    /// [`Tokens::ids`] gives, so a text checked for length this way need
    /// not be tokenized again.
    pub(super) fn ids_untruncated(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        // A remote model has no ids, only counts.
        self.tokenizer()?;
        let Counter::Tokenizer(t) = &self.counter else {
            unreachable!("a local model counts with its own tokenizer");
        };
        let enc = t.encode_fast(text, true).map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Token ids of one text, with special tokens, truncated to `max_seq_length`.
    pub(super) fn ids(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        let enc = self
            .tokenizer()?
            .encode_fast(text, true)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    fn tokenizer(&self) -> Result<&Tokenizer, ModelError> {
        self.tokenizer.as_ref().ok_or_else(|| {
            ModelError::Tokenizer(format!(
                "{} is a remote model: its service tokenizes, and token ids are not available here",
                self.name
            ))
        })
    }

    /// The tokens of one text as TEI's `/tokenize` lists them: id, text,
    /// whether it is a special token, and its byte range in `text` (none
    /// for special tokens). Truncated to `max_seq_length` when `truncate`.
    pub(super) fn tokens_of(
        &self,
        text: &str,
        add_special_tokens: bool,
        truncate: bool,
    ) -> Result<Vec<TokenInfo>, ModelError> {
        let tok = match (&self.counter, truncate) {
            (Counter::Tokenizer(c), false) if self.tokenizer.is_some() => c,
            _ => self.tokenizer()?,
        };
        let enc = tok
            // `encode` tracks byte offsets; `encode_fast` does not.
            .encode(text, add_special_tokens)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        let special = enc.get_special_tokens_mask();
        Ok(enc
            .get_ids()
            .iter()
            .zip(enc.get_tokens())
            .zip(enc.get_offsets())
            .zip(special)
            .map(|(((&id, token), &(start, stop)), &sp)| {
                let special = sp == 1;
                let range = (!special).then_some((start, stop));
                let text = range
                    .and_then(|(a, b)| text.get(a..b))
                    .map_or_else(|| token.clone(), str::to_string);
                TokenInfo { id, text, special, range }
            })
            .collect())
    }
}

/// The tokenizer in `path` with truncation and padding off, to count a
/// text's full length.
pub(super) fn untruncated(path: &Path) -> Result<Tokenizer, ModelError> {
    let mut t = Tokenizer::from_file(path).map_err(|e| ConfigError::invalid(path, e))?;
    t.with_padding(None);
    t.with_truncation(None).map_err(|e| ModelError::Tokenizer(e.to_string()))?;
    Ok(t)
}

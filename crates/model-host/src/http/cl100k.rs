//! Token-id inputs. OpenAI's embedding API takes token ids in cl100k_base,
//! the tokenizer of its embedding models, and tiktoken clients send them:
//! LangChain's `OpenAIEmbeddings` does by default. The host decodes them
//! back to the exact text (cl100k is byte-level and lossless) and embeds
//! that text with the model's own tokenizer, so the vectors are the model's
//! and equal to sending the text.

use super::error::ApiError;

/// The text `ids` (cl100k_base token ids) encode.
pub(crate) fn decode(ids: &[u32]) -> Result<String, ApiError> {
    let bpe = tiktoken_rs::cl100k_base_singleton();
    let bytes = bpe.decode_bytes(ids).map_err(|e| {
        ApiError::bad(format!(
            "input holds a token id that is not in cl100k_base ({e}); token-id inputs are read \
             as cl100k_base, the tokenizer of OpenAI's embedding models"
        ))
    })?;
    // A list of ids cut in the middle of a character (a client splitting a
    // long text at a token count) leaves a partial UTF-8 sequence at the
    // edge; it is replaced rather than refused.
    Ok(match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_text() {
        let bpe = tiktoken_rs::cl100k_base_singleton();
        for text in ["hello world", "def f(x):\n    return x  # ünïcödé 日本語", ""] {
            let ids: Vec<u32> = bpe.encode_ordinary(text).into_iter().collect();
            assert_eq!(decode(&ids).unwrap(), text);
        }
        assert!(decode(&[u32::MAX]).unwrap_err().message.contains("cl100k_base"));
    }
}

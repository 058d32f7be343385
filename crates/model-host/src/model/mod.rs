//! A sentence-transformers model, in three parts: [`load`] reads a folder
//! (each config file once) or a remote model's settings, [`tokenize`] holds
//! the tokenizer and the token counter, and [`embedder`] is the loaded
//! model every layer above shares: its identity, its limits and the
//! backend that embeds.

mod embedder;
mod error;
mod load;
mod tokenize;

pub use embedder::Embedder;
pub use error::ModelError;
pub use tokenize::TokenInfo;

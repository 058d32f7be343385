//! `vembed-test-tiktoken FILE`: writes cl100k_base.tiktoken, rebuilt from the
//! copy tiktoken-rs bundles (the host decodes token ids with it), so that
//! the Python tests can run LangChain's `OpenAIEmbeddings` with its default
//! settings on a machine that cannot download tiktoken's file. tiktoken
//! checks the file's sha256 against its own pinned hash before using it.

use base64::Engine as _;

fn main() {
    let path = std::env::args().nth(1).expect("usage: vembed-test-tiktoken FILE");
    let bpe = tiktoken_rs::cl100k_base_singleton();
    let mut out = String::new();
    // The mergeable ranks are 0..100256, contiguous; the first id that does
    // not decode is past them (special tokens start at 100257).
    for rank in 0u32.. {
        let Ok(bytes) = bpe.decode_bytes(&[rank]) else { break };
        out.push_str(&base64::engine::general_purpose::STANDARD.encode(bytes));
        out.push(' ');
        out.push_str(&rank.to_string());
        out.push('\n');
    }
    std::fs::write(&path, out).expect("writing the file");
}

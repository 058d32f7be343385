//! The code index: chunking with the real tokenizer.

use vembed_host::model::{Embedder, Engine};
use vembed_index::chunk::chunk_file;
use vembed_tests::model_dir;

/// No chunk exceeds the model's token limit, counted by the real tokenizer
/// without truncation: one 3,000-line function, and a minified one-line
/// JavaScript file.
#[test]
fn no_chunk_exceeds_the_models_token_limit() {
    let e = Embedder::load_named(model_dir().to_str().unwrap(), Engine::Native).unwrap();
    let max = e.max_seq_length();
    let count = |s: &str| e.count_tokens(s).unwrap();
    assert!(count(&"word ".repeat(1000)) > max, "the counter does not truncate");

    let mut huge = String::from("def process_everything(records):\n");
    for i in 0..3000 {
        huge.push_str(&format!("    total_{i} = normalize(records[{i}]) * weight_{i} + bias\n"));
    }
    let minified: String = (0..4000)
        .map(|i| format!("function f{i}(a,b){{return a*{i}+b}};var v{i}=f{i}(1,2);"))
        .collect();
    for (path, text) in [("big.py", huge.as_str()), ("app.min.js", minified.as_str())] {
        let chunks = chunk_file(path, text, max, &count);
        assert!(chunks.len() > 20, "{path}: {} chunks", chunks.len());
        for c in &chunks {
            let n = count(&c.embed_text);
            assert!(n <= max, "{path} lines {}-{}: {n} tokens > {max}", c.start_line, c.end_line);
        }
        // Truncation never drops anything: the model sees each chunk whole.
        for c in chunks.iter().take(5) {
            assert_eq!(e.tokenize(&c.embed_text).unwrap().len(), count(&c.embed_text));
        }
    }
}

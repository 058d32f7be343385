use vembed::{ModelRef, Role};
use vembed_tests::{Env, cosine, golden, model_dir};

#[test]
fn tokenization_matches_golden_input_ids() {
    let e = vembed_host::model::Embedder::load_named(model_dir().to_str().unwrap(), Default::default()).unwrap();
    assert_eq!(e.max_seq_length(), 256, "max_seq_length comes from sentence_bert_config.json");
    assert_eq!(e.dim(), 384);
    for item in golden() {
        let ids = e.tokenize(&item.text).unwrap();
        assert_eq!(ids, item.input_ids, "input_ids of {:?}", item.text);
        assert_eq!(ids.len(), item.n_tokens);
    }
}

#[test]
fn golden_embeddings_alone_and_in_one_batch() {
    let env = Env::new();
    let mut client = env.client();
    let items = golden();
    let texts: Vec<&str> = items.iter().map(|i| i.text.as_str()).collect();
    let batch = client.embed_with(&ModelRef::Role(Role::Unified), &texts).unwrap();
    assert_eq!(batch.len(), items.len());
    for ((item, row), &tokens) in items.iter().zip(batch.rows()).zip(&batch.tokens) {
        let c = cosine(row, &item.embedding);
        assert!(c >= 0.9999, "batch: cosine {c} for {:?}", item.text);
        assert_eq!(tokens as usize, item.n_tokens, "tokens of {:?}", item.text);
        let norm: f32 = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "normalized: {norm}");
    }
    for item in &items {
        let alone = client.embed(&[item.text.as_str()]).unwrap();
        let c = cosine(&alone[0], &item.embedding);
        assert!(c >= 0.9999, "alone: cosine {c} for {:?}", item.text);
    }
}

#[test]
fn mixed_short_and_long_texts_in_one_batch_match_alone() {
    let env = Env::new();
    let mut client = env.client();
    let long = "fn main() { println!(\"hello\"); } ".repeat(200);
    let exact = "word ".repeat(254); // 254 pieces + [CLS] + [SEP] = exactly 256
    let texts = ["a", long.as_str(), "short query about sockets", exact.as_str(), "", "x y z"];
    let batch = client.embed(&texts).unwrap();
    let out = client.embed_with(&ModelRef::Role(Role::Unified), &texts).unwrap();
    assert_eq!(out.tokens[1], 256, "long text truncated at max_seq_length");
    assert_eq!(out.tokens[3], 256, "text of exactly max_seq_length");
    for (i, t) in texts.iter().enumerate() {
        let alone = client.embed(&[t]).unwrap();
        let c = cosine(&alone[0], &batch[i]);
        assert!(c >= 0.99999, "text {i}: batch vs alone cosine {c}");
    }
}

#[test]
fn empty_and_whitespace_texts_are_valid() {
    let env = Env::new();
    let mut client = env.client();
    let empty =
        golden().into_iter().find(|i| i.text.is_empty()).expect("golden has the empty string");
    let out = client.embed_with(&ModelRef::Role(Role::Unified), &["", " ", "\n\t  \r\n"]).unwrap();
    for (row, &tokens) in out.rows().zip(&out.tokens) {
        assert_eq!(tokens, 2, "only [CLS] and [SEP]");
        let c = cosine(row, &empty.embedding);
        assert!(c >= 0.9999, "cosine {c} with sentence-transformers' empty-string embedding");
    }
    let none = client.embed(&[]).unwrap();
    assert!(none.is_empty());
}

use vembed::{ModelRef, Role};
use vembed_host::{Embedder, Engine};
use vembed_tests::{Env, assert_golden_through, cosine, golden, model_dir};

#[test]
fn tokenization_matches_golden_input_ids() {
    let e = Embedder::load_named(model_dir().to_str().unwrap(), Engine::Native).unwrap();
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
    assert_golden_through(&mut client, &golden());
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

/// Both engines, in process: every golden item alone and all of them in one
/// batch match sentence-transformers, and the engines match each other.
#[test]
fn native_and_candle_engines_match_golden_alone_and_batched() {
    vembed_host::init_thread_pool(2);
    let items = golden();
    let dir = model_dir();
    let native = Embedder::load_named(dir.to_str().unwrap(), Engine::Native).unwrap();
    let candle = Embedder::load_named(dir.to_str().unwrap(), Engine::Candle).unwrap();
    assert_eq!(native.engine(), Engine::Native, "all-MiniLM-L6-v2 runs on the native engine");
    assert_eq!(candle.engine(), Engine::Candle);
    let ids: Vec<Vec<u32>> = items.iter().map(|i| native.tokenize(&i.text).unwrap()).collect();
    let dim = native.dim();
    let mut worst = 1f32;
    for e in [&native, &candle] {
        let batch = e.embed_ids(&ids).unwrap();
        for (i, item) in items.iter().enumerate() {
            let row = &batch[i * dim..(i + 1) * dim];
            let alone = e.embed_ids(&ids[i..i + 1]).unwrap();
            for (how, v) in [("batch", row), ("alone", alone.as_slice())] {
                let c = cosine(v, &item.embedding);
                worst = worst.min(c);
                assert!(c >= 0.9999, "{:?} {how}: cosine {c} for {:?}", e.engine(), item.text);
            }
        }
    }
    let (a, b) = (native.embed_ids(&ids).unwrap(), candle.embed_ids(&ids).unwrap());
    for (i, (x, y)) in a.chunks(dim).zip(b.chunks(dim)).enumerate() {
        let c = cosine(x, y);
        assert!(c >= 0.99999, "native vs candle: cosine {c} for {:?}", items[i].text);
    }
    eprintln!("worst cosine against sentence-transformers: {worst}");
}

/// The native engine's small-batch path (a few tokens, weights in packed
/// panels, a spinning team) and its gemm path (many tokens) agree: the same
/// texts embedded alone, in small batches and in one large batch.
#[test]
fn native_small_and_large_batches_agree() {
    vembed_host::init_thread_pool(2);
    let e = Embedder::load_named(model_dir().to_str().unwrap(), Engine::Native).unwrap();
    let long = "impl Drop for Guard { fn drop(&mut self) { self.release(); } } ".repeat(40);
    let exact = "word ".repeat(254); // exactly max_seq_length with [CLS] and [SEP]
    let texts: Vec<String> =
        ["a", "x y z", long.as_str(), exact.as_str(), "", "tool to read files"]
            .iter()
            .cycle()
            .take(30)
            .map(|s| s.to_string())
            .collect();
    let ids: Vec<Vec<u32>> = texts.iter().map(|t| e.tokenize(t).unwrap()).collect();
    assert_eq!(ids[3].len(), e.max_seq_length());
    let dim = e.dim();
    let all = e.embed_ids(&ids).unwrap();
    for (i, t) in ids.iter().enumerate() {
        let alone = e.embed_ids(std::slice::from_ref(t)).unwrap();
        let c = cosine(&alone, &all[i * dim..(i + 1) * dim]);
        assert!(c >= 0.99999, "text {i}: alone vs large batch cosine {c}");
    }
    let small: Vec<Vec<u32>> = [0usize, 1, 4, 5].iter().map(|&i| ids[i].clone()).collect();
    let out = e.embed_ids(&small).unwrap();
    for (j, &i) in [0usize, 1, 4, 5].iter().enumerate() {
        let c = cosine(&out[j * dim..(j + 1) * dim], &all[i * dim..(i + 1) * dim]);
        assert!(c >= 0.99999, "text {i}: small batch vs large batch cosine {c}");
    }
}

/// The kernels' AVX2 and baseline forms (chosen with `VEMBED_SIMD`, as on a
/// CPU without AVX-512) match sentence-transformers too, through the host.
#[test]
fn narrower_simd_forms_match_golden() {
    use std::io::BufRead;
    let items = golden();
    let texts: Vec<&str> = items.iter().map(|i| i.text.as_str()).collect();
    for simd in ["avx2", "scalar"] {
        let env = Env::new();
        let mut host = env
            .command("vembed-host")
            .env("VEMBED_SIMD", simd)
            .arg("--socket")
            .arg(&env.socket)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawning vembed-host");
        let mut line = String::new();
        std::io::BufReader::new(host.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert!(line.starts_with("vembed-host ready"), "{simd}: {line}");
        let mut client = vembed::Client::connect(&env.socket).unwrap();
        let batch = client.embed_with(&ModelRef::Role(Role::Unified), &texts).unwrap();
        for (item, row) in items.iter().zip(batch.rows()) {
            let c = cosine(row, &item.embedding);
            assert!(c >= 0.9999, "{simd} batch: cosine {c} for {:?}", item.text);
        }
        for item in items.iter().take(6) {
            let alone = client.embed(&[item.text.as_str()]).unwrap();
            let c = cosine(&alone[0], &item.embedding);
            assert!(c >= 0.9999, "{simd} alone: cosine {c} for {:?}", item.text);
        }
        client.shutdown().unwrap();
        host.wait().unwrap();
    }
}

use std::collections::HashMap;
use std::process::Stdio;

use vembed_tests::{Env, cosine, parse_embed_lines};

/// 8 client processes × 200 requests of distinct texts at once: every answer
/// equals its own text's embedding computed alone.
#[test]
fn eight_processes_two_hundred_requests_each() {
    let env = Env::new();
    let mut client = env.client();
    let texts: Vec<Vec<String>> = (0..8)
        .map(|p| {
            (0..200)
                .map(|i| {
                    let pad = "more context ".repeat((i * 7 + p * 3) % 40);
                    format!("process {p} request {i}: how is item {} handled? {pad}", p * 1000 + i)
                })
                .collect()
        })
        .collect();
    let children: Vec<_> = texts
        .iter()
        .map(|lines| {
            let input: String =
                lines.iter().map(|t| serde_json::to_string(t).unwrap() + "\n").collect();
            let mut child = env
                .command("vembed")
                .args(["embed", "--jsonl", "--batch-size", "1"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdin = child.stdin.take().unwrap();
            std::thread::spawn(move || {
                use std::io::Write;
                stdin.write_all(input.as_bytes()).unwrap();
            });
            child
        })
        .collect();
    let outputs: Vec<_> = children.into_iter().map(|c| c.wait_with_output().unwrap()).collect();

    let mut alone: HashMap<&str, Vec<f32>> = HashMap::new();
    for lines in &texts {
        for t in lines {
            alone.insert(t, client.embed(&[t.as_str()]).unwrap().remove(0));
        }
    }
    for (p, out) in outputs.iter().enumerate() {
        assert!(out.status.success(), "process {p}: {}", String::from_utf8_lossy(&out.stderr));
        let rows = parse_embed_lines(&out.stdout);
        assert_eq!(rows.len(), 200, "process {p} lost answers");
        for (i, (emb, _)) in rows.iter().enumerate() {
            let own = &alone[texts[p][i].as_str()];
            let c = cosine(emb, own);
            assert!(c >= 0.99999, "process {p} request {i}: cosine {c} with its own text");
            // And it is not some other text's embedding.
            let other = &alone[texts[(p + 1) % 8][i].as_str()];
            assert!(cosine(emb, other) < 0.9999, "process {p} request {i} looks swapped");
        }
    }
    let status = client.status().unwrap();
    assert!(status.requests >= 1600, "host answered {} requests", status.requests);
}

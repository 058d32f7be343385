use vembed_tests::{Env, cosine, parse_embed_lines};

/// The wire protocol as documented is enough for a program in another
/// language: the plain-Python example client gets the same embeddings.
#[test]
fn the_python_example_speaks_the_protocol() {
    let env = Env::new();
    let mut client = env.client();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/python/vembed_client.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg("--socket")
        .arg(&env.socket)
        .args(["hello from python", "", "日本語"])
        .output()
        .expect("python3 is part of the machine");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows = parse_embed_lines(&out.stdout);
    assert_eq!(rows.len(), 3);
    let direct = client.embed(&["hello from python", "", "日本語"]).unwrap();
    for (i, (e, _)) in rows.iter().enumerate() {
        assert!(cosine(e, &direct[i]) > 0.99999, "row {i}");
    }
    assert_eq!(rows[1].1, 2);
}

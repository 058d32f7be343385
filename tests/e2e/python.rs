use vembed_tests::{Env, cosine, parse_embed_lines};

/// Runs `examples/python/vembed_client.py ARGS` against `env`'s host.
fn python_client(env: &Env, args: &[&str]) -> std::process::Output {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/python/vembed_client.py");
    std::process::Command::new("python3")
        .arg(script)
        .arg("--socket")
        .arg(&env.socket)
        .args(args)
        .output()
        .expect("python3 is part of the machine")
}

/// The wire protocol as documented is enough for a program in another
/// language: the plain-Python example client gets the same embeddings.
#[test]
fn the_python_example_speaks_the_protocol() {
    let env = Env::new();
    let mut client = env.client();
    let out = python_client(&env, &["hello from python", "", "日本語"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows = parse_embed_lines(&out.stdout);
    assert_eq!(rows.len(), 3);
    let direct = client.embed(&["hello from python", "", "日本語"]).unwrap();
    for (i, (e, _)) in rows.iter().enumerate() {
        assert!(cosine(e, &direct[i]) > 0.99999, "row {i}");
    }
    assert_eq!(rows[1].1, 2);
}

/// Other languages search a code index through the host with the same protocol.
#[test]
fn the_python_example_searches_through_the_host() {
    let env = Env::new().with_private_cache();
    let repo = env.path("repo");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(
        repo.join("mail.py"),
        "def send_welcome_email(user):\n    \"\"\"Email a greeting to a user who just signed up.\"\"\"\n    smtp.send(user.email, 'Welcome!')\n",
    )
    .unwrap();
    std::fs::write(repo.join("math.py"), "def mean(xs):\n    return sum(xs) / len(xs)\n").unwrap();
    let mut client = env.client();
    let req =
        vembed::IndexRequest { repo: repo.display().to_string(), index_dir: None, rebuild: false };
    client.index(req, |_| {}).unwrap();
    let out = python_client(&env, &["--search", repo.to_str().unwrap(), "greet new users by mail"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let hits: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(hits[0]["path"], "mail.py", "{hits:?}");
    assert_eq!(hits[0]["symbol"], "send_welcome_email");
    assert_eq!(hits[0]["start_line"], 1);
}

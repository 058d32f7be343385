//! `vembed bench --via-remote 1,2,4`: what going through a remote model
//! costs. Host A (private, serving HTTP on a free loopback port) is
//! measured directly; then, for each concurrency, host B (private) whose
//! every role is a remote model in the OpenAI shape pointing at A, with A's
//! own tokenizer so token counts match. Same texts, same run, same machine.

use std::net::TcpListener;
use std::path::Path;

use anyhow::Context;
use vembed::Client;

use super::measure::{self, Report};
use super::{BenchArgs, unified_dir};
use vembed::flags::HostFlags;

/// A labelled host run.
type Run = (Option<String>, Report);

/// The runs: `direct`, then `remote-c{N}` per concurrency; and A's model folder.
pub(super) fn runs(
    host: &HostFlags,
    args: &BenchArgs,
    texts: &[String],
) -> anyhow::Result<(Vec<Run>, String)> {
    let dir = tempfile::Builder::new().prefix("vembed-bench-remote-").tempdir()?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut opts = host.spawn_options(None);
    opts.socket = dir.path().join("a.sock");
    opts.host_args.extend(
        ["--http-listen", &format!("127.0.0.1:{port}"), "--idle-timeout-secs", "60"]
            .map(Into::into),
    );
    if !args.json {
        errln!("starting host A (HTTP on 127.0.0.1:{port}) ...");
    }
    let mut a = Client::connect_or_spawn_with(opts).context("starting host A")?;
    let model_dir = unified_dir(&a)?;
    let mut runs = vec![(Some("direct".to_string()), measure::measure(&mut a, texts, args)?)];
    for &c in &args.via_remote {
        let config = dir.path().join(format!("b{c}.toml"));
        std::fs::write(&config, table(port, &model_dir, c))?;
        let mut opts = host.spawn_options(None);
        opts.socket = dir.path().join(format!("b{c}.sock"));
        opts.host_args = [
            "--unified-embedding-model",
            "upstream",
            "--embedding-model",
            "upstream",
            "--codebase-embedding-model",
            "upstream",
            "--idle-timeout-secs",
            "60",
        ]
        .map(Into::into)
        .to_vec();
        opts.host_env.push(("VEMBED_CONFIG".into(), config.into_os_string()));
        if !args.json {
            errln!("starting host B with concurrency {c} ...");
        }
        let mut b = Client::connect_or_spawn_with(opts)
            .with_context(|| format!("starting host B with concurrency {c}"))?;
        let report = measure::measure(&mut b, texts, args);
        let _ = b.shutdown();
        runs.push((Some(format!("remote-c{c}")), report?));
    }
    let _ = a.shutdown();
    Ok((runs, model_dir))
}

/// B's config: its one model is A's, through A's OpenAI endpoint.
fn table(port: u16, model_dir: &str, concurrency: u32) -> String {
    format!(
        "[remote.upstream]\nprovider = \"openai\"\nurl = \"http://127.0.0.1:{port}/v1\"\n\
         model = \"unified\"\ntokenizer = {:?}\nconcurrency = {concurrency}\n",
        Path::new(model_dir).display().to_string()
    )
}

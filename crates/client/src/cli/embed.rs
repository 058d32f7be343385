//! `vembed embed`: texts in, one JSON line per vector out.

use super::*;

#[derive(Serialize)]
struct EmbedLine<'a> {
    embedding: &'a [f32],
    tokens: u32,
}

pub(super) fn run(
    cli: &Cli,
    model: Option<&str>,
    jsonl: bool,
    batch_size: usize,
    args: &[String],
) -> anyhow::Result<()> {
    let texts: Vec<String> = if jsonl {
        if !args.is_empty() {
            bail!("--jsonl reads texts from stdin; do not also pass them as arguments");
        }
        read_jsonl_texts(io::stdin().lock(), "text")?
    } else {
        if args.is_empty() {
            bail!("no texts given (pass them as arguments, or use --jsonl with stdin)");
        }
        args.to_vec()
    };
    let mut client = cli.client(model)?;
    client.set_texts_per_request(batch_size);
    let model_ref = model.map_or(ModelRef::Role(Role::Unified), |m| ModelRef::Name(m.to_string()));
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let out = client.embed_with(&model_ref, &refs)?;
    let stdout = io::stdout();
    let mut w = BufWriter::with_capacity(1 << 16, stdout.lock());
    for (row, &tokens) in out.rows().zip(&out.tokens) {
        serde_json::to_writer(&mut w, &EmbedLine { embedding: row, tokens })?;
        w.write_all(b"\n")?;
    }
    w.flush()?;
    Ok(())
}

//! `vembed demo`: fetch the model if needed, start the host, embed, rank, show status.

use super::*;

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb).max(1e-12)
}

pub(super) fn run(cli: &Cli) -> anyhow::Result<()> {
    let settings = Settings::load()?;
    let name = cli.host.unified_embedding_model.clone().unwrap_or(settings.unified_embedding_model);
    let (dir, source) = vembed_models::fetch(&name, io::IsTerminal::is_terminal(&io::stderr()))?;
    outln!(
        "model: {} at {} ({})",
        dir.name,
        dir.path.display(),
        super::model::fetch_source(source)
    )?;
    let started = Instant::now();
    let mut client = cli.client(None)?;
    outln!("connected to host pid {} in {:?}", client.hello().pid, started.elapsed())?;
    let queries =
        ["find the function that validates email addresses", "where is the socket server started"];
    let snippets = [
        "def is_valid_email(addr):\n    return re.match(r\"[^@]+@[^@]+\\.[^@]+\", addr) is not None",
        "let listener = UnixListener::bind(&path)?;\nloop { let (stream, _) = listener.accept()?; }",
        "SELECT name, price FROM products WHERE price > 10 ORDER BY price",
    ];
    let mut all: Vec<&str> = queries.to_vec();
    all.extend(snippets);
    let t = Instant::now();
    let vecs = client.embed(&all)?;
    outln!("embedded {} texts in {:?}\n", all.len(), t.elapsed())?;
    for (qi, q) in queries.iter().enumerate() {
        outln!("query: {q}")?;
        let mut scored: Vec<(f32, &str)> = snippets
            .iter()
            .enumerate()
            .map(|(si, s)| (cosine(&vecs[qi], &vecs[queries.len() + si]), *s))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        for (score, s) in scored {
            outln!("  {score:>6.3}  {}", s.lines().next().unwrap_or(""))?;
        }
    }
    outln!()?;
    super::status::run(cli, false)
}

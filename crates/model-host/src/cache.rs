//! The embedding cache behind `EmbedCached`: vectors of texts a model has
//! embedded before, keyed by the model's identity and the text's sha256, in
//! memory and in one append-only file per model under the cache dir.
//!
//! A file is a header (`VEMBEDC1`, then the dimension as u32 LE) and records
//! of `sha256(text)` (32 bytes), the token count (u32 LE) and `dim` f32 LE.
//! Records are appended with one `write` each, so a crash can only leave a
//! partial last record, which the next load ignores.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use vembed_protocol::CacheStatus;

const MAGIC: &[u8; 8] = b"VEMBEDC1";

/// Most entries kept per model; texts past it are embedded but not cached.
pub const MAX_ENTRIES_PER_MODEL: usize = 100_000;

/// A text's key.
pub type TextHash = [u8; 32];

/// The key of a text.
pub fn text_hash(text: &str) -> TextHash {
    Sha256::digest(text.as_bytes()).into()
}

/// A cached embedding.
#[derive(Clone)]
pub struct Entry {
    /// Word pieces of the text, as an `Embeddings` reply reports them.
    pub tokens: u32,
    /// The vector.
    pub vector: Arc<[f32]>,
}

struct ModelCache {
    dim: usize,
    map: HashMap<TextHash, (Entry, bool)>,
    file: Option<File>,
}

/// The cache of all models.
pub struct EmbedCache {
    dir: Option<PathBuf>,
    models: Mutex<HashMap<String, ModelCache>>,
    hits: AtomicU64,
    disk_hits: AtomicU64,
    misses: AtomicU64,
}

impl EmbedCache {
    /// A cache persisted under `dir` (`None`: memory only).
    pub fn new(dir: Option<PathBuf>) -> EmbedCache {
        EmbedCache {
            dir,
            models: Mutex::new(HashMap::new()),
            hits: AtomicU64::new(0),
            disk_hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Looks texts up for the model `identity`: one entry or `None` per hash.
    pub fn get(&self, identity: &str, dim: usize, hashes: &[TextHash]) -> Vec<Option<Entry>> {
        let mut models = self.models.lock().unwrap_or_else(|p| p.into_inner());
        let mc = self.model(&mut models, identity, dim);
        hashes
            .iter()
            .map(|h| match mc.map.get_mut(h) {
                Some((e, from_disk)) => {
                    if std::mem::take(from_disk) {
                        self.disk_hits.fetch_add(1, Ordering::Relaxed);
                    } else {
                        self.hits.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(e.clone())
                }
                None => {
                    self.misses.fetch_add(1, Ordering::Relaxed);
                    None
                }
            })
            .collect()
    }

    /// Adds freshly embedded texts, in memory and on disk.
    pub fn put(&self, identity: &str, dim: usize, entries: &[(TextHash, Entry)]) {
        let mut models = self.models.lock().unwrap_or_else(|p| p.into_inner());
        let mc = self.model(&mut models, identity, dim);
        for (h, e) in entries {
            if mc.map.len() >= MAX_ENTRIES_PER_MODEL || mc.map.contains_key(h) {
                continue;
            }
            if let Some(f) = &mut mc.file {
                let mut rec = Vec::with_capacity(36 + 4 * dim);
                rec.extend_from_slice(h);
                rec.extend_from_slice(&e.tokens.to_le_bytes());
                for v in e.vector.iter() {
                    rec.extend_from_slice(&v.to_le_bytes());
                }
                if let Err(err) = f.write_all(&rec) {
                    tracing::warn!("embedding cache: write failed ({err}); memory only from now");
                    mc.file = None;
                }
            }
            mc.map.insert(*h, (e.clone(), false));
        }
    }

    /// Counters for `status`.
    pub fn status(&self) -> CacheStatus {
        let entries = {
            let models = self.models.lock().unwrap_or_else(|p| p.into_inner());
            models.values().map(|m| m.map.len() as u64).sum()
        };
        CacheStatus {
            hits: self.hits.load(Ordering::Relaxed),
            disk_hits: self.disk_hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries,
        }
    }

    /// A model's cache, loaded from its file on first use.
    fn model<'m>(
        &self,
        models: &'m mut HashMap<String, ModelCache>,
        identity: &str,
        dim: usize,
    ) -> &'m mut ModelCache {
        if !models.contains_key(identity) {
            models.insert(identity.to_string(), self.open(identity, dim));
        }
        models.get_mut(identity).expect("inserted above")
    }

    /// Loads a model's file (creating it), or starts empty when that fails.
    fn open(&self, identity: &str, dim: usize) -> ModelCache {
        let mut mc = ModelCache { dim, map: HashMap::new(), file: None };
        let Some(dir) = &self.dir else { return mc };
        let path = dir.join(format!("{identity}.bin"));
        match load(&path, &mut mc) {
            Ok(file) => mc.file = Some(file),
            Err(e) => tracing::warn!("embedding cache {}: {e}; memory only", path.display()),
        }
        mc
    }
}

fn load(path: &std::path::Path, mc: &mut ModelCache) -> std::io::Result<File> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = OpenOptions::new().read(true).append(true).create(true).open(path)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let dim = mc.dim;
    if bytes.is_empty() {
        let mut header = MAGIC.to_vec();
        header.extend_from_slice(&(dim as u32).to_le_bytes());
        file.write_all(&header)?;
        return Ok(file);
    }
    if bytes.len() < 12 || &bytes[..8] != MAGIC || bytes[8..12] != (dim as u32).to_le_bytes() {
        // Not ours, or another dimension: start the file afresh.
        drop(file);
        std::fs::remove_file(path)?;
        return load(path, mc);
    }
    let rec = 36 + 4 * dim;
    for r in bytes[12..].chunks_exact(rec) {
        if mc.map.len() >= MAX_ENTRIES_PER_MODEL {
            break;
        }
        let hash: TextHash = r[..32].try_into().expect("32 bytes");
        let tokens = u32::from_le_bytes(r[32..36].try_into().expect("4 bytes"));
        let vector: Arc<[f32]> = r[36..]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect();
        mc.map.insert(hash, (Entry { tokens, vector }, true));
    }
    let torn = (bytes.len() - 12) % rec;
    if torn != 0 {
        // A crash cut the last record short: drop it, so the next append lines up.
        file.set_len((bytes.len() - torn) as u64)?;
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_a_restart_and_a_torn_record() {
        let dir = tempfile::tempdir().unwrap();
        let e = |x: f32| Entry { tokens: 3, vector: Arc::from(vec![x, -x]) };
        let (a, b) = (text_hash("a"), text_hash("b"));
        let c = EmbedCache::new(Some(dir.path().to_path_buf()));
        assert!(c.get("m", 2, &[a])[0].is_none());
        c.put("m", 2, &[(a, e(1.0)), (b, e(2.0))]);
        assert_eq!(c.get("m", 2, &[a])[0].as_ref().unwrap().vector[..], [1.0, -1.0]);
        assert_eq!(c.status().hits, 1);
        drop(c);
        // A crash mid-append leaves a partial record.
        let path = dir.path().join("m.bin");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[7u8; 20]).unwrap();
        let c = EmbedCache::new(Some(dir.path().to_path_buf()));
        let got = c.get("m", 2, &[b, a, text_hash("z")]);
        assert_eq!(got[0].as_ref().unwrap().vector[..], [2.0, -2.0]);
        assert_eq!(got[1].as_ref().unwrap().tokens, 3);
        assert!(got[2].is_none());
        let s = c.status();
        assert_eq!((s.hits, s.disk_hits, s.misses, s.entries), (0, 2, 1, 2));
        c.put("m", 2, &[(text_hash("z"), e(3.0))]);
        drop(c);
        let c = EmbedCache::new(Some(dir.path().to_path_buf()));
        assert_eq!(c.get("m", 2, &[text_hash("z")])[0].as_ref().unwrap().vector[..], [3.0, -3.0]);
    }
}

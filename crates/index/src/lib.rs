//! vembed's code index: the vectors of a codebase's snippets in an arroy
//! forest (cosine) and their metadata, in one LMDB environment per codebase.
//!
//! One process writes ([`IndexWriter`], the host); any number read
//! ([`IndexReader`], every client) through LMDB's shared memory map. A
//! reader works on one snapshot per search and never waits for the writer;
//! the writer commits in batches of bounded size, so readers see progress,
//! and a crash loses at most the batch in flight.
//!
//! arroy stays behind this crate's own types, so its successor can replace
//! it without touching callers.

pub mod chunk;
mod error;

pub use error::{IndexError, Result};

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use arroy::distances::Cosine;
use heed::types::{Bytes, Str, U32};
use heed::{CommitOrAbort, Env, EnvOpenOptions, WithoutTls};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

/// The on-disk layout version; a different one must be rebuilt.
pub const SCHEMA_VERSION: u32 = 1;

/// Trees in the forest unless set otherwise. Measured at 1M vectors of
/// real-code structure (`benches/index_scale.rs`): 16 trees build in 81 s
/// to 2.9× the raw vectors' size and reach recall@10 0.957 at 8.6 ms with
/// the default `search_k`; 32 trees take 146 s and 3.1× for about the same
/// recall per millisecond. arroy's own choice (116–132 trees at 100k) costs
/// 3.9× on disk.
pub const DEFAULT_TREES: usize = 16;

/// Forest nodes visited per tree and per result wanted (`search_k = k ×
/// trees × this`): 50 gives recall@10 ≥ 0.95 up to 1M snippets.
pub const SEARCH_K_PER_TREE: usize = 50;

/// Virtual size of the memory map (LMDB grows the file as needed, up to it).
const MAP_SIZE: usize = 64 << 30;

type BigEndian = heed::byteorder::BigEndian;

/// The model an index was built with. Vectors of another model are
/// meaningless against it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelIdentity {
    /// The model's name.
    pub name: String,
    /// sha256 of its weights.
    pub sha256: String,
    /// Embedding dimension.
    pub dim: u32,
    /// The weights and the pooling pipeline, hashed (what makes vectors
    /// comparable).
    pub identity: String,
}

impl std::fmt::Display for ModelIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let short = self.sha256.get(..12).unwrap_or(&self.sha256);
        write!(f, "{} (sha256 {short}…, {} dimensions)", self.name, self.dim)
    }
}

/// A piece of a source file, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snippet {
    /// Path relative to the repository root, `/`-separated.
    pub path: String,
    /// First line, 1-based.
    pub start_line: u32,
    /// Last line, inclusive.
    pub end_line: u32,
    /// The enclosing symbol (function, class, `impl`), where known.
    pub symbol: Option<String>,
    /// The snippet's text as it appears in the file.
    pub text: String,
}

/// A file as the index last saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Hash of the file's content.
    pub hash: String,
    /// Its snippets' ids.
    pub snippets: Vec<u32>,
}

/// What the index holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexStats {
    /// The model.
    pub model: ModelIdentity,
    /// Files indexed.
    pub files: u64,
    /// Snippets indexed.
    pub snippets: u64,
    /// Unix seconds of the last commit.
    pub updated_unix: u64,
    /// The repository root the index was built for.
    pub root: String,
    /// Bytes of the LMDB file.
    pub disk_bytes: u64,
}

/// One search result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    /// The snippet.
    pub snippet: Snippet,
    /// Cosine similarity to the query.
    pub score: f32,
}

type Database<K, V> = heed::Database<'static, K, V>;

impl From<Hit> for vembed_protocol::SearchHit {
    fn from(h: Hit) -> Self {
        vembed_protocol::SearchHit {
            path: h.snippet.path,
            start_line: h.snippet.start_line,
            end_line: h.snippet.end_line,
            symbol: h.snippet.symbol,
            score: h.score,
            text: h.snippet.text,
        }
    }
}

#[derive(Clone, Copy)]
struct Dbs {
    vectors: arroy::Database<'static, Cosine>,
    snippets: Database<U32<BigEndian>, Bytes>,
    files: Database<Str, Bytes>,
    meta: Database<Str, Bytes>,
}

type DbTuple = (
    arroy::Database<'static, Cosine>,
    Database<U32<BigEndian>, Bytes>,
    Database<Str, Bytes>,
    Database<Str, Bytes>,
);

impl Dbs {
    fn from(t: DbTuple) -> Dbs {
        Dbs { vectors: t.0, snippets: t.1, files: t.2, meta: t.3 }
    }
}

const META_MODEL: &str = "model";
const META_SCHEMA: &str = "schema";
const META_NEXT_ID: &str = "next_id";
const META_UPDATED: &str = "updated";
const META_ROOT: &str = "root";

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("metadata serializes")
}

fn parse<T: for<'a> Deserialize<'a>>(bytes: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| IndexError::Corrupt(format!("{what}: {e}")))
}

fn open_env(dir: &Path, read_only: bool) -> Result<Env<WithoutTls>> {
    let mut opts = EnvOpenOptions::new().read_txn_without_tls();
    opts.map_size(MAP_SIZE).max_dbs(8).max_readers(1024);
    if read_only {
        // SAFETY: READ_ONLY only restricts this handle to reads.
        unsafe { opts.flags(heed::EnvFlags::READ_ONLY) };
    }
    // SAFETY: heed requires that one process opens an environment only once
    // at a time and that the files are not modified other than through LMDB.
    // vembed opens each index once per handle, and only LMDB touches its files.
    Ok(unsafe { opts.open(dir) }?)
}

/// The single writer of an index (the host).
pub struct IndexWriter {
    env: Env<WithoutTls>,
    dbs: Dbs,
    model: ModelIdentity,
    dir: PathBuf,
    n_trees: Option<usize>,
}

impl IndexWriter {
    /// Opens the index in `dir` for writing, creating it for `model` if it
    /// does not exist. An index of another model or schema is an error
    /// unless `rebuild`, which empties it.
    pub fn open(dir: &Path, root: &Path, model: &ModelIdentity, rebuild: bool) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|source| IndexError::Io { path: dir.to_path_buf(), source })?;
        let env = open_env(dir, false)?;
        let created: DbTuple = env
            .create_databases_and_commit(env.write_txn()?, |dbo, wtxn| -> heed::Result<_> {
                Ok(CommitOrAbort::<_, ()>::Commit((
                    dbo.create_database(wtxn, Some("vectors"))?,
                    dbo.create_database(wtxn, Some("snippets"))?,
                    dbo.create_database(wtxn, Some("files"))?,
                    dbo.create_database(wtxn, Some("meta"))?,
                )))
            })?
            .commit()
            .expect("never aborted");
        let dbs = Dbs::from(created);
        let mut wtxn = env.write_txn()?;
        let stored: Option<ModelIdentity> = match dbs.meta.get(&wtxn, META_MODEL)? {
            Some(b) => Some(parse(b, "model")?),
            None => None,
        };
        let schema: Option<u32> = match dbs.meta.get(&wtxn, META_SCHEMA)? {
            Some(b) => Some(parse(b, "schema")?),
            None => None,
        };
        let fresh = stored.is_none();
        if let Some(found) = &stored
            && !rebuild
        {
            if schema != Some(SCHEMA_VERSION) {
                return Err(IndexError::Schema {
                    path: dir.to_path_buf(),
                    found: schema.unwrap_or(0),
                });
            }
            if found != model {
                return Err(IndexError::ModelMismatch {
                    path: dir.to_path_buf(),
                    found: found.to_string(),
                    wanted: model.to_string(),
                });
            }
        }
        if fresh || rebuild {
            reset(&dbs, &mut wtxn, model)?;
        }
        dbs.meta.put(&mut wtxn, META_ROOT, &json(&root.display().to_string()))?;
        wtxn.commit()?;
        Ok(IndexWriter {
            env,
            dbs,
            model: model.clone(),
            dir: dir.to_path_buf(),
            n_trees: Some(DEFAULT_TREES),
        })
    }

    /// The index's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Trees in the forest ([`DEFAULT_TREES`] unless set): `None` lets arroy
    /// choose from the number of items and dimensions. Fewer trees build
    /// faster and need a larger `search_k` for the same recall.
    pub fn set_n_trees(&mut self, n_trees: Option<usize>) {
        self.n_trees = n_trees;
    }

    /// Empties the index (for `--rebuild` while this writer is open: one
    /// process may open an environment only once). Readers see the empty
    /// index at the commit.
    pub fn clear(&self) -> Result<()> {
        let mut wtxn = self.env.write_txn()?;
        let root = self.dbs.meta.get(&wtxn, META_ROOT)?.map(<[u8]>::to_vec);
        reset(&self.dbs, &mut wtxn, &self.model)?;
        if let Some(root) = root {
            self.dbs.meta.put(&mut wtxn, META_ROOT, &root)?;
        }
        wtxn.commit()?;
        Ok(())
    }

    /// A reader on the same environment (one process may open an
    /// environment only once).
    pub fn reader(&self) -> IndexReader {
        IndexReader {
            env: self.env.clone(),
            dbs: self.dbs,
            model: self.model.clone(),
            dir: self.dir.clone(),
        }
    }

    /// Every indexed file with its entry.
    pub fn files(&self) -> Result<Vec<(String, FileEntry)>> {
        let rtxn = self.env.read_txn()?;
        let mut out = Vec::new();
        for item in self.dbs.files.iter(&rtxn)? {
            let (path, bytes) = item?;
            out.push((path.to_string(), parse(bytes, "file entry")?));
        }
        Ok(out)
    }

    /// Starts a batch of changes: nothing is visible to readers until
    /// [`Batch::commit`].
    pub fn batch(&self) -> Result<Batch<'_>> {
        let wtxn = self.env.write_txn()?;
        let next_id = match self.dbs.meta.get(&wtxn, META_NEXT_ID)? {
            Some(b) => parse(b, "next id")?,
            None => 0,
        };
        Ok(Batch { w: self, wtxn, next_id, changed: false })
    }
}

/// Empties every database and starts a fresh index for `model`, with an
/// empty forest built so readers can open it at once.
fn reset(dbs: &Dbs, wtxn: &mut heed::RwTxn<'_>, model: &ModelIdentity) -> Result<()> {
    dbs.vectors.clear(wtxn)?;
    dbs.snippets.clear(wtxn)?;
    dbs.files.clear(wtxn)?;
    dbs.meta.clear(wtxn)?;
    dbs.meta.put(wtxn, META_MODEL, &json(model))?;
    dbs.meta.put(wtxn, META_SCHEMA, &json(&SCHEMA_VERSION))?;
    dbs.meta.put(wtxn, META_NEXT_ID, &json(&0u32))?;
    dbs.meta.put(wtxn, META_UPDATED, &json(&now()))?;
    let writer = arroy::Writer::new(dbs.vectors, 0, model.dim as usize);
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    writer.builder(&mut rng).build(wtxn)?;
    Ok(())
}

/// Changes committed together.
pub struct Batch<'a> {
    w: &'a IndexWriter,
    wtxn: heed::RwTxn<'a>,
    next_id: u32,
    changed: bool,
}

impl Batch<'_> {
    /// Removes a file and its snippets. Returns how many snippets went.
    pub fn remove_file(&mut self, path: &str) -> Result<usize> {
        self.remove_file_inner(path).map_err(|e| e.on_write(&self.w.dir))
    }

    fn remove_file_inner(&mut self, path: &str) -> Result<usize> {
        let Some(bytes) = self.w.dbs.files.get(&self.wtxn, path)? else { return Ok(0) };
        let entry: FileEntry = parse(bytes, "file entry")?;
        let writer = arroy::Writer::new(self.w.dbs.vectors, 0, self.w.model.dim as usize);
        for &id in &entry.snippets {
            writer.del_item(&mut self.wtxn, id)?;
            self.w.dbs.snippets.delete(&mut self.wtxn, &id)?;
        }
        self.w.dbs.files.delete(&mut self.wtxn, path)?;
        self.changed = true;
        Ok(entry.snippets.len())
    }

    /// Replaces a file's snippets (all of them) with new ones and their
    /// vectors. Returns how many old snippets were removed. A vector of the
    /// wrong length or with a NaN or infinity is refused before anything of
    /// the file is changed.
    pub fn put_file(
        &mut self,
        path: &str,
        hash: &str,
        snippets: &[(Snippet, &[f32])],
    ) -> Result<usize> {
        let dim = self.w.model.dim as usize;
        for (snippet, vector) in snippets {
            if vector.len() != dim {
                return Err(IndexError::Dimension { want: dim, got: vector.len() });
            }
            if !vector.iter().all(|x| x.is_finite()) {
                return Err(IndexError::NonFinite {
                    path: snippet.path.clone(),
                    line: snippet.start_line,
                });
            }
        }
        self.put_file_inner(path, hash, snippets).map_err(|e| e.on_write(&self.w.dir))
    }

    fn put_file_inner(
        &mut self,
        path: &str,
        hash: &str,
        snippets: &[(Snippet, &[f32])],
    ) -> Result<usize> {
        let removed = self.remove_file_inner(path)?;
        let dim = self.w.model.dim as usize;
        let writer = arroy::Writer::new(self.w.dbs.vectors, 0, dim);
        let mut ids = Vec::with_capacity(snippets.len());
        for (snippet, vector) in snippets {
            let id = self.next_id;
            self.next_id += 1;
            writer.add_item(&mut self.wtxn, id, vector)?;
            self.w.dbs.snippets.put(&mut self.wtxn, &id, &json(snippet))?;
            ids.push(id);
        }
        let entry = FileEntry { hash: hash.to_string(), snippets: ids };
        self.w.dbs.files.put(&mut self.wtxn, path, &json(&entry))?;
        self.changed = true;
        Ok(removed)
    }

    /// Builds the forest for the changes and commits: readers see all of it
    /// or none of it.
    pub fn commit(self) -> Result<()> {
        let dir = self.w.dir.clone();
        self.commit_inner().map_err(|e| e.on_write(&dir))
    }

    fn commit_inner(mut self) -> Result<()> {
        if self.changed {
            let writer = arroy::Writer::new(self.w.dbs.vectors, 0, self.w.model.dim as usize);
            let mut rng = rand::rngs::StdRng::seed_from_u64(u64::from(self.next_id));
            let mut builder = writer.builder(&mut rng);
            if let Some(n) = self.w.n_trees {
                builder.n_trees(n);
            }
            builder.build(&mut self.wtxn)?;
            self.w.dbs.meta.put(&mut self.wtxn, META_NEXT_ID, &json(&self.next_id))?;
            self.w.dbs.meta.put(&mut self.wtxn, META_UPDATED, &json(&now()))?;
        }
        self.wtxn.commit()?;
        Ok(())
    }
}

/// A read-only handle on an index (every client).
pub struct IndexReader {
    env: Env<WithoutTls>,
    dbs: Dbs,
    model: ModelIdentity,
    dir: PathBuf,
}

impl IndexReader {
    /// Opens the index in `dir` read-only. With `expect`, an index of
    /// another model is an error.
    pub fn open(dir: &Path, expect: Option<&ModelIdentity>) -> Result<IndexReader> {
        if !dir.join("data.mdb").exists() {
            return Err(IndexError::Missing(dir.to_path_buf()));
        }
        let env = open_env(dir, true)?;
        let missing = || IndexError::Missing(dir.to_path_buf());
        type Opened = (
            Option<arroy::Database<'static, Cosine>>,
            Option<Database<U32<BigEndian>, Bytes>>,
            Option<Database<Str, Bytes>>,
            Option<Database<Str, Bytes>>,
        );
        let opened: Opened = env
            .open_databases_and_commit(env.read_txn()?, |dbo, rtxn| -> heed::Result<_> {
                Ok(CommitOrAbort::<_, ()>::Commit((
                    dbo.open_database(rtxn, Some("vectors"))?,
                    dbo.open_database(rtxn, Some("snippets"))?,
                    dbo.open_database(rtxn, Some("files"))?,
                    dbo.open_database(rtxn, Some("meta"))?,
                )))
            })?
            .commit()
            .expect("never aborted");
        let dbs = match opened {
            (Some(v), Some(s), Some(f), Some(m)) => Dbs::from((v, s, f, m)),
            _ => return Err(missing()),
        };
        let rtxn = env.read_txn()?;
        let schema: u32 = parse(dbs.meta.get(&rtxn, META_SCHEMA)?.ok_or_else(missing)?, "schema")?;
        if schema != SCHEMA_VERSION {
            return Err(IndexError::Schema { path: dir.to_path_buf(), found: schema });
        }
        let model: ModelIdentity =
            parse(dbs.meta.get(&rtxn, META_MODEL)?.ok_or_else(missing)?, "model")?;
        if let Some(want) = expect
            && want != &model
        {
            return Err(IndexError::ModelMismatch {
                path: dir.to_path_buf(),
                found: model.to_string(),
                wanted: want.to_string(),
            });
        }
        drop(rtxn);
        Ok(IndexReader { env, dbs, model, dir: dir.to_path_buf() })
    }

    /// The model the index was built with.
    pub fn model(&self) -> &ModelIdentity {
        &self.model
    }

    /// The `k` snippets nearest to `query` (a vector from the index's
    /// model), best first, from one consistent snapshot.
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<Hit>> {
        self.search_with(query, k, None)
    }

    /// [`IndexReader::search`] with an explicit `search_k`: how many forest
    /// nodes to visit (default: [`SEARCH_K_PER_TREE`] per tree and result).
    /// Higher is slower and finds more of the true nearest neighbours.
    pub fn search_with(
        &self,
        query: &[f32],
        k: usize,
        search_k: Option<usize>,
    ) -> Result<Vec<Hit>> {
        let dim = self.model.dim as usize;
        if query.len() != dim {
            return Err(IndexError::Dimension { want: dim, got: query.len() });
        }
        let rtxn = self.env.read_txn()?;
        let reader = arroy::Reader::open(&rtxn, 0, self.dbs.vectors)?;
        if reader.n_items() == 0 || k == 0 {
            return Ok(Vec::new());
        }
        let mut q = reader.nns(k);
        let search_k = search_k.unwrap_or(k * reader.n_trees().max(1) * SEARCH_K_PER_TREE).max(k);
        q.search_k(NonZeroUsize::new(search_k).expect("search_k > 0"));
        let found = q.by_vector(&rtxn, query)?;
        let mut hits = Vec::with_capacity(found.len());
        for (id, distance) in found {
            let Some(bytes) = self.dbs.snippets.get(&rtxn, &id)? else { continue };
            // arroy's cosine distance is 1 - cos.
            hits.push(Hit { snippet: parse(bytes, "snippet")?, score: 1.0 - distance });
        }
        Ok(hits)
    }

    /// Trees in the forest.
    pub fn n_trees(&self) -> Result<usize> {
        let rtxn = self.env.read_txn()?;
        Ok(arroy::Reader::open(&rtxn, 0, self.dbs.vectors)?.n_trees())
    }

    /// Counts and times.
    pub fn stats(&self) -> Result<IndexStats> {
        let rtxn = self.env.read_txn()?;
        let updated: u64 = match self.dbs.meta.get(&rtxn, META_UPDATED)? {
            Some(b) => parse(b, "updated")?,
            None => 0,
        };
        let root: String = match self.dbs.meta.get(&rtxn, META_ROOT)? {
            Some(b) => parse(b, "root")?,
            None => String::new(),
        };
        let disk_bytes = std::fs::metadata(self.dir.join("data.mdb")).map(|m| m.len()).unwrap_or(0);
        Ok(IndexStats {
            model: self.model.clone(),
            files: self.dbs.files.len(&rtxn)?,
            snippets: self.dbs.snippets.len(&rtxn)?,
            updated_unix: updated,
            root,
            disk_bytes,
        })
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(dim: u32) -> ModelIdentity {
        ModelIdentity {
            name: "m".into(),
            sha256: "ab".repeat(32),
            dim,
            identity: format!("i{dim}"),
        }
    }

    fn unit(v: &[f32]) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    }

    fn snippet(path: &str, line: u32) -> Snippet {
        Snippet {
            path: path.into(),
            start_line: line,
            end_line: line + 1,
            symbol: None,
            text: format!("{path}:{line}"),
        }
    }

    #[test]
    fn write_search_replace_remove_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let root = Path::new("/repo");
        let w = IndexWriter::open(dir.path(), root, &model(3), false).unwrap();
        // Readers can open a fresh, empty index.
        let r = w.reader();
        assert!(r.search(&unit(&[1.0, 0.0, 0.0]), 5).unwrap().is_empty());

        let (a, b, c) = (unit(&[1.0, 0.1, 0.0]), unit(&[0.0, 1.0, 0.1]), unit(&[0.1, 0.0, 1.0]));
        let mut batch = w.batch().unwrap();
        batch
            .put_file("a.py", "h1", &[(snippet("a.py", 1), &a), (snippet("a.py", 10), &b)])
            .unwrap();
        batch.put_file("c.py", "h2", &[(snippet("c.py", 1), &c)]).unwrap();
        // Not visible before the commit.
        assert!(r.search(&a, 5).unwrap().is_empty());
        batch.commit().unwrap();

        let hits = r.search(&unit(&[0.0, 0.0, 1.0]), 2).unwrap();
        assert_eq!(hits[0].snippet.path, "c.py");
        assert!(hits[0].score > 0.99 && hits[0].score >= hits[1].score, "{hits:?}");
        assert_eq!(r.stats().unwrap().snippets, 3);

        // Replacing a file replaces only its snippets.
        let mut batch = w.batch().unwrap();
        assert_eq!(batch.put_file("a.py", "h3", &[(snippet("a.py", 5), &a)]).unwrap(), 2);
        batch.commit().unwrap();
        let s = r.stats().unwrap();
        assert_eq!((s.files, s.snippets), (2, 2));
        let files = w.files().unwrap();
        assert_eq!(files.iter().find(|(p, _)| p == "a.py").unwrap().1.hash, "h3");

        // Removing a file removes its snippets.
        let mut batch = w.batch().unwrap();
        assert_eq!(batch.remove_file("c.py").unwrap(), 1);
        batch.commit().unwrap();
        let hits = r.search(&unit(&[0.0, 0.0, 1.0]), 5).unwrap();
        assert!(hits.iter().all(|h| h.snippet.path == "a.py"), "{hits:?}");

        // Clearing an open writer (a rebuild while the host has it open).
        w.clear().unwrap();
        let s = r.stats().unwrap();
        assert_eq!((s.files, s.snippets, s.root.as_str()), (0, 0, "/repo"));
        assert!(r.search(&a, 5).unwrap().is_empty() && w.files().unwrap().is_empty());
        drop((w, r));

        // Another model: a clear error, for the writer and for readers.
        let err = IndexWriter::open(dir.path(), root, &model(4), false).err().unwrap().to_string();
        assert!(err.contains("rebuild"), "{err}");
        let err = IndexReader::open(dir.path(), Some(&model(4))).err().unwrap().to_string();
        assert!(err.contains("was built with m") && err.contains("rebuild"), "{err}");
        // --rebuild empties it for the new model.
        IndexWriter::open(dir.path(), root, &model(4), true).unwrap();
        let r = IndexReader::open(dir.path(), Some(&model(4))).unwrap();
        assert_eq!(r.stats().unwrap().snippets, 0);
        assert!(matches!(
            IndexReader::open(&dir.path().join("nope"), None),
            Err(IndexError::Missing(_))
        ));
    }
}

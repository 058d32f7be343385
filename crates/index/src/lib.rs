//! vembed's code index: the vectors of a codebase's snippets, their
//! sign-bit codes, a BM25 index of their words and their metadata, in one
//! LMDB environment per codebase.
//!
//! A semantic search scans every code from the memory map (XOR and
//! popcount, [`codes`]), keeps the best few thousand candidates and
//! re-ranks those by their exact cosine from the stored vectors; an index
//! of at most [`EXACT_MAX_ITEMS`] snippets is scanned exactly instead.
//!
//! One process writes ([`IndexWriter`], the host); any number read
//! ([`IndexReader`], every client) through LMDB's shared memory map. The
//! host, which does both, holds each index once ([`Index`]) and takes its
//! readers and its writer from it. A
//! reader works on one snapshot per search and never waits for the writer;
//! the writer commits in batches of bounded size, so readers see progress,
//! and a crash loses at most the batch in flight.
#![warn(missing_docs)]

mod blocks;
pub mod chunk;
pub mod codes;
#[cfg(test)]
mod crash_tests;
mod error;
mod handle;
pub mod lexical;
mod migrate;
mod nearest;
mod reader;
mod rows;
mod writer;

pub use error::{IndexError, Result};
pub use handle::Index;
pub use reader::{
    CANDIDATES_PER_RESULT, EXACT_MAX_ITEMS, HYBRID_DEPTH, IndexReader, LEXICAL_WEIGHT,
    MAX_CANDIDATES, MAX_K, SEMANTIC_WEIGHT, candidates_for,
};
pub use writer::{Batch, IndexWriter};

use std::path::{Path, PathBuf};

use heed::types::{Bytes, Str, U32};
use heed::{CommitOrAbort, Env, EnvOpenOptions, WithoutTls};
use serde::{Deserialize, Serialize};

/// The on-disk layout version. Version 4 records the vector store's block
/// size (fitted to LMDB's pages); version 3 (the same layout in blocks of
/// 64, unrecorded) is read as it is and brought to 4 by the writer when it
/// opens it, by recording its 64; version 2 (an arroy forest and a scan
/// store per file) is migrated in place by the writer; any other must be
/// rebuilt.
pub const SCHEMA_VERSION: u32 = 4;
/// The oldest version a reader reads without the writer's migration.
pub const OLDEST_READABLE_SCHEMA: u32 = 3;

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
    /// What the file system said of the file when that content was hashed,
    /// if the file was settled then (see [`FileStat`]); absent in indexes
    /// written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stat: Option<FileStat>,
}

/// A file's size, inode and change times. An indexer that finds a file
/// with the stat recorded beside its hash takes it as unchanged without
/// reading it, as git's index does. It records a stat only for a file last
/// changed well before it was read (a "racily clean" file, changed again
/// within the file system's time resolution, would otherwise look the
/// same), so a later change always shows as a different stat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStat {
    /// Bytes.
    pub size: u64,
    /// Last modification, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Last status change (any write changes it, and no one can set it).
    pub ctime_ns: i64,
    /// The inode (a file replaced by another has a new one).
    pub ino: u64,
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
    /// Its score in the search's mode: cosine similarity (semantic), BM25
    /// (lexical), or the fused score (hybrid).
    pub score: f32,
    /// Its rank (1-based) and score in the semantic ranking, where it had one.
    pub semantic: Option<(u32, f32)>,
    /// Its rank (1-based) and BM25 score in the lexical ranking, where it had one.
    pub lexical: Option<(u32, f32)>,
}

/// How a search ranks snippets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// By the cosine similarity of the query's embedding.
    Semantic,
    /// By BM25 over code tokens.
    Lexical,
    /// Both, fused by normalised score.
    Hybrid,
}

type Database<K, V> = heed::Database<'static, K, V>;

/// Snippet ids per block of the vector store in an index that does not
/// record its own (schema 3): 64.
pub const LEGACY_VECTORS_PER_BLOCK: u32 = 64;

/// Snippet ids per block of the vector store of a new index of `dim`
/// dimensions: the count from 32 to 160, in blocks of at most 256 KiB,
/// whose full block (ids, rows and the 16-byte header of LMDB's first
/// overflow page) wastes least of its 4 KiB pages. A block of 64 at 384
/// dimensions takes 25 pages for 24.13 pages of bytes (3.6% of the
/// vectors lost); 61 take 23 pages for 22.998. A re-rank reads one block
/// per run of nearby candidates and an append rewrites the last block,
/// hence the cap.
pub fn vectors_per_block(dim: usize) -> u32 {
    const PAGE: usize = 4096;
    const MAX_BYTES: usize = 256 << 10;
    let block = |n: usize| 16 + n * (4 + rows::width(dim));
    let waste = |n: usize| (block(n).div_ceil(PAGE) * PAGE - block(n)) as f64 / block(n) as f64;
    let fits = (32..=160).filter(|&n| block(n) <= MAX_BYTES);
    let best = fits.min_by(|&a, &b| waste(a).total_cmp(&waste(b))).unwrap_or(32);
    best as u32
}

/// Snippet ids per segment of the code store: one segment (768 KB of codes
/// at 384 dimensions) is one LMDB value, scanned straight from the map.
pub const CODES_PER_SEGMENT: u32 = 16_384;

#[derive(Clone, Copy)]
struct Dbs {
    snippets: Database<U32<BigEndian>, Bytes>,
    files: Database<Str, Bytes>,
    meta: Database<Str, Bytes>,
    /// Each snippet's vector and its norm ([`rows`]), in blocks by id.
    vecs: blocks::Store,
    /// Each snippet's sign-bit code ([`codes`]), in segments by id.
    codes: blocks::Store,
    /// The lexical (BM25) index.
    lex: lexical::LexDbs,
}

/// The databases of the current schema, in the order [`Dbs::from`] takes.
const DB_NAMES: [&str; 6] = ["snippets", "files", "meta", "vecs", "codes", "postings"];

type DbTuple = (
    Database<U32<BigEndian>, Bytes>,
    Database<Str, Bytes>,
    Database<Str, Bytes>,
    Database<U32<BigEndian>, Bytes>,
    Database<U32<BigEndian>, Bytes>,
    Database<Bytes, Bytes>,
);

impl Dbs {
    fn from(t: DbTuple, dim: usize, per_block: u32) -> Dbs {
        let lex = lexical::LexDbs { postings: t.5 };
        let vecs = blocks::Store { db: t.3, per_block, width: rows::width(dim) };
        let codes =
            blocks::Store { db: t.4, per_block: CODES_PER_SEGMENT, width: codes::width(dim) };
        Dbs { snippets: t.0, files: t.1, meta: t.2, vecs, codes, lex }
    }
}

const META_MODEL: &str = "model";
const META_SCHEMA: &str = "schema";
const META_NEXT_ID: &str = "next_id";
const META_UPDATED: &str = "updated";
const META_ROOT: &str = "root";
const META_VECTOR_BLOCK: &str = "vector_block";

/// The vector store's ids per block recorded in `meta` (absent in the
/// schema-3 indexes written before it was recorded: 64).
fn stored_vector_block(meta: &Database<Str, Bytes>, rtxn: &heed::RoTxn<'_>) -> Result<u32> {
    let per_block = match meta.get(rtxn, META_VECTOR_BLOCK)? {
        Some(b) => parse(b, "vector block")?,
        None => LEGACY_VECTORS_PER_BLOCK,
    };
    if per_block == 0 {
        return Err(IndexError::Corrupt("a vector block of 0 ids".to_string()));
    }
    Ok(per_block)
}

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

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn model(dim: u32) -> ModelIdentity {
        ModelIdentity {
            name: "m".into(),
            sha256: "ab".repeat(32),
            dim,
            identity: format!("i{dim}"),
        }
    }

    pub(crate) fn unit(v: &[f32]) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    }

    pub(crate) fn snippet(path: &str, line: u32) -> Snippet {
        Snippet {
            path: path.into(),
            start_line: line,
            end_line: line + 1,
            symbol: None,
            text: format!("{path}:{line}"),
        }
    }

    /// An index of `n` random unit vectors in 8 dimensions, 5 per file.
    fn filled(dir: &Path, n: usize) -> (IndexWriter, Vec<Vec<f32>>) {
        let w = IndexWriter::open(dir, Path::new("/repo"), &model(8), false).unwrap();
        let vectors = fill(&w, n);
        (w, vectors)
    }

    /// Writes `n` random unit vectors in 8 dimensions, 5 per file.
    fn fill(w: &IndexWriter, n: usize) -> Vec<Vec<f32>> {
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(3);
        let vectors: Vec<Vec<f32>> = (0..n)
            .map(|_| {
                unit(
                    &(0..8)
                        .map(|_| rand::RngExt::random_range(&mut rng, -1.0..1.0))
                        .collect::<Vec<f32>>(),
                )
            })
            .collect();
        let mut batch = w.batch().unwrap();
        for (f, group) in vectors.chunks(5).enumerate() {
            let path = format!("f{f}.py");
            let snippets: Vec<(Snippet, &[f32])> = group
                .iter()
                .enumerate()
                .map(|(i, v)| (snippet(&path, i as u32 * 3 + 1), v.as_slice()))
                .collect();
            batch.put_file(&path, "h", &snippets).unwrap();
        }
        batch.commit().unwrap();
        vectors
    }

    #[test]
    fn lexical_and_hybrid_find_identifiers_and_follow_removals() {
        let dir = tempfile::tempdir().unwrap();
        let w = IndexWriter::open(dir.path(), Path::new("/repo"), &model(3), false).unwrap();
        let text = |t: &str, path: &str| Snippet { text: t.into(), ..snippet(path, 1) };
        let mut batch = w.batch().unwrap();
        let (a, b) = (unit(&[1.0, 0.0, 0.0]), unit(&[0.0, 1.0, 0.0]));
        batch
            .put_file(
                "auth.py",
                "h",
                &[(text("def hash_password(pw): return pbkdf2(pw)", "auth.py"), &a)],
            )
            .unwrap();
        batch
            .put_file(
                "net.py",
                "h",
                &[(text("def retry_with_backoff(f): sleep and call again", "net.py"), &b)],
            )
            .unwrap();
        batch.commit().unwrap();
        let r = w.reader();
        let hits = r.search_lexical("where is hash_password", 5).unwrap();
        assert_eq!(hits[0].snippet.path, "auth.py");
        assert!(hits[0].score > 0.0 && hits[0].lexical.unwrap().0 == 1, "{hits:?}");
        assert_eq!(r.search_lexical("backoff", 5).unwrap()[0].snippet.path, "net.py");
        assert!(r.search_lexical("nothing matches this", 5).unwrap().is_empty());
        // Hybrid: the vector says net.py, the words say auth.py; both come back.
        let hybrid = r.search_hybrid("hash_password", &b, 5).unwrap();
        let paths: Vec<_> = hybrid.iter().map(|h| h.snippet.path.as_str()).collect();
        assert!(paths.contains(&"auth.py") && paths.contains(&"net.py"), "{hybrid:?}");
        assert!(hybrid.iter().any(|h| h.lexical.is_some() && h.semantic.is_some()));
        // Removal takes its postings with it.
        let mut batch = w.batch().unwrap();
        batch.remove_file("auth.py").unwrap();
        batch.commit().unwrap();
        assert!(r.search_lexical("hash_password", 5).unwrap().is_empty());
        let stats = {
            let rtxn = r.env.read_txn().unwrap();
            lexical::stats(&r.dbs.meta, &rtxn).unwrap()
        };
        assert_eq!(stats.docs, 1);
    }

    fn keys(hits: &[Hit]) -> Vec<(String, u32)> {
        hits.iter().map(|h| (h.snippet.path.clone(), h.snippet.start_line)).collect()
    }

    #[test]
    fn codes_re_ranked_equal_the_exact_scan_and_small_indexes_search_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let (w, vectors) = filled(dir.path(), 400);
        let r = w.reader();
        for q in vectors.iter().step_by(37) {
            let exact = r.search_exact(q, 10).unwrap();
            // Every code a candidate: the re-rank is the exact answer.
            let all = r.search_with(q, 10, Some(400)).unwrap();
            assert_eq!(keys(&exact), keys(&all), "same top 10");
            for (a, b) in exact.iter().zip(&all) {
                assert_eq!(a.score, b.score);
            }
            // Fewer candidates: the hits are still exact cosines, best first.
            let some = r.search_with(q, 10, Some(40)).unwrap();
            assert_eq!(some.len(), 10);
            assert!(some.windows(2).all(|w| w[0].score >= w[1].score));
            // A query that is a stored vector finds itself first.
            assert!(exact[0].score > 0.9999 && some[0].score > 0.9999);
            // Below EXACT_MAX_ITEMS a plain search is the exact one.
            assert_eq!(keys(&r.search(q, 10).unwrap()), keys(&exact));
        }
        // Removed files leave the vectors and the codes.
        let mut batch = w.batch().unwrap();
        batch.remove_file("f0.py").unwrap();
        batch.commit().unwrap();
        let exact = r.search_exact(&vectors[0], 400).unwrap();
        let coded = r.search_with(&vectors[0], 400, Some(400)).unwrap();
        for hits in [exact, coded] {
            assert_eq!(hits.len(), 395);
            assert!(hits.iter().all(|h| h.snippet.path != "f0.py"));
        }
    }

    #[test]
    fn vector_blocks_fill_their_pages_and_a_schema_3_index_of_64s_is_read_and_migrated() {
        for dim in [8usize, 384, 768, 1024] {
            let n = vectors_per_block(dim) as usize;
            let bytes = 16 + n * (4 + rows::width(dim));
            let waste = bytes.div_ceil(4096) * 4096 - bytes;
            assert!(bytes <= 256 << 10 && waste * 50 < bytes, "{dim}: {n} ids, {bytes} B");
        }
        assert_eq!(vectors_per_block(384), 61);
        let dir = tempfile::tempdir().unwrap();
        let (w, _) = filled(dir.path(), 10);
        assert_eq!(w.reader().dbs.vecs.per_block, vectors_per_block(8));
        drop(w);

        // A schema-3 index (blocks of 64 ids, unrecorded).
        let dir = tempfile::tempdir().unwrap();
        let mut w = IndexWriter::open(dir.path(), Path::new("/repo"), &model(8), false).unwrap();
        w.dbs.vecs.per_block = LEGACY_VECTORS_PER_BLOCK;
        let mut wtxn = w.env.write_txn().unwrap();
        assert!(w.dbs.meta.delete(&mut wtxn, META_VECTOR_BLOCK).unwrap());
        w.dbs.meta.put(&mut wtxn, META_SCHEMA, &json(&3u32)).unwrap();
        wtxn.commit().unwrap();
        let vectors = fill(&w, 400);
        drop(w);
        let schema = |r: &IndexReader| -> (u32, Option<u32>) {
            let rtxn = r.env.read_txn().unwrap();
            let get = |k| r.dbs.meta.get(&rtxn, k).unwrap().map(|b| parse(b, k).unwrap());
            (get(META_SCHEMA).unwrap(), get(META_VECTOR_BLOCK))
        };
        let check = |r: &IndexReader| {
            assert_eq!(r.dbs.vecs.per_block, LEGACY_VECTORS_PER_BLOCK);
            for q in vectors.iter().step_by(41) {
                let exact = r.search_exact(q, 10).unwrap();
                assert!(exact[0].score > 0.9999);
                assert_eq!(keys(&exact), keys(&r.search_with(q, 10, Some(400)).unwrap()));
            }
        };
        // Readers read it as it is; the writer records its 64 (schema 4).
        let r = IndexReader::open(dir.path(), None).unwrap();
        check(&r);
        assert_eq!(schema(&r), (3, None));
        drop(r);
        let w = IndexWriter::open(dir.path(), Path::new("/repo"), &model(8), false).unwrap();
        assert_eq!(schema(&w.reader()), (SCHEMA_VERSION, Some(LEGACY_VECTORS_PER_BLOCK)));
        let mut batch = w.batch().unwrap();
        batch.remove_file("f3.py").unwrap();
        batch.commit().unwrap();
        check(&w.reader());
        drop(w);
        check(&IndexReader::open(dir.path(), None).unwrap());
        // A newer schema is refused with what to do.
        let w = IndexWriter::open(dir.path(), Path::new("/repo"), &model(8), false).unwrap();
        let mut wtxn = w.env.write_txn().unwrap();
        w.dbs.meta.put(&mut wtxn, META_SCHEMA, &json(&(SCHEMA_VERSION + 1))).unwrap();
        wtxn.commit().unwrap();
        drop(w);
        let err = IndexReader::open(dir.path(), None).err().unwrap().to_string();
        assert!(err.contains("newer vembed"), "{err}");
    }

    #[test]
    fn a_schema_2_index_is_migrated_by_the_writer_and_refused_by_readers_until_then() {
        let dir = tempfile::tempdir().unwrap();
        let (w, vectors) = filled(dir.path(), 700);
        let r = w.reader();
        let queries: Vec<&Vec<f32>> = vectors.iter().step_by(7).collect();
        let search = |r: &IndexReader| -> Vec<_> {
            queries
                .iter()
                .map(|q| {
                    let exact = keys(&r.search_exact(q, 10).unwrap());
                    (exact, keys(&r.search_with(q, 10, Some(60)).unwrap()))
                })
                .collect()
        };
        let before = search(&r);
        // Make it what schema 2 wrote: a scan store per file, no blocks.
        let (scan, forest): (Database<Str, Bytes>, Database<Bytes, Bytes>) = w
            .env
            .create_databases_and_commit(
                w.env.write_txn().unwrap(),
                |dbo, wtxn| -> heed::Result<_> {
                    Ok(CommitOrAbort::<_, ()>::Commit((
                        dbo.create_database(wtxn, Some("scan"))?,
                        dbo.create_database(wtxn, Some("vectors"))?,
                    )))
                },
            )
            .unwrap()
            .commit()
            .expect("never aborted");
        let mut wtxn = w.env.write_txn().unwrap();
        forest.put(&mut wtxn, b"forest node", b"stale").unwrap();
        let mut files = Vec::new();
        for item in w.dbs.files.iter(&wtxn).unwrap() {
            let (path, bytes) = item.unwrap();
            files.push((path.to_string(), parse::<FileEntry>(bytes, "entry").unwrap()));
        }
        for (path, entry) in files {
            let vs: Vec<Vec<f32>> =
                entry.snippets.iter().map(|&id| vectors[id as usize].clone()).collect();
            scan.put(&mut wtxn, &path, &migrate::legacy_value(&entry.snippets, &vs)).unwrap();
        }
        w.dbs.vecs.db.clear(&mut wtxn).unwrap();
        w.dbs.codes.db.clear(&mut wtxn).unwrap();
        w.dbs.meta.put(&mut wtxn, META_SCHEMA, &json(&2u32)).unwrap();
        wtxn.commit().unwrap();
        drop((w, r));

        let err = IndexReader::open(dir.path(), None).err().unwrap().to_string();
        assert!(err.contains("schema 2") && err.contains("vembed index"), "{err}");
        let w = IndexWriter::open(dir.path(), Path::new("/repo"), &model(8), false).unwrap();
        let r = w.reader();
        assert_eq!(r.stats().unwrap().snippets, 700);
        assert_eq!(before, search(&r), "migrated: the same exact and coded results");
        type Legacy = (Option<Database<Str, Bytes>>, Option<Database<Bytes, Bytes>>);
        let (scan, forest): Legacy = w
            .env
            .open_databases_and_commit(w.env.read_txn().unwrap(), |dbo, rtxn| -> heed::Result<_> {
                Ok(CommitOrAbort::<_, ()>::Commit((
                    dbo.open_database(rtxn, Some("scan"))?,
                    dbo.open_database(rtxn, Some("vectors"))?,
                )))
            })
            .unwrap()
            .commit()
            .expect("never aborted");
        let rtxn = w.env.read_txn().unwrap();
        assert!(scan.unwrap().is_empty(&rtxn).unwrap(), "the scan store is emptied");
        assert!(forest.unwrap().is_empty(&rtxn).unwrap(), "the forest is emptied");
        drop(rtxn);
        // Another schema is not migrated.
        let mut wtxn = w.env.write_txn().unwrap();
        w.dbs.meta.put(&mut wtxn, META_SCHEMA, &json(&7u32)).unwrap();
        wtxn.commit().unwrap();
        drop((w, r));
        let err =
            IndexWriter::open(dir.path(), Path::new("/repo"), &model(8), false).err().unwrap();
        assert!(
            err.to_string().contains("schema 7") && err.to_string().contains("--rebuild"),
            "{err}"
        );
    }

    #[test]
    fn vector_rows_round_trip() {
        let mut row = Vec::new();
        rows::encode(&[3.0, 4.0, 0.0], &mut row);
        let (norm, v) = rows::split(&row);
        assert_eq!((norm, row.len()), (5.0, rows::width(3)));
        assert_eq!(rows::dot(v, &[1.0, 1.0, 1.0]), 7.0);
        // Eight lanes and a remainder agree with a plain loop.
        let v: Vec<f32> = (0..19).map(|i| i as f32 * 0.5 - 3.0).collect();
        let q: Vec<f32> = (0..19).map(|i| 1.0 - i as f32 * 0.1).collect();
        let mut row = Vec::new();
        rows::encode(&v, &mut row);
        let d = rows::dot(rows::split(&row).1, &q);
        let want: f32 = v.iter().zip(&q).map(|(x, y)| x * y).sum();
        assert!((d - want).abs() < 1e-4, "{d} vs {want}");
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

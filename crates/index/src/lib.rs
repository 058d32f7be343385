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
pub(crate) mod tests;

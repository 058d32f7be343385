//! Code search in the client process: one query embedding from the host,
//! then the index is read through LMDB's shared memory map, read-only, on a
//! consistent snapshot, never waiting for the host's writes.

use std::path::{Path, PathBuf};

use vembed_index::{IndexReader, IndexStats, Mode, ModelIdentity};

use crate::{Client, ModelRef, RankedSearchHit, Role, SearchHit, SearchMode};

/// Errors of a search.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// Talking to the host failed.
    #[error(transparent)]
    Client(#[from] crate::Error),
    /// The index cannot be used.
    #[error(transparent)]
    Index(#[from] vembed_index::IndexError),
    /// The repository path is wrong.
    #[error("repository {path}: {source}")]
    Repo {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// A repository's index, open for searching.
pub struct Searcher {
    reader: IndexReader,
}

/// Where the index of `repo` lives: `index_dir`, else the default.
pub fn index_dir_for(repo: &Path, index_dir: Option<&Path>) -> Result<PathBuf, SearchError> {
    let root = repo
        .canonicalize()
        .map_err(|source| SearchError::Repo { path: repo.to_path_buf(), source })?;
    Ok(index_dir.map_or_else(|| vembed_models::paths::default_index_dir(&root), Path::to_path_buf))
}

/// The identity of the host's code model, which an index must match.
pub fn code_model(client: &Client) -> Option<ModelIdentity> {
    client.hello().models.iter().find(|m| m.roles.contains(&Role::Code)).map(|m| ModelIdentity {
        name: m.name.clone(),
        sha256: m.sha256.clone(),
        dim: m.dim,
        identity: m.identity.clone(),
    })
}

impl Searcher {
    /// Opens the index of `repo` read-only, checking it was built by the
    /// host's code model.
    pub fn open(
        client: &Client,
        repo: &Path,
        index_dir: Option<&Path>,
    ) -> Result<Searcher, SearchError> {
        let dir = index_dir_for(repo, index_dir)?;
        let reader = IndexReader::open(&dir, code_model(client).as_ref())?;
        Ok(Searcher { reader })
    }

    /// Opens an index without a host (for `vembed index --status`).
    pub fn open_dir(dir: &Path) -> Result<Searcher, SearchError> {
        Ok(Searcher { reader: IndexReader::open(dir, None)? })
    }

    /// Counts, model and last update.
    pub fn stats(&self) -> Result<IndexStats, SearchError> {
        Ok(self.reader.stats()?)
    }

    /// The `k` best snippets for an already embedded query.
    pub fn search_vector(&self, vector: &[f32], k: usize) -> Result<Vec<SearchHit>, SearchError> {
        self.search_vector_with(vector, k, None)
    }

    /// [`Searcher::search_vector`] re-ranking `candidates` snippets found
    /// by their sign-bit codes, at any index size (default: an exact scan
    /// up to 25,000 snippets, then a count that grows with the index):
    /// more finds more of the true neighbours, slower.
    pub fn search_vector_with(
        &self,
        vector: &[f32],
        k: usize,
        candidates: Option<usize>,
    ) -> Result<Vec<SearchHit>, SearchError> {
        let hits = self.reader.search_with(vector, k, candidates)?;
        Ok(hits.into_iter().map(SearchHit::from).collect())
    }

    /// The `k` best snippets by an exhaustive scan of every vector (exact,
    /// whatever the index's size; [`Searcher::search_vector`] scans only
    /// small indexes and re-ranks code candidates on larger ones).
    pub fn search_vector_exact(
        &self,
        vector: &[f32],
        k: usize,
    ) -> Result<Vec<SearchHit>, SearchError> {
        Ok(self.reader.search_exact(vector, k)?.into_iter().map(SearchHit::from).collect())
    }

    /// The candidates a code search of `k` results re-ranks by default on
    /// this index.
    pub fn default_candidates(&self, k: usize) -> Result<usize, SearchError> {
        Ok(self.reader.default_candidates(k)?)
    }

    /// The `k` snippets that best match the query's words (BM25 over code
    /// tokens, identifiers split), no embedding needed.
    pub fn search_lexical(
        &self,
        query: &str,
        k: usize,
    ) -> Result<Vec<RankedSearchHit>, SearchError> {
        Ok(self.reader.search_lexical(query, k)?.into_iter().map(RankedSearchHit::from).collect())
    }

    /// Hybrid: the semantic ranking of `vector` (the query's embedding) and
    /// the lexical ranking of `query`, fused by normalised score.
    pub fn search_hybrid(
        &self,
        query: &str,
        vector: &[f32],
        k: usize,
    ) -> Result<Vec<RankedSearchHit>, SearchError> {
        Ok(self
            .reader
            .search_hybrid(query, vector, k)?
            .into_iter()
            .map(RankedSearchHit::from)
            .collect())
    }

    /// Searches in `mode`: `vector` is the query's embedding (unused by a
    /// lexical search, which may pass an empty slice).
    pub fn search_mode(
        &self,
        mode: SearchMode,
        query: &str,
        vector: &[f32],
        k: usize,
    ) -> Result<Vec<RankedSearchHit>, SearchError> {
        Ok(self
            .reader
            .search_mode(Mode::from(mode), query, vector, k)?
            .into_iter()
            .map(RankedSearchHit::from)
            .collect())
    }

    /// Embeds `query` with the code model and returns the `k` best snippets.
    pub fn search(
        &self,
        client: &mut Client,
        query: &str,
        k: usize,
    ) -> Result<Vec<SearchHit>, SearchError> {
        let e = client.embed_with(&ModelRef::Role(Role::Code), &[query])?;
        self.search_vector(&e.data, k)
    }
}

//! Read-only handles on an index (every client): one LMDB snapshot per
//! search, never waiting for the writer.

use super::*;

/// The most results one search returns.
pub const MAX_K: usize = 10_000;
/// The most forest nodes one search may visit.
pub const MAX_SEARCH_K: usize = 100_000_000;

/// A read-only handle on an index (every client).
pub struct IndexReader {
    pub(crate) env: Env<WithoutTls>,
    pub(crate) dbs: Dbs,
    pub(crate) model: ModelIdentity,
    pub(crate) dir: PathBuf,
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
        if k > MAX_K || search_k.is_some_and(|s| s > MAX_SEARCH_K) {
            return Err(IndexError::TooMany {
                k,
                search_k,
                max_k: MAX_K,
                max_search_k: MAX_SEARCH_K,
            });
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

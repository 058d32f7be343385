//! Read-only handles on an index (every client): one LMDB snapshot per
//! search, never waiting for the writer.

use super::*;

/// The most results one search returns.
pub const MAX_K: usize = 10_000;
/// The most candidates one search may re-rank.
pub const MAX_CANDIDATES: usize = 1_000_000;

/// Up to this many vectors, a search without an explicit candidate count
/// scans every vector (exact). Measured with `benches/index_scale.rs`
/// (384 dimensions, k = 10, AMD EPYC Zen 1 with AVX2): the scan takes
/// 0.88 ms at 5k vectors, 3.7 ms at 20k and 9.1 ms at 50k.
pub const EXACT_MAX_ITEMS: usize = 25_000;

/// Candidates a code search re-ranks by default, per result wanted, by
/// index size: `(snippets, per result)` points, interpolated in
/// log(snippets) between them and held flat past the ends. Measured with
/// `benches/index_scale.rs` (384 dimensions, k = 10, real embeddings, 2
/// vCPUs of an AMD EPYC with AVX-512): at 100k, 500 candidates give
/// recall@10 0.993 against the exact scan at p50 0.50 ms; at 1M, 500 give
/// 0.991 at 1.98 ms and 1,000 give 0.996 at 2.34 ms (the exact scan:
/// 62.7 ms); at 3M, 1,000 give 0.988 at 5.47 ms and 2,000 give 0.994 at
/// 6.08 ms (the exact scan: 170 ms).
pub const CANDIDATES_PER_RESULT: [(usize, usize); 4] =
    [(25_000, 50), (100_000, 50), (1_000_000, 100), (3_000_000, 200)];

/// The candidates a code search of `k` results re-ranks by default on an
/// index of `items` snippets: `k ×` the figure of
/// [`CANDIDATES_PER_RESULT`] for that size.
pub fn candidates_for(items: usize, k: usize) -> usize {
    let pts = &CANDIDATES_PER_RESULT;
    let items = items.clamp(pts[0].0, pts[pts.len() - 1].0);
    let w = pts.windows(2).find(|w| items <= w[1].0).expect("items within the points");
    let ((a, fa), (b, fb)) = (w[0], w[1]);
    let ln = |v: usize| (v as f64).ln();
    let t = (ln(items) - ln(a)) / (ln(b) - ln(a));
    let per = fa as f64 + t * (fb as f64 - fa as f64);
    (k.max(1) * per.round() as usize).min(MAX_CANDIDATES)
}

fn ranked_semantic(mut hits: Vec<Hit>) -> Vec<Hit> {
    for (i, h) in hits.iter_mut().enumerate() {
        h.semantic = Some((i as u32 + 1, h.score));
    }
    hits
}

/// A hit being fused: its fused score, and its (rank, score) in the
/// semantic and the lexical ranking.
type Fused = (f32, Option<(u32, f32)>, Option<(u32, f32)>);

/// How deep each ranking goes before a hybrid search fuses them.
pub const HYBRID_DEPTH: usize = 50;
/// Hybrid search fuses normalised scores: `SEMANTIC_WEIGHT × cosine +
/// LEXICAL_WEIGHT × BM25 / best BM25`, over the union of both rankings'
/// candidates. Chosen on the docstring → function dev set
/// (`scripts/eval-search`, 1,816 cases; semantic alone MRR@10 0.585,
/// lexical 0.490): reciprocal rank fusion reached 0.591 (1/1, k = 60) to
/// 0.623 at best (0.6/0.4, k = 5); this fusion 0.584 at 0.6, 0.626 at 0.8,
/// 0.634 at 0.85 and 0.637 at 0.9. Unlike rank fusion it keeps how far
/// ahead an exact identifier match is: one hit with ten times the next
/// BM25 comes first even when its meaning ranks it 14th.
pub const SEMANTIC_WEIGHT: f32 = 0.85;
/// See [`SEMANTIC_WEIGHT`].
pub const LEXICAL_WEIGHT: f32 = 0.15;

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
        IndexReader::on(open_env(dir, true)?, dir, expect)
    }

    /// A reader on an environment open already (read-only, or the one
    /// [`Index`](crate::Index) of this process).
    pub(crate) fn on(
        env: Env<WithoutTls>,
        dir: &Path,
        expect: Option<&ModelIdentity>,
    ) -> Result<IndexReader> {
        let missing = || IndexError::Missing(dir.to_path_buf());
        type Opened = (
            Option<Database<U32<BigEndian>, Bytes>>,
            Option<Database<Str, Bytes>>,
            Option<Database<Str, Bytes>>,
            Option<Database<U32<BigEndian>, Bytes>>,
            Option<Database<U32<BigEndian>, Bytes>>,
            Option<Database<Bytes, Bytes>>,
        );
        let opened: Opened = env
            .open_databases_and_commit(env.read_txn()?, |dbo, rtxn| -> heed::Result<_> {
                let n = DB_NAMES;
                Ok(CommitOrAbort::<_, ()>::Commit((
                    dbo.open_database(rtxn, Some(n[0]))?,
                    dbo.open_database(rtxn, Some(n[1]))?,
                    dbo.open_database(rtxn, Some(n[2]))?,
                    dbo.open_database(rtxn, Some(n[3]))?,
                    dbo.open_database(rtxn, Some(n[4]))?,
                    dbo.open_database(rtxn, Some(n[5]))?,
                )))
            })?
            .commit()
            .expect("never aborted");
        // The schema first: an older index lacks databases this one has.
        let meta = opened.2.ok_or_else(missing)?;
        let rtxn = env.read_txn()?;
        let schema: u32 = parse(meta.get(&rtxn, META_SCHEMA)?.ok_or_else(missing)?, "schema")?;
        if !(OLDEST_READABLE_SCHEMA..=SCHEMA_VERSION).contains(&schema) {
            return Err(IndexError::Schema { path: dir.to_path_buf(), found: schema });
        }
        let model: ModelIdentity =
            parse(meta.get(&rtxn, META_MODEL)?.ok_or_else(missing)?, "model")?;
        let dbs = match opened {
            (Some(s), Some(f), Some(m), Some(v), Some(c), Some(p)) => {
                Dbs::from((s, f, m, v, c, p), model.dim as usize, stored_vector_block(&m, &rtxn)?)
            }
            _ => return Err(missing()),
        };
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

    /// [`IndexReader::search`] re-ranking an explicit number of
    /// `candidates` (default: [`candidates_for`] the index's size, and an
    /// exact scan up to [`EXACT_MAX_ITEMS`]): the codes nearest to the
    /// query's are re-ranked by exact cosine. More is slower and finds
    /// more of the true nearest neighbours.
    pub fn search_with(
        &self,
        query: &[f32],
        k: usize,
        candidates: Option<usize>,
    ) -> Result<Vec<Hit>> {
        self.check(query, k, candidates)?;
        let rtxn = self.env.read_txn()?;
        if k == 0 {
            return Ok(Vec::new());
        }
        let found = self.nearest(&rtxn, query, k, candidates)?;
        Ok(ranked_semantic(self.hits(&rtxn, found)?))
    }

    /// The `k` snippets nearest to `query` by an exhaustive scan of every
    /// stored vector: exact, whatever the index's size.
    pub fn search_exact(&self, query: &[f32], k: usize) -> Result<Vec<Hit>> {
        self.check(query, k, None)?;
        let rtxn = self.env.read_txn()?;
        if k == 0 {
            return Ok(Vec::new());
        }
        let found = nearest::exact(&self.dbs, &rtxn, query, k)?;
        Ok(ranked_semantic(self.hits(&rtxn, found)?))
    }

    /// The `k` nearest ids and their cosines: an exact scan of a small
    /// index (unless `candidates` asks for the codes), else the codes.
    fn nearest(
        &self,
        rtxn: &heed::RoTxn<'_, WithoutTls>,
        query: &[f32],
        k: usize,
        candidates: Option<usize>,
    ) -> Result<Vec<(u32, f32)>> {
        let n = self.dbs.snippets.len(rtxn)? as usize;
        match candidates {
            None if n <= EXACT_MAX_ITEMS => nearest::exact(&self.dbs, rtxn, query, k),
            _ => {
                let candidates = candidates.unwrap_or_else(|| candidates_for(n, k));
                nearest::by_codes(&self.dbs, rtxn, query, k, candidates)
            }
        }
    }

    fn hits(&self, rtxn: &heed::RoTxn<'_, WithoutTls>, found: Vec<(u32, f32)>) -> Result<Vec<Hit>> {
        let mut hits = Vec::with_capacity(found.len());
        for (id, score) in found {
            let Some(bytes) = self.dbs.snippets.get(rtxn, &id)? else { continue };
            hits.push(Hit {
                snippet: parse(bytes, "snippet")?,
                score,
                semantic: None,
                lexical: None,
            });
        }
        Ok(hits)
    }

    /// The `k` snippets that best match `query`'s words (BM25 over code
    /// tokens), best first, from one consistent snapshot.
    pub fn search_lexical(&self, query: &str, k: usize) -> Result<Vec<Hit>> {
        if k > MAX_K {
            return Err(IndexError::TooMany {
                k,
                candidates: None,
                max_k: MAX_K,
                max_candidates: MAX_CANDIDATES,
            });
        }
        let rtxn = self.env.read_txn()?;
        let stats = lexical::stats(&self.dbs.meta, &rtxn)?;
        let found = self.dbs.lex.search(&rtxn, stats, query, k)?;
        let mut hits = self.hits(&rtxn, found)?;
        for (i, h) in hits.iter_mut().enumerate() {
            h.lexical = Some((i as u32 + 1, h.score));
        }
        Ok(hits)
    }

    /// Hybrid search: the semantic ranking of `vector` (the query's
    /// embedding) and the lexical ranking of `query`, each to
    /// [`HYBRID_DEPTH`], fused by normalised score (see
    /// [`SEMANTIC_WEIGHT`]), from one snapshot. Each hit carries its rank
    /// and score in each ranking that found it.
    pub fn search_hybrid(&self, query: &str, vector: &[f32], k: usize) -> Result<Vec<Hit>> {
        self.check(vector, k, None)?;
        let depth = k.max(HYBRID_DEPTH);
        let rtxn = self.env.read_txn()?;
        if k == 0 {
            return Ok(Vec::new());
        }
        // The semantic side re-ranks as many candidates as a semantic
        // search of `k` would (not of `depth`: five times the work at 1M
        // for hits that rarely reach the fused top `k`).
        let n = self.dbs.snippets.len(&rtxn)? as usize;
        let candidates = (n > EXACT_MAX_ITEMS).then(|| candidates_for(n, k).max(depth));
        let semantic = self.nearest(&rtxn, vector, depth, candidates)?;
        let stats = lexical::stats(&self.dbs.meta, &rtxn)?;
        let lexical = self.dbs.lex.search(&rtxn, stats, query, depth)?;
        let mut fused: std::collections::HashMap<u32, Fused> = std::collections::HashMap::new();
        for (rank, &(id, score)) in semantic.iter().enumerate() {
            fused.entry(id).or_default().1 = Some((rank as u32 + 1, score));
        }
        for (rank, &(id, score)) in lexical.iter().enumerate() {
            fused.entry(id).or_default().2 = Some((rank as u32 + 1, score));
        }
        // Every candidate gets both scores: its cosine (computed here for
        // those only the words found) and its BM25 over the best BM25.
        let max_lex = lexical.first().map_or(0.0, |l| l.1).max(f32::MIN_POSITIVE);
        for (id, e) in fused.iter_mut() {
            let cos = match e.1 {
                Some((_, c)) => c,
                None => nearest::cosine_of(&self.dbs, &rtxn, vector, *id)?.unwrap_or(0.0),
            };
            let lex = e.2.map_or(0.0, |(_, l)| l / max_lex);
            e.0 = SEMANTIC_WEIGHT * cos + LEXICAL_WEIGHT * lex;
        }
        let mut order: Vec<(u32, Fused)> = fused.into_iter().collect();
        order.sort_by(|a, b| b.1.0.total_cmp(&a.1.0).then(a.0.cmp(&b.0)));
        order.truncate(k);
        let mut hits = Vec::with_capacity(order.len());
        for (id, (score, semantic, lexical)) in order {
            let Some(bytes) = self.dbs.snippets.get(&rtxn, &id)? else { continue };
            hits.push(Hit { snippet: parse(bytes, "snippet")?, score, semantic, lexical });
        }
        Ok(hits)
    }

    /// Searches in `mode`: `vector` is `query`'s embedding, which a lexical
    /// search does not read (it may be empty).
    pub fn search_mode(
        &self,
        mode: Mode,
        query: &str,
        vector: &[f32],
        k: usize,
    ) -> Result<Vec<Hit>> {
        match mode {
            Mode::Semantic => self.search(vector, k),
            Mode::Lexical => self.search_lexical(query, k),
            Mode::Hybrid => self.search_hybrid(query, vector, k),
        }
    }

    fn check(&self, query: &[f32], k: usize, candidates: Option<usize>) -> Result<()> {
        let dim = self.model.dim as usize;
        if query.len() != dim {
            return Err(IndexError::Dimension { want: dim, got: query.len() });
        }
        if k > MAX_K || candidates.is_some_and(|s| s > MAX_CANDIDATES) {
            return Err(IndexError::TooMany {
                k,
                candidates,
                max_k: MAX_K,
                max_candidates: MAX_CANDIDATES,
            });
        }
        Ok(())
    }

    /// The candidates a code search of `k` results re-ranks by default on
    /// this index ([`candidates_for`] its size), whether or not a plain
    /// search scans instead (it does up to [`EXACT_MAX_ITEMS`]).
    pub fn default_candidates(&self, k: usize) -> Result<usize> {
        let rtxn = self.env.read_txn()?;
        Ok(candidates_for(self.dbs.snippets.len(&rtxn)? as usize, k))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_grow_with_the_index_and_are_flat_past_the_ends() {
        let first = CANDIDATES_PER_RESULT[0];
        let last = CANDIDATES_PER_RESULT[CANDIDATES_PER_RESULT.len() - 1];
        assert_eq!(candidates_for(10, 10), 10 * first.1);
        assert_eq!(candidates_for(first.0, 10), 10 * first.1);
        assert_eq!(candidates_for(last.0 * 10, 10), 10 * last.1);
        let mut prev = 0;
        for n in (1..=40).map(|i| i * 50_000) {
            let s = candidates_for(n, 10);
            assert!(s >= prev, "{n}: {s} < {prev}");
            prev = s;
        }
        assert_eq!(candidates_for(50_000, 20), 2 * candidates_for(50_000, 10));
        assert_eq!(candidates_for(50_000, 0), candidates_for(50_000, 1));
        assert!(candidates_for(10_000_000, MAX_K) <= MAX_CANDIDATES);
    }
}

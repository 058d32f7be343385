//! Read-only handles on an index (every client): one LMDB snapshot per
//! search, never waiting for the writer.

use super::*;

/// The most results one search returns.
pub const MAX_K: usize = 10_000;
/// The most forest nodes one search may visit.
pub const MAX_SEARCH_K: usize = 100_000_000;

/// Up to this many vectors, a search without an explicit `search_k` scans
/// every vector (exact) instead of walking the forest. Measured with
/// `benches/index_scale.rs` (384 dimensions, 16 trees, k = 10, AMD EPYC
/// Zen 1 with AVX2): the scan takes 0.88 ms at 5k vectors, 3.7 ms at 20k
/// and 9.1 ms at 50k; the forest at its default `search_k` 2.3, 4.4 and
/// 4.8 ms, at recall@10 1.000, 0.995 and 0.998. They cross near 25k; below
/// that the exact answer costs no more.
pub const EXACT_MAX_ITEMS: usize = 25_000;

/// Forest nodes a search visits by default, per tree and per result
/// wanted, by index size: `(snippets, per tree)` points, interpolated in
/// log(snippets) between them and held flat past the ends. Measured with
/// `benches/index_scale.rs` (16 trees, k = 10, vectors of real-code
/// structure; Xeon with AVX-512, load 1.2–2.4): at 100k snippets 50 per
/// tree gives recall@10 0.995 at 5.3 ms; at 1M, 50 gives 0.921 at 10.4 ms,
/// 100 gives 0.959 at 16.5 ms and 125 gives 0.972 at 19.5 ms. 32 trees or
/// leaves of 96 instead of 384 snippets cost twice the build time for the
/// same recall per millisecond.
pub const SEARCH_K_PER_TREE: [(usize, usize); 3] = [(25_000, 50), (100_000, 50), (1_000_000, 130)];

/// The `search_k` a forest search of `k` results visits by default on an
/// index of `items` snippets in `trees` trees: `k × trees ×` the per-tree
/// figure of [`SEARCH_K_PER_TREE`] for that size, chosen so that recall@10
/// against an exact search stays ≥ 0.99 up to 100k snippets and ≥ 0.97 at
/// 1M.
pub fn search_k_for(items: usize, trees: usize, k: usize) -> usize {
    let pts = &SEARCH_K_PER_TREE;
    let items = items.clamp(pts[0].0, pts[pts.len() - 1].0);
    let w = pts.windows(2).find(|w| items <= w[1].0).expect("items within the points");
    let ((a, fa), (b, fb)) = (w[0], w[1]);
    let ln = |v: usize| (v as f64).ln();
    let t = (ln(items) - ln(a)) / (ln(b) - ln(a));
    let per_tree = fa as f64 + t * (fb as f64 - fa as f64);
    (k * trees.max(1)) * per_tree.round() as usize
}

/// Cosine similarity of every stored vector with `query`, read from the
/// scan store (one value per file); the `k` best, best first (ties by id,
/// so the order is stable).
fn exact(
    dbs: &Dbs,
    rtxn: &heed::RoTxn<'_, WithoutTls>,
    query: &[f32],
    k: usize,
) -> Result<Vec<(u32, f32)>> {
    let dim = query.len();
    let qn = query.iter().map(|x| x * x).sum::<f32>().sqrt();
    let mut best: std::collections::BinaryHeap<std::cmp::Reverse<Scored>> =
        std::collections::BinaryHeap::with_capacity(k + 1);
    for item in dbs.scan.iter(rtxn)? {
        let (path, bytes) = item?;
        let value = scan::decode(bytes, dim)
            .ok_or_else(|| IndexError::Corrupt(format!("scan store of {path}: bad length")))?;
        for (id, norm, v) in value.rows(dim) {
            let dot = scan::dot(v, query);
            let cos = if qn > 0.0 && norm > 0.0 { dot / (qn * norm) } else { 0.0 };
            let worst = best.peek().map(|r| &r.0);
            if best.len() < k || worst.is_some_and(|w| Scored(cos, id) > *w) {
                best.push(std::cmp::Reverse(Scored(cos, id)));
                if best.len() > k {
                    best.pop();
                }
            }
        }
    }
    let mut out: Vec<(u32, f32)> = best.into_iter().map(|r| (r.0.1, r.0.0)).collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    Ok(out)
}

/// A score and an id, ordered by score, then by id reversed (so that among
/// equal scores the lowest id is kept).
#[derive(PartialEq)]
struct Scored(f32, u32);

impl Eq for Scored {}

impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scored {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0).then(other.1.cmp(&self.1))
    }
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
            Option<arroy::Database<'static, Cosine>>,
            Option<Database<U32<BigEndian>, Bytes>>,
            Option<Database<Str, Bytes>>,
            Option<Database<Str, Bytes>>,
            Option<Database<Str, Bytes>>,
            Option<Database<Bytes, Bytes>>,
        );
        let opened: Opened = env
            .open_databases_and_commit(env.read_txn()?, |dbo, rtxn| -> heed::Result<_> {
                Ok(CommitOrAbort::<_, ()>::Commit((
                    dbo.open_database(rtxn, Some("vectors"))?,
                    dbo.open_database(rtxn, Some("snippets"))?,
                    dbo.open_database(rtxn, Some("files"))?,
                    dbo.open_database(rtxn, Some("meta"))?,
                    dbo.open_database(rtxn, Some("scan"))?,
                    dbo.open_database(rtxn, Some("postings"))?,
                )))
            })?
            .commit()
            .expect("never aborted");
        // The schema first: an older index lacks databases this one has.
        let meta = opened.3.ok_or_else(missing)?;
        let rtxn = env.read_txn()?;
        let schema: u32 = parse(meta.get(&rtxn, META_SCHEMA)?.ok_or_else(missing)?, "schema")?;
        if schema != SCHEMA_VERSION {
            return Err(IndexError::Schema { path: dir.to_path_buf(), found: schema });
        }
        let dbs = match opened {
            (Some(v), Some(s), Some(f), Some(m), Some(sc), Some(p)) => {
                Dbs::from((v, s, f, m, sc, p))
            }
            _ => return Err(missing()),
        };
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
    /// nodes to visit (default: [`search_k_for`] the index's size).
    /// Higher is slower and finds more of the true nearest neighbours.
    pub fn search_with(
        &self,
        query: &[f32],
        k: usize,
        search_k: Option<usize>,
    ) -> Result<Vec<Hit>> {
        self.check(query, k, search_k)?;
        let rtxn = self.env.read_txn()?;
        let reader = arroy::Reader::open(&rtxn, 0, self.dbs.vectors)?;
        if reader.n_items() == 0 || k == 0 {
            return Ok(Vec::new());
        }
        let found = self.nearest(&reader, &rtxn, query, k, search_k)?;
        Ok(ranked_semantic(self.hits(&rtxn, found)?))
    }

    /// The `k` snippets nearest to `query` by an exhaustive scan of every
    /// stored vector: exact, whatever the index's size.
    pub fn search_exact(&self, query: &[f32], k: usize) -> Result<Vec<Hit>> {
        self.check(query, k, None)?;
        let rtxn = self.env.read_txn()?;
        let reader = arroy::Reader::open(&rtxn, 0, self.dbs.vectors)?;
        if reader.n_items() == 0 || k == 0 {
            return Ok(Vec::new());
        }
        let found = exact(&self.dbs, &rtxn, query, k)?;
        Ok(ranked_semantic(self.hits(&rtxn, found)?))
    }

    /// The `k` nearest ids and their cosines: an exact scan of a small
    /// index (unless `search_k` asks for the forest), else the forest.
    fn nearest(
        &self,
        reader: &arroy::Reader<'_, Cosine>,
        rtxn: &heed::RoTxn<'_, WithoutTls>,
        query: &[f32],
        k: usize,
        search_k: Option<usize>,
    ) -> Result<Vec<(u32, f32)>> {
        if search_k.is_none() && reader.n_items() as usize <= EXACT_MAX_ITEMS {
            return exact(&self.dbs, rtxn, query, k);
        }
        let mut q = reader.nns(k);
        let n = reader.n_items() as usize;
        let search_k = search_k.unwrap_or_else(|| search_k_for(n, reader.n_trees(), k)).max(k);
        q.search_k(NonZeroUsize::new(search_k).expect("search_k > 0"));
        // arroy's cosine distance is (1 - cos) / 2.
        Ok(q.by_vector(rtxn, query)?.into_iter().map(|(id, d)| (id, 1.0 - 2.0 * d)).collect())
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
                search_k: None,
                max_k: MAX_K,
                max_search_k: MAX_SEARCH_K,
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
        let reader = arroy::Reader::open(&rtxn, 0, self.dbs.vectors)?;
        if reader.n_items() == 0 || k == 0 {
            return Ok(Vec::new());
        }
        let semantic = self.nearest(&reader, &rtxn, vector, depth, None)?;
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
        let qn = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        for (id, e) in fused.iter_mut() {
            let cos = match e.1 {
                Some((_, c)) => c,
                None => reader.item_vector(&rtxn, *id)?.map_or(0.0, |v| {
                    let dot: f32 = v.iter().zip(vector).map(|(a, b)| a * b).sum();
                    let vn = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                    if vn > 0.0 && qn > 0.0 { dot / (vn * qn) } else { 0.0 }
                }),
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

    fn check(&self, query: &[f32], k: usize, search_k: Option<usize>) -> Result<()> {
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
        Ok(())
    }

    /// The `search_k` a search of `k` results visits in the forest by
    /// default on this index ([`search_k_for`] its size), whether or not
    /// a plain search scans instead (it does up to [`EXACT_MAX_ITEMS`]).
    pub fn default_search_k(&self, k: usize) -> Result<usize> {
        let rtxn = self.env.read_txn()?;
        let reader = arroy::Reader::open(&rtxn, 0, self.dbs.vectors)?;
        Ok(search_k_for(reader.n_items() as usize, reader.n_trees(), k))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_k_grows_with_the_index_and_is_flat_past_the_ends() {
        let first = SEARCH_K_PER_TREE[0];
        let last = SEARCH_K_PER_TREE[SEARCH_K_PER_TREE.len() - 1];
        assert_eq!(search_k_for(10, 16, 10), 160 * first.1);
        assert_eq!(search_k_for(first.0, 16, 10), 160 * first.1);
        assert_eq!(search_k_for(last.0 * 10, 16, 10), 160 * last.1);
        let mut prev = 0;
        for n in (1..=40).map(|i| i * 50_000) {
            let s = search_k_for(n, 16, 10);
            assert!(s >= prev, "{n}: {s} < {prev}");
            prev = s;
        }
        // k and the trees scale it; no trees counts as one.
        assert_eq!(search_k_for(50_000, 16, 20), 2 * search_k_for(50_000, 16, 10));
        assert_eq!(search_k_for(50_000, 0, 10), search_k_for(50_000, 1, 10));
    }
}

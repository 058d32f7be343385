//! Scoring and ranking tools against a request.

use std::collections::{BTreeSet, HashMap};

use crate::{Fallback, Method, ToolPick, ToolSpec, split_identifier, split_text};

/// What [`Method::Hybrid`] adds to a tool's cosine for the query's terms it
/// names: this times the idf share of the query's terms found in the tool's
/// text. Not the code index's hybrid weight (`vembed_index::LEXICAL_WEIGHT`,
/// which weighs BM25 against cosine over snippets): the two rank different
/// things, and each was chosen on its own dev set.
pub const TOOL_TERM_SHARE: f32 = 0.3;

/// Selection options. The defaults follow Victor: k 5, threshold 0.15,
/// fallback all.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SelectOptions {
    /// Most tools returned (when some pass the threshold).
    pub k: usize,
    /// Least score kept.
    pub threshold: f32,
    /// When none passes.
    pub fallback: Fallback,
}

impl Default for SelectOptions {
    fn default() -> Self {
        SelectOptions { k: 5, threshold: 0.15, fallback: Fallback::All }
    }
}

/// A tool set with its vectors, ready to rank requests.
#[derive(Debug, Clone)]
pub struct Ranker {
    names: Vec<String>,
    method: Method,
    dim: usize,
    /// Row-major vectors; `owner[i]` is the tool of row i.
    vectors: Vec<f32>,
    owner: Vec<usize>,
    /// Lexical terms of each tool, and every term's idf.
    terms: Vec<BTreeSet<String>>,
    idf: HashMap<String, f32>,
}

impl Ranker {
    /// A ranker for `tools` under `method`, given the (normalized) vectors of
    /// [`crate::texts_to_embed`]'s texts, row-major with `dim` floats each,
    /// and its `owner` list.
    ///
    /// # Panics
    /// If the vectors do not hold one row per owner entry.
    pub fn new(
        tools: &[ToolSpec],
        method: Method,
        owner: Vec<usize>,
        dim: usize,
        vectors: Vec<f32>,
    ) -> Ranker {
        assert_eq!(vectors.len(), owner.len() * dim, "one vector per embedded text");
        let terms: Vec<BTreeSet<String>> =
            tools.iter().map(|t| lexical_terms(&split_text(t))).collect();
        let mut df: HashMap<String, usize> = HashMap::new();
        for ts in &terms {
            for t in ts {
                *df.entry(t.clone()).or_default() += 1;
            }
        }
        let n = tools.len() as f32;
        let idf = df.into_iter().map(|(t, d)| (t, (1.0 + n / d as f32).ln())).collect();
        Ranker {
            names: tools.iter().map(|t| t.name.clone()).collect(),
            method,
            dim,
            vectors,
            owner,
            terms,
            idf,
        }
    }

    /// The tool names, in tool set order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The scoring method.
    pub fn method(&self) -> Method {
        self.method
    }

    /// Floats per vector.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Bytes of the vectors held.
    pub fn vector_bytes(&self) -> usize {
        self.vectors.len() * std::mem::size_of::<f32>()
    }

    /// Every tool's score for a request, in tool set order. `query_vector`
    /// is the request's (normalized) embedding from the same model.
    pub fn scores(&self, query: &str, query_vector: &[f32]) -> Vec<f32> {
        let mut best = vec![f32::NEG_INFINITY; self.names.len()];
        for (row, &tool) in self.vectors.chunks_exact(self.dim.max(1)).zip(&self.owner) {
            best[tool] = best[tool].max(dot(row, query_vector));
        }
        if self.method == Method::Hybrid {
            let q = lexical_terms(query);
            let total: f32 = q.iter().map(|t| self.idf.get(t).copied().unwrap_or(0.0)).sum();
            if total > 0.0 {
                for (b, terms) in best.iter_mut().zip(&self.terms) {
                    let hit: f32 = q
                        .iter()
                        .filter(|t| terms.contains(*t))
                        .map(|t| self.idf.get(t).copied().unwrap_or(0.0))
                        .sum();
                    *b += TOOL_TERM_SHARE * hit / total;
                }
            }
        }
        best
    }

    /// Ranks tools for a request whose embedding is known: the top `k` that
    /// reach the threshold, best first (ties in tool set order), else the
    /// fallback.
    pub fn rank(&self, query: &str, query_vector: &[f32], opts: &SelectOptions) -> Vec<ToolPick> {
        let scores = self.scores(query, query_vector);
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
        let pick = |i: &usize| ToolPick { name: self.names[*i].clone(), score: scores[*i] };
        let passing: Vec<ToolPick> =
            order.iter().take(opts.k).filter(|&&i| scores[i] >= opts.threshold).map(pick).collect();
        if !passing.is_empty() {
            return passing;
        }
        match opts.fallback {
            Fallback::All => order.iter().map(pick).collect(),
            Fallback::TopK => order.iter().take(opts.k).map(pick).collect(),
        }
    }
}

/// A dot product in 16 independent lanes, which the compiler vectorizes
/// (a plain `sum()` of products is one serial chain of additions).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Lower-case word stems of a text, without stop words: the lexical score's
/// terms, in order, so that sums over them come out the same on every run.
fn lexical_terms(text: &str) -> BTreeSet<String> {
    const STOP: &[&str] = &[
        "a", "an", "the", "and", "or", "of", "to", "in", "on", "for", "with", "by", "is", "are",
        "be", "it", "this", "that", "these", "my", "me", "i", "we", "our", "what", "which", "how",
        "do", "does", "did", "from", "at", "as", "all", "any", "its", "use", "can", "you", "show",
        "there", "here", "where", "who", "when", "whose", "into", "up", "out", "so", "if", "not",
    ];
    split_identifier(text)
        .split_whitespace()
        .filter(|w| w.len() > 1 && !STOP.contains(w))
        .map(stem)
        .collect()
}

/// A crude English stemmer: enough to match "tests"/"test", "running"/"run".
fn stem(w: &str) -> String {
    for suffix in ["ing", "ies", "es", "ed", "s"] {
        if let Some(s) = w.strip_suffix(suffix)
            && s.len() >= 3
        {
            return s.to_string();
        }
    }
    w.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, description: &str) -> ToolSpec {
        ToolSpec {
            name: name.into(),
            description: description.into(),
            parameters: vec![],
            use_cases: vec![],
        }
    }

    #[test]
    fn ranks_by_score_then_order_with_fallbacks() {
        let tools = [spec("a", "x"), spec("b", "y"), spec("c", "z")];
        // 2-d vectors: a = (1,0), b = (0,1), c = (0.6,0.8).
        let r =
            Ranker::new(&tools, Method::Plain, vec![0, 1, 2], 2, vec![1., 0., 0., 1., 0.6, 0.8]);
        let names = |p: Vec<ToolPick>| p.into_iter().map(|p| p.name).collect::<Vec<_>>();
        let opts = SelectOptions { k: 2, threshold: 0.5, fallback: Fallback::All };
        assert_eq!(names(r.rank("q", &[0., 1.], &opts)), ["b", "c"]);
        let strict = SelectOptions { threshold: 2.0, ..opts };
        assert_eq!(names(r.rank("q", &[0., 1.], &strict)), ["b", "c", "a"]);
        let top = SelectOptions { fallback: Fallback::TopK, ..strict };
        assert_eq!(names(r.rank("q", &[0., 1.], &top)), ["b", "c"]);
    }

    #[test]
    fn hybrid_adds_the_lexical_share() {
        let tools = [spec("run_tests", "Run the test suite"), spec("read_file", "Read a file")];
        let r = Ranker::new(&tools, Method::Hybrid, vec![0, 1], 1, vec![0.5, 0.5]);
        let s = r.scores("please run tests", &[1.0]);
        assert!(s[0] > 0.5 + 0.29 && (s[1] - 0.5).abs() < 1e-6, "{s:?}");
    }
}

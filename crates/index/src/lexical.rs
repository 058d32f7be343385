//! The lexical index: BM25 over code tokens, in heed databases of the same
//! environment as the vectors, written in the same transactions, so one
//! read snapshot covers both.
//!
//! Tokens: the words of each identifier, split as [`vembed_words`] splits
//! them (at `_`, camelCase and letter/digit boundaries, lower-cased), plus
//! each compound identifier whole (so
//! `hash_password` matches both the exact name and its words). A snippet's
//! path and symbol count twice (the fields that name it).

use std::collections::HashMap;

use heed::types::Bytes;
use serde::{Deserialize, Serialize};

use super::{Database, Result, Snippet, json, parse};

/// Longest token kept (bytes); LMDB keys are short.
const MAX_TOKEN: usize = 64;
/// BM25's term-frequency saturation and length normalisation.
const K1: f32 = 1.2;
const B: f32 = 0.75;

/// The lexical databases.
#[derive(Clone, Copy)]
pub(crate) struct LexDbs {
    /// `term ++ 0 ++ snippet id (big endian)` → the term's frequency in
    /// the snippet and the snippet's length in tokens (`u32` LE each): a
    /// search reads everything BM25 needs from the postings it walks.
    pub postings: Database<Bytes, Bytes>,
}

/// One posting as a search reads it: snippet id, term frequency, snippet
/// length in tokens.
type Posting = (u32, f32, f32);

/// Documents and tokens in the lexical index (for the average length).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(crate) struct LexStats {
    pub docs: u64,
    pub tokens: u64,
}

pub(crate) const META_LEXICAL: &str = "lexical";

fn push_word(out: &mut Vec<String>, word: &str) {
    if !word.is_empty() && word.len() <= MAX_TOKEN {
        out.push(word.to_lowercase());
    }
}

/// The tokens of a text, in order: the words of each identifier
/// ([`vembed_words`]), then the identifier whole when it has several.
pub fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for ident in vembed_words::identifiers(text) {
        let words = vembed_words::words(ident);
        let several = words.len() > 1;
        for w in words {
            push_word(&mut out, &w);
        }
        let whole = ident.trim_matches('_');
        if several && !whole.is_empty() {
            push_word(&mut out, whole);
        }
    }
    out
}

/// A snippet's tokens: path and symbol twice, then the text.
pub(crate) fn snippet_tokens(s: &Snippet) -> Vec<String> {
    let mut head = tokens(&s.path);
    if let Some(sym) = &s.symbol {
        head.extend(tokens(sym));
    }
    let mut out = head.clone();
    out.extend(head);
    out.extend(tokens(&s.text));
    out
}

fn key(term: &str, id: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(term.len() + 5);
    k.extend_from_slice(term.as_bytes());
    k.push(0);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

fn counts(tokens: Vec<String>) -> HashMap<String, u32> {
    let mut tf = HashMap::new();
    for t in tokens {
        *tf.entry(t).or_insert(0) += 1;
    }
    tf
}

impl LexDbs {
    /// Adds a snippet; returns its length in tokens.
    pub fn add(&self, wtxn: &mut heed::RwTxn<'_>, id: u32, s: &Snippet) -> Result<u64> {
        let toks = snippet_tokens(s);
        let len = toks.len() as u64;
        let len32 = len.min(u64::from(u32::MAX)) as u32;
        for (term, tf) in counts(toks) {
            let mut value = [0u8; 8];
            value[..4].copy_from_slice(&tf.to_le_bytes());
            value[4..].copy_from_slice(&len32.to_le_bytes());
            self.postings.put(wtxn, &key(&term, id), &value)?;
        }
        Ok(len)
    }

    /// Removes a snippet (its stored form: the same tokens as when added);
    /// returns its length in tokens.
    pub fn remove(&self, wtxn: &mut heed::RwTxn<'_>, id: u32, s: &Snippet) -> Result<u64> {
        let toks = snippet_tokens(s);
        let len = toks.len() as u64;
        for term in counts(toks).into_keys() {
            self.postings.delete(wtxn, &key(&term, id))?;
        }
        Ok(len)
    }

    /// The `k` best snippets for `query` by BM25, best first (ties by id).
    pub fn search(
        &self,
        rtxn: &heed::RoTxn<'_, heed::WithoutTls>,
        stats: LexStats,
        query: &str,
        k: usize,
    ) -> Result<Vec<(u32, f32)>> {
        if stats.docs == 0 || k == 0 {
            return Ok(Vec::new());
        }
        let n = stats.docs as f32;
        let avg = (stats.tokens as f32 / n).max(1.0);
        let mut terms = tokens(query);
        terms.sort();
        terms.dedup();
        // Each term's postings, with its IDF.
        let mut walked: Vec<(f32, Vec<Posting>)> = Vec::with_capacity(terms.len());
        for term in terms {
            let mut prefix = term.as_bytes().to_vec();
            prefix.push(0);
            let mut postings = Vec::new();
            for item in self.postings.prefix_iter(rtxn, &prefix)? {
                let (k, v) = item?;
                let id = u32::from_be_bytes(k[k.len() - 4..].try_into().expect("4 bytes"));
                let field = |i: usize| {
                    v.get(i..i + 4)
                        .map_or(0.0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32)
                };
                postings.push((id, field(0), field(4)));
            }
            let df = postings.len() as f32;
            walked.push(((1.0 + (n - df + 0.5) / (df + 0.5)).ln(), postings));
        }
        // Scores summed in a dense array by id (a term in most snippets
        // makes a hash map of a million entries the whole cost), then the
        // best `k` selected rather than everything sorted. Every term
        // scores above zero (IDF > 0, tf ≥ 1), so zero means untouched.
        let max_id = walked.iter().flat_map(|(_, p)| p.iter().map(|x| x.0)).max();
        let Some(max_id) = max_id else { return Ok(Vec::new()) };
        let mut scores = vec![0f32; max_id as usize + 1];
        let mut touched = Vec::new();
        for (idf, postings) in walked {
            for (id, tf, dl) in postings {
                let s = idf * tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * dl / avg));
                let slot = &mut scores[id as usize];
                if *slot == 0.0 {
                    touched.push(id);
                }
                *slot += s;
            }
        }
        let mut out: Vec<(u32, f32)> =
            touched.into_iter().map(|id| (id, scores[id as usize])).collect();
        let order = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if out.len() > k {
            out.select_nth_unstable_by(k - 1, order);
            out.truncate(k);
        }
        out.sort_by(order);
        Ok(out)
    }
}

/// Reads the lexical stats from the meta database.
pub(crate) fn stats(
    meta: &Database<heed::types::Str, Bytes>,
    txn: &heed::RoTxn<'_>,
) -> Result<LexStats> {
    Ok(match meta.get(txn, META_LEXICAL)? {
        Some(b) => parse(b, "lexical stats")?,
        None => LexStats::default(),
    })
}

/// Writes the lexical stats.
pub(crate) fn put_stats(
    meta: &Database<heed::types::Str, Bytes>,
    wtxn: &mut heed::RwTxn<'_>,
    s: LexStats,
) -> Result<()> {
    meta.put(wtxn, META_LEXICAL, &json(&s))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_split_and_stay_whole() {
        assert_eq!(tokens("hash_password"), ["hash", "password", "hash_password"]);
        assert_eq!(
            tokens("parseHTTPResponse2xx"),
            ["parse", "http", "response", "2", "xx", "parsehttpresponse2xx"]
        );
        assert_eq!(tokens("def f(x): return x.y"), ["def", "f", "x", "return", "x", "y"]);
        assert_eq!(tokens("src/net/retry.rs"), ["src", "net", "retry", "rs"]);
        assert!(tokens(&"a".repeat(100)).is_empty(), "over-long tokens are dropped");
    }
}

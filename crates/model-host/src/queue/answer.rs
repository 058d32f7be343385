//! A finished job's answer, the same from the batcher and from a remote
//! model's lane: the fresh vectors cached (for `EmbedCached`) and merged
//! with the cached ones in request order, and the request counted.

use std::sync::Arc;
use std::time::Instant;

use vembed_protocol::Embeddings;

use super::CachedJob;
use crate::cache::{EmbedCache, Entry, TextHash};
use crate::model::Embedder;
use crate::stats::Stats;

/// The answer of a job of `embedder` whose embedded texts (`tokens.len()`
/// of them, in order) gave `out`.
pub(super) fn embeddings(
    cache: &EmbedCache,
    stats: &Stats,
    embedder: &Embedder,
    mut tokens: Vec<u32>,
    out: Vec<f32>,
    cached: Option<CachedJob>,
    received: Instant,
) -> Embeddings {
    let n = tokens.len();
    let dim = embedder.dim();
    let mut data = out;
    if let Some(c) = cached {
        // Cache the new vectors, then merge them with the cached ones in
        // request order.
        let fresh: Vec<(TextHash, Entry)> = c
            .miss_hashes
            .iter()
            .zip(data.chunks_exact(dim))
            .zip(&tokens)
            .map(|((h, v), &t)| (*h, Entry { tokens: t, vector: Arc::from(v) }))
            .collect();
        cache.put(&c.identity, dim, &fresh);
        let mut merged = Vec::with_capacity(c.hits.len() * dim);
        let mut merged_tokens = Vec::with_capacity(c.hits.len());
        let mut next = fresh.iter();
        for hit in &c.hits {
            let e = match hit {
                Some(e) => e,
                None => &next.next().expect("one fresh vector per miss").1,
            };
            merged.extend_from_slice(&e.vector);
            merged_tokens.push(e.tokens);
        }
        data = merged;
        tokens = merged_tokens;
    }
    stats.record_request(n, received.elapsed());
    Embeddings {
        model: embedder.name.clone(),
        dim: dim as u32,
        tokens,
        data,
        host_us: received.elapsed().as_micros() as u64,
    }
}

//! Finding the nearest snippets to a query vector, in one snapshot: the
//! exact scan of every stored vector, and the search that scans every
//! sign-bit code for the best candidates and re-ranks those exactly.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::blocks::View;
use crate::{Dbs, IndexError, Result, codes, rows};

type RoTxn<'e> = heed::RoTxn<'e>;

/// Codes scanned per thread at least before a search uses a second one.
const ROWS_PER_THREAD: usize = 200_000;
/// Threads a code scan uses at most.
const MAX_SCAN_THREADS: usize = 2;

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

/// The `k` best of the scores pushed, best first (ties by id).
struct TopK {
    k: usize,
    heap: BinaryHeap<Reverse<Scored>>,
}

impl TopK {
    fn new(k: usize) -> TopK {
        TopK { k, heap: BinaryHeap::with_capacity(k + 1) }
    }

    fn push(&mut self, id: u32, score: f32) {
        let worst = self.heap.peek().map(|r| &r.0);
        if self.heap.len() < self.k || worst.is_some_and(|w| Scored(score, id) > *w) {
            self.heap.push(Reverse(Scored(score, id)));
            if self.heap.len() > self.k {
                self.heap.pop();
            }
        }
    }

    fn into_sorted(self) -> Vec<(u32, f32)> {
        let mut out: Vec<(u32, f32)> = self.heap.into_iter().map(|r| (r.0.1, r.0.0)).collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        out
    }
}

fn norm(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt()
}

fn cosine(row: &[u8], query: &[f32], qn: f32) -> f32 {
    let (n, v) = rows::split(row);
    if qn > 0.0 && n > 0.0 { rows::dot(v, query) / (qn * n) } else { 0.0 }
}

/// Cosine similarity of every stored vector with `query`; the `k` best,
/// best first (ties by id, so the order is stable).
pub(crate) fn exact(
    dbs: &Dbs,
    rtxn: &RoTxn<'_>,
    query: &[f32],
    k: usize,
) -> Result<Vec<(u32, f32)>> {
    let qn = norm(query);
    let mut best = TopK::new(k);
    for item in dbs.vecs.db.iter(rtxn)? {
        let (block, bytes) = item?;
        let view = dbs.vecs.view(block, bytes)?;
        for i in 0..view.len() {
            best.push(view.id(i), cosine(view.row(i), query, qn));
        }
    }
    Ok(best.into_sorted())
}

/// The cosine of one stored snippet's vector with `query`, if it has one.
pub(crate) fn cosine_of(
    dbs: &Dbs,
    rtxn: &RoTxn<'_>,
    query: &[f32],
    id: u32,
) -> Result<Option<f32>> {
    Ok(dbs.vecs.get(rtxn, id)?.map(|row| cosine(row, query, norm(query))))
}

/// The `k` nearest: the `candidates` codes nearest to the query's code
/// (Hamming distance), re-ranked by their exact cosine.
pub(crate) fn by_codes(
    dbs: &Dbs,
    rtxn: &RoTxn<'_>,
    query: &[f32],
    k: usize,
    candidates: usize,
) -> Result<Vec<(u32, f32)>> {
    let ids = candidates_by_code(dbs, rtxn, query, candidates.max(k))?;
    rerank(dbs, rtxn, query, ids, k)
}

/// The ids of the `want` codes nearest to `query`'s, in id order.
fn candidates_by_code(dbs: &Dbs, rtxn: &RoTxn<'_>, query: &[f32], want: usize) -> Result<Vec<u32>> {
    let q = codes::words(query);
    let mut segments: Vec<View<'_>> = Vec::new();
    for item in dbs.codes.db.iter(rtxn)? {
        let (segment, bytes) = item?;
        segments.push(dbs.codes.view(segment, bytes)?);
    }
    let total: usize = segments.iter().map(View::len).sum();
    let mut dists = vec![0u16; total];
    let threads = (total / ROWS_PER_THREAD).clamp(1, MAX_SCAN_THREADS.min(parallelism()));
    let histogram = scan(&q, &segments, &mut dists, threads);
    let (t, mut at_t) = codes::threshold(&histogram, want);
    let mut out = Vec::with_capacity(want);
    let mut d = dists.iter();
    for view in &segments {
        for (i, &dist) in (0..view.len()).zip(&mut d) {
            if dist < t || (dist == t && at_t > 0) {
                at_t -= usize::from(dist == t);
                out.push(view.id(i));
            }
        }
    }
    Ok(out)
}

fn parallelism() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Distances of every code to `q`, into `dists` (segment after segment),
/// on `threads` threads; the histogram of them.
fn scan(q: &[u64], segments: &[View<'_>], dists: &mut [u16], threads: usize) -> Vec<u32> {
    let kernel = codes::Kernel::best();
    let bins = 64 * q.len() + 1;
    let run = |part: &[View<'_>], out: &mut [u16]| {
        let mut histogram = vec![0u32; bins];
        let mut at = 0;
        for view in part {
            kernel.distances(q, view.rows, &mut out[at..at + view.len()], &mut histogram);
            at += view.len();
        }
        histogram
    };
    if threads <= 1 {
        return run(segments, dists);
    }
    // Split the segments into `threads` runs of about equal rows.
    let total = dists.len();
    let mut parts = Vec::with_capacity(threads);
    let (mut start, mut rows_in, mut begin) = (0, 0, 0);
    for (i, view) in segments.iter().enumerate() {
        rows_in += view.len();
        if rows_in * threads >= total * (parts.len() + 1) || i + 1 == segments.len() {
            parts.push((start..i + 1, rows_in - begin));
            start = i + 1;
            begin = rows_in;
        }
    }
    std::thread::scope(|s| {
        let mut rest = dists;
        let mut handles = Vec::with_capacity(parts.len());
        for (range, n) in parts {
            let (mine, tail) = rest.split_at_mut(n);
            rest = tail;
            let part = &segments[range];
            handles.push(s.spawn(move || run(part, mine)));
        }
        let mut histogram = vec![0u32; bins];
        for h in handles {
            for (a, b) in histogram.iter_mut().zip(h.join().expect("a scan thread panicked")) {
                *a += b;
            }
        }
        histogram
    })
}

/// The `k` best of `ids` (in id order) by exact cosine with `query`.
fn rerank(
    dbs: &Dbs,
    rtxn: &RoTxn<'_>,
    query: &[f32],
    ids: Vec<u32>,
    k: usize,
) -> Result<Vec<(u32, f32)>> {
    let qn = norm(query);
    let mut best = TopK::new(k);
    let mut current: Option<(u32, View<'_>)> = None;
    for id in ids {
        let block = dbs.vecs.block_of(id);
        if current.as_ref().is_none_or(|(b, _)| *b != block) {
            current = match dbs.vecs.db.get(rtxn, &block)? {
                Some(bytes) => Some((block, dbs.vecs.view(block, bytes)?)),
                None => None,
            };
        }
        let row = current.as_ref().and_then(|(_, view)| view.find(id));
        let row = row
            .ok_or_else(|| IndexError::Corrupt(format!("snippet {id} has a code but no vector")))?;
        best.push(id, cosine(row, query, qn));
    }
    Ok(best.into_sorted())
}

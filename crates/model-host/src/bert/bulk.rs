//! The large-batch product over the same packed panels the small-batch
//! kernel reads, so one packed copy of each weight (f32 or reduced
//! precision) serves every batch size, and a text's embedding does not
//! depend on what it was batched with.
//!
//! Blocking, as a blocked gemm does it: the rows are cut into chunks small
//! enough that a chunk of `x` stays in L2, and rayon runs the chunks in
//! parallel. Within a chunk, each panel (`k × NR`) is taken [`KC`] rows of
//! `k` at a time, small enough to stay in L1 while every register block of
//! the chunk's rows passes over it. The small-batch tile continues each
//! block's sums from where the previous run of `k` left them, in the same
//! order, so the result is bit for bit the small-batch kernel's.

use rayon::prelude::*;

use super::simd::{self, Level, MR, NR, Panel};

/// Bytes of `x` per chunk of rows: a quarter of a 512 KiB L2 (AMD Zen 1,
/// the smallest these machines have).
const CHUNK_BYTES: usize = 128 << 10;

/// Rows of a panel swept at a time: 16 KiB of f32 panel, half of Zen 1's
/// 32 KiB L1.
const KC: usize = 128;

/// Rows per chunk for an inner dimension of `k`: a multiple of 24 (whole
/// register blocks at AVX-512's 8 rows and AVX2's 6), at least 24.
fn chunk_rows(k: usize) -> usize {
    (CHUNK_BYTES / (4 * k.max(1)) / 24).max(1) * 24
}

/// `y += x · wᵀ` where `w` (`n × k`) is given as its panels (see
/// [`super::packed::pack_panels`]): `x` is `m × k` and `y` is `m × n`. Runs on
/// rayon's pool when `parallel`.
pub fn panel_matmul_bulk<T: Panel>(
    y: &mut [f32],
    n: usize,
    x: &[f32],
    k: usize,
    panels: &[T],
    scale: Option<&[f32]>,
    parallel: bool,
) {
    let m = y.len() / n;
    assert!(scale.is_none_or(|s| s.len() >= n), "the scale covers the columns");
    assert!(x.len() >= m * k, "x holds m rows of k");
    assert!(panels.len() >= n.div_ceil(NR) * k * NR, "panels cover the columns");
    let x = &x[..m * k];
    let rows = chunk_rows(k);
    let job = |(y, x): (&mut [f32], &[f32])| chunk(y, n, x, k, panels, scale);
    if parallel && m > rows {
        y.par_chunks_mut(rows * n).zip(x.par_chunks(rows * k)).for_each(job);
    } else {
        y.chunks_mut(rows * n).zip(x.chunks(rows * k)).for_each(job);
    }
}

/// One chunk of rows: every panel, in runs of [`KC`], over every register
/// block of rows.
fn chunk<T: Panel>(
    y: &mut [f32],
    n: usize,
    x: &[f32],
    k: usize,
    panels: &[T],
    scale: Option<&[f32]>,
) {
    let m = y.len() / n;
    let block = if simd::level() == Level::V3 { 6 } else { 8 };
    let groups = m.div_ceil(block);
    let mut acc = vec![[[0f32; NR]; MR]; groups];
    for (p, panel) in panels.chunks_exact(k * NR).take(n.div_ceil(NR)).enumerate() {
        acc.iter_mut().for_each(|a| *a = [[0f32; NR]; MR]);
        for k0 in (0..k).step_by(KC) {
            let kc = KC.min(k - k0);
            let run = &panel[k0 * NR..(k0 + kc) * NR];
            for (g, a) in acc.iter_mut().enumerate() {
                let r = g * block;
                let rows = block.min(m - r);
                let xs = &x[r * k + k0..(r + rows - 1) * k + k0 + kc];
                T::tile(a, rows, xs, k, kc, run);
            }
        }
        let c = p * NR;
        let width = NR.min(n - c);
        for (g, a) in acc.iter().enumerate() {
            let r = g * block;
            for (i, a) in a.iter().take(block.min(m - r)).enumerate() {
                let s = scale.map(|s| &s[c..]);
                simd::add_row(&mut y[(r + i) * n + c..(r + i) * n + c + width], a, s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bulk product equals the small-batch kernel row block by row
    /// block, bit for bit: a text gets the same vector alone or in a batch.
    #[test]
    fn bulk_equals_the_small_batch_kernel_bit_for_bit() {
        for (m, n, k) in [(1, 40, 7), (100, 70, 384), (301, 64, 1536)] {
            let x: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.137).collect();
            let w: Vec<f32> = (0..n * k).map(|i| ((i * 5 % 11) as f32 - 5.0) * 0.0213).collect();
            let p = crate::bert::packed::pack_panels::<f32>(&w, k);
            let init: Vec<f32> = (0..m * n).map(|i| i as f32 * 0.5).collect();
            let mut bulk = init.clone();
            panel_matmul_bulk(&mut bulk, n, &x, k, &p, None, true);
            let mut small = init.clone();
            for r in (0..m).step_by(24) {
                let rows = 24.min(m - r);
                let y = &mut small[r * n..(r + rows) * n];
                simd::panel_matmul_acc(y, n, n, &x[r * k..(r + rows) * k], k, &p, None);
            }
            assert_eq!(bulk, small, "{m} x {n} x {k}");
            // And it is the product: compare with a plain f64 sum.
            for (r, c) in [(0, 0), (m - 1, n - 1), (m / 2, n / 3)] {
                let want: f64 = init[r * n + c] as f64
                    + (0..k).map(|i| x[r * k + i] as f64 * w[c * k + i] as f64).sum::<f64>();
                let got = bulk[r * n + c] as f64;
                assert!((got - want).abs() < 1e-3 * want.abs().max(1.0), "{got} vs {want}");
            }
        }
    }
}

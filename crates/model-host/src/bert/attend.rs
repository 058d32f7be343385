//! Attention of a short text (a query of a few tokens): the same products
//! as the gemm calls of [`super::forward`], in plain loops. For a 10-token
//! text a head's products are 10 × 10 × 32 multiply-adds each, less than
//! gemm's own setup per call, and a query makes 2 calls per head per layer.

use super::simd::{LANES, madd};

/// Texts of at most this many tokens take the loops.
pub const SHORT: usize = 32;

multiversion! {
    /// `scores[i·len + j] = b + scale · q_i · k_j` for `i, j < len`, where `b`
    /// is the score's value on entry when `biased` (MPNet's position bias),
    /// else 0. `q` and `k` hold `len` rows of `d` floats, `stride` apart
    /// (`shape` is `(stride, len, d)`).
    pub fn scores(
        scores: &mut [f32],
        q: &[f32],
        k: &[f32],
        shape: (usize, usize, usize),
        scale: f32,
        biased: bool,
    ) {
        let (stride, len, d) = shape;
        for i in 0..len {
            let qi = &q[i * stride..i * stride + d];
            for j in 0..len {
                let kj = &k[j * stride..j * stride + d];
                let mut acc = [0f32; LANES];
                let mut qc = qi.chunks_exact(LANES);
                let mut kc = kj.chunks_exact(LANES);
                for (a, b) in (&mut qc).zip(&mut kc) {
                    for l in 0..LANES {
                        acc[l] = madd::<FMA>(a[l], b[l], acc[l]);
                    }
                }
                let mut dot: f32 = acc.iter().sum();
                for (&a, &b) in qc.remainder().iter().zip(kc.remainder()) {
                    dot = madd::<FMA>(a, b, dot);
                }
                let s = &mut scores[i * len + j];
                *s = if biased { *s + scale * dot } else { scale * dot };
            }
        }
    }
}

multiversion! {
    /// `out[c] = Σ_j p[j] · v_j[c]` for `c < out.len()`: one query token's
    /// context from its attention weights `p` over the `p.len()` rows of
    /// `v` (`stride` apart).
    pub fn context_row(out: &mut [f32], p: &[f32], v: &[f32], stride: usize) {
        let d = out.len();
        out.fill(0.0);
        for (j, &pj) in p.iter().enumerate() {
            let vj = &v[j * stride..j * stride + d];
            for (o, &x) in out.iter_mut().zip(vj) {
                *o = madd::<FMA>(pj, x, *o);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loops_compute_attention_products() {
        let (len, d, stride) = (7, 40, 123);
        let q: Vec<f32> = (0..len * stride).map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.1).collect();
        let k: Vec<f32> = (0..len * stride).map(|i| ((i * 5 % 11) as f32 - 5.0) * 0.1).collect();
        let mut s = vec![0.5f32; len * len];
        scores(&mut s, &q, &k, (stride, len, d), 0.25, true);
        for (i, j) in [(0, 0), (3, 5), (6, 6)] {
            let dot: f64 =
                (0..d).map(|c| q[i * stride + c] as f64 * k[j * stride + c] as f64).sum();
            assert!((s[i * len + j] as f64 - (0.5 + 0.25 * dot)).abs() < 1e-4);
        }
        let p: Vec<f32> = (0..len).map(|j| j as f32 / 21.0).collect();
        let mut out = vec![9f32; d];
        context_row(&mut out, &p, &k, stride);
        for c in [0, 17, d - 1] {
            let want: f64 = (0..len).map(|j| p[j] as f64 * k[j * stride + c] as f64).sum();
            assert!((out[c] as f64 - want).abs() < 1e-5);
        }
    }
}

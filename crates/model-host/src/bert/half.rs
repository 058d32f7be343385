//! Half-precision panels for the small-batch kernel: the same layout as
//! [`simd::pack_panels`], each weight rounded to IEEE f16 (two bytes), and
//! converted back to f32 exactly as it is loaded (the x86 kernels of
//! [`simd`] widen them with AVX-512F's `vcvtph2ps` or F16C). A query's
//! forward pass streams every weight once, so half the bytes is the lever
//! on a memory-bound machine.
//!
//! Products are computed in f32 in the same order as the f32 kernels, so a
//! product over f16 panels equals, bit for bit, the f32 kernel over the
//! rounded weights: the only error is the rounding of the weights.

use super::simd::{self, NR, Panel, madd};

/// A weight as IEEE 754 half-precision bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(transparent)]
pub struct F16(pub u16);

impl F16 {
    /// `v` rounded to the nearest f16 (ties to even).
    pub fn from_f32(v: f32) -> F16 {
        F16(half::f16::from_f32(v).to_bits())
    }

    /// The exact f32 value.
    pub fn to_f32(self) -> f32 {
        half::f16::from_bits(self.0).to_f32()
    }
}

/// [`simd::pack_panels`] with every weight rounded to f16.
pub fn pack_panels_f16(w: &[f32], k: usize) -> Vec<F16> {
    simd::pack_panels(w, k).into_iter().map(F16::from_f32).collect()
}

impl Panel for F16 {
    const HALF: bool = true;

    fn tile_generic(acc: &mut [[f32; NR]; 8], rows: usize, x: &[f32], k: usize, panel: &[F16]) {
        tile_generic(acc, rows, x, k, panel)
    }
}

multiversion! {
    /// [`simd`]'s generic tile over f16 panels (converted one at a time).
    fn tile_generic(acc: &mut [[f32; NR]; 8], rows: usize, x: &[f32], k: usize, panel: &[F16]) {
        for (i, a) in acc.iter_mut().take(rows).enumerate() {
            let xi = &x[i * k..(i + 1) * k];
            for (w, &xv) in panel.chunks_exact(NR).zip(xi) {
                for j in 0..NR {
                    a[j] = madd::<FMA>(xv, w[j].to_f32(), a[j]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bert::simd::level;

    fn data(k: usize, n: usize, m: usize) -> (Vec<f32>, Vec<f32>) {
        let x: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.137).collect();
        let w: Vec<f32> = (0..n * k).map(|i| ((i * 5 % 11) as f32 - 5.0) * 0.0213).collect();
        (x, w)
    }

    /// Every form (this CPU's level, the generic one, and AVX2 where the
    /// CPU has it) over f16 panels equals the same form over the rounded
    /// weights in f32, bit for bit, for every row count.
    #[test]
    fn f16_tiles_equal_the_f32_tiles_over_rounded_weights() {
        let k = 37;
        let (x, w) = data(k, NR, 8);
        let half = pack_panels_f16(&w, k);
        let rounded: Vec<f32> = half.iter().map(|h| h.to_f32()).collect();
        for rows in 1..=8 {
            let xr = &x[..rows * k];
            let (mut a, mut b) = ([[0f32; NR]; 8], [[0f32; NR]; 8]);
            f32::tile(&mut a, rows, xr, k, &rounded);
            F16::tile(&mut b, rows, xr, k, &half);
            assert_eq!(a, b, "rows {rows} at {:?}", level());
            let (mut c, mut d) = ([[0f32; NR]; 8], [[0f32; NR]; 8]);
            f32::tile_generic(&mut c, rows, xr, k, &rounded);
            F16::tile_generic(&mut d, rows, xr, k, &half);
            assert_eq!(c, d, "generic, rows {rows}");
            #[cfg(target_arch = "x86_64")]
            if std::is_x86_feature_detected!("avx2")
                && std::is_x86_feature_detected!("fma")
                && std::is_x86_feature_detected!("f16c")
            {
                let (mut e, mut f) = ([[0f32; NR]; 8], [[0f32; NR]; 8]);
                // SAFETY: AVX2, FMA and F16C were detected; the lengths fit.
                unsafe {
                    simd::x86::tile_v3(&mut e, rows, xr, k, &rounded);
                    simd::x86::tile_v3(&mut f, rows, xr, k, &half);
                }
                assert_eq!(e, f, "avx2, rows {rows}");
            }
        }
    }

    /// A whole product over f16 panels is within f16's rounding of the f32
    /// product, and the rounding is as small as f16 promises.
    #[test]
    fn f16_panel_product_is_close_to_f32() {
        let (m, n, k) = (9, 70, 384);
        let (x, w) = data(k, n, m);
        let mut y32 = vec![0f32; m * n];
        let mut y16 = vec![0f32; m * n];
        simd::panel_matmul_acc(&mut y32, n, 0, n, &x, k, &simd::pack_panels(&w, k));
        simd::panel_matmul_acc(&mut y16, n, 0, n, &x, k, &pack_panels_f16(&w, k));
        let norm = |v: &[f32]| v.iter().map(|a| a * a).sum::<f32>().sqrt();
        let diff: Vec<f32> = y32.iter().zip(&y16).map(|(a, b)| a - b).collect();
        assert!(norm(&diff) / norm(&y32) < 1e-3, "{}", norm(&diff) / norm(&y32));
        for v in [0.0f32, 1.0, -2.5, 65504.0, 6.1e-5, 1e-8] {
            let r = F16::from_f32(v).to_f32();
            assert!((r - v).abs() <= v.abs() * 1e-3 + 6e-8, "{v} -> {r}");
        }
    }
}

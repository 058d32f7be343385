//! Half-precision panels for the small-batch kernel: the same layout as
//! [`simd::pack_panels`], each weight rounded to IEEE f16 (two bytes), and
//! converted back to f32 exactly as it is loaded (AVX-512F's `vcvtph2ps`,
//! or F16C beside AVX2). A query's forward pass streams every weight once,
//! so half the bytes is the lever on a memory-bound machine.
//!
//! Products are computed in f32 in the same order as the f32 kernels, so a
//! product over f16 panels equals, bit for bit, the f32 kernel over the
//! rounded weights: the only error is the rounding of the weights.

use super::simd::{self, Level, NR, Panel, level, madd};

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

/// Whether this CPU converts f16 in hardware at [`level`] V3 (F16C); every
/// AVX-512F CPU does at V4.
fn has_f16c() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static F16C: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *F16C.get_or_init(|| std::is_x86_feature_detected!("f16c"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

impl Panel for F16 {
    fn tile(acc: &mut [[f32; NR]; 8], rows: usize, x: &[f32], k: usize, panel: &[F16]) {
        match level() {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `level` returned V4 only after detecting AVX-512F; x
            // holds `rows` rows of k floats and panel k × NR halves.
            Level::V4 => unsafe { x86::tile_v4(acc, rows, x, k, panel) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: V3 means AVX2 and FMA were detected, and F16C is
            // checked here; the lengths are as for V4.
            Level::V3 if has_f16c() => unsafe { x86::tile_v3(acc, rows, x, k, panel) },
            _ => tile_generic(acc, rows, x, k, panel),
        }
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

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{F16, NR};
    use std::arch::x86_64::*;

    /// The AVX-512 tile over f16 panels: two 16-half loads per panel row,
    /// each widened to 16 floats, then the f32 kernel's FMAs in its order.
    ///
    /// # Safety
    /// The CPU must support AVX-512F; `x` must hold `rows` (≤ 8) rows of
    /// `k` floats and `panel` `k × NR` halves.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn tile_v4(
        acc: &mut [[f32; NR]; 8],
        rows: usize,
        x: &[f32],
        k: usize,
        panel: &[F16],
    ) {
        debug_assert!(rows <= 8 && x.len() >= rows * k && panel.len() >= k * NR);
        let p = panel.as_ptr().cast::<u16>();
        // SAFETY: the caller guarantees the lengths the pointer reads rely on.
        unsafe {
            match rows {
                8 => block::<8>(acc, x.as_ptr(), k, p),
                7 => block::<7>(acc, x.as_ptr(), k, p),
                6 => block::<6>(acc, x.as_ptr(), k, p),
                5 => block::<5>(acc, x.as_ptr(), k, p),
                4 => block::<4>(acc, x.as_ptr(), k, p),
                3 => block::<3>(acc, x.as_ptr(), k, p),
                2 => block::<2>(acc, x.as_ptr(), k, p),
                _ => block::<1>(acc, x.as_ptr(), k, p),
            }
        }
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn block<const MR: usize>(
        acc: &mut [[f32; NR]; 8],
        x: *const f32,
        k: usize,
        p: *const u16,
    ) {
        let mut a0 = [_mm512_setzero_ps(); MR];
        let mut a1 = [_mm512_setzero_ps(); MR];
        for kk in 0..k {
            // SAFETY: kk < k, so both 16-half loads are inside the panel's
            // k × NR halves and each x read inside row i's k floats.
            unsafe {
                let w0 = _mm512_cvtph_ps(_mm256_loadu_si256(p.add(kk * NR).cast()));
                let w1 = _mm512_cvtph_ps(_mm256_loadu_si256(p.add(kk * NR + 16).cast()));
                for i in 0..MR {
                    let xv = _mm512_set1_ps(*x.add(i * k + kk));
                    a0[i] = _mm512_fmadd_ps(xv, w0, a0[i]);
                    a1[i] = _mm512_fmadd_ps(xv, w1, a1[i]);
                }
            }
        }
        for i in 0..MR {
            // SAFETY: acc[i] holds NR = 32 floats.
            unsafe {
                _mm512_storeu_ps(acc[i].as_mut_ptr(), a0[i]);
                _mm512_storeu_ps(acc[i].as_mut_ptr().add(16), a1[i]);
            }
        }
    }

    /// The AVX2 tile over f16 panels (F16C widens 8 halves at a time), in
    /// the f32 AVX2 tile's blocking: up to 6 rows per sweep of each half
    /// of the panel.
    ///
    /// # Safety
    /// The CPU must support AVX2, FMA and F16C; `x` must hold `rows` (≤ 8)
    /// rows of `k` floats and `panel` `k × NR` halves.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn tile_v3(
        acc: &mut [[f32; NR]; 8],
        rows: usize,
        x: &[f32],
        k: usize,
        panel: &[F16],
    ) {
        debug_assert!(rows <= 8 && x.len() >= rows * k && panel.len() >= k * NR);
        let mut r = 0;
        while r < rows {
            let n = (rows - r).min(6);
            for half in 0..2 {
                // SAFETY: rows r..r + n are inside x, the half's 16 columns
                // inside each of the panel's k rows of NR halves.
                unsafe {
                    let (x, p) =
                        (x.as_ptr().add(r * k), panel.as_ptr().cast::<u16>().add(half * 16));
                    let out = &mut acc[r..r + n];
                    match n {
                        6 => half_block::<6>(out, half, x, k, p),
                        5 => half_block::<5>(out, half, x, k, p),
                        4 => half_block::<4>(out, half, x, k, p),
                        3 => half_block::<3>(out, half, x, k, p),
                        2 => half_block::<2>(out, half, x, k, p),
                        _ => half_block::<1>(out, half, x, k, p),
                    }
                }
            }
            r += n;
        }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn half_block<const MR: usize>(
        out: &mut [[f32; NR]],
        half: usize,
        x: *const f32,
        k: usize,
        p: *const u16,
    ) {
        let mut a0 = [_mm256_setzero_ps(); MR];
        let mut a1 = [_mm256_setzero_ps(); MR];
        for kk in 0..k {
            // SAFETY: kk < k: the 8-half loads stay inside the half's
            // columns of panel row kk, and each x read inside row i's floats.
            unsafe {
                let w0 = _mm256_cvtph_ps(_mm_loadu_si128(p.add(kk * NR).cast()));
                let w1 = _mm256_cvtph_ps(_mm_loadu_si128(p.add(kk * NR + 8).cast()));
                for i in 0..MR {
                    let xv = _mm256_set1_ps(*x.add(i * k + kk));
                    a0[i] = _mm256_fmadd_ps(xv, w0, a0[i]);
                    a1[i] = _mm256_fmadd_ps(xv, w1, a1[i]);
                }
            }
        }
        for i in 0..MR {
            // SAFETY: out[i] holds NR = 32 floats; half * 16 + 16 <= 32.
            unsafe {
                _mm256_storeu_ps(out[i].as_mut_ptr().add(half * 16), a0[i]);
                _mm256_storeu_ps(out[i].as_mut_ptr().add(half * 16 + 8), a1[i]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(k: usize, n: usize, m: usize) -> (Vec<f32>, Vec<f32>) {
        let x: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.137).collect();
        let w: Vec<f32> = (0..n * k).map(|i| ((i * 5 % 11) as f32 - 5.0) * 0.0213).collect();
        (x, w)
    }

    /// Every form (this CPU's level, and each narrower one it has) over
    /// f16 panels equals the same form's f32 kernel over the rounded
    /// weights, bit for bit, for every row count.
    #[test]
    fn f16_tiles_equal_the_f32_tiles_over_rounded_weights() {
        let k = 37;
        let (x, w) = data(k, NR, 8);
        let half = pack_panels_f16(&w, k);
        let rounded: Vec<f32> = half.iter().map(|h| h.to_f32()).collect();
        for rows in 1..=8 {
            let xr = &x[..rows * k];
            let (mut a, mut b) = ([[0f32; NR]; 8], [[0f32; NR]; 8]);
            <f32 as Panel>::tile(&mut a, rows, xr, k, &rounded);
            F16::tile(&mut b, rows, xr, k, &half);
            if level() == Level::V3 && !has_f16c() {
                // Generic f16 against V3 f32: same values up to FMA grouping.
                for (ra, rb) in a.iter().zip(&b).take(rows) {
                    for (p, q) in ra.iter().zip(rb) {
                        assert!((p - q).abs() <= 1e-5, "rows {rows}");
                    }
                }
            } else {
                assert_eq!(a, b, "rows {rows} at {:?}", level());
            }
            let (mut c, mut d) = ([[0f32; NR]; 8], [[0f32; NR]; 8]);
            simd::tile_generic_for_tests(&mut c, rows, xr, k, &rounded);
            tile_generic(&mut d, rows, xr, k, &half);
            assert_eq!(c, d, "generic, rows {rows}");
            #[cfg(target_arch = "x86_64")]
            if std::is_x86_feature_detected!("avx2")
                && std::is_x86_feature_detected!("fma")
                && has_f16c()
            {
                let (mut e, mut f) = ([[0f32; NR]; 8], [[0f32; NR]; 8]);
                // SAFETY: AVX2, FMA and F16C were detected; the lengths fit.
                unsafe {
                    simd::tile_v3_for_tests(&mut e, rows, xr, k, &rounded);
                    x86::tile_v3(&mut f, rows, xr, k, &half);
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

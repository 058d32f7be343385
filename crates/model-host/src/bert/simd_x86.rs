//! The x86 forms of the panel tile ([`super::Panel::tile`]): AVX-512F
//! and AVX2+FMA+F16C, generic over the panel format, which each load
//! widens to f32 in place.

use super::{Acc, Format, MR, NR, Panel};
use std::arch::x86_64::*;

/// 16 panel elements at `p` as floats (half formats widened exactly),
/// written in place (a function of its own, with its target features,
/// is not always inlined into the kernel's loop).
macro_rules! load16 {
    ($t:ty, $p:expr) => {
        match <$t>::FORMAT {
            Format::F32 => _mm512_loadu_ps($p.cast()),
            Format::F16 => _mm512_cvtph_ps(_mm256_loadu_si256($p.cast())),
            Format::BF16 => _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(
                _mm256_loadu_si256($p.cast()),
            ))),
            Format::I8 => _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128($p.cast()))),
        }
    };
}

/// 8 panel elements at `p` as floats, as `load16!`.
macro_rules! load8 {
    ($t:ty, $p:expr) => {
        match <$t>::FORMAT {
            Format::F32 => _mm256_loadu_ps($p.cast()),
            Format::F16 => _mm256_cvtph_ps(_mm_loadu_si128($p.cast())),
            Format::BF16 => _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(
                _mm_loadu_si128($p.cast()),
            ))),
            Format::I8 => _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64($p.cast()))),
        }
    };
}

/// [`super::tile_generic`] with the accumulators held in AVX-512
/// registers (two per row, 24 for 12 rows).
///
/// # Safety
/// The CPU must support AVX-512F; `x` must hold `rows` rows of `k`
/// floats, `ld` apart, and `panel` `k × NR` elements.
#[target_feature(enable = "avx512f")]
pub unsafe fn tile_v4<T: Panel>(
    acc: &mut Acc,
    rows: usize,
    x: &[f32],
    ld: usize,
    k: usize,
    panel: &[T],
) {
    debug_assert!(rows <= MR && (rows == 0 || x.len() >= (rows - 1) * ld + k));
    debug_assert!(panel.len() >= k * NR);
    // SAFETY: the caller guarantees the lengths the pointer reads rely on.
    unsafe {
        match rows {
            12 => block::<12, T>(acc, x.as_ptr(), ld, k, panel.as_ptr()),
            11 => block::<11, T>(acc, x.as_ptr(), ld, k, panel.as_ptr()),
            10 => block::<10, T>(acc, x.as_ptr(), ld, k, panel.as_ptr()),
            9 => block::<9, T>(acc, x.as_ptr(), ld, k, panel.as_ptr()),
            8 => block::<8, T>(acc, x.as_ptr(), ld, k, panel.as_ptr()),
            7 => block::<7, T>(acc, x.as_ptr(), ld, k, panel.as_ptr()),
            6 => block::<6, T>(acc, x.as_ptr(), ld, k, panel.as_ptr()),
            5 => block::<5, T>(acc, x.as_ptr(), ld, k, panel.as_ptr()),
            4 => block::<4, T>(acc, x.as_ptr(), ld, k, panel.as_ptr()),
            3 => block::<3, T>(acc, x.as_ptr(), ld, k, panel.as_ptr()),
            2 => block::<2, T>(acc, x.as_ptr(), ld, k, panel.as_ptr()),
            _ => block::<1, T>(acc, x.as_ptr(), ld, k, panel.as_ptr()),
        }
    }
}

/// [`super::tile_generic`] for AVX2 (16 registers of 8 floats): each
/// half of the panel (16 columns, two registers) is swept once per group
/// of up to 6 rows (12 accumulators, two weight registers and a
/// broadcast), so a query's 8-row block reads each weight twice, where
/// the generic form, one row at a time, reads it 8 times.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C; `x` must hold `rows` (≤ [`MR`])
/// rows of `k` floats, `ld` apart, and `panel` `k × NR` elements.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn tile_v3<T: Panel>(
    acc: &mut Acc,
    rows: usize,
    x: &[f32],
    ld: usize,
    k: usize,
    panel: &[T],
) {
    debug_assert!(rows <= MR && (rows == 0 || x.len() >= (rows - 1) * ld + k));
    debug_assert!(panel.len() >= k * NR);
    let mut r = 0;
    while r < rows {
        let n = (rows - r).min(6);
        for half in 0..2 {
            // SAFETY: rows r..r + n are inside x, the half's 16 columns
            // inside each of the panel's k rows of NR elements.
            unsafe {
                let (x, p) = (x.as_ptr().add(r * ld), panel.as_ptr().add(half * 16));
                let out = &mut acc[r..r + n];
                match n {
                    6 => half_block::<6, T>(out, half, x, ld, k, p),
                    5 => half_block::<5, T>(out, half, x, ld, k, p),
                    4 => half_block::<4, T>(out, half, x, ld, k, p),
                    3 => half_block::<3, T>(out, half, x, ld, k, p),
                    2 => half_block::<2, T>(out, half, x, ld, k, p),
                    _ => half_block::<1, T>(out, half, x, ld, k, p),
                }
            }
        }
        r += n;
    }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn half_block<const MR: usize, T: Panel>(
    out: &mut [[f32; NR]],
    half: usize,
    x: *const f32,
    ld: usize,
    k: usize,
    p: *const T,
) {
    let mut a0 = [_mm256_setzero_ps(); MR];
    let mut a1 = [_mm256_setzero_ps(); MR];
    for i in 0..MR {
        // SAFETY: out[i] holds NR = 32 floats; half * 16 + 16 <= 32.
        unsafe {
            a0[i] = _mm256_loadu_ps(out[i].as_ptr().add(half * 16));
            a1[i] = _mm256_loadu_ps(out[i].as_ptr().add(half * 16 + 8));
        }
    }
    for kk in 0..k {
        // SAFETY: kk < k: the loads stay inside the half's columns of
        // panel row kk, and each x read inside row i's k floats.
        unsafe {
            let w0 = load8!(T, p.add(kk * NR));
            let w1 = load8!(T, p.add(kk * NR + 8));
            for i in 0..MR {
                let xv = _mm256_set1_ps(*x.add(i * ld + kk));
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

#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn block<const MR: usize, T: Panel>(
    acc: &mut Acc,
    x: *const f32,
    ld: usize,
    k: usize,
    panel: *const T,
) {
    let mut a0 = [_mm512_setzero_ps(); MR];
    let mut a1 = [_mm512_setzero_ps(); MR];
    for i in 0..MR {
        // SAFETY: acc[i] holds NR = 32 floats.
        unsafe {
            a0[i] = _mm512_loadu_ps(acc[i].as_ptr());
            a1[i] = _mm512_loadu_ps(acc[i].as_ptr().add(16));
        }
    }
    for kk in 0..k {
        // SAFETY: kk < k, so both loads are inside the panel's k × NR
        // elements and each x read inside row i's k floats.
        unsafe {
            let w0 = load16!(T, panel.add(kk * NR));
            let w1 = load16!(T, panel.add(kk * NR + 16));
            for i in 0..MR {
                let xv = _mm512_set1_ps(*x.add(i * ld + kk));
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

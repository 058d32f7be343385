//! The x86 forms of the integer tile ([`super::tile`]): AVX-512 VNNI,
//! AVX-VNNI and AVX2. All compute exactly [`super::tile_generic`]'s
//! integers.

use std::arch::x86_64::*;

use super::{QAcc, QMR};
use crate::bert::int8::I8;
use crate::bert::simd::NR;

/// The four bytes of row `i`'s group `g` as one i32 lane value.
///
/// # Safety
/// `x + i·kp + 4g + 4` must lie inside the rows.
#[inline(always)]
unsafe fn group(x: *const u8, i: usize, kp: usize, g: usize) -> i32 {
    // SAFETY: as the caller guarantees; the read is unaligned.
    unsafe { x.add(i * kp + g * 4).cast::<i32>().read_unaligned() }
}

/// The tile with `vpdpbusd`: rows as unsigned `q + 128`, two accumulators
/// of 16 columns per row (24 registers for 12 rows).
///
/// # Safety
/// The CPU must support AVX-512F, BW and VNNI; `x` must hold `rows`
/// (≤ [`QMR`]) rows of `kp` bytes and `panel` `kp × NR` bytes.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub unsafe fn tile_vnni512(acc: &mut QAcc, rows: usize, x: &[u8], kp: usize, panel: &[I8]) {
    debug_assert!(rows <= QMR && x.len() >= rows * kp && panel.len() >= kp * NR);
    let (x, p) = (x.as_ptr(), panel.as_ptr().cast::<u8>());
    // SAFETY: the caller guarantees the lengths the pointer reads rely on.
    unsafe {
        match rows {
            12 => vnni::<12>(acc, x, kp, p),
            11 => vnni::<11>(acc, x, kp, p),
            10 => vnni::<10>(acc, x, kp, p),
            9 => vnni::<9>(acc, x, kp, p),
            8 => vnni::<8>(acc, x, kp, p),
            7 => vnni::<7>(acc, x, kp, p),
            6 => vnni::<6>(acc, x, kp, p),
            5 => vnni::<5>(acc, x, kp, p),
            4 => vnni::<4>(acc, x, kp, p),
            3 => vnni::<3>(acc, x, kp, p),
            2 => vnni::<2>(acc, x, kp, p),
            1 => vnni::<1>(acc, x, kp, p),
            _ => {}
        }
    }
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn vnni<const R: usize>(acc: &mut QAcc, x: *const u8, kp: usize, p: *const u8) {
    let mut a0 = [_mm512_setzero_si512(); R];
    let mut a1 = [_mm512_setzero_si512(); R];
    for i in 0..R {
        // SAFETY: acc[i] holds NR = 32 i32s.
        unsafe {
            a0[i] = _mm512_loadu_si512(acc[i].as_ptr().cast());
            a1[i] = _mm512_loadu_si512(acc[i].as_ptr().add(16).cast());
        }
    }
    for g in 0..kp / 4 {
        // SAFETY: g < kp/4: the loads are panel row g's 128 bytes, and each
        // group read is inside row i's kp bytes.
        unsafe {
            let w0 = _mm512_loadu_si512(p.add(g * NR * 4).cast());
            let w1 = _mm512_loadu_si512(p.add(g * NR * 4 + 64).cast());
            for i in 0..R {
                let xb = _mm512_set1_epi32(group(x, i, kp, g));
                a0[i] = _mm512_dpbusd_epi32(a0[i], xb, w0);
                a1[i] = _mm512_dpbusd_epi32(a1[i], xb, w1);
            }
        }
    }
    for i in 0..R {
        // SAFETY: acc[i] holds NR = 32 i32s.
        unsafe {
            _mm512_storeu_si512(acc[i].as_mut_ptr().cast(), a0[i]);
            _mm512_storeu_si512(acc[i].as_mut_ptr().add(16).cast(), a1[i]);
        }
    }
}

/// A tile over 256-bit registers: each half of the panel (16 columns, two
/// registers of 8 i32 sums a row) is swept once per block of rows (the
/// first and largest of `[$rows]`, each a block size it handles), and for
/// each group of four `k` every row's four bytes, broadcast, are summed
/// into both registers by `$step(acc, xb, w)`. The AVX2 and AVX-VNNI forms
/// differ only in that step, the rows a block holds and their features.
macro_rules! ymm_tile {
    (
        $(#[$doc:meta])*
        pub fn $tile:ident, fn $half:ident, $features:literal, [$($rows:literal),+],
        |$a:ident, $xb:ident, $w:ident| $step:expr
    ) => {
        $(#[$doc])*
        #[target_feature(enable = $features)]
        pub unsafe fn $tile(acc: &mut QAcc, rows: usize, x: &[u8], kp: usize, panel: &[I8]) {
            debug_assert!(rows <= QMR && x.len() >= rows * kp && panel.len() >= kp * NR);
            const BLOCK: usize = [$($rows),+][0];
            let p = panel.as_ptr().cast::<u8>();
            let mut r = 0;
            while r < rows {
                let n = (rows - r).min(BLOCK);
                for half in 0..2 {
                    // SAFETY: rows r..r + n lie inside x, and the half's 64
                    // bytes inside each of the panel's kp/4 rows of 128.
                    unsafe {
                        let (x, out) = (x.as_ptr().add(r * kp), &mut acc[r..r + n]);
                        match n {
                            $($rows => $half::<$rows>(out, half, x, kp, p),)+
                            _ => $half::<1>(out, half, x, kp, p),
                        }
                    }
                }
                r += n;
            }
        }

        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn $half<const R: usize>(
            out: &mut [[i32; NR]],
            half: usize,
            x: *const u8,
            kp: usize,
            p: *const u8,
        ) {
            let mut a0 = [_mm256_setzero_si256(); R];
            let mut a1 = [_mm256_setzero_si256(); R];
            for i in 0..R {
                // SAFETY: out[i] holds NR = 32 i32s; half · 16 + 16 ≤ 32.
                unsafe {
                    a0[i] = _mm256_loadu_si256(out[i].as_ptr().add(half * 16).cast());
                    a1[i] = _mm256_loadu_si256(out[i].as_ptr().add(half * 16 + 8).cast());
                }
            }
            let step = |$a: __m256i, $xb: __m256i, $w: __m256i| $step;
            for g in 0..kp / 4 {
                // SAFETY: g < kp/4: the loads are the half's 64 bytes of
                // panel row g, and each group read is inside row i's kp bytes.
                unsafe {
                    let w0 = _mm256_loadu_si256(p.add(g * NR * 4 + half * 64).cast());
                    let w1 = _mm256_loadu_si256(p.add(g * NR * 4 + half * 64 + 32).cast());
                    for i in 0..R {
                        let xb = _mm256_set1_epi32(group(x, i, kp, g));
                        a0[i] = step(a0[i], xb, w0);
                        a1[i] = step(a1[i], xb, w1);
                    }
                }
            }
            for i in 0..R {
                // SAFETY: out[i] holds NR = 32 i32s; half · 16 + 16 ≤ 32.
                unsafe {
                    _mm256_storeu_si256(out[i].as_mut_ptr().add(half * 16).cast(), a0[i]);
                    _mm256_storeu_si256(out[i].as_mut_ptr().add(half * 16 + 8).cast(), a1[i]);
                }
            }
        }
    };
}

ymm_tile! {
    /// The tile with AVX2: rows as signed `q`; per group of four `k`,
    /// `vpmaddubsw(|q|, w · sign(q))` (pairs of at most 2·127·127, below
    /// i16's limit) and `vpmaddwd` by ones; 4 rows a block (8 accumulators
    /// of the 16 registers).
    ///
    /// # Safety
    /// The CPU must support AVX2; the lengths are as for [`tile_vnni512`].
    pub fn tile_avx2, fn avx2_half, "avx2", [4, 3, 2],
    |a, xb, w| {
        let pairs = _mm256_maddubs_epi16(_mm256_abs_epi8(xb), _mm256_sign_epi8(w, xb));
        _mm256_add_epi32(a, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
    }
}

ymm_tile! {
    /// The tile with AVX-VNNI: `vpdpbusd` on 256-bit registers, as on CPUs
    /// with AVX2 and AVX-VNNI but no AVX-512 (Intel's cores since Alder
    /// Lake, AMD's since Zen 5 where AVX-512 is off). Rows as unsigned
    /// `q + 128`, as for [`tile_vnni512`]; 6 rows a block (12 accumulators
    /// of the 16 registers).
    ///
    /// # Safety
    /// The CPU must support AVX2 and AVX-VNNI; the lengths are as for
    /// [`tile_vnni512`].
    pub fn tile_avxvnni, fn avxvnni_half, "avx2,avxvnni", [6, 5, 4, 3, 2],
    |a, xb, w| _mm256_dpbusd_avx_epi32(a, xb, w)
}

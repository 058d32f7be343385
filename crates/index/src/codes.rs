//! Sign-bit codes: one bit per dimension (set where the component is
//! positive), packed into little-endian `u64` words. The Hamming distance
//! between two codes (XOR, then popcount) orders vectors roughly by angle;
//! a search scans every code for the best few thousand candidates and
//! re-ranks those exactly from the stored vectors.
//!
//! Kernels: AVX-512 VPOPCNTDQ, the POPCNT instruction (every x86-64 CPU
//! with AVX2 has it), and portable Rust. `VEMBED_SIMD=avx2` caps the
//! kernel at POPCNT, `VEMBED_SIMD=scalar` at the portable one, as it caps
//! the host's model kernels.

use std::sync::OnceLock;

/// Bytes of one code for `dim` dimensions (whole `u64` words).
pub fn width(dim: usize) -> usize {
    dim.div_ceil(64) * 8
}

/// Appends the code of `v`: bit `i` is set where `v[i] > 0`.
pub fn encode(v: &[f32], out: &mut Vec<u8>) {
    for chunk in v.chunks(64) {
        let mut word = 0u64;
        for (i, x) in chunk.iter().enumerate() {
            word |= u64::from(*x > 0.0) << i;
        }
        out.extend_from_slice(&word.to_le_bytes());
    }
}

/// The code of `v` as words.
pub fn words(v: &[f32]) -> Vec<u64> {
    let mut bytes = Vec::with_capacity(width(v.len()));
    encode(v, &mut bytes);
    bytes.chunks_exact(8).map(word).collect()
}

#[inline(always)]
fn word(b: &[u8]) -> u64 {
    u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// A distance kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// AVX-512 with VPOPCNTDQ: eight words per instruction.
    Vpopcntdq,
    /// The POPCNT instruction, one word at a time.
    Popcnt,
    /// Portable Rust (`count_ones` without POPCNT).
    Scalar,
}

impl Kernel {
    /// The kernels this CPU can run, widest first.
    pub fn available() -> Vec<Kernel> {
        let mut out = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("avx512vpopcntdq")
            {
                out.push(Kernel::Vpopcntdq);
            }
            if std::is_x86_feature_detected!("popcnt") {
                out.push(Kernel::Popcnt);
            }
        }
        out.push(Kernel::Scalar);
        out
    }

    /// The widest this CPU runs, capped by `VEMBED_SIMD` (detected once).
    pub fn best() -> Kernel {
        static BEST: OnceLock<Kernel> = OnceLock::new();
        *BEST.get_or_init(|| {
            let cap = std::env::var("VEMBED_SIMD").unwrap_or_default();
            let allowed = |k: &Kernel| match cap.as_str() {
                "scalar" => *k == Kernel::Scalar,
                "avx2" => *k != Kernel::Vpopcntdq,
                _ => true,
            };
            Kernel::available().into_iter().find(allowed).unwrap_or(Kernel::Scalar)
        })
    }

    /// Writes the distance of every code in `codes` (rows of `q.len()`
    /// words) to `q` into `out`, and counts them in `histogram` (indexed by
    /// distance, `64 × q.len() + 1` long). A kernel this CPU lacks runs
    /// the portable one.
    pub fn distances(self, q: &[u64], codes: &[u8], out: &mut [u16], histogram: &mut [u32]) {
        debug_assert_eq!(codes.len(), out.len() * 8 * q.len());
        debug_assert!(histogram.len() > 64 * q.len());
        #[cfg(target_arch = "x86_64")]
        match self {
            Kernel::Vpopcntdq
                if std::is_x86_feature_detected!("avx512f")
                    && std::is_x86_feature_detected!("avx512vpopcntdq") =>
            {
                // SAFETY: the CPU has AVX-512F and VPOPCNTDQ, checked just above.
                return unsafe { distances_vpopcntdq(q, codes, out, histogram) };
            }
            Kernel::Popcnt | Kernel::Vpopcntdq if std::is_x86_feature_detected!("popcnt") => {
                // SAFETY: the CPU has POPCNT, checked just above.
                return unsafe { distances_popcnt(q, codes, out, histogram) };
            }
            _ => {}
        }
        distances_portable(q, codes, out, histogram)
    }
}

#[inline(always)]
fn distances_portable(q: &[u64], codes: &[u8], out: &mut [u16], histogram: &mut [u32]) {
    let row = 8 * q.len();
    for (code, d) in codes.chunks_exact(row).zip(out.iter_mut()) {
        let mut dist = 0u32;
        for (b, qw) in code.chunks_exact(8).zip(q) {
            dist += (word(b) ^ qw).count_ones();
        }
        *d = dist as u16;
        histogram[dist as usize] += 1;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
fn distances_popcnt(q: &[u64], codes: &[u8], out: &mut [u16], histogram: &mut [u32]) {
    // The same loop; with POPCNT enabled, count_ones is one instruction.
    distances_portable(q, codes, out, histogram)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vpopcntdq")]
fn distances_vpopcntdq(q: &[u64], codes: &[u8], out: &mut [u16], histogram: &mut [u32]) {
    use std::arch::x86_64::*;
    let words = q.len();
    let row = 8 * words;
    // The query in eight-word registers, the last one masked to its length.
    let chunks = words.div_ceil(8);
    let mut qv = Vec::with_capacity(chunks);
    let mut masks = Vec::with_capacity(chunks);
    for c in 0..chunks {
        let n = (words - 8 * c).min(8);
        let mask: __mmask8 = if n == 8 { 0xff } else { (1u8 << n) - 1 };
        // SAFETY: the masked load reads only the `n` words of `q` from `8c`.
        qv.push(unsafe { _mm512_maskz_loadu_epi64(mask, q.as_ptr().add(8 * c) as *const i64) });
        masks.push(mask);
    }
    // One code's eight-word popcounts (summed over its registers), the
    // code at byte `at` of `codes`. A masked load is slow on some CPUs
    // (Zen 5: about four times the whole scan), so where 64 bytes can be
    // read without passing the end of `codes`, a plain load is masked
    // after the XOR instead.
    let counts = |at: usize| -> __m512i {
        let mut acc = _mm512_setzero_si512();
        for c in 0..chunks {
            let from = at + 64 * c;
            let x = if from + 64 <= codes.len() {
                // SAFETY: bytes `from..from + 64` lie within `codes`;
                // unaligned loads are allowed.
                let v = unsafe { _mm512_loadu_si512(codes.as_ptr().add(from) as *const _) };
                _mm512_maskz_xor_epi64(masks[c], v, qv[c])
            } else {
                // SAFETY: the masked load reads only words `8c..8c+n` of
                // this row, which has `words` words.
                let v = unsafe {
                    _mm512_maskz_loadu_epi64(masks[c], codes.as_ptr().add(from) as *const i64)
                };
                _mm512_xor_si512(v, qv[c])
            };
            acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(x));
        }
        acc
    };
    // Eight codes at a time: their eight count registers are summed into
    // one register of eight distances by a transposing tree of adds (three
    // rounds instead of one horizontal sum per code, which costs more than
    // the popcounts).
    let pairs = |x: __m512i, y: __m512i| {
        _mm512_add_epi64(_mm512_unpacklo_epi64(x, y), _mm512_unpackhi_epi64(x, y))
    };
    let lanes = |x: __m512i, y: __m512i| {
        _mm512_add_epi64(_mm512_shuffle_i64x2::<0x88>(x, y), _mm512_shuffle_i64x2::<0xDD>(x, y))
    };
    let n = out.len();
    let mut outs = out.chunks_exact_mut(8);
    for (g, d) in (&mut outs).enumerate() {
        let at = g * 8 * row;
        let c: [__m512i; 8] = std::array::from_fn(|i| counts(at + i * row));
        let sums = lanes(
            lanes(pairs(c[0], c[1]), pairs(c[2], c[3])),
            lanes(pairs(c[4], c[5]), pairs(c[6], c[7])),
        );
        let mut eight = [0u16; 8];
        // SAFETY: `eight` is 16 writable bytes; unaligned stores are allowed.
        unsafe {
            _mm_storeu_si128(eight.as_mut_ptr() as *mut __m128i, _mm512_cvtepi64_epi16(sums))
        };
        d.copy_from_slice(&eight);
        for &dist in &eight {
            histogram[dist as usize] += 1;
        }
    }
    let done = n - n % 8;
    for (i, d) in outs.into_remainder().iter_mut().enumerate() {
        let dist = _mm512_reduce_add_epi64(counts((done + i) * row)) as u32;
        *d = dist as u16;
        histogram[dist as usize] += 1;
    }
}

/// The distance below which (plus some at which) the `want` nearest codes
/// lie: the smallest `t` with at least `want` codes at distance ≤ `t`,
/// and how many of those at exactly `t` to take.
pub fn threshold(histogram: &[u32], want: usize) -> (u16, usize) {
    let mut below = 0usize;
    for (t, &n) in histogram.iter().enumerate() {
        if below + n as usize >= want {
            return (t as u16, want - below);
        }
        below += n as usize;
    }
    (histogram.len() as u16, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};

    /// The sign function the codes must equal, bit by bit.
    fn reference(v: &[f32]) -> Vec<bool> {
        v.iter().map(|x| *x > 0.0).collect()
    }

    #[test]
    fn codes_equal_the_sign_function_and_every_kernel_the_reference_distance() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        for dim in [3usize, 64, 100, 384, 768] {
            let vectors: Vec<Vec<f32>> = (0..257)
                .map(|i| {
                    (0..dim)
                        .map(|j| match (i + j) % 17 {
                            0 => 0.0,
                            1 => -0.0,
                            _ => rng.random_range(-1.0..1.0),
                        })
                        .collect()
                })
                .collect();
            let mut codes = Vec::new();
            for v in &vectors {
                encode(v, &mut codes);
            }
            assert_eq!(codes.len(), vectors.len() * width(dim));
            for (v, code) in vectors.iter().zip(codes.chunks_exact(width(dim))) {
                let bits: Vec<bool> = (0..dim).map(|i| code[i / 8] >> (i % 8) & 1 == 1).collect();
                assert_eq!(bits, reference(v), "dim {dim}");
                assert!((dim..8 * width(dim)).all(|i| code[i / 8] >> (i % 8) & 1 == 0), "padding");
            }
            let q = &vectors[5];
            let want: Vec<u16> = vectors
                .iter()
                .map(|v| {
                    reference(v).iter().zip(reference(q)).filter(|(a, b)| **a != *b).count() as u16
                })
                .collect();
            for kernel in Kernel::available() {
                let mut out = vec![0u16; vectors.len()];
                let mut hist = vec![0u32; 64 * words(q).len() + 1];
                kernel.distances(&words(q), &codes, &mut out, &mut hist);
                assert_eq!(out, want, "{kernel:?} at {dim} dimensions");
                assert_eq!(hist.iter().sum::<u32>() as usize, vectors.len());
                assert_eq!(hist[0], want.iter().filter(|d| **d == 0).count() as u32);
            }
        }
    }

    #[test]
    fn the_threshold_takes_exactly_as_many_as_wanted() {
        let hist = [2u32, 0, 3, 5];
        assert_eq!(threshold(&hist, 1), (0, 1));
        assert_eq!(threshold(&hist, 2), (0, 2));
        assert_eq!(threshold(&hist, 3), (2, 1));
        assert_eq!(threshold(&hist, 10), (3, 5));
        assert_eq!(threshold(&hist, 11), (4, 0));
    }
}

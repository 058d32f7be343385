//! Half-precision panel elements: IEEE f16 and bfloat16, two bytes each,
//! in the panel layout of [`super::packed::pack_panels`], and converted
//! back to f32 exactly as they are loaded (the x86 kernels of
//! [`super::simd`] widen f16 with AVX-512F's `vcvtph2ps` or F16C, and bf16
//! with a 16-bit shift). A query's forward pass streams every weight once,
//! so half the bytes is the lever on a memory-bound machine.
//!
//! Products are computed in f32 in the same order as the f32 kernels, so a
//! product over half panels equals, bit for bit, the f32 kernel over the
//! rounded weights: the only error is the rounding of the weights.

use super::simd::{Format, Panel};

/// A weight as IEEE 754 half-precision bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(transparent)]
pub struct F16(pub u16);

// SAFETY: F16 is two bytes of plain data (repr(transparent) u16); zero
// bits are 0.0.
unsafe impl Panel for F16 {
    const FORMAT: Format = Format::F16;

    fn from_f32(v: f32) -> F16 {
        F16(half::f16::from_f32(v).to_bits())
    }

    fn to_f32(self) -> f32 {
        half::f16::from_bits(self.0).to_f32()
    }
}

/// A weight as bfloat16 bits: an f32's sign, exponent and top 7 mantissa
/// bits (f32's range, 8 bits of precision where f16 has 11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(transparent)]
pub struct BF16(pub u16);

// SAFETY: BF16 is two bytes of plain data (repr(transparent) u16); zero
// bits are 0.0.
unsafe impl Panel for BF16 {
    const FORMAT: Format = Format::BF16;

    fn from_f32(v: f32) -> BF16 {
        BF16(half::bf16::from_f32(v).to_bits())
    }

    fn to_f32(self) -> f32 {
        f32::from_bits((self.0 as u32) << 16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bert::packed::pack_panels;
    use crate::bert::simd::{self, MR, NR};

    fn data(k: usize, n: usize, m: usize) -> (Vec<f32>, Vec<f32>) {
        let x: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.137).collect();
        let w: Vec<f32> = (0..n * k).map(|i| ((i * 5 % 11) as f32 - 5.0) * 0.0213).collect();
        (x, w)
    }

    /// Over half panels, the tiles equal the f32 tiles over the rounded
    /// weights, bit for bit (and the weights were rounded).
    fn half_tiles_equal_the_f32_tiles_over_rounded_weights<T: Panel>() {
        let k = 37;
        let (x, w) = data(k, NR, MR);
        let half = pack_panels::<T>(&w, k);
        let rounded: Vec<f32> = half.iter().map(|h| h.to_f32()).collect();
        assert_ne!(rounded, pack_panels::<f32>(&w, k).to_vec(), "the weights were rounded");
        simd::tests::tiles_equal_the_f32_tiles(&x, k, &half);
    }

    #[test]
    fn f16_tiles_equal_the_f32_tiles_over_rounded_weights() {
        half_tiles_equal_the_f32_tiles_over_rounded_weights::<F16>();
    }

    #[test]
    fn bf16_tiles_equal_the_f32_tiles_over_rounded_weights() {
        half_tiles_equal_the_f32_tiles_over_rounded_weights::<BF16>();
    }

    /// A whole product over half panels is within the format's rounding of
    /// the f32 product (f16: 11 bits, bf16: 8), and a single value rounds
    /// as the format promises.
    #[test]
    fn half_panel_products_are_close_to_f32() {
        let (m, n, k) = (9, 70, 384);
        let (x, w) = data(k, n, m);
        let product = |p: &[f32]| {
            let mut y = vec![0f32; m * n];
            simd::panel_matmul_acc(&mut y, n, n, &x, k, p, None);
            y
        };
        let y32 = product(&pack_panels::<f32>(&w, k));
        let y16 = {
            let mut y = vec![0f32; m * n];
            simd::panel_matmul_acc(&mut y, n, n, &x, k, &pack_panels::<F16>(&w, k), None);
            y
        };
        let ybf = {
            let mut y = vec![0f32; m * n];
            simd::panel_matmul_acc(&mut y, n, n, &x, k, &pack_panels::<BF16>(&w, k), None);
            y
        };
        let norm = |v: &[f32]| v.iter().map(|a| a * a).sum::<f32>().sqrt();
        for (name, y, bound) in [("f16", y16, 1e-3), ("bf16", ybf, 8e-3)] {
            let diff: Vec<f32> = y32.iter().zip(&y).map(|(a, b)| a - b).collect();
            let rel = norm(&diff) / norm(&y32);
            assert!(rel > 0.0 && rel < bound, "{name}: {rel}");
        }
        for v in [0.0f32, 1.0, -2.5, 65504.0, 6.1e-5, 1e-8] {
            let r = F16::from_f32(v).to_f32();
            assert!((r - v).abs() <= v.abs() * 1e-3 + 6e-8, "{v} -> {r}");
            let r = BF16::from_f32(v).to_f32();
            assert!((r - v).abs() <= v.abs() * 4e-3, "{v} -> {r}");
        }
        assert!(
            (BF16::from_f32(1e30).to_f32() / 1e30 - 1.0).abs() < 4e-3,
            "bf16 keeps f32's range"
        );
    }
}

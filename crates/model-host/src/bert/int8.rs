//! int8 weight panels: each output column's weights divided by the
//! column's scale (its largest magnitude over 127) and rounded to a signed
//! byte, a quarter of f32's bytes. The kernels widen each byte to f32 as
//! they load it (`vpmovsxbd` and `vcvtdq2ps`), sum in f32 in the same order
//! as for every other format, and multiply each column's sum by its scale
//! once (see [`super::simd::add_row`]). Only the weights are quantized; the
//! activations stay f32.

use super::packed::{Packed, pack_panels};
use super::simd::{Format, NR, Panel};

/// A weight as a signed byte, in units of its column's scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(transparent)]
pub struct I8(pub i8);

// SAFETY: I8 is one byte of plain data; zero bits are 0.
unsafe impl Panel for I8 {
    const FORMAT: Format = Format::I8;

    /// `v` (already divided by its column's scale), rounded and clamped to
    /// ±127.
    fn from_f32(v: f32) -> I8 {
        I8(v.round().clamp(-127.0, 127.0) as i8)
    }

    fn to_f32(self) -> f32 {
        self.0 as f32
    }
}

/// A weight column's scale: its largest magnitude over 127 (1 for a column
/// of zeros), so its bytes span ±127.
pub fn column_scale(column: &[f32]) -> f32 {
    let max = column.iter().fold(0f32, |m, &v| m.max(v.abs()));
    if max > 0.0 { max / 127.0 } else { 1.0 }
}

/// Packs a linear layer's weight (`n × k`, as stored) as int8 panels and
/// the scale of each column (padded with 1.0 to whole panels).
pub fn pack_panels_i8(w: &[f32], k: usize) -> (Packed<I8>, Vec<f32>) {
    let n = w.len() / k;
    let mut scale = vec![1f32; n.div_ceil(NR) * NR];
    let mut q = vec![0f32; n * k];
    for (c, row) in w.chunks_exact(k).enumerate() {
        let s = column_scale(row);
        scale[c] = s;
        for (o, &v) in q[c * k..(c + 1) * k].iter_mut().zip(row) {
            *o = v / s;
        }
    }
    (pack_panels::<I8>(&q, k), scale)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bert::bulk::panel_matmul_bulk;
    use crate::bert::simd::{self, MR};

    fn data(k: usize, n: usize, m: usize) -> (Vec<f32>, Vec<f32>) {
        let x: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.137).collect();
        let w: Vec<f32> = (0..n * k).map(|i| ((i * 5 % 11) as f32 - 5.0) * 0.0213).collect();
        (x, w)
    }

    /// Every form of the tile over int8 panels equals the same form over
    /// the bytes' values in f32, bit for bit.
    #[test]
    fn int8_tiles_equal_the_f32_tiles_over_the_bytes() {
        let k = 37;
        let (x, w) = data(k, NR, MR);
        let (q, _) = pack_panels_i8(&w, k);
        assert!(q.iter().any(|b| b.0 == 127 || b.0 == -127), "a column's largest is ±127");
        simd::tests::tiles_equal_the_f32_tiles(&x, k, &q);
    }

    /// With the scales applied the product is within int8's rounding of
    /// f32's, and the small-batch and bulk kernels agree bit for bit.
    #[test]
    fn scaled_int8_products_are_close_to_f32_in_both_kernels() {
        let (m, n, k) = (40, 70, 384);
        let (x, w) = data(k, n, m);
        let mut y32 = vec![0f32; m * n];
        let p32 = pack_panels::<f32>(&w, k);
        simd::panel_matmul_acc(&mut y32, n, n, &x, k, &p32, None);
        let (q, scale) = pack_panels_i8(&w, k);
        let mut small = vec![0f32; m * n];
        for r in (0..m).step_by(8) {
            let y = &mut small[r * n..(r + 8) * n];
            simd::panel_matmul_acc(y, n, n, &x[r * k..(r + 8) * k], k, &q, Some(&scale));
        }
        let mut bulk = vec![0f32; m * n];
        panel_matmul_bulk(&mut bulk, n, &x, k, &q, Some(&scale), true);
        assert_eq!(small, bulk);
        let norm = |v: &[f32]| v.iter().map(|a| a * a).sum::<f32>().sqrt();
        let diff: Vec<f32> = y32.iter().zip(&bulk).map(|(a, b)| a - b).collect();
        let rel = norm(&diff) / norm(&y32);
        assert!(rel > 0.0 && rel < 1e-2, "{rel}");
    }
}

//! Packed weight panels in 64-byte aligned memory. A `Vec<f32>` of this
//! size comes from `mmap` 16 bytes past a page boundary, so every 64-byte
//! AVX-512 load of a panel row would straddle two cache lines; aligned,
//! each panel row of [`NR`] f32 is exactly one or two lines.

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use super::simd::{NR, Panel};

/// One cache line.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);

/// A slice of panel elements starting on a cache line.
pub struct Packed<T> {
    lines: Vec<Line>,
    len: usize,
    _t: PhantomData<T>,
}

impl<T: Panel> Packed<T> {
    /// `len` zero elements.
    pub fn zeroed(len: usize) -> Packed<T> {
        let bytes = len * size_of::<T>();
        Packed { lines: vec![Line([0; 64]); bytes.div_ceil(64)], len, _t: PhantomData }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.lines.len() * 64
    }
}

impl<T: Panel> Deref for Packed<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: `lines` holds at least len × size_of::<T>() bytes, aligned
        // to 64 ≥ align_of::<T>(), and `Panel` promises T is plain data that
        // every bit pattern (zero included) is a value of.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast::<T>(), self.len) }
    }
}

impl<T: Panel> DerefMut for Packed<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as for `deref`, and the borrow of self is exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast::<T>(), self.len) }
    }
}

/// Packs a linear layer's weight (`n × k`, as stored) into panels of
/// [`NR`] output columns, each `k × NR` and contiguous, so the kernels
/// stream it front to back; each weight is converted to `T` (rounded to
/// nearest for the half types). Columns past `n` are zero.
pub fn pack_panels<T: Panel>(w: &[f32], k: usize) -> Packed<T> {
    let n = w.len() / k;
    let mut out = Packed::<T>::zeroed(n.div_ceil(NR) * k * NR);
    for (o, row) in w.chunks_exact(k).enumerate() {
        let (p, j) = (o / NR, o % NR);
        let panel = &mut out[p * k * NR..(p + 1) * k * NR];
        for (kk, &v) in row.iter().enumerate() {
            panel[kk * NR + j] = T::from_f32(v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bert::half::F16;

    #[test]
    fn panels_are_aligned_and_hold_the_transposed_weight() {
        let (n, k) = (40, 5);
        let w: Vec<f32> = (0..n * k).map(|i| i as f32).collect();
        let p = pack_panels::<f32>(&w, k);
        assert_eq!(p.as_ptr() as usize % 64, 0);
        assert_eq!(p.len(), 2 * k * NR);
        // Column o = 33 is panel 1, lane 1; row kk = 2.
        assert_eq!(p[k * NR + 2 * NR + 1], w[33 * k + 2]);
        assert_eq!(p[k * NR + 2 * NR + 8], 0.0, "columns past n are zero");
        let h = pack_panels::<F16>(&w, k);
        assert_eq!(h.as_ptr() as usize % 64, 0);
        assert_eq!(h[k * NR + 2 * NR + 1].to_f32(), w[33 * k + 2]);
    }
}

//! One stored vector: its norm (`f32`), then its `dim` components (`f32`),
//! little endian.

/// Bytes of one row.
pub fn width(dim: usize) -> usize {
    4 + 4 * dim
}

/// Appends the row of `v`.
pub fn encode(v: &[f32], out: &mut Vec<u8>) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    out.extend_from_slice(&norm.to_le_bytes());
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
}

/// The norm and the components' bytes.
pub fn split(row: &[u8]) -> (f32, &[u8]) {
    let (n, v) = row.split_at(4);
    (f32::from_le_bytes(le(n)), v)
}

pub(crate) fn le(b: &[u8]) -> [u8; 4] {
    [b[0], b[1], b[2], b[3]]
}

/// The dot product of a stored vector (little-endian bytes, any
/// alignment) with `q`: AVX2 and FMA where the CPU has them.
pub fn dot(v: &[u8], q: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA, checked just above.
        return unsafe { dot_avx2(v, q) };
    }
    dot_lanes(v, q)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dot_avx2(v: &[u8], q: &[f32]) -> f32 {
    dot_lanes(v, q)
}

/// Eight independent lanes, so the compiler keeps them in SIMD
/// registers (and, inlined into `dot_avx2`, in one AVX register).
#[inline(always)]
fn dot_lanes(v: &[u8], q: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let mut vs = v.chunks_exact(32);
    let mut qs = q.chunks_exact(8);
    for (vb, qb) in (&mut vs).zip(&mut qs) {
        let mut x = [0f32; 8];
        for (i, b) in vb.chunks_exact(4).enumerate() {
            x[i] = f32::from_le_bytes(le(b));
        }
        for i in 0..8 {
            acc[i] = x[i].mul_add(qb[i], acc[i]);
        }
    }
    let mut d = acc.iter().sum::<f32>();
    for (b, y) in vs.remainder().chunks_exact(4).zip(qs.remainder()) {
        d += f32::from_le_bytes(le(b)) * y;
    }
    d
}

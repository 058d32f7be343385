//! `y += x · wᵀ` through gemm, for large f32 batches, at the instruction
//! set [`simd::level`] allows.
//!
//! gemm picks its kernel by itself, from what the CPU has (AVX-512 here,
//! with its `x86-v4` feature). That made `VEMBED_SIMD=avx2` cap every
//! kernel of the forward pass but the one that does most of the f32 bulk
//! work. At a capped level this calls gemm's own driver with its AVX2 (FMA)
//! or portable microkernels instead, so a capped host runs the code an
//! AVX2-only CPU (a first-generation EPYC, say) runs.

use super::simd::{self, Level};

/// `y += x · wᵀ` over the f32 weight as stored (`w` is `n × k`, `x` is
/// `m × k`, `y` is `m × n`); split across rayon's pool when `par`.
pub fn gemm_acc(y: &mut [f32], n: usize, x: &[f32], k: usize, w: &[f32], par: bool) {
    let m = y.len() / n;
    assert!(x.len() >= m * k && w.len() >= n * k, "operands shorter than m × k and n × k");
    let par = if par {
        gemm::Parallelism::Rayon(rayon::current_num_threads())
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: y is m × n (row stride n), x is m × k (row stride k), and wᵀ
    // is read from w (n × k) with row stride 1 and column stride k; all
    // three slices are at least that long (asserted).
    unsafe {
        gemm(
            (m, n, k),
            (y.as_mut_ptr(), 1, n as isize),
            true,
            (x.as_ptr(), 1, k as isize),
            (w.as_ptr(), k as isize, 1),
            (1.0, 1.0),
            par,
        );
    }
}

/// An operand: its first element, then its column and row strides (in
/// elements).
pub type Operand<P> = (P, isize, isize);

/// `dst = alpha · dst + beta · lhs · rhs` (`alpha · dst` only when
/// `read_dst`), with `dst` `m × n`, `lhs` `m × k`, `rhs` `k × n`:
/// `gemm::gemm`'s contract, with no conjugation.
///
/// # Safety
///
/// Every element the shapes and strides address must lie in its operand's
/// allocation, `dst`'s writable and overlapping neither input; strides are
/// not negative.
pub unsafe fn gemm(
    (m, n, k): (usize, usize, usize),
    (dst, dst_cs, dst_rs): Operand<*mut f32>,
    read_dst: bool,
    (lhs, lhs_cs, lhs_rs): Operand<*const f32>,
    (rhs, rhs_cs, rhs_rs): Operand<*const f32>,
    (alpha, beta): (f32, f32),
    par: gemm::Parallelism,
) {
    if m == 0 || n == 0 {
        return;
    }
    let level = simd::level();
    // Off x86-64 gemm's own choice (NEON, say) is the only one.
    if level == Level::V4 || !cfg!(target_arch = "x86_64") {
        // SAFETY: the caller's contract is gemm's.
        unsafe {
            gemm::gemm(
                m, n, k, dst, dst_cs, dst_rs, read_dst, lhs, lhs_cs, lhs_rs, rhs, rhs_cs, rhs_rs,
                alpha, beta, false, false, false, par,
            );
        }
        return;
    }
    assert!(
        [dst_cs, dst_rs, lhs_cs, lhs_rs, rhs_cs, rhs_rs].iter().all(|&s| s >= 0),
        "negative strides"
    );
    // As gemm::gemm does: a row-major destination is passed on transposed
    // (dstᵀ = rhsᵀ · lhsᵀ), since the microkernels want it column-major.
    let args = if dst_cs < dst_rs {
        ((n, m, k), (dst, dst_rs, dst_cs), (rhs, rhs_rs, rhs_cs), (lhs, lhs_rs, lhs_cs))
    } else {
        ((m, n, k), (dst, dst_cs, dst_rs), (lhs, lhs_cs, lhs_rs), (rhs, rhs_cs, rhs_rs))
    };
    // SAFETY: the transpose addresses the same elements.
    unsafe { capped(level, args, read_dst, (alpha, beta), par) }
}

type Args = ((usize, usize, usize), Operand<*mut f32>, Operand<*const f32>, Operand<*const f32>);

/// gemm's driver with the microkernels of `level` (AVX2 with FMA, or
/// portable).
///
/// # Safety
///
/// As [`gemm`].
unsafe fn capped(
    level: Level,
    ((m, n, k), (dst, dst_cs, dst_rs), (lhs, lhs_cs, lhs_rs), (rhs, rhs_cs, rhs_rs)): Args,
    read_dst: bool,
    (alpha, beta): (f32, f32),
    par: gemm::Parallelism,
) {
    // gemm's driver over one family of microkernels (`$lanes` f32 to a
    // register), called as gemm's own dispatch calls it.
    macro_rules! basic {
        ($simd:expr, $lanes:literal, $($ukr:ident)::+) => {{
            use $($ukr)::+ as ukr;
            gemm_common::gemm::gemm_basic_generic::<
                _,
                f32,
                $lanes,
                { ukr::MR_DIV_N * $lanes },
                { ukr::NR },
                { ukr::MR_DIV_N },
                { ukr::H_M },
                { ukr::H_N },
            >(
                $simd,
                m,
                n,
                k,
                dst,
                dst_cs,
                dst_rs,
                read_dst,
                lhs,
                lhs_cs,
                lhs_rs,
                rhs,
                rhs_cs,
                rhs_rs,
                alpha,
                beta,
                false,
                false,
                false,
                |a: f32, b: f32, c: f32| a * b + c,
                &ukr::UKR,
                &ukr::H_UKR,
                false,
                par,
            )
        }};
    }
    #[cfg(target_arch = "x86_64")]
    if level == Level::V3 {
        use gemm_common::simd::MixedSimd;
        if let Some(v3) = <gemm_common::simd::V3 as MixedSimd<f32, f32, f32, f32>>::try_new() {
            // SAFETY: the caller's contract; V3 (AVX2 and FMA) was detected.
            return unsafe { basic!(v3, 8, gemm_f32::microkernel::fma::f32) };
        }
    }
    // Scalar, or V3 where gemm does not detect it: the portable kernels.
    // (Off x86-64 `gemm` never calls this, and `level` goes unread.)
    let _ = level;
    // SAFETY: the caller's contract; the portable kernels need no CPU feature.
    unsafe { basic!(gemm_common::simd::Scalar, 1, gemm_f32::microkernel::scalar::f32) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `y0 + x · wᵀ` in f64.
    fn reference(y0: &[f32], (m, n, k): (usize, usize, usize), x: &[f32], w: &[f32]) -> Vec<f64> {
        let mut y: Vec<f64> = y0.iter().map(|&v| v as f64).collect();
        for i in 0..m {
            for j in 0..n {
                let dot: f64 = (0..k).map(|d| x[i * k + d] as f64 * w[j * k + d] as f64).sum();
                y[i * n + j] += dot;
            }
        }
        y
    }

    fn values(len: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761).max(1);
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn every_level_accumulates_the_same_product() {
        let mut levels = vec![Level::Scalar];
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("fma") && std::is_x86_feature_detected!("avx2") {
            levels.push(Level::V3);
        }
        // Odd sizes: partial tiles on every edge; one shape split across the pool.
        for (shape, par) in [((37, 70, 129), false), ((96, 384, 384), true), ((1, 9, 3), false)] {
            let (m, n, k) = shape;
            let (x, w, y0) = (values(m * k, 1), values(n * k, 2), values(m * n, 3));
            let want = reference(&y0, shape, &x, &w);
            let mut outs = Vec::new();
            let mut y = y0.clone();
            gemm_acc(&mut y, n, &x, k, &w, par);
            outs.push(("gemm_acc", y));
            for &level in &levels {
                let mut y = y0.clone();
                let p = if par { gemm::Parallelism::Rayon(2) } else { gemm::Parallelism::None };
                // y (m × n) += x · wᵀ, passed on transposed as `gemm` does.
                let args = (
                    (n, m, k),
                    (y.as_mut_ptr(), n as isize, 1),
                    (w.as_ptr(), 1, k as isize),
                    (x.as_ptr(), k as isize, 1),
                );
                // SAFETY: y is m × n, x m × k, w n × k, as addressed.
                unsafe { capped(level, args, true, (1.0, 1.0), p) };
                outs.push((level.name(), y));
            }
            for (name, y) in outs {
                for (i, (&got, &want)) in y.iter().zip(&want).enumerate() {
                    let tol = 1e-5 * (k as f64).sqrt() * (1.0 + want.abs());
                    assert!(
                        (got as f64 - want).abs() <= tol,
                        "{name} {shape:?}: element {i} is {got}, want {want}"
                    );
                }
            }
        }
    }
}

//! Tests of the element-wise and small-batch kernels (`simd.rs`).

use super::*;

#[test]
fn exp_matches_std() {
    let mut worst = 0f32;
    let mut x = -87.0f32;
    while x < 88.0 {
        let rel = ((exp::<true>(x) - x.exp()) / x.exp()).abs();
        let plain = ((exp::<false>(x) - x.exp()) / x.exp()).abs();
        worst = worst.max(plain);
        worst = worst.max(rel);
        x += 0.0137;
    }
    assert!(worst < 4e-7, "worst relative error {worst}");
    assert_eq!(exp::<true>(0.0), 1.0);
    assert!(exp::<true>(-1000.0) >= 0.0 && exp::<true>(-1000.0) < 1e-37);
}

#[test]
fn erf_matches_reference() {
    // erf from a high-precision reference (mpmath) at a few points.
    for (x, want) in [
        (0.0f64, 0.0f64),
        (0.1, 0.112_462_916_018_284_9),
        (0.5, 0.520_499_877_813_046_5),
        (1.0, 0.842_700_792_949_714_9),
        (-1.5, -0.966_105_146_475_310_7),
        (2.5, 0.999_593_047_982_555),
        (4.0, 0.999_999_984_582_742_1),
    ] {
        let got = f64::from(erf::<true>(x as f32));
        let plain = f64::from(erf::<false>(x as f32));
        assert!((plain - want).abs() < 3e-7, "erf({x}) = {plain} unfused, want {want}");
        assert!((got - want).abs() < 3e-7, "erf({x}) = {got}, want {want}");
    }
}

#[test]
fn softmax_and_layer_norm() {
    let mut rows: Vec<f32> = (0..40).map(|i| (i as f32 * 0.37).sin() * 5.0).collect();
    let orig = rows.clone();
    softmax_rows(&mut rows, 20);
    for (r, o) in rows.chunks(20).zip(orig.chunks(20)) {
        let max = o.iter().copied().fold(f32::MIN, f32::max);
        let z: f64 = o.iter().map(|&v| f64::from(v - max).exp()).sum();
        for (&p, &v) in r.iter().zip(o) {
            let want = f64::from(v - max).exp() / z;
            assert!((f64::from(p) - want).abs() < 1e-6);
        }
    }
    let mut x: Vec<f32> = (0..34).map(|i| i as f32 * 0.5 - 3.0).collect();
    let g = vec![2.0; 17];
    let b = vec![1.0; 17];
    let orig = x.clone();
    layer_norm_rows(&mut x, &g, &b, 1e-12);
    for (r, o) in x.chunks(17).zip(orig.chunks(17)) {
        let mean = o.iter().sum::<f32>() / 17.0;
        let var = o.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / 17.0;
        for (&y, &v) in r.iter().zip(o) {
            assert!((y - ((v - mean) / var.sqrt() * 2.0 + 1.0)).abs() < 1e-5);
        }
    }
}

/// The AVX2 tile computes exactly what the generic one does (the same
/// fused multiply-adds in the same order), for every row count.
#[test]
#[cfg(target_arch = "x86_64")]
fn avx2_tile_equals_the_generic_tile_bit_for_bit() {
    if !(std::is_x86_feature_detected!("avx2")
        && std::is_x86_feature_detected!("fma")
        && std::is_x86_feature_detected!("f16c"))
    {
        assert_ne!(level(), Level::V3, "V3 needs AVX2, FMA and F16C");
        return;
    }
    if level() == Level::Scalar {
        // VEMBED_SIMD=scalar: the generic tile runs without FMA, so it
        // rounds differently from the AVX2 tile by design.
        return;
    }
    let k = 37;
    let x: Vec<f32> = (0..MR * k).map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.137).collect();
    let panel: Vec<f32> = (0..k * NR).map(|i| ((i * 5 % 11) as f32 - 5.0) * 0.213).collect();
    for rows in 1..=MR {
        let (mut a, mut b) = ([[0f32; NR]; MR], [[0f32; NR]; MR]);
        tile_generic(&mut a, rows, &x[..rows * k], k, k, &panel);
        // SAFETY: AVX2, FMA and F16C were detected above; the lengths fit.
        unsafe { x86::tile_v3(&mut b, rows, &x[..rows * k], k, k, &panel) };
        assert_eq!(a, b, "rows {rows}");
    }
}

#[test]
fn panel_matmul_matches_naive() {
    let (m, n, k) = (15, 70, 37);
    let x: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.1).collect();
    let w: Vec<f32> = (0..n * k).map(|i| ((i * 5 % 11) as f32 - 5.0) * 0.2).collect();
    let mut y = vec![1.0f32; m * n];
    let packed = crate::bert::packed::pack_panels::<f32>(&w, k);
    // Two calls over disjoint panel ranges, as the threads split them.
    panel_matmul_acc(&mut y, n, NR, &x, k, &packed[..k * NR], None);
    panel_matmul_acc(&mut y[NR..], n, n - NR, &x, k, &packed[k * NR..], None);
    for r in 0..m {
        for o in 0..n {
            let want: f32 = 1.0 + (0..k).map(|j| x[r * k + j] * w[o * k + j]).sum::<f32>();
            assert!((y[r * n + o] - want).abs() < 1e-4);
        }
    }
}

/// Every form of the tile (this CPU's level, the generic one, and AVX2
/// where the CPU has it) over `panel` equals the same form over its
/// elements' f32 values, bit for bit, for every row count: a format only
/// changes how weights are stored, never the arithmetic.
pub(in crate::bert) fn tiles_equal_the_f32_tiles<T: Panel>(x: &[f32], k: usize, panel: &[T]) {
    let values: Vec<f32> = panel.iter().map(|v| v.to_f32()).collect();
    for rows in 1..=MR {
        let xr = &x[..rows * k];
        let (mut a, mut b) = ([[0f32; NR]; MR], [[0f32; NR]; MR]);
        f32::tile(&mut a, rows, xr, k, k, &values);
        T::tile(&mut b, rows, xr, k, k, panel);
        assert_eq!(a, b, "{:?}, rows {rows} at {:?}", T::FORMAT, level());
        let (mut c, mut d) = ([[0f32; NR]; MR], [[0f32; NR]; MR]);
        tile_generic(&mut c, rows, xr, k, k, &values);
        tile_generic(&mut d, rows, xr, k, k, panel);
        assert_eq!(c, d, "{:?}, generic, rows {rows}", T::FORMAT);
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c")
        {
            let (mut e, mut f) = ([[0f32; NR]; MR], [[0f32; NR]; MR]);
            // SAFETY: AVX2, FMA and F16C were detected; the lengths fit.
            unsafe {
                x86::tile_v3(&mut e, rows, xr, k, k, &values);
                x86::tile_v3(&mut f, rows, xr, k, k, panel);
            }
            assert_eq!(e, f, "{:?}, avx2, rows {rows}", T::FORMAT);
        }
    }
}

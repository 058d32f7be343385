use super::*;
use crate::bert::jobs::{inline, on_rayon};

fn data(m: usize, n: usize, k: usize) -> (Vec<f32>, Vec<f32>) {
    let x: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.137).collect();
    let w: Vec<f32> = (0..n * k).map(|i| ((i * 5 % 11) as f32 - 5.0) * 0.0213).collect();
    (x, w)
}

#[test]
fn weights_are_packed_in_groups_of_four_with_their_scale_and_offset() {
    let (n, k) = (40, 9);
    let (_, w) = data(1, n, k);
    let q = QWeight::pack(&w, k);
    assert_eq!(q.kp, 12);
    for c in [0, 1, 31, 33, 39] {
        let row = &w[c * k..(c + 1) * k];
        let max = row.iter().fold(0f32, |m, &v| m.max(v.abs()));
        assert_eq!(q.scale[c], max / 127.0);
        let mut sum = 0;
        for (kk, &v) in row.iter().enumerate() {
            let want = (v / q.scale[c]).round() as i8;
            assert_eq!(q.at(c, kk), want, "column {c}, k {kk}");
            sum += want as i32;
        }
        assert!((0..k).any(|kk| q.at(c, kk).abs() == 127), "a column's largest is ±127");
        assert_eq!(q.at(c, 10), 0, "k's padding is zero");
        assert_eq!(q.offset[c], 128 * sum);
    }
    assert_eq!(q.at(40, 0), 0, "columns past n are zero");
}

#[test]
fn rows_quantize_to_nearest_even_with_their_own_scale() {
    let (k, kp) = (5, 8);
    let x = [1.27f32, -0.635, 0.005, 0.0, -1.27, 0.0, 0.0, 0.0, 0.0, 0.0];
    for offset in [false, true] {
        let (mut q, mut s) = (vec![7u8; 2 * kp], vec![0f32; 2]);
        quantize_rows(
            &mut q,
            &mut s,
            &x,
            (k, kp),
            Quant { offset, unsmooth: None },
            &mut Vec::new(),
        );
        let base = if offset { 128 } else { 0 };
        let got: Vec<i32> =
            q.iter().map(|&b| if offset { b as i32 - 128 } else { b as i8 as i32 }).collect();
        // 0.635 / 0.01 = 63.5 rounds to the even 64; 0.005 / 0.01 = 0.5 to 0.
        assert_eq!(&got[..kp], &[127, -64, 0, 0, -127, 0, 0, 0]);
        assert_eq!(s[0], 1.27 / 127.0);
        assert!(q[kp..].iter().all(|&b| b == base), "a zero row is zeros, padding included");
        assert_eq!(s[1], 1.0);
    }
}

/// Every form of the tile gives the generic loops' integers, with rows of
/// the extremes (±127, where AVX2's pairs come closest to i16's limit).
#[test]
fn every_kernel_computes_the_generic_integers() {
    let kp = 1540;
    let panel: Vec<I8> = (0..kp * NR)
        .map(|i| I8(if i % 5 == 0 { -127 } else { ((i * 37 % 255) as i32 - 127) as i8 }))
        .collect();
    let signed: Vec<u8> = (0..QMR * kp)
        .map(|i| (if i % 3 == 0 { 127i8 } else { ((i * 11 % 255) as i32 - 127) as i8 }) as u8)
        .collect();
    let unsigned: Vec<u8> = signed.iter().map(|&b| (b as i8 as i32 + 128) as u8).collect();
    let mut kernels = vec![Kernel::Generic];
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            kernels.push(Kernel::Avx2);
            if std::is_x86_feature_detected!("avxvnni") {
                kernels.push(Kernel::AvxVnni);
            }
        }
        if std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vnni")
        {
            kernels.push(Kernel::Vnni512);
        }
    }
    let seed: QAcc = std::array::from_fn(|i| std::array::from_fn(|j| (i * 1000 + j) as i32));
    for rows in 1..=QMR {
        let mut want = seed;
        tile_generic(&mut want, rows, &signed, kp, &panel, false);
        // The direct sum, for the generic loops themselves.
        let w = |kk: usize, j: usize| panel[(kk / 4) * NR * 4 + j * 4 + kk % 4].0 as i32;
        let direct: i32 =
            (0..kp).map(|kk| signed[(rows - 1) * kp + kk] as i8 as i32 * w(kk, 5)).sum();
        assert_eq!(want[rows - 1][5], seed[rows - 1][5] + direct);
        for &kernel in &kernels {
            let rows_in = if kernel.offset() { &unsigned } else { &signed };
            let mut got = seed;
            tile(kernel, &mut got, rows, rows_in, kp, &panel);
            if kernel.offset() {
                // Take away 128 · Σ w per column, as `finish` does.
                for row in got.iter_mut().take(rows) {
                    for (j, v) in row.iter_mut().enumerate() {
                        *v -= 128 * (0..kp).map(|kk| w(kk, j)).sum::<i32>();
                    }
                }
            }
            assert_eq!(got[..rows], want[..rows], "{kernel:?}, {rows} rows");
            assert_eq!(got[rows..], seed[rows..], "{kernel:?} leaves the other rows");
        }
    }
}

#[test]
fn products_are_the_dequantized_sums_and_the_same_alone_or_batched() {
    for (m, n, k) in [(1, 40, 7), (7, 70, 384), (101, 64, 1536)] {
        let (x, w) = data(m, n, k);
        let q = QWeight::pack(&w, k);
        let init: Vec<f32> = (0..m * n).map(|i| i as f32 * 0.5).collect();
        let mut y = init.clone();
        matmul_acc(&mut y, &x, &q, 0, &mut inline);
        let (mut err, mut norm) = (0f64, 0f64);
        for row in 0..m {
            let xr = &x[row * k..(row + 1) * k];
            let max = xr.iter().fold(0f32, |a, &v| a.max(v.abs()));
            let sx = max / 127.0;
            for c in 0..n {
                let sum: f64 = (0..k)
                    .map(|kk| {
                        (xr[kk] * (127.0 / max)).round_ties_even() as f64 * q.at(c, kk) as f64
                    })
                    .sum();
                let want = init[row * n + c] as f64 + sum * sx as f64 * q.scale[c] as f64;
                let got = y[row * n + c] as f64;
                assert!(
                    (got - want).abs() < 1e-4 * want.abs().max(1.0),
                    "{m}x{n}x{k} [{row},{c}]: {got} vs {want}"
                );
                let exact: f64 = (0..k).map(|kk| xr[kk] as f64 * w[c * k + kk] as f64).sum();
                err += (got - init[row * n + c] as f64 - exact).powi(2);
                norm += exact.powi(2);
            }
        }
        // And within int8's rounding of the f32 product.
        let rel = (err / norm).sqrt();
        assert!(rel > 0.0 && rel < 2e-2, "{m}x{n}x{k}: relative error {rel}");
        // One panel per job, on rayon: the same bits; and each row alone.
        let mut split = init.clone();
        matmul_acc(&mut split, &x, &q, 1, &mut on_rayon);
        assert_eq!(split, y, "{m}x{n}x{k}");
        for row in [0, m / 2, m - 1] {
            let mut alone = init[row * n..(row + 1) * n].to_vec();
            matmul_acc(&mut alone, &x[row * k..(row + 1) * k], &q, 0, &mut inline);
            assert_eq!(alone, y[row * n..(row + 1) * n], "{m}x{n}x{k} row {row}");
        }
    }
}

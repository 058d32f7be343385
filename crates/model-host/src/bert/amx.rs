//! Intel AMX bf16 tiles for the linear layers (`weights = "amx-bf16"`):
//! weights and activations both rounded to bf16, products summed in f32 by
//! the tile unit (`tdpbf16ps`), 16 × 16 outputs per instruction.
//!
//! Layout: the weight (`n × k`, as stored) is packed per block of 16 output
//! columns as `k/2` rows of 16 column pairs (`[k/2][16][2]` bf16, 64 bytes a
//! row), which is the "B" tile's VNNI form, `k` padded to a multiple of 32
//! with zeros. `x` is rounded to bf16 once per product into rows of the
//! padded `k`, zero rows up to a multiple of 32. Each job owns 32 rows and
//! sweeps every pair of column blocks: four accumulator tiles (32 × 32
//! outputs), two A tiles (32 rows × 32 of k), two B tiles (32 of k × 32
//! columns), one `tdpbf16ps` per (A, B) pair per 32 of `k`.
//!
//! A row's outputs depend only on that row and the weights, and the sums
//! run over `k` in one order, so a text gets the same vector alone or in
//! any batch.

use std::arch::asm;
use std::sync::OnceLock;

use super::half::BF16;
use super::jobs::{Runner, SendPtr};
use super::packed::Packed;
use super::simd::{Panel, add_row};

/// Whether this CPU has AMX-TILE and AMX-BF16 and Linux lets this process
/// use the tile registers (asked once with `arch_prctl`). `VEMBED_AMX=off`
/// says no, to compare or test the CPUs without.
pub fn available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        if std::env::var("VEMBED_AMX").is_ok_and(|v| v == "off") {
            return false;
        }
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        {
            // CPUID leaf 7, sub-leaf 0: EDX bit 22 AMX-BF16, bit 24 AMX-TILE.
            let leaf = std::arch::x86_64::__cpuid_count(7, 0);
            if leaf.edx & (1 << 22) == 0 || leaf.edx & (1 << 24) == 0 {
                return false;
            }
            const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
            const XFEATURE_XTILEDATA: libc::c_long = 18;
            // SAFETY: arch_prctl with these arguments only asks the kernel
            // for permission to use the AMX state; it touches no memory.
            let r = unsafe {
                libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)
            };
            r == 0
        }
        #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
        {
            false
        }
    })
}

/// A linear layer's weight in the B tiles' form.
pub struct AmxWeight {
    data: Packed<BF16>,
    n: usize,
    k: usize,
    /// `k` padded to a multiple of 32.
    kp: usize,
}

impl AmxWeight {
    /// Packs `w` (`n × k`, as stored), each weight rounded to bf16.
    pub fn pack(w: &[f32], k: usize) -> AmxWeight {
        let n = w.len() / k;
        let kp = k.div_ceil(32) * 32;
        let blocks = n.div_ceil(32) * 2;
        let mut data = Packed::<BF16>::zeroed(blocks * kp * 16);
        for cb in 0..blocks {
            let block = &mut data[cb * kp * 16..(cb + 1) * kp * 16];
            for j in 0..16 {
                let c = cb * 16 + j;
                if c >= n {
                    break;
                }
                for (kk, &v) in w[c * k..(c + 1) * k].iter().enumerate() {
                    block[(kk / 2) * 32 + j * 2 + kk % 2] = BF16::from_f32(v);
                }
            }
        }
        AmxWeight { data, n, k, kp }
    }

    /// The output columns.
    pub fn n(&self) -> usize {
        self.n
    }
}

/// `v` rounded to the nearest bf16, ties to even (what [`BF16::from_f32`]
/// gives for every finite value), in a form the compiler vectorizes.
#[inline(always)]
fn round_bf16(v: f32) -> BF16 {
    let b = v.to_bits();
    BF16((b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16) as u16)
}

/// The tile configuration: palette 1, eight tiles of 16 rows × 64 bytes.
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

const CONFIG: TileConfig = {
    let mut c = [0u8; 64];
    c[0] = 1;
    let mut t = 0;
    while t < 8 {
        c[16 + 2 * t] = 64;
        c[48 + t] = 16;
        t += 1;
    }
    TileConfig(c)
};

/// `y += x · wᵀ`: `x` is `m × k`, `y` is `m × n`, `w` packed by
/// [`AmxWeight::pack`]. The work is cut into jobs of 32 rows by `per`
/// pairs of column blocks (all of them when `per` is 0), which `run`
/// spreads over threads (rayon's pool for bulk, the query team for a few
/// rows). The caller must have checked [`available`].
pub fn matmul_acc(y: &mut [f32], x: &[f32], w: &AmxWeight, per: usize, run: Runner<'_>) {
    assert!(available(), "AMX is available");
    let (n, k, kp) = (w.n, w.k, w.kp);
    let m = y.len() / n;
    assert!(x.len() >= m * k, "x holds m rows of k");
    if m == 0 {
        return;
    }
    let row_blocks = m.div_ceil(32);
    let pairs = n.div_ceil(32);
    let per = if per == 0 { pairs } else { per.min(pairs) };
    let chunks = pairs.div_ceil(per);
    let y_ptr = SendPtr(y.as_mut_ptr());
    run(row_blocks * chunks, &move |job| {
        XB.with_borrow_mut(|xb| {
            let (rb, cc) = (job / chunks, job % chunks);
            let rows = 32.min(m - rb * 32);
            // This job's 32 rows of x in bf16, rows of kp, zero-padded; each
            // job converts its own, in parallel.
            xb.clear();
            xb.resize(32 * kp, BF16(0));
            to_bf16(xb, &x[rb * 32 * k..(rb * 32 + rows) * k], k, kp);
            let mut out = [0f32; 32 * 32];
            // SAFETY: available() checked AMX and the OS permission; the
            // configuration is valid for palette 1.
            unsafe { asm!("ldtilecfg [{}]", in(reg) CONFIG.0.as_ptr(), options(nostack)) };
            for cp in cc * per..((cc + 1) * per).min(pairs) {
                let a = xb.as_ptr();
                let b0 = w.data[(2 * cp) * kp * 16..].as_ptr();
                let b1 = w.data[(2 * cp + 1) * kp * 16..].as_ptr();
                // SAFETY: the tiles read 16 rows of 64 bytes: A rows 0..32 of xb
                // (stride kp·2 bytes, columns below kp), B rows of each column
                // block (stride 64, kp/2 rows per block); the stores write 32
                // rows × 32 floats of `out`.
                unsafe { tile_block(a, kp, b0, b1, kp / 32, out.as_mut_ptr()) };
                let c = cp * 32;
                let width = 32.min(n - c);
                for i in 0..rows {
                    // SAFETY: row rb·32 + i < m, columns c..c + width < n: inside
                    // y, and written by this job alone (jobs own distinct rows
                    // or distinct column pairs); y's `&mut` borrow outlives `run`.
                    let row = unsafe {
                        std::slice::from_raw_parts_mut(
                            y_ptr.get().add((rb * 32 + i) * n + c),
                            width,
                        )
                    };
                    add_row(row, &out[i * 32..i * 32 + 32], None);
                }
            }
            // SAFETY: releases this thread's tile state.
            unsafe { asm!("tilerelease", options(nostack)) };
        })
    });
}

thread_local! {
    /// One job's rows of x in bf16, kept per thread.
    static XB: std::cell::RefCell<Vec<BF16>> = const { std::cell::RefCell::new(Vec::new()) };
}

multiversion! {
    /// Rounds rows of `x` (each `k` long) to bf16 into `dst` (rows of `kp`).
    fn to_bf16(dst: &mut [BF16], x: &[f32], k: usize, kp: usize) {
        for (d, row) in dst.chunks_exact_mut(kp).zip(x.chunks_exact(k)) {
            for (o, &v) in d.iter_mut().zip(row) {
                *o = round_bf16(v);
            }
        }
    }
}

/// One 32 × 32 block of outputs over `kb` runs of 32 of `k`, into `out`
/// (32 rows of 32 floats).
///
/// # Safety
/// Tiles must be configured as [`CONFIG`]; `a` must hold 32 rows of `kp`
/// bf16 (`kp = 32·kb`), `b0` and `b1` `kp/2` rows of 32 bf16 each.
#[inline]
unsafe fn tile_block(
    a: *const BF16,
    kp: usize,
    b0: *const BF16,
    b1: *const BF16,
    kb: usize,
    out: *mut f32,
) {
    let a_stride = kp * 2;
    // SAFETY: as the caller guarantees; tiles 0-3 accumulate, 4-5 hold A,
    // 6-7 hold B.
    unsafe {
        asm!("tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3", options(nostack));
        for t in 0..kb {
            let a0 = a.add(t * 32);
            let a1 = a.add(16 * kp + t * 32);
            let bb0 = b0.add(t * 16 * 32);
            let bb1 = b1.add(t * 16 * 32);
            asm!(
                "tileloadd tmm4, [{a0} + {sa}*1]",
                "tileloadd tmm5, [{a1} + {sa}*1]",
                "tileloadd tmm6, [{b0} + {sb}*1]",
                "tileloadd tmm7, [{b1} + {sb}*1]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                a0 = in(reg) a0,
                a1 = in(reg) a1,
                b0 = in(reg) bb0,
                b1 = in(reg) bb1,
                sa = in(reg) a_stride,
                sb = in(reg) 64usize,
                options(nostack)
            );
        }
        let so = 32 * 4usize;
        asm!(
            "tilestored [{o0} + {so}*1], tmm0",
            "tilestored [{o1} + {so}*1], tmm1",
            "tilestored [{o2} + {so}*1], tmm2",
            "tilestored [{o3} + {so}*1], tmm3",
            o0 = in(reg) out,
            o1 = in(reg) out.add(16),
            o2 = in(reg) out.add(16 * 32),
            o3 = in(reg) out.add(16 * 32 + 16),
            so = in(reg) so,
            options(nostack)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bert::jobs::{inline, on_rayon};

    #[test]
    fn amx_products_equal_an_f64_sum_over_the_rounded_operands() {
        if !available() {
            // Not a skip: this CPU has no AMX, and the mode is refused there
            // (tested in the e2e precision tests).
            return;
        }
        for (m, n, k) in [(1, 40, 7), (45, 70, 384), (64, 64, 1536)] {
            let x: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.137).collect();
            let w: Vec<f32> = (0..n * k).map(|i| ((i * 5 % 11) as f32 - 5.0) * 0.0213).collect();
            let p = AmxWeight::pack(&w, k);
            let init: Vec<f32> = (0..m * n).map(|i| i as f32 * 0.5).collect();
            let mut y = init.clone();
            matmul_acc(&mut y, &x, &p, 0, &mut on_rayon);
            let r = |v: f32| round_bf16(v).to_f32() as f64;
            assert_eq!(round_bf16(x[3]), BF16::from_f32(x[3]));
            for row in 0..m {
                for c in 0..n {
                    let want = init[row * n + c] as f64
                        + (0..k).map(|i| r(x[row * k + i]) * r(w[c * k + i])).sum::<f64>();
                    let got = y[row * n + c] as f64;
                    assert!(
                        (got - want).abs() < 1e-3 * want.abs().max(1.0),
                        "{m}x{n}x{k} [{row},{c}]: {got} vs {want}"
                    );
                }
            }
            // Alone and in a batch: the same bits.
            let mut alone = init[..n].to_vec();
            matmul_acc(&mut alone, &x[..k], &p, 1, &mut inline);
            assert_eq!(alone, y[..n], "{m}x{n}x{k}");
        }
    }
}

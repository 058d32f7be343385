//! int8 weights and int8 activations (`weights = "int8-dynamic"`): the
//! products run on integer multiply-adds, four per 32-bit lane, where
//! [`super::int8`] widens its bytes to f32 and pays f32's multiply-adds.
//!
//! * **Weights**, once at load: each output column divided by its scale
//!   (its largest magnitude over 127) and rounded to a signed byte, packed
//!   per panel of [`NR`] columns as `kp/4` rows of `NR` groups of four
//!   consecutive `k` (`[kp/4][NR][4]`, the "VNNI" order `vpdpbusd` reads),
//!   `k` padded to `kp`, a multiple of 4, with zeros. Each column's byte sum
//!   is kept for the offset correction below.
//! * **Activations**, at every product: each row of `x` (smoothed per input
//!   channel, see [`super::calibrate`]) divided by its own scale (its largest
//!   magnitude over 127) and rounded to nearest even, a signed byte `q` in
//!   ±127.
//! * **Products**: `Σ_k q·w` exactly, in i32 (at most 127·127·k, far from
//!   overflow for any `k` a model has), then `y += Σ · (s_x · s_w)`. With
//!   AVX-512 VNNI, `vpdpbusd` multiplies unsigned by signed bytes, so the
//!   rows are stored as `q + 128` and `128 · Σ_k w` is subtracted after (the
//!   same with AVX-VNNI, the instruction on 256-bit registers); with
//!   AVX2 alone, `vpmaddubsw` over `|q|` and `w · sign(q)` (pairs of at most
//!   2·127·127, below i16's limit, so never saturating) and `vpmaddwd`; and
//!   plain integer loops everywhere else. Every form computes the same
//!   integers, so a text's vector is the same bits alone or in any batch.
//!   (The f32 parts around the products, attention and LayerNorm, still
//!   round per instruction set, so vectors differ in the last bits between
//!   an AVX-512 and an AVX2 CPU.)

use std::sync::OnceLock;

use super::int8::{I8, column_scale};
use super::jobs::{Runner, SendPtr};
use super::packed::Packed;
use super::simd::{LANES, Level, NR, Panel, level};

/// Rows per register block of the integer tile: 12 with AVX-512's 32
/// registers (24 accumulators), as the f32 tile.
pub const QMR: usize = 12;

/// One register block's integer sums.
pub type QAcc = [[i32; NR]; QMR];

/// Which integer kernel this CPU runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// AVX-512 VNNI (`vpdpbusd` on 512-bit registers).
    Vnni512,
    /// AVX-VNNI (`vpdpbusd` on 256-bit registers).
    AvxVnni,
    /// AVX2 (`vpmaddubsw` and `vpmaddwd`).
    Avx2,
    /// Portable integer loops.
    Generic,
}

impl Kernel {
    /// The kernel's name, as the host logs it.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Vnni512 => "avx512-vnni",
            Kernel::AvxVnni => "avx-vnni",
            Kernel::Avx2 => "avx2",
            Kernel::Generic => "generic",
        }
    }

    /// Whether rows are stored as `q + 128` (the VNNI form's unsigned bytes)
    /// rather than as `q`.
    fn offset(self) -> bool {
        matches!(self, Kernel::Vnni512 | Kernel::AvxVnni)
    }
}

/// The widest integer kernel this CPU and [`level`] (`VEMBED_SIMD`) allow.
/// `VEMBED_VNNI=off` leaves out both VNNI forms, to run what a CPU without
/// them (AVX2 alone: Haswell to Comet Lake, Zen 1 to 3) runs.
pub fn kernel() -> Kernel {
    static KERNEL: OnceLock<Kernel> = OnceLock::new();
    *KERNEL.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            let vnni = std::env::var("VEMBED_VNNI").map_or(true, |v| v != "off");
            let has = |f: bool| vnni && f;
            match level() {
                Level::V4
                    if has(std::is_x86_feature_detected!("avx512vnni")
                        && std::is_x86_feature_detected!("avx512bw")) =>
                {
                    return Kernel::Vnni512;
                }
                Level::V4 | Level::V3 if has(std::is_x86_feature_detected!("avxvnni")) => {
                    return Kernel::AvxVnni;
                }
                Level::V4 | Level::V3 => return Kernel::Avx2,
                Level::Scalar => {}
            }
        }
        Kernel::Generic
    })
}

/// A linear layer's weight as signed bytes in the VNNI order.
pub struct QWeight {
    data: Packed<I8>,
    /// Each column's scale (padded with 1.0 to whole panels).
    scale: Vec<f32>,
    /// `128 · Σ_k w` per column: what the VNNI form's offset adds.
    offset: Vec<i32>,
    /// `1 / s_k` per input channel, when the weight was packed smoothed:
    /// each activation is multiplied by it before it is quantized.
    unsmooth: Option<Vec<f32>>,
    n: usize,
    k: usize,
    kp: usize,
}

impl QWeight {
    /// Packs `w` (`n × k`, as stored).
    pub fn pack(w: &[f32], k: usize) -> QWeight {
        QWeight::pack_smoothed(w, k, None)
    }

    /// Packs `w` with input channel `c`'s weights multiplied by `smooth[c]`
    /// (and the activations divided by it at every product), which moves
    /// the range of channels whose activations run large into the weights.
    pub fn pack_smoothed(w: &[f32], k: usize, smooth: Option<&[f32]>) -> QWeight {
        let n = w.len() / k;
        let kp = k.div_ceil(4) * 4;
        let panels = n.div_ceil(NR);
        let mut data = Packed::<I8>::zeroed(panels * kp * NR);
        let mut scale = vec![1f32; panels * NR];
        let mut offset = vec![0i32; panels * NR];
        let mut scaled = Vec::new();
        for (c, row) in w.chunks_exact(k).enumerate() {
            let row = match smooth {
                Some(s) => {
                    scaled.clear();
                    scaled.extend(row.iter().zip(s).map(|(&v, &s)| v * s));
                    &scaled[..]
                }
                None => row,
            };
            let s = column_scale(row);
            scale[c] = s;
            let (p, j) = (c / NR, c % NR);
            let panel = &mut data[p * kp * NR..(p + 1) * kp * NR];
            let mut sum = 0i32;
            for (kk, &v) in row.iter().enumerate() {
                let q = I8::from_f32(v / s);
                panel[(kk / 4) * NR * 4 + j * 4 + kk % 4] = q;
                sum += q.0 as i32;
            }
            offset[c] = 128 * sum;
        }
        let unsmooth = smooth.map(|s| s.iter().map(|&v| 1.0 / v).collect());
        QWeight { data, scale, offset, unsmooth, n, k, kp }
    }

    /// The byte of column `c` at `kk` (tests).
    #[cfg(test)]
    fn at(&self, c: usize, kk: usize) -> i8 {
        let (p, j) = (c / NR, c % NR);
        self.data[p * self.kp * NR + (kk / 4) * NR * 4 + j * 4 + kk % 4].0
    }
}

/// How rows are quantized: as unsigned `q + 128` (`offset`, the VNNI
/// form) or signed `q`, and each value first multiplied by `unsmooth`.
#[derive(Clone, Copy)]
struct Quant<'a> {
    offset: bool,
    unsmooth: Option<&'a [f32]>,
}

/// 1.5 × 2²³: adding it rounds an f32 in ±2²² to an integer (to nearest even).
const ROUND: f32 = 12_582_912.0;

multiversion! {
    /// Quantizes each row of `x` (`k` long, times `unsmooth` when given;
    /// `dims` is `(k, kp)`) into `dst` (rows of `kp` bytes, the padding zero): the row over its
    /// scale (its largest magnitude over 127), rounded to nearest even;
    /// `q + 128` as unsigned bytes when `offset`, else `q` as signed bytes.
    /// Each row's scale goes to `scales`.
    fn quantize_rows(
        dst: &mut [u8],
        scales: &mut [f32],
        x: &[f32],
        dims: (usize, usize),
        how: Quant<'_>,
        tmp: &mut Vec<f32>,
    ) {
        let ((k, kp), Quant { offset, unsmooth }) = (dims, how);
        let zero = if offset { 128u8 } else { 0 };
        let add = if offset { 128 } else { 0 };
        for ((d, row), s) in dst.chunks_exact_mut(kp).zip(x.chunks_exact(k)).zip(scales.iter_mut()) {
            let row = match unsmooth {
                Some(u) => {
                    tmp.resize(k, 0.0);
                    for ((t, &v), &u) in tmp.iter_mut().zip(row).zip(u) {
                        *t = v * u;
                    }
                    &tmp[..]
                }
                None => row,
            };
            let mut lanes = [0f32; LANES];
            let mut chunks = row.chunks_exact(LANES);
            for c in &mut chunks {
                for l in 0..LANES {
                    // A select, not f32::max: one vmaxps, no NaN fix-ups.
                    let a = c[l].abs();
                    lanes[l] = if a > lanes[l] { a } else { lanes[l] };
                }
            }
            let mut max = lanes.iter().fold(0f32, |m, &v| m.max(v));
            for &v in chunks.remainder() {
                max = max.max(v.abs());
            }
            // A row of zeros (or of non-finite values, which the gate and the
            // finite checks downstream catch) quantizes to zeros.
            let (scale, inv) =
                if max > 0.0 && max.is_finite() { (max / 127.0, 127.0 / max) } else { (1.0, 0.0) };
            *s = scale;
            for (o, &v) in d.iter_mut().zip(row) {
                // |v · inv| ≤ 127 (up to rounding), so adding the magic
                // number rounds it to nearest even and leaves the integer in
                // the low bits; the clamp guards that last ulp.
                let t = v * inv + ROUND;
                let q = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32).clamp(-127, 127);
                *o = (q + add) as u8;
            }
            d[k..].fill(zero);
        }
    }
}

/// Quantized rows, their scales, and a row's smoothed values.
type Rows = std::cell::RefCell<(Vec<u8>, Vec<f32>, Vec<f32>)>;

thread_local! {
    /// The quantized rows of the product in flight, on the calling thread.
    static XQ: Rows = const { std::cell::RefCell::new((Vec::new(), Vec::new(), Vec::new())) };
    /// A bulk job's rows, on the thread running it.
    static JOB_XQ: Rows = const { std::cell::RefCell::new((Vec::new(), Vec::new(), Vec::new())) };
}

/// Rows per bulk job: four register blocks, whose rows of `x` (up to
/// 48 × 3 KiB) and one panel at a time stay in L2.
const JOB_ROWS: usize = 4 * QMR;

/// `y += x · wᵀ`: `x` is `m × k`, `y` is `m × n`, `w` packed by
/// [`QWeight::pack`]. Up to `JOB_ROWS` (48) rows make one row block, whose
/// columns are cut into jobs of `per` panels (all of them when `per` is 0),
/// which `run` spreads over threads (rayon's pool for bulk, the query team
/// for a few rows).
pub fn matmul_acc(y: &mut [f32], x: &[f32], w: &QWeight, per: usize, run: Runner<'_>) {
    let (n, k, kp) = (w.n, w.k, w.kp);
    let m = y.len() / n;
    assert!(x.len() >= m * k, "x holds m rows of k");
    if m == 0 {
        return;
    }
    let kernel = kernel();
    let unsmooth = w.unsmooth.as_deref();
    let quantize = |xq: &mut Vec<u8>, xs: &mut Vec<f32>, tmp: &mut Vec<f32>, x: &[f32]| {
        let rows = x.len() / k;
        xq.resize(rows * kp, 0);
        xs.resize(rows, 0.0);
        quantize_rows(xq, xs, x, (k, kp), Quant { offset: kernel.offset(), unsmooth }, tmp);
    };
    let row_blocks = m.div_ceil(JOB_ROWS);
    let panels = n.div_ceil(NR);
    let per = if per == 0 { panels } else { per.min(panels) };
    let chunks = panels.div_ceil(per);
    let y_ptr = SendPtr(y.as_mut_ptr());
    // One job per row block (bulk): each quantizes its own rows, in
    // parallel. Several jobs per row block (a query's few rows, its
    // panels shared out): the rows are quantized once, here.
    XQ.with_borrow_mut(|(xq, xs, tmp)| {
        if chunks > 1 {
            quantize(xq, xs, tmp, &x[..m * k]);
        }
        let shared = (chunks > 1).then_some((&xq[..], &xs[..]));
        run(row_blocks * chunks, &move |job| {
            let (rb, cc) = (job / chunks, job % chunks);
            let r0 = rb * JOB_ROWS;
            let rows = JOB_ROWS.min(m - r0);
            let block_of = |xq: &[u8], xs: &[f32]| {
                for p in cc * per..((cc + 1) * per).min(panels) {
                    let panel = &w.data[p * kp * NR..(p + 1) * kp * NR];
                    let c = p * NR;
                    let width = NR.min(n - c);
                    let mut r = 0;
                    while r < rows {
                        let block = QMR.min(rows - r);
                        let mut acc: QAcc = [[0; NR]; QMR];
                        tile(kernel, &mut acc, block, &xq[r * kp..(r + block) * kp], kp, panel);
                        for (i, a) in acc.iter().take(block).enumerate() {
                            let row = r0 + r + i;
                            // SAFETY: row < m and columns c..c + width < n lie
                            // inside y, written by this job alone (jobs own
                            // distinct row blocks or distinct panels); y's
                            // `&mut` borrow outlives `run`.
                            let out = unsafe {
                                std::slice::from_raw_parts_mut(y_ptr.get().add(row * n + c), width)
                            };
                            let (offset, scale) = (&w.offset[c..], &w.scale[c..]);
                            finish_row(out, a, offset, scale, xs[r + i], kernel.offset());
                        }
                        r += block;
                    }
                }
            };
            match shared {
                Some((xq, xs)) => block_of(&xq[r0 * kp..], &xs[r0..]),
                None => JOB_XQ.with_borrow_mut(|(xq, xs, tmp)| {
                    quantize(xq, xs, tmp, &x[r0 * k..(r0 + rows) * k]);
                    block_of(xq, xs)
                }),
            }
        });
    });
}

multiversion! {
    /// `out[j] += (acc[j] - offset[j]) · (scale[j] · sx)`; the offset only
    /// for the VNNI form's unsigned rows (`offset_on`).
    fn finish_row(out: &mut [f32], acc: &[i32], offset: &[i32], scale: &[f32], sx: f32, offset_on: bool) {
        let off = if offset_on { 1 } else { 0 };
        for (((o, &a), &b), &s) in out.iter_mut().zip(acc).zip(offset).zip(scale) {
            *o += (a - off * b) as f32 * (s * sx);
        }
    }
}

/// `acc[i][j] += Σ_k x[i][k] · panel[k][j]` over `rows` (≤ [`QMR`]) rows of
/// quantized `x` (rows of `kp` bytes) and one panel, in `kernel`'s form.
pub fn tile(kernel: Kernel, acc: &mut QAcc, rows: usize, x: &[u8], kp: usize, panel: &[I8]) {
    assert!(rows <= QMR && x.len() >= rows * kp && panel.len() >= kp * NR && kp.is_multiple_of(4));
    match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `kernel()` chose Vnni512 only after detecting AVX-512F,
        // BW and VNNI (tests call it only after the same checks); the
        // lengths were checked above.
        Kernel::Vnni512 => unsafe { x86::tile_vnni512(acc, rows, x, kp, panel) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `kernel()` chose AvxVnni only at a level with AVX2 and
        // after detecting AVX-VNNI (tests likewise); the lengths were
        // checked above.
        Kernel::AvxVnni => unsafe { x86::tile_avxvnni(acc, rows, x, kp, panel) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `kernel()` chose Avx2 only at a level with AVX2; the
        // lengths were checked above.
        Kernel::Avx2 => unsafe { x86::tile_avx2(acc, rows, x, kp, panel) },
        _ => tile_generic(acc, rows, x, kp, panel, false),
    }
}

/// [`tile`] in portable integer loops; `offset` says the rows are `q + 128`.
pub fn tile_generic(acc: &mut QAcc, rows: usize, x: &[u8], kp: usize, panel: &[I8], offset: bool) {
    for (i, a) in acc.iter_mut().take(rows).enumerate() {
        let xi = &x[i * kp..(i + 1) * kp];
        for (g, w) in panel.chunks_exact(NR * 4).take(kp / 4).enumerate() {
            let xg = &xi[g * 4..g * 4 + 4];
            for j in 0..NR {
                let mut s = 0i32;
                for t in 0..4 {
                    let q = if offset { xg[t] as i32 } else { xg[t] as i8 as i32 };
                    s += q * w[j * 4 + t].0 as i32;
                }
                a[j] += s;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[path = "qdyn_x86.rs"]
mod x86;

#[cfg(test)]
#[path = "qdyn_tests.rs"]
mod tests;

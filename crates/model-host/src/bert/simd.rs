//! Element-wise kernels of the forward pass, written as plain loops over
//! fixed-width lanes that LLVM vectorizes, and compiled three times: for
//! AVX-512, for AVX2+FMA, and for the baseline target. [`level`] picks one
//! at run time, once.
//!
//! Every kernel is branch-free per element, so the vectorized and scalar
//! forms compute the same values.

use std::sync::OnceLock;

/// Lanes per accumulator: one AVX-512 register of f32.
pub const LANES: usize = 16;

/// Which compiled form of the kernels this CPU runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// x86-64-v4: AVX-512F/VL with FMA.
    V4,
    /// x86-64-v3: AVX2 with FMA (and F16C).
    V3,
    /// The target's baseline.
    Scalar,
}

impl Level {
    /// The `VEMBED_SIMD` spelling of this level.
    pub fn name(self) -> &'static str {
        match self {
            Level::V4 => "avx512",
            Level::V3 => "avx2",
            Level::Scalar => "scalar",
        }
    }
}

/// The widest form this CPU supports (detected once). `VEMBED_SIMD=avx2` or
/// `VEMBED_SIMD=scalar` caps it, to compare or test the narrower forms.
pub fn level() -> Level {
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let cap = std::env::var("VEMBED_SIMD").unwrap_or_default();
        if cap == "scalar" {
            return Level::Scalar;
        }
        #[cfg(target_arch = "x86_64")]
        {
            if cap != "avx2"
                && std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("avx512vl")
                && std::is_x86_feature_detected!("fma")
            {
                return Level::V4;
            }
            // x86-64-v3 includes F16C, which the f16 panel kernels use.
            if std::is_x86_feature_detected!("avx2")
                && std::is_x86_feature_detected!("fma")
                && std::is_x86_feature_detected!("f16c")
            {
                return Level::V3;
            }
        }
        Level::Scalar
    })
}

/// Defines a function whose body is compiled once per [`Level`] and
/// dispatched at run time.
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            // FMA: whether `madd` may use a fused multiply-add instruction
            // (without one, `f32::mul_add` is a slow library call).
            #[inline(always)]
            fn body<const FMA: bool>($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                fn v4($($arg: $ty),*) $(-> $ret)? { body::<true>($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                fn v3($($arg: $ty),*) $(-> $ret)? { body::<true>($($arg),*) }
                match $crate::bert::simd::level() {
                    // SAFETY: `level` returned V4 only after detecting these features.
                    $crate::bert::simd::Level::V4 => unsafe { v4($($arg),*) },
                    // SAFETY: `level` returned V3 only after detecting these features.
                    $crate::bert::simd::Level::V3 => unsafe { v3($($arg),*) },
                    $crate::bert::simd::Level::Scalar => {
                        body::<{ cfg!(target_feature = "fma") }>($($arg),*)
                    }
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            {
                body::<{ cfg!(target_feature = "fma") || cfg!(target_arch = "aarch64") }>($($arg),*)
            }
        }
    };
    // The same for a function generic over one type parameter.
    ($(#[$meta:meta])* $vis:vis fn $name:ident<$t:ident: $bound:path>($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name<$t: $bound>($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body<const FMA: bool, $t: $bound>($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                fn v4<$t: $bound>($($arg: $ty),*) $(-> $ret)? { body::<true, $t>($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                fn v3<$t: $bound>($($arg: $ty),*) $(-> $ret)? { body::<true, $t>($($arg),*) }
                match $crate::bert::simd::level() {
                    // SAFETY: `level` returned V4 only after detecting these features.
                    $crate::bert::simd::Level::V4 => unsafe { v4::<$t>($($arg),*) },
                    // SAFETY: `level` returned V3 only after detecting these features.
                    $crate::bert::simd::Level::V3 => unsafe { v3::<$t>($($arg),*) },
                    $crate::bert::simd::Level::Scalar => {
                        body::<{ cfg!(target_feature = "fma") }, $t>($($arg),*)
                    }
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            {
                body::<{ cfg!(target_feature = "fma") || cfg!(target_arch = "aarch64") }, $t>($($arg),*)
            }
        }
    };
}

/// `a · b + c`, fused into one instruction when `FMA` (the CPU has one).
#[inline(always)]
pub fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// 1.5 × 2²³: adding it rounds an f32 in ±2²² to an integer (to nearest even).
const ROUND: f32 = 12_582_912.0;

/// `e^x` for f32, branch-free (Cephes `expf`: range reduction by ln 2 and a
/// degree-5 polynomial; relative error about 1 ulp). Inputs below -87.3 give
/// a tiny value rather than 0, inputs above 88.3 are clamped.
#[inline(always)]
pub fn exp<const FMA: bool>(x: f32) -> f32 {
    let x = x.clamp(-87.3, 88.3);
    let t = madd::<FMA>(x, LOG2E, ROUND);
    let n = t - ROUND;
    let r = madd::<FMA>(n, -LN2_HI, x);
    let r = madd::<FMA>(n, -LN2_LO, r);
    let mut p = 1.987_569_1e-4f32;
    p = madd::<FMA>(p, r, 1.398_199_9e-3);
    p = madd::<FMA>(p, r, 8.333_452e-3);
    p = madd::<FMA>(p, r, 4.166_579_6e-2);
    p = madd::<FMA>(p, r, 1.666_666_5e-1);
    p = madd::<FMA>(p, r, 0.5);
    let e = madd::<FMA>(r * r, p, r) + 1.0;
    // The low bits of `t` hold n (two's complement, as t = ROUND + n).
    let n_bits = t.to_bits().wrapping_sub(ROUND.to_bits());
    f32::from_bits(e.to_bits().wrapping_add(n_bits << 23))
}

/// `erf(x)` (Abramowitz & Stegun 7.1.26 refined: absolute error below
/// 1.5e-7, which is f32 rounding for the values GELU sees).
#[inline(always)]
pub fn erf<const FMA: bool>(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / madd::<FMA>(0.327_591_1f32, a, 1.0);
    let mut p = 1.061_405_4f32;
    p = madd::<FMA>(p, t, -1.453_152_1);
    p = madd::<FMA>(p, t, 1.421_413_8);
    p = madd::<FMA>(p, t, -0.284_496_74);
    p = madd::<FMA>(p, t, 0.254_829_6);
    let y = 1.0 - p * t * exp::<FMA>(-a * a);
    y.copysign(x)
}

multiversion! {
    /// GELU as BERT's `"gelu"` defines it: `x/2 · (1 + erf(x/√2))`, in place.
    pub fn gelu_erf(xs: &mut [f32]) {
        for x in xs.iter_mut() {
            let v = *x;
            *x = 0.5 * v * (1.0 + erf::<FMA>(v * std::f32::consts::FRAC_1_SQRT_2));
        }
    }
}

multiversion! {
    /// GELU's tanh form (`"gelu_new"`, `"gelu_pytorch_tanh"`), in place.
    pub fn gelu_tanh(xs: &mut [f32]) {
        const C: f32 = 0.797_884_6; // sqrt(2/pi)
        for x in xs.iter_mut() {
            let v = *x;
            let u = C * madd::<FMA>(0.044_715f32, v * v * v, v);
            // tanh(u) = 1 - 2 / (e^{2u} + 1)
            let th = 1.0 - 2.0 / (exp::<FMA>(2.0 * u) + 1.0);
            *x = 0.5 * v * (1.0 + th);
        }
    }
}

multiversion! {
    /// ReLU, in place.
    pub fn relu(xs: &mut [f32]) {
        for x in xs.iter_mut() {
            *x = x.max(0.0);
        }
    }
}

multiversion! {
    /// Softmax of each row of `rows` (row length `n`), in place.
    pub fn softmax_rows(rows: &mut [f32], n: usize) {
        for row in rows.chunks_exact_mut(n) {
            let mut m = [f32::NEG_INFINITY; LANES];
            let mut chunks = row.chunks_exact(LANES);
            for c in &mut chunks {
                for i in 0..LANES {
                    m[i] = m[i].max(c[i]);
                }
            }
            let mut max = m.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            for &v in chunks.remainder() {
                max = max.max(v);
            }
            let mut s = [0f32; LANES];
            let mut chunks = row.chunks_exact_mut(LANES);
            for c in &mut chunks {
                for i in 0..LANES {
                    let e = exp::<FMA>(c[i] - max);
                    c[i] = e;
                    s[i] += e;
                }
            }
            let mut sum: f32 = s.iter().sum();
            for v in chunks.into_remainder() {
                *v = exp::<FMA>(*v - max);
                sum += *v;
            }
            let inv = 1.0 / sum;
            for v in row.iter_mut() {
                *v *= inv;
            }
        }
    }
}

multiversion! {
    /// LayerNorm of each row of `rows` (row length `gamma.len()`), in place:
    /// `(x - mean) / sqrt(var + eps) * gamma + beta`, with the variance
    /// computed in two passes as PyTorch does.
    pub fn layer_norm_rows(rows: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
        let n = gamma.len();
        for row in rows.chunks_exact_mut(n) {
            let mean = sum(row) / n as f32;
            let mut s = [0f32; LANES];
            let mut chunks = row.chunks_exact(LANES);
            for c in &mut chunks {
                for i in 0..LANES {
                    let d = c[i] - mean;
                    s[i] = madd::<FMA>(d, d, s[i]);
                }
            }
            let mut var: f32 = s.iter().sum();
            for &v in chunks.remainder() {
                var += (v - mean) * (v - mean);
            }
            let inv = 1.0 / (var / n as f32 + eps).sqrt();
            for ((x, &g), &b) in row.iter_mut().zip(gamma).zip(beta) {
                *x = madd::<FMA>((*x - mean) * inv, g, b);
            }
        }
    }
}

/// Sum of a slice, in lanes.
#[inline(always)]
fn sum(xs: &[f32]) -> f32 {
    let mut s = [0f32; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for c in &mut chunks {
        for i in 0..LANES {
            s[i] += c[i];
        }
    }
    s.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

multiversion! {
    /// `out[r] = bias` for every row `r` of `out` (row length `bias.len()`).
    pub fn fill_rows(out: &mut [f32], bias: &[f32]) {
        for row in out.chunks_exact_mut(bias.len()) {
            row.copy_from_slice(bias);
        }
    }
}

multiversion! {
    /// `out[r] = x[r] + bias` for every row `r` (row length `bias.len()`).
    pub fn add_rows(out: &mut [f32], x: &[f32], bias: &[f32]) {
        let n = bias.len();
        for (o, xr) in out.chunks_exact_mut(n).zip(x.chunks_exact(n)) {
            for ((o, &a), &b) in o.iter_mut().zip(xr).zip(bias) {
                *o = a + b;
            }
        }
    }
}

/// Output columns per packed weight panel: two AVX-512 registers.
pub const NR: usize = 32;

/// Most rows one tile sweeps a panel for: 12 at AVX-512 (24 accumulators
/// of its 32 registers), so a query of up to 12 tokens streams each weight
/// once.
pub const MR: usize = 12;

/// A tile's accumulators: up to [`MR`] rows of [`NR`] columns.
pub type Acc = [[f32; NR]; MR];

/// `y[r][c] += Σ_k x[r][k] · w[c][k]` for `cols` columns of packed panels
/// (see [`super::packed::pack_panels`]): a matrix product for the few-row
/// batches of a single query, where packing the weights on every call, as a
/// general gemm does, costs more than the product. `x` is `m × k`, `y` is
/// `m` rows `ld` apart whose first `cols` columns are the panels' columns.
/// Panels hold any [`Panel`] format; `scale`, when given, multiplies each
/// column's sum (int8 panels hold the weight over its column's scale).
pub fn panel_matmul_acc<T: Panel>(
    y: &mut [f32],
    ld: usize,
    cols: usize,
    x: &[f32],
    k: usize,
    panels: &[T],
    scale: Option<&[f32]>,
) {
    let m = x.len() / k;
    assert!(panels.len() >= cols.div_ceil(NR) * k * NR, "panels cover the columns");
    assert!(scale.is_none_or(|s| s.len() >= cols), "the scale covers the columns");
    assert!(m == 0 || y.len() >= (m - 1) * ld + cols, "y holds m rows of ld");
    // Rows per sweep of a panel: with AVX-512's 32 registers all of a
    // query of up to 12 tokens (else 8 at a time); 6 with AVX2's 16 (a query
    // of 10 tokens is then 6 + 4 rows, two sweeps).
    let block = match level() {
        Level::V3 => 6,
        _ if m <= MR => m.max(1),
        _ => 8,
    };
    for (p, panel) in panels.chunks_exact(k * NR).take(cols.div_ceil(NR)).enumerate() {
        let c = p * NR;
        let width = NR.min(cols - c);
        let mut r = 0;
        while r < m {
            let rows = (m - r).min(block);
            let mut acc = [[0f32; NR]; MR];
            T::tile(&mut acc, rows, &x[r * k..(r + rows) * k], k, k, panel);
            let s = scale.map(|s| &s[p * NR..]);
            for (i, a) in acc.iter().take(rows).enumerate() {
                add_row(&mut y[(r + i) * ld + c..(r + i) * ld + c + width], a, s);
            }
            r += rows;
        }
    }
}

/// `out[j] += acc[j]`, times `scale[j]` when given (int8 panels).
#[inline]
pub fn add_row(out: &mut [f32], acc: &[f32], scale: Option<&[f32]>) {
    match scale {
        None => out.iter_mut().zip(acc).for_each(|(o, &v)| *o += v),
        Some(s) => out.iter_mut().zip(acc).zip(s).for_each(|((o, &v), &s)| *o += v * s),
    }
}

/// How a panel element is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// IEEE f32.
    F32,
    /// IEEE f16 bits, widened with AVX-512F or F16C.
    F16,
    /// bfloat16 bits (an f32's high half), widened by a shift.
    BF16,
    /// A signed byte: the weight over its column's scale, rounded.
    I8,
}

/// An element of packed panels: `f32`, or [`super::half::F16`] or
/// [`super::half::BF16`], which the kernels widen to f32 exactly as they
/// load it (F16C is part of x86-64-v3; bf16 is a 16-bit shift). Either way
/// the products run in f32 in one order, so half panels give exactly the
/// f32 result over the rounded weights.
///
/// # Safety
/// Implementors are plain data: no padding, every bit pattern a value
/// (all zero bits being 0.0), and a size dividing 64.
pub unsafe trait Panel: Copy + Send + Sync + 'static {
    /// The storage format (`Self` is `f32` exactly when it is `F32`).
    const FORMAT: Format;

    /// `v` in this format (rounded to nearest, ties to even).
    fn from_f32(v: f32) -> Self;

    /// The exact f32 value.
    fn to_f32(self) -> f32;

    /// `acc[i][j] += Σ_k x[i][k] · panel[k][j]` for `rows` (≤ [`MR`]) rows of
    /// `x` (row `i` is `x[i·ld..i·ld + k]`) and a `k × NR` panel, in the
    /// widest form [`level`] allows. The sum runs in order of `k` onto
    /// `acc`'s values, so a product split into runs of `k` (the bulk
    /// kernel's blocking) gives exactly the unsplit result.
    fn tile(acc: &mut Acc, rows: usize, x: &[f32], ld: usize, k: usize, panel: &[Self]) {
        match level() {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `level` returned V4 only after detecting AVX-512F; x
            // holds `rows` rows of k floats ld apart, panel k × NR elements.
            Level::V4 => unsafe { x86::tile_v4(acc, rows, x, ld, k, panel) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `level` returned V3 only after detecting AVX2, FMA and
            // F16C; the lengths are as for V4.
            Level::V3 => unsafe { x86::tile_v3(acc, rows, x, ld, k, panel) },
            _ => tile_generic(acc, rows, x, ld, k, panel),
        }
    }
}

// SAFETY: f32 is 4 bytes of plain data; zero bits are 0.0.
unsafe impl Panel for f32 {
    const FORMAT: Format = Format::F32;

    fn from_f32(v: f32) -> f32 {
        v
    }

    fn to_f32(self) -> f32 {
        self
    }
}

multiversion! {
    /// [`Panel::tile`] without SIMD intrinsics (the scalar level's form,
    /// and what the SIMD forms are tested against).
    pub fn tile_generic<T: Panel>(
        acc: &mut Acc,
        rows: usize,
        x: &[f32],
        ld: usize,
        k: usize,
        panel: &[T],
    ) {
        for (i, a) in acc.iter_mut().take(rows).enumerate() {
            let xi = &x[i * ld..i * ld + k];
            for (w, &xv) in panel.chunks_exact(NR).zip(xi) {
                for j in 0..NR {
                    a[j] = madd::<FMA>(xv, w[j].to_f32(), a[j]);
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[path = "simd_x86.rs"]
pub(super) mod x86;

#[cfg(test)]
#[path = "simd_tests.rs"]
pub(super) mod tests;

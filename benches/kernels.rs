//! The matrix kernels of the encoder's linear layers over packed weight
//! panels in f32, f16, bf16 and int8 (weights only), int8 weights and
//! activations (`int8-dynamic`, integer products), and on AMX tiles: the measurement
//! behind the `weights` setting.
//!
//! `query_*`: the small-batch kernel a single query runs (`m` rows, one per
//! token). One iteration is the four products of every layer of
//! all-MiniLM-L6-v2's shapes (6 layers × QKV 1152×384, output 384×384, FFN
//! 1536×384 and 384×1536), each layer with weights of its own, so the
//! weights stream from memory as in a real query: 42.5 MB in f32, half that
//! in f16 or bf16. One thread.
//!
//! `bulk_*`: a batch of 2,048 tokens through the same products on every
//! core: gemm over the f32 weights as stored (the f32 bulk path), and the
//! blocked panel kernel over each panel format (the reduced-precision bulk
//! path, which reads the same one packed copy as queries).
//!
//! The `bulk_*` runs count two operations per multiply-add, so divan's
//! throughput column reads in FLOP/s (integer operations for
//! `bulk_int8_dynamic`, whose products are in bytes); `fma_roof_avx2` is what one
//! core can do at 256 bits with nothing but FMAs in flight, the ceiling any
//! AVX2 product here can reach (on both cores, twice its figure).
//!
//! `VEMBED_SIMD=avx2` or `scalar` caps every kernel's level, gemm's too.
//!
//! ```sh
//! cargo bench -p vembed-benches --bench kernels
//! VEMBED_SIMD=avx2 cargo bench -p vembed-benches --bench kernels
//! taskset -c 0 cargo bench -p vembed-benches --bench kernels -- bulk   # one core
//! ```

use std::sync::OnceLock;

use divan::counter::ItemsCount;

use vembed_host::kernels::{
    BF16, F16, I8, Packed, Panel, QWeight, gemm_acc, inline, int8_dynamic_kernel,
    int8_dynamic_matmul_acc, level, on_rayon, pack_panels, pack_panels_i8, panel_matmul_acc,
    panel_matmul_bulk,
};

const LAYERS: usize = 6;
const H: usize = 384;
const I: usize = 1536;
/// (output columns, inner dimension) of each product in a layer.
const SHAPES: [(usize, usize); 4] = [(3 * H, H), (H, H), (I, H), (H, I)];

fn main() {
    eprintln!("kernel level {:?}, int8-dynamic kernel {:?}", level(), int8_dynamic_kernel());
    divan::main();
}

fn weights(n: usize, k: usize, seed: usize) -> Vec<f32> {
    (0..n * k).map(|i| (((i * 7919 + seed * 104_729) % 2001) as f32 - 1000.0) * 1e-4).collect()
}

/// Every layer's products packed as `T`, with int8's column scales.
type Set<T> = Vec<(Packed<T>, Option<Vec<f32>>)>;

fn packed<T: Panel>() -> Set<T> {
    let mut out = Vec::new();
    for l in 0..LAYERS {
        for (s, &(n, k)) in SHAPES.iter().enumerate() {
            out.push((pack_panels(&weights(n, k, l * 4 + s), k), None));
        }
    }
    out
}

fn i8_panels() -> &'static Set<I8> {
    static P: OnceLock<Set<I8>> = OnceLock::new();
    P.get_or_init(|| {
        let mut out = Vec::new();
        for l in 0..LAYERS {
            for (s, &(n, k)) in SHAPES.iter().enumerate() {
                let (p, scale) = pack_panels_i8(&weights(n, k, l * 4 + s), k);
                out.push((p, Some(scale)));
            }
        }
        out
    })
}

fn f32_panels() -> &'static Set<f32> {
    static P: OnceLock<Set<f32>> = OnceLock::new();
    P.get_or_init(packed)
}

fn f16_panels() -> &'static Set<F16> {
    static P: OnceLock<Set<F16>> = OnceLock::new();
    P.get_or_init(packed)
}

fn bf16_panels() -> &'static Set<BF16> {
    static P: OnceLock<Set<BF16>> = OnceLock::new();
    P.get_or_init(packed)
}

fn encoder<T: Panel>(panels: &Set<T>, m: usize) -> f32 {
    let x: Vec<f32> = (0..m * I).map(|i| ((i % 17) as f32 - 8.0) * 0.01).collect();
    let mut sum = 0.0;
    for (i, (p, scale)) in panels.iter().enumerate() {
        let (n, k) = SHAPES[i % SHAPES.len()];
        let mut y = vec![0f32; m * n];
        panel_matmul_acc(&mut y, n, n, &x[..m * k], k, p, scale.as_deref());
        sum += y[0];
    }
    sum
}

/// A query of 8 tokens through every layer's products, f32 weights.
#[divan::bench(args = [1, 8, 10])]
fn query_f32(bencher: divan::Bencher, m: usize) {
    let p = f32_panels();
    bencher.bench(|| encoder(divan::black_box(p), m));
}

/// The same with f16 weights, widened to f32 as they are loaded.
#[divan::bench(args = [1, 8, 10])]
fn query_f16(bencher: divan::Bencher, m: usize) {
    let p = f16_panels();
    bencher.bench(|| encoder(divan::black_box(p), m));
}

/// The same with bf16 weights, widened by a shift as they are loaded.
#[divan::bench(args = [1, 8, 10])]
fn query_bf16(bencher: divan::Bencher, m: usize) {
    let p = bf16_panels();
    bencher.bench(|| encoder(divan::black_box(p), m));
}

/// The same with int8 weights and a scale per column.
#[divan::bench(args = [1, 8, 10])]
fn query_int8(bencher: divan::Bencher, m: usize) {
    let p = i8_panels();
    bencher.bench(|| encoder(divan::black_box(p), m));
}

fn q_weights() -> &'static Vec<QWeight> {
    static W: OnceLock<Vec<QWeight>> = OnceLock::new();
    W.get_or_init(|| {
        flat_weights()
            .iter()
            .enumerate()
            .map(|(i, w)| QWeight::pack(w, SHAPES[i % SHAPES.len()].1))
            .collect()
    })
}

fn q_encoder(ws: &[QWeight], x: &[f32], m: usize, par: bool) -> f32 {
    let mut sum = 0.0;
    for (i, w) in ws.iter().enumerate() {
        let (n, k) = SHAPES[i % SHAPES.len()];
        let mut y = vec![0f32; m * n];
        let run = if par { on_rayon } else { inline };
        int8_dynamic_matmul_acc(&mut y, &x[..m * k], w, 0, &mut { run });
        sum += y[0];
    }
    sum
}

/// The same with int8 weights and activations quantized per row at every
/// product: integer multiply-adds (`int8-dynamic`).
#[divan::bench(args = [1, 8, 10])]
fn query_int8_dynamic(bencher: divan::Bencher, m: usize) {
    let ws = q_weights();
    let x: Vec<f32> = (0..m * I).map(|i| ((i % 17) as f32 - 8.0) * 0.01).collect();
    bencher.bench(|| q_encoder(divan::black_box(ws), &x, m, false));
}

/// Tokens in a bulk batch: four texts of 512, or eight of 256.
const BULK_M: usize = 2048;

fn flat_weights() -> &'static Vec<Vec<f32>> {
    static W: OnceLock<Vec<Vec<f32>>> = OnceLock::new();
    W.get_or_init(|| {
        (0..LAYERS)
            .flat_map(|l| {
                SHAPES.iter().enumerate().map(move |(s, &(n, k))| weights(n, k, l * 4 + s))
            })
            .collect()
    })
}

fn bulk_x() -> &'static Vec<f32> {
    static X: OnceLock<Vec<f32>> = OnceLock::new();
    X.get_or_init(|| (0..BULK_M * I).map(|i| ((i % 17) as f32 - 8.0) * 0.01).collect())
}

fn pool() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        rayon::ThreadPoolBuilder::new().num_threads(n).build_global().ok();
    });
}

/// A bulk batch of 2048 tokens through every layer's products with gemm
/// over the weights as stored (the bulk path before one packed copy), on
/// every core.
#[divan::bench(sample_count = 20)]
fn bulk_gemm(bencher: divan::Bencher) {
    pool();
    let (ws, x) = (flat_weights(), bulk_x());
    bencher.counter(bulk_flops()).bench(|| {
        let mut sum = 0.0;
        for (i, w) in ws.iter().enumerate() {
            let (n, k) = SHAPES[i % SHAPES.len()];
            let mut y = vec![0f32; BULK_M * n];
            gemm_acc(&mut y, n, &x[..BULK_M * k], k, w, true);
            sum += y[0];
        }
        sum
    });
}

/// Floating-point operations in one bulk batch's products.
fn bulk_flops() -> ItemsCount {
    let per_token: usize = SHAPES.iter().map(|&(n, k)| 2 * n * k).sum();
    ItemsCount::new(LAYERS * BULK_M * per_token)
}

fn bulk<T: Panel>(panels: &Set<T>) -> f32 {
    let x = bulk_x();
    let mut sum = 0.0;
    for (i, (p, scale)) in panels.iter().enumerate() {
        let (n, k) = SHAPES[i % SHAPES.len()];
        let mut y = vec![0f32; BULK_M * n];
        panel_matmul_bulk(&mut y, n, &x[..BULK_M * k], k, p, scale.as_deref(), true);
        sum += y[0];
    }
    sum
}

/// The same batch over the f32 panels the query path reads.
#[divan::bench(sample_count = 20)]
fn bulk_f32_panels(bencher: divan::Bencher) {
    pool();
    let p = f32_panels();
    bencher.counter(bulk_flops()).bench(|| bulk(divan::black_box(p)));
}

/// The same batch over f16 panels.
#[divan::bench(sample_count = 20)]
fn bulk_f16_panels(bencher: divan::Bencher) {
    pool();
    let p = f16_panels();
    bencher.counter(bulk_flops()).bench(|| bulk(divan::black_box(p)));
}

/// The same batch over bf16 panels.
#[divan::bench(sample_count = 20)]
fn bulk_bf16_panels(bencher: divan::Bencher) {
    pool();
    let p = bf16_panels();
    bencher.counter(bulk_flops()).bench(|| bulk(divan::black_box(p)));
}

/// The same batch over int8 panels.
#[divan::bench(sample_count = 20)]
fn bulk_int8_panels(bencher: divan::Bencher) {
    pool();
    let p = i8_panels();
    bencher.counter(bulk_flops()).bench(|| bulk(divan::black_box(p)));
}

/// The same batch with int8 weights and activations (`int8-dynamic`).
#[divan::bench(sample_count = 20)]
fn bulk_int8_dynamic(bencher: divan::Bencher) {
    pool();
    let ws = q_weights();
    bencher.counter(bulk_flops()).bench(|| q_encoder(divan::black_box(ws), bulk_x(), BULK_M, true));
}

/// The same batch on AMX tiles: weights and activations in bf16 (an
/// x86-64 CPU with AMX-BF16 only; elsewhere this measures nothing).
#[cfg(target_arch = "x86_64")]
#[divan::bench(sample_count = 20)]
fn bulk_amx_bf16(bencher: divan::Bencher) {
    use vembed_host::kernels::{AmxWeight, amx_available, amx_matmul_acc};
    pool();
    if !amx_available() {
        eprintln!("no AMX on this CPU");
        return;
    }
    static W: OnceLock<Vec<AmxWeight>> = OnceLock::new();
    let ws = W.get_or_init(|| {
        flat_weights()
            .iter()
            .enumerate()
            .map(|(i, w)| AmxWeight::pack(w, SHAPES[i % SHAPES.len()].1))
            .collect()
    });
    let x = bulk_x();
    bencher.counter(bulk_flops()).bench(|| {
        let mut sum = 0.0;
        for (i, w) in ws.iter().enumerate() {
            let (n, k) = SHAPES[i % SHAPES.len()];
            let mut y = vec![0f32; BULK_M * n];
            amx_matmul_acc(&mut y, &x[..BULK_M * k], w, 0, &mut on_rayon);
            sum += y[0];
        }
        sum
    });
}

/// Twelve independent chains of 256-bit FMAs (what a 6 × 16 register block
/// keeps in flight) and no memory: one core's f32 roof at AVX2, in FLOP/s.
#[cfg(target_arch = "x86_64")]
#[divan::bench]
fn fma_roof_avx2(bencher: divan::Bencher) {
    if !(std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma"))
    {
        eprintln!("no AVX2 FMA on this CPU");
        return;
    }
    const ROUNDS: usize = 1 << 18;
    bencher
        .counter(ItemsCount::new(ROUNDS * 12 * 8 * 2))
        // SAFETY: AVX2 and FMA were detected above.
        .bench(|| unsafe { fma_chains(divan::black_box(ROUNDS)) });
}

/// `ROUNDS` rounds of one FMA on each of twelve registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn fma_chains(rounds: usize) -> f32 {
    use std::arch::x86_64::*;
    let (b, c) = (_mm256_set1_ps(1.000_000_1), _mm256_set1_ps(1e-7));
    let mut a = [_mm256_setzero_ps(); 12];
    for _ in 0..rounds {
        for r in &mut a {
            *r = _mm256_fmadd_ps(*r, b, c);
        }
    }
    let mut sum = _mm256_setzero_ps();
    for r in a {
        sum = _mm256_add_ps(sum, r);
    }
    _mm_cvtss_f32(_mm256_castps256_ps128(sum))
}

//! The small-batch kernel a single query runs (`m` rows, one per token),
//! over the encoder's weights packed as f32 panels and as f16 panels: the
//! measurement behind reduced-precision weights for the query path.
//!
//! One iteration is the four products of every layer of all-MiniLM-L6-v2's
//! shapes (6 layers × QKV 1152×384, output 384×384, FFN 1536×384 and
//! 384×1536), each layer with weights of its own, so the weights stream
//! from memory as in a real query: 42.5 MB in f32, half that in f16. One
//! thread; `VEMBED_SIMD=avx2` or `scalar` caps the kernel level.
//!
//! ```sh
//! cargo bench -p vembed-benches --bench kernels
//! VEMBED_SIMD=avx2 cargo bench -p vembed-benches --bench kernels
//! ```

use std::sync::OnceLock;

use vembed_host::kernels::{F16, Panel, level, pack_panels, pack_panels_f16, panel_matmul_acc};

const LAYERS: usize = 6;
const H: usize = 384;
const I: usize = 1536;
/// (output columns, inner dimension) of each product in a layer.
const SHAPES: [(usize, usize); 4] = [(3 * H, H), (H, H), (I, H), (H, I)];

fn main() {
    eprintln!("kernel level {:?}", level());
    divan::main();
}

fn weights(n: usize, k: usize, seed: usize) -> Vec<f32> {
    (0..n * k).map(|i| (((i * 7919 + seed * 104_729) % 2001) as f32 - 1000.0) * 1e-4).collect()
}

fn packed<T>(pack: fn(&[f32], usize) -> Vec<T>) -> Vec<Vec<T>> {
    let mut out = Vec::new();
    for l in 0..LAYERS {
        for (s, &(n, k)) in SHAPES.iter().enumerate() {
            out.push(pack(&weights(n, k, l * 4 + s), k));
        }
    }
    out
}

fn f32_panels() -> &'static Vec<Vec<f32>> {
    static P: OnceLock<Vec<Vec<f32>>> = OnceLock::new();
    P.get_or_init(|| packed(pack_panels))
}

fn f16_panels() -> &'static Vec<Vec<F16>> {
    static P: OnceLock<Vec<Vec<F16>>> = OnceLock::new();
    P.get_or_init(|| packed(pack_panels_f16))
}

fn encoder<T: Panel>(panels: &[Vec<T>], m: usize) -> f32 {
    let x: Vec<f32> = (0..m * I).map(|i| ((i % 17) as f32 - 8.0) * 0.01).collect();
    let mut sum = 0.0;
    for (i, p) in panels.iter().enumerate() {
        let (n, k) = SHAPES[i % SHAPES.len()];
        let mut y = vec![0f32; m * n];
        panel_matmul_acc(&mut y, n, 0, n, &x[..m * k], k, p);
        sum += y[0];
    }
    sum
}

/// A query of 8 tokens through every layer's products, f32 weights.
#[divan::bench(args = [1, 8])]
fn query_f32(bencher: divan::Bencher, m: usize) {
    let p = f32_panels();
    bencher.bench(|| encoder(divan::black_box(p), m));
}

/// The same with f16 weights, widened to f32 as they are loaded.
#[divan::bench(args = [1, 8])]
fn query_f16(bencher: divan::Bencher, m: usize) {
    let p = f16_panels();
    bencher.bench(|| encoder(divan::black_box(p), m));
}

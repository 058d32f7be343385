//! The sign-bit code scan on its own: Hamming distances of one query code
//! to a million codes (what a code search reads from the memory map), per
//! kernel this CPU has, at 384 and 768 dimensions; median of 30 scans,
//! one thread.
//!
//! ```sh
//! cargo bench -p vembed-benches --bench code_scan
//! ```

use std::time::Instant;

use rand::{RngExt, SeedableRng};
use vembed_index::codes::{self, Kernel};

const RUNS: usize = 30;

fn main() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    println!("one thread, median of {RUNS} scans");
    println!("{:<9} {:<6} {:<10} {:>9} {:>9}", "codes", "dims", "kernel", "ms", "GB/s");
    for (codes_n, dim) in
        [(100_000usize, 384usize), (100_000, 768), (1_000_000, 384), (1_000_000, 768)]
    {
        let width = codes::width(dim);
        let data: Vec<u8> = (0..codes_n * width).map(|_| rng.random()).collect();
        let q: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect();
        let q = codes::words(&q);
        let mut out = vec![0u16; codes_n];
        let mut reference: Option<Vec<u16>> = None;
        for kernel in Kernel::available() {
            let mut times = Vec::with_capacity(RUNS);
            for _ in 0..RUNS {
                let mut histogram = vec![0u32; 64 * q.len() + 1];
                let t = Instant::now();
                kernel.distances(&q, &data, &mut out, &mut histogram);
                times.push(t.elapsed().as_secs_f64() * 1e3);
                std::hint::black_box(&histogram);
            }
            match &reference {
                Some(r) => assert_eq!(r, &out, "{kernel:?} disagrees with the first kernel"),
                None => reference = Some(out.clone()),
            }
            times.sort_by(f64::total_cmp);
            let ms = times[RUNS / 2];
            let gbs = (codes_n * width) as f64 / (ms * 1e-3) / 1e9;
            println!("{codes_n:<9} {dim:<6} {:<10} {ms:>9.2} {gbs:>9.1}", format!("{kernel:?}"));
        }
    }
}

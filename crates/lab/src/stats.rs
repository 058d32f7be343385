//! Small statistics the measurements share.

pub use vembed_models::os::load_avg;

/// The `q` quantile of `v` (sorted in place), nearest rank; 0 when empty.
pub fn percentile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

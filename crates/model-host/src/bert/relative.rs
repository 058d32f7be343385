//! MPNet's relative position bias: one learned value per (bucket, head),
//! where a bucket groups the distances between a query token and a key
//! token (exactly for near ones, logarithmically for far ones, one side
//! from the other). The same bias is added to every layer's attention
//! scores, before the softmax.
//!
//! The buckets depend only on the distance, so the bias is spread at load
//! time into one row per head over every distance a text can have: the
//! scores of query token `i` over a text's keys `0..len` start as one
//! contiguous slice of that row.

/// transformers' `MPNetEncoder.compute_position_bias` always asks for 32
/// buckets, whatever the config says.
pub(super) const BUCKETS: usize = 32;
/// transformers' `relative_position_bucket` default.
const MAX_DISTANCE: i64 = 128;

/// The bias of every head at every distance from `-(span - 1)` to
/// `span - 1`.
pub(super) struct Bias {
    /// The most tokens a text can have.
    span: usize,
    /// `heads × (2 · span - 1)`: head after head, distances ascending.
    table: Vec<f32>,
}

impl Bias {
    /// Spreads `weights` (`encoder.relative_attention_bias.weight`, stored
    /// as `BUCKETS × heads`) over texts of up to `span` tokens.
    pub(super) fn new(weights: &[f32], heads: usize, span: usize) -> Bias {
        let width = (2 * span).saturating_sub(1);
        let mut table = vec![0f32; heads * width];
        for r in 0..width {
            // relative_position = memory_position - context_position
            let b = bucket(r as i64 - (span as i64 - 1));
            for h in 0..heads {
                table[h * width + r] = weights[b * heads + h];
            }
        }
        Bias { span, table }
    }

    /// Head `head`'s bias for query token `i` over keys `0..len` (`i < len
    /// ≤ span`).
    pub(super) fn row(&self, head: usize, i: usize, len: usize) -> &[f32] {
        let width = 2 * self.span - 1;
        let start = head * width + (self.span - 1 - i);
        &self.table[start..start + len]
    }
}

/// transformers' `MPNetEncoder.relative_position_bucket(relative_position,
/// num_buckets=32, max_distance=128)`, in the same f32 arithmetic: half the
/// buckets for keys after the query, half for keys before; in each half,
/// distances below 8 get a bucket each, and the rest share the others
/// logarithmically up to 128.
fn bucket(relative_position: i64) -> usize {
    let half = (BUCKETS / 2) as i64;
    let n = -relative_position;
    let side = if n < 0 { half } else { 0 };
    let n = n.abs();
    let max_exact = half / 2;
    let within = if n < max_exact {
        n
    } else {
        let log_ratio = (n as f32 / max_exact as f32).ln();
        let log_range = ((MAX_DISTANCE as f64) / (max_exact as f64)).ln() as f32;
        let large = max_exact + (log_ratio / log_range * (half - max_exact) as f32) as i64;
        large.min(half - 1)
    };
    (side + within) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    /// transformers' own buckets for distances -140..=140, printed by
    /// `MPNetEncoder.relative_position_bucket(torch.arange(-140, 141))` with
    /// transformers 5.24 and torch 2.15, the full test venv's.
    const TORCH: &str = include_str!("relative_buckets.txt");

    #[test]
    fn buckets_match_transformers() {
        let expected: Vec<usize> =
            TORCH.split_whitespace().map(|v| v.parse().expect("a bucket")).collect();
        assert_eq!(expected.len(), 281);
        for (i, &want) in expected.iter().enumerate() {
            let rel = i as i64 - 140;
            assert_eq!(bucket(rel), want, "bucket of relative position {rel}");
        }
        // Far beyond max_distance the last bucket of each side holds.
        assert_eq!(bucket(-600), 15);
        assert_eq!(bucket(600), 31);
    }

    #[test]
    fn rows_are_slices_of_the_spread_table() {
        let heads = 3;
        let weights: Vec<f32> = (0..BUCKETS * heads).map(|v| v as f32).collect();
        let bias = Bias::new(&weights, heads, 10);
        for head in 0..heads {
            for i in 0..10 {
                let row = bias.row(head, i, 10);
                for (j, &v) in row.iter().enumerate() {
                    let b = bucket(j as i64 - i as i64);
                    assert_eq!(v, weights[b * heads + head], "head {head}, query {i}, key {j}");
                }
            }
        }
    }
}

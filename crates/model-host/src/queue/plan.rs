//! Which texts go into the next forward pass: a pure function of the
//! pending jobs and the budget, so the policy can be tested on its own.
//!
//! The policy: the job with the fewest tokens left goes first (a query
//! overtakes bulk work), arrival order breaking ties; but a job passed over
//! for [`Budget::max_wait`] batches in a row goes first, oldest first, so a
//! long text is never starved by a stream of short ones. The batch takes the
//! first job's model, then fills with that model's texts, job after job in
//! the same order, while the cost stays under the token budget: real tokens
//! for an engine that packs texts, `texts × longest` for one that pads
//! (as the first job's model says). The
//! first text always goes in, whatever it costs.

/// What the planner sees of one pending job, in arrival order.
#[derive(Debug, Clone, Copy)]
pub struct Pending<'a> {
    /// The model the job needs.
    pub model: usize,
    /// That model's engine pads every text to the batch's longest.
    pub padded: bool,
    /// Token counts of the job's texts still to embed, in the order they
    /// are to run.
    pub lens: &'a [usize],
    /// Batches run in a row without any of this job's texts.
    pub waited: u32,
}

impl Pending<'_> {
    fn remaining(&self) -> usize {
        self.lens.iter().sum()
    }
}

/// Limits of one batch.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Tokens per forward pass.
    pub max_tokens: usize,
    /// Batches a job may be passed over before it goes first.
    pub max_wait: u32,
}

/// The next batch: `(job, texts)` pairs, each taking that many of the job's
/// next texts, in the order they were chosen. Empty only when nothing waits.
pub fn plan(pending: &[Pending<'_>], budget: &Budget) -> Vec<(usize, usize)> {
    let mut order: Vec<usize> =
        (0..pending.len()).filter(|&i| !pending[i].lens.is_empty()).collect();
    // Aged jobs first (longest wait first), then fewest tokens left; a
    // stable sort keeps arrival order on ties.
    order.sort_by_key(|&i| {
        let p = &pending[i];
        let aged = p.waited >= budget.max_wait;
        (!aged, if aged { u32::MAX - p.waited } else { 0 }, if aged { 0 } else { p.remaining() })
    });
    let Some(&first) = order.first() else { return Vec::new() };
    let (model, padded) = (pending[first].model, pending[first].padded);
    let mut picks: Vec<(usize, usize)> = Vec::new();
    let (mut texts, mut total, mut longest) = (0usize, 0usize, 0usize);
    'fill: for &i in order.iter().filter(|&&i| pending[i].model == model) {
        let mut taken = 0;
        for &len in pending[i].lens {
            let len = len.max(1);
            let cost = if padded { (texts + 1) * longest.max(len) } else { total + len };
            if texts > 0 && cost > budget.max_tokens {
                if taken > 0 {
                    picks.push((i, taken));
                }
                break 'fill;
            }
            texts += 1;
            total += len;
            longest = longest.max(len);
            taken += 1;
        }
        if taken > 0 {
            picks.push((i, taken));
        }
    }
    picks
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Budget = Budget { max_tokens: 100, max_wait: 4 };

    fn job(model: usize, lens: &[usize]) -> Pending<'_> {
        Pending { model, padded: false, lens, waited: 0 }
    }

    #[test]
    fn nothing_pending_plans_nothing() {
        assert!(plan(&[], &B).is_empty());
        assert!(plan(&[job(0, &[])], &B).is_empty());
    }

    #[test]
    fn the_token_budget_bounds_the_batch_but_one_text_always_goes() {
        let lens = [40, 40, 40];
        assert_eq!(plan(&[job(0, &lens)], &B), vec![(0, 2)]);
        let huge = [500];
        assert_eq!(plan(&[job(0, &huge)], &B), vec![(0, 1)], "an over-budget text runs alone");
        let exact = [50, 50, 1];
        assert_eq!(plan(&[job(0, &exact)], &B), vec![(0, 2)]);
    }

    #[test]
    fn shortest_remaining_first_and_arrival_order_on_ties() {
        let bulk = [30, 30, 30, 30];
        let query = [8];
        let other = [8];
        let jobs = [job(0, &bulk), job(0, &query), job(0, &other)];
        // Both queries (8 tokens left each, in arrival order), then bulk.
        assert_eq!(plan(&jobs, &B), vec![(1, 1), (2, 1), (0, 2)]);
    }

    #[test]
    fn one_model_per_batch() {
        let a = [10, 10];
        let b = [5];
        let c = [10];
        let jobs = [job(0, &a), job(1, &b), job(0, &c)];
        // Job 1 has the fewest tokens: its model (1) is the batch's model.
        assert_eq!(plan(&jobs, &B), vec![(1, 1)]);
        let jobs = [job(0, &a), job(1, &[50]), job(0, &c)];
        assert_eq!(plan(&jobs, &B), vec![(2, 1), (0, 2)]);
    }

    #[test]
    fn padded_engines_pay_for_the_longest_text() {
        let lens = [40, 10, 10];
        // Unpadded: 40 + 10 + 10 = 60 fits. Padded: 3 × 40 = 120 does not.
        assert_eq!(plan(&[job(0, &lens)], &B), vec![(0, 3)]);
        let padded = Pending { padded: true, ..job(0, &lens) };
        assert_eq!(plan(&[padded], &B), vec![(0, 2)]);
    }

    #[test]
    fn a_long_job_passed_over_too_often_goes_first() {
        let long = [96];
        let short = [5];
        let mut jobs = [job(0, &long), job(0, &short)];
        assert_eq!(plan(&jobs, &B)[0], (1, 1), "queries first");
        // Simulate a stream of short requests: the long job waits, batch
        // after batch, until it has waited max_wait batches.
        let mut batches = 0;
        loop {
            let picks = plan(&jobs, &B);
            batches += 1;
            if picks[0].0 == 0 {
                break;
            }
            jobs[0].waited += 1;
            assert!(batches <= B.max_wait as usize + 1, "starved");
        }
        assert_eq!(batches, B.max_wait as usize + 1);
        // Two aged jobs: the longer wait first.
        let mut jobs = [job(0, &long), job(0, &[80]), job(0, &short)];
        jobs[0].waited = 5;
        jobs[1].waited = 9;
        assert_eq!(plan(&jobs, &B)[0], (1, 1));
    }
}

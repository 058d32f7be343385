//! The forward pass: embeddings, then per layer the fused QKV product,
//! attention per (text, head), the output and feed-forward products, and the
//! fused element-wise kernels.

use rayon::prelude::*;

use super::bulk::panel_matmul_bulk;
use super::calibrate::Ranges;
use super::gemm::gemm_acc;
use super::jobs::{self, Runner, SendPtr};
use super::simd::Panel;
use super::team::Team;
use super::{Act, Bert, BertError, Linear, Panels, SMALL_M, Scratch, simd};

impl Bert {
    /// Runs the encoder over texts given as token ids and returns the last
    /// hidden states of all their tokens, packed text after text (`T × h`).
    pub fn forward<'s, T: AsRef<[u32]>>(
        &self,
        texts: &[T],
        scratch: &'s mut Scratch,
    ) -> Result<&'s [f32], BertError> {
        self.forward_observed(texts, scratch, None)
    }

    /// [`Bert::forward`], showing `ranges` the input of every linear layer.
    pub(super) fn forward_observed<'s, T: AsRef<[u32]>>(
        &self,
        texts: &[T],
        scratch: &'s mut Scratch,
        mut ranges: Option<&mut Ranges>,
    ) -> Result<&'s [f32], BertError> {
        let h = self.hidden;
        let lens: Vec<usize> = texts.iter().map(|t| t.as_ref().len()).collect();
        let total: usize = lens.iter().sum();
        if let Some(&l) = lens.iter().find(|&&l| l > self.max_tokens) {
            return Err(BertError::Weights(format!(
                "a text of {l} tokens is longer than the model's {} positions",
                self.max_tokens
            )));
        }
        for t in texts {
            if let Some(&id) = t.as_ref().iter().find(|&&id| id as usize >= self.vocab) {
                return Err(BertError::Weights(format!(
                    "token id {id} is outside the vocabulary of {}",
                    self.vocab
                )));
            }
        }
        let threads = rayon::current_num_threads();
        let mut team = (total <= SMALL_M && threads > 1).then(|| Team::new(threads - 1));
        let team = &mut team;
        let Scratch { x, qkv, ctx, tmp, ff } = scratch;
        resize(x, total * h);
        resize(qkv, total * 3 * h);
        resize(ctx, total * h);
        resize(tmp, total * h);
        resize(ff, total * self.inter);

        // Embeddings: word + position (+ type 0 for BERT), then LayerNorm.
        let word = self.p(&self.word);
        let pos = self.p(&self.pos);
        let type0 = self.type0.as_ref().map(|t| &self.p(t)[..h]);
        let mut row = 0;
        for t in texts {
            let mut counted = 0;
            for (p, &id) in t.as_ref().iter().enumerate() {
                let p = match self.pad {
                    None => p,
                    // MPNet: padding_idx + the real tokens so far; a padding
                    // token itself sits at padding_idx.
                    Some(pad) if id == pad => pad as usize,
                    Some(pad) => {
                        counted += 1;
                        pad as usize + counted
                    }
                };
                let out = &mut x[row * h..(row + 1) * h];
                let w = &word[id as usize * h..(id as usize + 1) * h];
                let ps = &pos[p * h..(p + 1) * h];
                match type0 {
                    Some(type0) => {
                        for j in 0..h {
                            out[j] = w[j] + ps[j] + type0[j];
                        }
                    }
                    None => {
                        for j in 0..h {
                            out[j] = w[j] + ps[j];
                        }
                    }
                }
                row += 1;
            }
        }
        let (g, b) = (self.p(&self.ln_g), self.p(&self.ln_b));
        par_rows(x, h, |rows| simd::layer_norm_rows(rows, g, b, self.eps));

        let mut starts = Vec::with_capacity(lens.len());
        let mut at = 0;
        for &l in &lens {
            starts.push(at);
            at += l;
        }
        let mut observe = |l: usize, product: usize, x: &[f32]| {
            if let Some(r) = ranges.as_deref_mut() {
                r.observe(l, product, x);
            }
        };
        for (l, layer) in self.layers.iter().enumerate() {
            // qkv = x · Wqkvᵀ + b
            let bqkv = self.p(&layer.bqkv);
            par_rows(qkv, 3 * h, |rows| simd::fill_rows(rows, bqkv));
            observe(l, 0, x);
            self.linear_acc(qkv, x, &layer.wqkv, team);
            self.attention(qkv, ctx, &starts, &lens, team);
            // tmp = ctx · Woᵀ + bo + x, then LayerNorm -> x
            let bo = self.p(&layer.bo);
            par_rows2(tmp, x, h, |t, xr| simd::add_rows(t, xr, bo));
            observe(l, 1, ctx);
            self.linear_acc(tmp, ctx, &layer.wo, team);
            let (g, b) = (self.p(&layer.ln1_g), self.p(&layer.ln1_b));
            par_rows(tmp, h, |rows| simd::layer_norm_rows(rows, g, b, self.eps));
            std::mem::swap(x, tmp);
            // ff = act(x · W1ᵀ + b1)
            let b1 = self.p(&layer.b1);
            par_rows(ff, self.inter, |rows| simd::fill_rows(rows, b1));
            observe(l, 2, x);
            self.linear_acc(ff, x, &layer.w1, team);
            let act = self.act;
            par_rows(ff, self.inter, |rows| match act {
                Act::GeluErf => simd::gelu_erf(rows),
                Act::GeluTanh => simd::gelu_tanh(rows),
                Act::Relu => simd::relu(rows),
            });
            // tmp = ff · W2ᵀ + b2 + x, then LayerNorm -> x
            let b2 = self.p(&layer.b2);
            par_rows2(tmp, x, h, |t, xr| simd::add_rows(t, xr, b2));
            observe(l, 3, ff);
            self.linear_acc(tmp, ff, &layer.w2, team);
            let (g, b) = (self.p(&layer.ln2_g), self.p(&layer.ln2_b));
            par_rows(tmp, h, |rows| simd::layer_norm_rows(rows, g, b, self.eps));
            std::mem::swap(x, tmp);
        }
        Ok(&scratch.x[..total * h])
    }

    /// Self-attention per (text, head): `ctx = softmax(Q Kᵀ / √d + B) V`,
    /// each text over its own tokens only; `B` is MPNet's relative position
    /// bias (none for BERT).
    fn attention(
        &self,
        qkv: &[f32],
        ctx: &mut [f32],
        starts: &[usize],
        lens: &[usize],
        team: &mut Option<Team>,
    ) {
        let h = self.hidden;
        let heads = self.heads;
        let d = h / heads;
        let scale = 1.0 / (d as f32).sqrt();
        let ctx_ptr = SendPtr(ctx.as_mut_ptr());
        let qkv_ptr = qkv.as_ptr() as usize;
        let job = |job: usize| {
            SCORES.with_borrow_mut(|scores| {
                let (s, head) = (job / heads, job % heads);
                let (start, len) = (starts[s], lens[s]);
                if len == 0 {
                    return;
                }
                resize(scores, len * len);
                // MPNet: the scores start as the head's position bias and
                // the product is added to them (scores = bias + Q Kᵀ / √d).
                let biased = match &self.relative {
                    Some(bias) => {
                        for i in 0..len {
                            scores[i * len..(i + 1) * len].copy_from_slice(bias.row(head, i, len));
                        }
                        true
                    }
                    None => false,
                };
                let q = (qkv_ptr as *const f32).wrapping_add(start * 3 * h + head * d);
                let k = q.wrapping_add(h);
                let v = q.wrapping_add(2 * h);
                let row = (3 * h) as isize;
                // SAFETY: q, k and v address `len` rows of `d` floats inside
                // `qkv` (row stride 3h), and `scores` holds len × len floats.
                unsafe {
                    super::gemm::gemm(
                        (len, len, d),
                        (scores.as_mut_ptr(), 1, len as isize),
                        biased,
                        (q, 1, row),
                        (k, row, 1),
                        (if biased { 1.0 } else { 0.0 }, scale),
                        gemm::Parallelism::None,
                    );
                }
                simd::softmax_rows(scores, len);
                // SAFETY: as above; this job's output block (rows start..start +
                // len, columns head·d..head·d + d of ctx) is written by no other
                // job, and ctx outlives the loop that runs the jobs.
                unsafe {
                    super::gemm::gemm(
                        (len, d, len),
                        (ctx_ptr.get().add(start * h + head * d), 1, h as isize),
                        false,
                        (scores.as_ptr(), 1, len as isize),
                        (v, 1, row),
                        (0.0, 1.0),
                        gemm::Parallelism::None,
                    );
                }
            })
        };
        let jobs = lens.len() * heads;
        if let Some(team) = team {
            team.run(jobs, &job);
        } else {
            (0..jobs).into_par_iter().for_each(job);
        }
    }
}

thread_local! {
    /// Attention scores of one (text, head) job, kept per thread.
    static SCORES: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Sets a buffer's length to exactly `n`, keeping its allocation.
fn resize(v: &mut Vec<f32>, n: usize) {
    v.resize(n, 0.0);
}

/// Element-wise work smaller than this runs on the calling thread.
const PAR_MIN: usize = 1 << 15;

/// Runs `f` over whole rows of `buf` (row length `n`), in parallel when big.
fn par_rows(buf: &mut [f32], n: usize, f: impl Fn(&mut [f32]) + Sync) {
    let rows = buf.len() / n;
    let per = (PAR_MIN / n).max(1);
    if rows <= per {
        f(buf);
    } else {
        buf.par_chunks_mut(per * n).for_each(&f);
    }
}

/// Like [`par_rows`] over `out` with the matching rows of `x`.
fn par_rows2(out: &mut [f32], x: &[f32], n: usize, f: impl Fn(&mut [f32], &[f32]) + Sync) {
    let x = &x[..out.len()];
    let rows = out.len() / n;
    let per = (PAR_MIN / n).max(1);
    if rows <= per {
        f(out, x);
    } else {
        out.par_chunks_mut(per * n).zip(x.par_chunks(per * n)).for_each(|(o, xr)| f(o, xr));
    }
}

impl Bert {
    /// `y += x · wᵀ`: `x` is `m × k`, `w` is `n × k` (a linear layer's weight
    /// as stored), `y` is `m × n`.
    fn linear_acc(&self, y: &mut [f32], x: &[f32], lin: &Linear, team: &mut Option<Team>) {
        let k = lin.k;
        let w = self.p(&lin.w);
        let n = w.len() / k;
        let m = y.len() / n;
        let x = &x[..m * k];
        if m == 0 {
            return;
        }
        match &lin.panels {
            Panels::F32(_) if m > SMALL_M => gemm_acc(y, n, x, k, w, parallel(m, n, k)),
            Panels::F32(p) => panel_acc(y, n, x, k, p, None, team),
            Panels::F16(p) => panel_acc(y, n, x, k, p, None, team),
            Panels::BF16(p) => panel_acc(y, n, x, k, p, None, team),
            Panels::I8(p, scale) => panel_acc(y, n, x, k, p, Some(scale), team),
            // A query: the team shares out two panels (64 columns) a job.
            Panels::Q(w) => with_runner(team, (m, n, k), 2, |per, run| {
                super::qdyn::matmul_acc(y, x, w, per, run)
            }),
            // A query: the team shares out column pairs, one a job.
            #[cfg(target_arch = "x86_64")]
            Panels::Amx(w) => with_runner(team, (m, n, k), 1, |per, run| {
                super::amx::matmul_acc(y, x, w, per, run)
            }),
        }
    }
}

/// `y += x · wᵀ` over packed panels: the small-batch kernel for a query's
/// few rows (split by output columns across the team, when there is one),
/// the blocked bulk kernel for more. `scale` is int8 panels' column scale.
fn panel_acc<T: Panel>(
    y: &mut [f32],
    n: usize,
    x: &[f32],
    k: usize,
    panels: &[T],
    scale: Option<&[f32]>,
    team: &mut Option<Team>,
) {
    let m = y.len() / n;
    if m > SMALL_M {
        return panel_matmul_bulk(y, n, x, k, panels, scale, parallel(m, n, k));
    }
    let Some(team) = team else {
        simd::panel_matmul_acc(y, n, n, x, k, panels, scale);
        return;
    };
    // The team splits the panels (output columns), two per chunk.
    const PER: usize = 2;
    let chunks = n.div_ceil(PER * simd::NR);
    let y_ptr = SendPtr(y.as_mut_ptr());
    team.run(chunks, &|t| {
        let col = t * PER * simd::NR;
        let cols = (PER * simd::NR).min(n - col);
        let part = &panels[col * k..(col + cols.div_ceil(simd::NR) * simd::NR) * k];
        let rows = |r: usize| {
            // SAFETY: row r's columns col..col + cols lie inside y (m × n)
            // and belong to this chunk alone; the `&mut` borrow of y is held
            // until every chunk is done.
            unsafe { std::slice::from_raw_parts_mut(y_ptr.get().add(r * n + col), cols) }
        };
        let mut out = [0f32; SMALL_M * PER * simd::NR];
        for r in 0..m {
            out[r * cols..(r + 1) * cols].copy_from_slice(rows(r));
        }
        let s = scale.map(|s| &s[col..col + cols]);
        simd::panel_matmul_acc(&mut out[..m * cols], cols, cols, x, k, part, s);
        for r in 0..m {
            rows(r).copy_from_slice(&out[r * cols..(r + 1) * cols]);
        }
    });
}

/// Calls `f` with the runner for an `m × n × k` product and the share of
/// a job for a query: the query team (`query_per` column blocks a job) for
/// a few rows, rayon's pool for a large product, else the calling thread
/// (one job per row block).
fn with_runner(
    team: &mut Option<Team>,
    (m, n, k): (usize, usize, usize),
    query_per: usize,
    f: impl FnOnce(usize, Runner<'_>),
) {
    match team {
        Some(team) if m <= SMALL_M => f(query_per, &mut |jobs, job| team.run(jobs, job)),
        _ if parallel(m, n, k) => f(0, &mut jobs::on_rayon),
        _ => f(0, &mut jobs::inline),
    }
}

/// Whether an `m × n × k` product is worth splitting across the pool.
fn parallel(m: usize, n: usize, k: usize) -> bool {
    m * n * k >= 1 << 20
}

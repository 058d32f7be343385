//! vembed's own BERT encoder forward pass on the CPU.
//!
//! candle's stock `BertModel` pads every batch to its longest text, runs
//! about 120 small tensor ops per layer with a fresh allocation each, and
//! computes attention as batched matmuls at a fraction of gemm's speed. This
//! path does the same arithmetic with none of that:
//!
//! * **No padding.** Texts are packed end to end (`T` tokens in all). The
//!   linear layers are single `T × k · kᵀ × n` products, and attention runs
//!   per (text, head) over that text's own tokens, so no mask is needed and
//!   padding costs nothing.
//! * **Weights in place.** f32 tensors are read straight from the
//!   memory-mapped safetensors file; only Q, K and V are copied, into one
//!   fused `3h × h` matrix.
//! * **gemm with AVX-512** where the CPU has it, and a register-blocked
//!   dot-product kernel for the few-token products of a single query, where
//!   packing weights for a blocked gemm costs more than the product.
//! * **Fused element-wise kernels** ([`simd`]): masked-free softmax, GELU with
//!   a vectorized erf, LayerNorm, bias and residual adds folded into the
//!   products' initial values.
//! * **Buffers reused** across calls ([`Scratch`]).
//!
//! Threads: everything runs on rayon's global pool (the one the batcher
//! runs on), so there is exactly one set of compute threads.

pub mod simd;
pub mod team;

use std::path::Path;

use rayon::prelude::*;
use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;

use crate::weights::Weights;
use team::Team;

/// Errors loading the native encoder.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BertError {
    /// The config asks for something this encoder does not implement.
    #[error("unsupported by the native encoder: {0}")]
    Unsupported(String),
    /// The weights file is missing a tensor or has the wrong shape.
    #[error("weights: {0}")]
    Weights(String),
}

/// The fields of a Hugging Face BERT `config.json` this encoder reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// Hidden size.
    pub hidden_size: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Encoder layers.
    pub num_hidden_layers: usize,
    /// Feed-forward size.
    pub intermediate_size: usize,
    /// Positions.
    pub max_position_embeddings: usize,
    /// Token types.
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// LayerNorm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Activation.
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Only `"absolute"` is implemented.
    #[serde(default = "default_pos")]
    pub position_embedding_type: String,
    /// `"bert"` and the BERT-shaped models.
    #[serde(default)]
    pub model_type: Option<String>,
}

fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_act() -> String {
    "gelu".into()
}
fn default_pos() -> String {
    "absolute".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    GeluErf,
    GeluTanh,
    Relu,
}

/// A parameter: either a range of the mapped file or an owned copy.
enum Param {
    Mapped { offset: usize, len: usize },
    Owned(Vec<f32>),
}

/// A linear layer's weight (`n × k`, as stored, read by gemm) and the same
/// weight packed in panels for the small-batch kernel.
struct Linear {
    w: Param,
    panels: Vec<f32>,
    k: usize,
}

struct Layer {
    /// Q, K and V stacked: `3h × h`, and their biases.
    wqkv: Linear,
    bqkv: Param,
    wo: Linear,
    bo: Param,
    ln1_g: Param,
    ln1_b: Param,
    w1: Linear,
    b1: Param,
    w2: Linear,
    b2: Param,
    ln2_g: Param,
    ln2_b: Param,
}

/// A BERT encoder over memory-mapped weights.
pub struct Bert {
    weights: Weights,
    hidden: usize,
    heads: usize,
    inter: usize,
    eps: f32,
    act: Act,
    max_pos: usize,
    vocab: usize,
    word: Param,
    pos: Param,
    /// Token type 0's row (vembed embeds single texts).
    type0: Param,
    ln_g: Param,
    ln_b: Param,
    layers: Vec<Layer>,
}

/// Buffers one forward pass uses, kept between calls.
#[derive(Default)]
pub struct Scratch {
    x: Vec<f32>,
    qkv: Vec<f32>,
    ctx: Vec<f32>,
    tmp: Vec<f32>,
    ff: Vec<f32>,
}

impl Scratch {
    /// Frees the buffers (after a large batch).
    pub fn release(&mut self) {
        *self = Scratch::default();
    }
}

/// Products with at most this many rows use the dot-product kernel.
const SMALL_M: usize = 16;

impl Bert {
    /// Loads the encoder from `model.safetensors` in `dir`, as `config.json`
    /// describes it.
    pub fn load(dir: &Path, config: &Config) -> Result<Bert, BertError> {
        if let Some(t) = &config.model_type
            && !matches!(t.as_str(), "bert")
        {
            return Err(BertError::Unsupported(format!("model_type {t}")));
        }
        if config.position_embedding_type != "absolute" {
            return Err(BertError::Unsupported(format!(
                "position_embedding_type {}",
                config.position_embedding_type
            )));
        }
        let act = match config.hidden_act.as_str() {
            "gelu" => Act::GeluErf,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Act::GeluTanh,
            "relu" => Act::Relu,
            other => return Err(BertError::Unsupported(format!("hidden_act {other}"))),
        };
        let h = config.hidden_size;
        if config.num_attention_heads == 0 || !h.is_multiple_of(config.num_attention_heads) {
            return Err(BertError::Unsupported(format!(
                "hidden_size {h} is not a multiple of {} heads",
                config.num_attention_heads
            )));
        }
        let path = dir.join("model.safetensors");
        let weights = Weights::open(&path)
            .map_err(|e| BertError::Weights(format!("{}: {e}", path.display())))?;
        weights.will_need();
        let i = config.intermediate_size;
        let (word, pos, type0, ln_g, ln_b, layers) = {
            let bytes = weights.bytes();
            let st = SafeTensors::deserialize(bytes)
                .map_err(|e| BertError::Weights(format!("{}: {e}", path.display())))?;
            let prefix =
                if st.names().iter().any(|n| n.starts_with("bert.")) { "bert." } else { "" };
            let get = |name: &str, shape: &[usize]| -> Result<Param, BertError> {
                let full = format!("{prefix}{name}");
                let t = st
                    .tensor(&full)
                    .map_err(|_| BertError::Weights(format!("no tensor {full}")))?;
                if t.shape() != shape {
                    return Err(BertError::Weights(format!(
                        "{full} has shape {:?}, config says {shape:?}",
                        t.shape()
                    )));
                }
                param(bytes, t.data(), t.dtype(), shape.iter().product())
                    .map_err(|e| BertError::Weights(format!("{full}: {e}")))
            };
            let concat = |parts: &[Param]| -> Param {
                Param::Owned(parts.iter().flat_map(|p| view(bytes, p)).copied().collect())
            };
            let linear = |w: Param, k: usize| -> Linear {
                let panels = simd::pack_panels(view(bytes, &w), k);
                Linear { w, panels, k }
            };
            let mut layers = Vec::with_capacity(config.num_hidden_layers);
            for l in 0..config.num_hidden_layers {
                let p = |n: &str| format!("encoder.layer.{l}.{n}");
                let w = |n: &str| get(&p(&format!("attention.self.{n}.weight")), &[h, h]);
                let b = |n: &str| get(&p(&format!("attention.self.{n}.bias")), &[h]);
                layers.push(Layer {
                    wqkv: linear(concat(&[w("query")?, w("key")?, w("value")?]), h),
                    bqkv: concat(&[b("query")?, b("key")?, b("value")?]),
                    wo: linear(get(&p("attention.output.dense.weight"), &[h, h])?, h),
                    bo: get(&p("attention.output.dense.bias"), &[h])?,
                    ln1_g: get(&p("attention.output.LayerNorm.weight"), &[h])?,
                    ln1_b: get(&p("attention.output.LayerNorm.bias"), &[h])?,
                    w1: linear(get(&p("intermediate.dense.weight"), &[i, h])?, h),
                    b1: get(&p("intermediate.dense.bias"), &[i])?,
                    w2: linear(get(&p("output.dense.weight"), &[h, i])?, i),
                    b2: get(&p("output.dense.bias"), &[h])?,
                    ln2_g: get(&p("output.LayerNorm.weight"), &[h])?,
                    ln2_b: get(&p("output.LayerNorm.bias"), &[h])?,
                });
            }
            (
                get("embeddings.word_embeddings.weight", &[config.vocab_size, h])?,
                get("embeddings.position_embeddings.weight", &[config.max_position_embeddings, h])?,
                get("embeddings.token_type_embeddings.weight", &[config.type_vocab_size, h])?,
                get("embeddings.LayerNorm.weight", &[h])?,
                get("embeddings.LayerNorm.bias", &[h])?,
                layers,
            )
        };
        Ok(Bert {
            weights,
            hidden: h,
            heads: config.num_attention_heads,
            inter: i,
            eps: config.layer_norm_eps as f32,
            act,
            max_pos: config.max_position_embeddings,
            vocab: config.vocab_size,
            word,
            pos,
            type0,
            ln_g,
            ln_b,
            layers,
        })
    }

    fn p<'a>(&'a self, p: &'a Param) -> &'a [f32] {
        view(self.weights.bytes(), p)
    }

    /// Stops counting the mapped weights' pages in this process's memory
    /// until they are read again (see [`Weights::release_pages`]): after
    /// loading, the query path reads only the packed copies, so the mapped
    /// encoder weights are needed again only by large batches.
    pub fn release_mapped(&self) {
        self.weights.release_pages();
    }

    /// Hidden size.
    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// Runs the encoder over texts given as token ids and returns the last
    /// hidden states of all their tokens, packed text after text (`T × h`).
    pub fn forward<'s, T: AsRef<[u32]>>(
        &self,
        texts: &[T],
        scratch: &'s mut Scratch,
    ) -> Result<&'s [f32], BertError> {
        let h = self.hidden;
        let lens: Vec<usize> = texts.iter().map(|t| t.as_ref().len()).collect();
        let total: usize = lens.iter().sum();
        if let Some(&l) = lens.iter().find(|&&l| l > self.max_pos) {
            return Err(BertError::Weights(format!(
                "a text of {l} tokens is longer than the model's {} positions",
                self.max_pos
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

        // Embeddings: word + position + type 0, then LayerNorm.
        let word = self.p(&self.word);
        let pos = self.p(&self.pos);
        let type0 = &self.p(&self.type0)[..h];
        let mut row = 0;
        for t in texts {
            for (p, &id) in t.as_ref().iter().enumerate() {
                let out = &mut x[row * h..(row + 1) * h];
                let w = &word[id as usize * h..(id as usize + 1) * h];
                let ps = &pos[p * h..(p + 1) * h];
                for j in 0..h {
                    out[j] = w[j] + ps[j] + type0[j];
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
        for layer in &self.layers {
            // qkv = x · Wqkvᵀ + b
            let bqkv = self.p(&layer.bqkv);
            par_rows(qkv, 3 * h, |rows| simd::fill_rows(rows, bqkv));
            self.linear_acc(qkv, x, &layer.wqkv, team);
            self.attention(qkv, ctx, &starts, &lens, team);
            // tmp = ctx · Woᵀ + bo + x, then LayerNorm -> x
            let bo = self.p(&layer.bo);
            par_rows2(tmp, x, h, |t, xr| simd::add_rows(t, xr, bo));
            self.linear_acc(tmp, ctx, &layer.wo, team);
            let (g, b) = (self.p(&layer.ln1_g), self.p(&layer.ln1_b));
            par_rows(tmp, h, |rows| simd::layer_norm_rows(rows, g, b, self.eps));
            std::mem::swap(x, tmp);
            // ff = act(x · W1ᵀ + b1)
            let b1 = self.p(&layer.b1);
            par_rows(ff, self.inter, |rows| simd::fill_rows(rows, b1));
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
            self.linear_acc(tmp, ff, &layer.w2, team);
            let (g, b) = (self.p(&layer.ln2_g), self.p(&layer.ln2_b));
            par_rows(tmp, h, |rows| simd::layer_norm_rows(rows, g, b, self.eps));
            std::mem::swap(x, tmp);
        }
        Ok(&scratch.x[..total * h])
    }

    /// Self-attention per (text, head): `ctx = softmax(Q Kᵀ / √d) V`, each
    /// text over its own tokens only.
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
                let q = (qkv_ptr as *const f32).wrapping_add(start * 3 * h + head * d);
                let k = q.wrapping_add(h);
                let v = q.wrapping_add(2 * h);
                let row = (3 * h) as isize;
                // SAFETY: q, k and v address `len` rows of `d` floats inside
                // `qkv` (row stride 3h), and `scores` holds len × len floats.
                unsafe {
                    gemm::gemm(
                        len,
                        len,
                        d,
                        scores.as_mut_ptr(),
                        1,
                        len as isize,
                        false,
                        q,
                        1,
                        row,
                        k,
                        row,
                        1,
                        0.0,
                        scale,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
                simd::softmax_rows(scores, len);
                // SAFETY: as above; this job's output block (rows start..start +
                // len, columns head·d..head·d + d of ctx) is written by no other
                // job, and ctx outlives the loop that runs the jobs.
                unsafe {
                    gemm::gemm(
                        len,
                        d,
                        len,
                        ctx_ptr.get().add(start * h + head * d),
                        1,
                        h as isize,
                        false,
                        scores.as_ptr(),
                        1,
                        len as isize,
                        v,
                        1,
                        row,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
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

/// Reads a tensor's data as a parameter: f32 data that is 4-byte aligned
/// stays in the mapping (as an offset into `file`); anything else is
/// converted into an owned f32 copy.
fn param(file: &[u8], data: &[u8], dtype: Dtype, len: usize) -> Result<Param, String> {
    let owned = |size: usize, f: &dyn Fn(&[u8]) -> f32| -> Result<Param, String> {
        if data.len() != len * size {
            return Err(format!("{} bytes for {len} values", data.len()));
        }
        Ok(Param::Owned(data.chunks_exact(size).map(f).collect()))
    };
    match dtype {
        Dtype::F32 if (data.as_ptr() as usize).is_multiple_of(4) && data.len() == len * 4 => {
            Ok(Param::Mapped { offset: data.as_ptr() as usize - file.as_ptr() as usize, len })
        }
        Dtype::F32 => owned(4, &|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        Dtype::F16 => owned(2, &|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()),
        Dtype::BF16 => owned(2, &|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()),
        other => Err(format!("dtype {other:?} is not a float type")),
    }
}

/// The f32 values of a parameter; `file` is the mapping it may point into.
fn view<'a>(file: &'a [u8], p: &'a Param) -> &'a [f32] {
    match p {
        Param::Owned(v) => v,
        Param::Mapped { offset, len } => {
            let bytes = &file[*offset..*offset + len * 4];
            // SAFETY: the range lies inside the mapping (the slice above is
            // bounds-checked), holds `len` f32s in the file's little-endian
            // layout (safetensors is little-endian, as is every target vembed
            // builds for), and `param` checked its start is 4-byte aligned.
            unsafe { std::slice::from_raw_parts(bytes.as_ptr() as *const f32, *len) }
        }
    }
}

/// A raw pointer that may cross to rayon's threads: each task writes a
/// disjoint part of the buffer it points into.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: used only for disjoint writes, as each use site explains.
unsafe impl Send for SendPtr {}
// SAFETY: as above.
unsafe impl Sync for SendPtr {}
impl SendPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
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
        if m <= SMALL_M {
            let Some(team) = team else {
                simd::panel_matmul_acc(y, n, 0, n, x, k, &lin.panels);
                return;
            };
            // The team splits the panels (output columns), two per chunk.
            const PER: usize = 2;
            let chunks = n.div_ceil(PER * simd::NR);
            let y_ptr = SendPtr(y.as_mut_ptr());
            team.run(chunks, &|t| {
                let col = t * PER * simd::NR;
                let cols = (PER * simd::NR).min(n - col);
                let part = &lin.panels[col * k..(col + cols.div_ceil(simd::NR) * simd::NR) * k];
                let rows = |r: usize| {
                    // SAFETY: row r's columns col..col + cols lie inside y
                    // (m × n) and belong to this chunk alone; the `&mut`
                    // borrow of y is held until every chunk is done.
                    unsafe { std::slice::from_raw_parts_mut(y_ptr.get().add(r * n + col), cols) }
                };
                let mut out = [0f32; SMALL_M * PER * simd::NR];
                for r in 0..m {
                    out[r * cols..(r + 1) * cols].copy_from_slice(rows(r));
                }
                simd::panel_matmul_acc(&mut out[..m * cols], cols, 0, cols, x, k, part);
                for r in 0..m {
                    rows(r).copy_from_slice(&out[r * cols..(r + 1) * cols]);
                }
            });
            return;
        }
        let par = if m * n * k >= 1 << 20 {
            gemm::Parallelism::Rayon(rayon::current_num_threads())
        } else {
            gemm::Parallelism::None
        };
        // SAFETY: y is m × n (row stride n), x is m × k (row stride k), and wᵀ
        // is read from w (n × k) with row stride 1 and column stride k; all
        // three slices are exactly that long.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                y.as_mut_ptr(),
                1,
                n as isize,
                true,
                x.as_ptr(),
                1,
                k as isize,
                w.as_ptr(),
                k as isize,
                1,
                1.0,
                1.0,
                false,
                false,
                false,
                par,
            );
        }
    }
}

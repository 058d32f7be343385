//! vembed's own encoder forward pass on the CPU, for the BERT family:
//! BERT itself and MPNet ([`Arch`]), which differ only in their embeddings,
//! their weights' names and MPNet's relative position bias ([`relative`]).
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

#[macro_use]
pub mod simd;
#[cfg(target_arch = "x86_64")]
pub mod amx;
pub mod bulk;
pub mod calibrate;
pub mod forward;
pub mod gemm;
pub mod half;
pub mod int8;
pub mod jobs;
mod layout;
pub mod packed;
pub mod qdyn;
mod relative;
pub mod team;

use serde::Deserialize;

use crate::weights::Weights;

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

/// Which member of the BERT family an encoder is: what its embeddings add,
/// how its weights are named, and whether attention has a position bias.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// BERT: absolute positions counted from 0, token type 0 added to
    /// every token.
    Bert,
    /// MPNet: absolute positions counted from `pad_token_id + 1` (padding
    /// tokens keep `pad_token_id`), no token types, and a relative position
    /// bias, bucketed and shared by the layers, added to every head's
    /// attention scores.
    MPNet,
}

/// The fields of a Hugging Face BERT or MPNet `config.json` this encoder
/// reads.
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
    /// MPNet's relative position buckets.
    #[serde(default)]
    pub relative_attention_num_buckets: Option<usize>,
}

impl Config {
    /// Position ids before a text's first token: 0 for BERT, `padding_idx
    /// + 1` for MPNet (as `create_position_ids_from_input_ids` counts them).
    pub fn position_offset(&self, arch: Arch) -> usize {
        match arch {
            Arch::Bert => 0,
            Arch::MPNet => MPNET_PADDING_IDX as usize + 1,
        }
    }

    /// The most tokens a text can have, special tokens included: the
    /// positions past the offset.
    pub fn max_tokens(&self, arch: Arch) -> usize {
        self.max_position_embeddings.saturating_sub(self.position_offset(arch))
    }
}

/// MPNet's padding token, from which it counts positions: transformers'
/// `MPNetEmbeddings` fixes `padding_idx = 1`, whatever `pad_token_id` says.
const MPNET_PADDING_IDX: u32 = 1;

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

/// How the encoder's linear-layer weights are held: the `weights` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// f32, as stored: exactly sentence-transformers' arithmetic.
    #[default]
    F32,
    /// IEEE f16 (11 significant bits): half the bytes per query.
    F16,
    /// bfloat16 (8 significant bits, f32's range): half the bytes.
    BF16,
    /// Signed bytes with a scale per output column (weights only; the
    /// activations stay f32): a quarter of the bytes.
    Int8,
    /// Signed bytes with a scale per output column, and the activations
    /// quantized per row at every product: integer products on AVX-512
    /// VNNI or AVX2 (`bert::qdyn`), a quarter of the bytes and a quarter of the
    /// instructions.
    Int8Dynamic,
    /// bf16 weights and bf16 activations multiplied on Intel AMX tiles
    /// (sums in f32): the bulk path's fastest form where the CPU has
    /// AMX-BF16; refused elsewhere.
    AmxBf16,
}

impl Precision {
    /// The setting's spelling.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::BF16 => "bf16",
            Precision::Int8 => "int8",
            Precision::Int8Dynamic => "int8-dynamic",
            Precision::AmxBf16 => "amx-bf16",
        }
    }
}

impl Precision {
    /// Why this CPU cannot run the precision, if it cannot.
    pub fn unsupported(self) -> Option<String> {
        match self {
            #[cfg(target_arch = "x86_64")]
            Precision::AmxBf16 if amx::available() => None,
            Precision::AmxBf16 => Some(
                "this CPU has no AMX-BF16 tiles (or the kernel did not grant this process the tile state)"
                    .into(),
            ),
            _ => None,
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Precision, String> {
        match s {
            "f32" => Ok(Precision::F32),
            "f16" => Ok(Precision::F16),
            "bf16" => Ok(Precision::BF16),
            "int8" => Ok(Precision::Int8),
            "int8-dynamic" => Ok(Precision::Int8Dynamic),
            "amx-bf16" => Ok(Precision::AmxBf16),
            other => Err(format!(
                "weights must be \"f32\", \"f16\", \"bf16\", \"int8\", \"int8-dynamic\" or \"amx-bf16\", got {other:?}"
            )),
        }
    }
}

/// A linear layer's weight packed in panels, in the chosen precision.
enum Panels {
    F32(packed::Packed<f32>),
    F16(packed::Packed<half::F16>),
    BF16(packed::Packed<half::BF16>),
    I8(packed::Packed<int8::I8>, Vec<f32>),
    Q(qdyn::QWeight),
    #[cfg(target_arch = "x86_64")]
    Amx(amx::AmxWeight),
}

impl Panels {
    /// Packs `w` (`n × k`) in `precision`; `smooth` (int8-dynamic only,
    /// see [`calibrate`]) scales its input channels first.
    fn pack(w: &[f32], k: usize, precision: Precision, smooth: Option<&[f32]>) -> Panels {
        match precision {
            Precision::F32 => Panels::F32(packed::pack_panels(w, k)),
            Precision::F16 => Panels::F16(packed::pack_panels(w, k)),
            Precision::BF16 => Panels::BF16(packed::pack_panels(w, k)),
            Precision::Int8 => {
                let (p, scale) = int8::pack_panels_i8(w, k);
                Panels::I8(p, scale)
            }
            Precision::Int8Dynamic => Panels::Q(qdyn::QWeight::pack_smoothed(w, k, smooth)),
            #[cfg(target_arch = "x86_64")]
            Precision::AmxBf16 if amx::available() => Panels::Amx(amx::AmxWeight::pack(w, k)),
            // Callers check `Precision::supported` first.
            Precision::AmxBf16 => Panels::F32(packed::pack_panels(w, k)),
        }
    }
}

/// A linear layer's weight (`n × k`, as stored, read by gemm for large f32
/// batches) and the same weight packed in panels, which every other product
/// reads.
struct Linear {
    w: Param,
    panels: Panels,
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

/// A BERT-family encoder over memory-mapped weights.
pub struct Bert {
    weights: Weights,
    /// The most tokens a text can have.
    max_tokens: usize,
    /// How positions are counted: from 0 (`None`, BERT), or MPNet's way
    /// from its padding token.
    pad: Option<u32>,
    hidden: usize,
    heads: usize,
    inter: usize,
    eps: f32,
    act: Act,
    vocab: usize,
    word: Param,
    pos: Param,
    /// Token type 0's row (vembed embeds single texts); MPNet has none.
    type0: Option<Param>,
    /// MPNet's relative position bias per head.
    relative: Option<relative::Bias>,
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

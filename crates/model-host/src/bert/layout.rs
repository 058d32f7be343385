//! The encoder's weights: reading `config.json`'s shapes out of the mapped
//! safetensors file under each family's names, fusing Q, K and V, spreading
//! MPNet's relative position bias, and packing panels for the small-batch
//! kernel.

use std::path::Path;

use safetensors::{Dtype, SafeTensors};

use super::calibrate::{Ranges, smoothing};
use super::{
    Act, Arch, Bert, BertError, Config, Layer, Linear, Panels, Param, Precision, relative,
};
use crate::weights::Weights;

/// Where a family's tensors are in the file.
struct Names {
    /// The prefix a whole-model checkpoint puts before every name.
    prefix: &'static str,
    /// Q, K, V and the attention output's dense layer, under `attention.`.
    q: &'static str,
    k: &'static str,
    v: &'static str,
    o: &'static str,
    /// The LayerNorm after attention, under `attention.`.
    ln1: &'static str,
}

impl Names {
    fn of(arch: Arch) -> Names {
        match arch {
            Arch::Bert => Names {
                prefix: "bert.",
                q: "self.query",
                k: "self.key",
                v: "self.value",
                o: "output.dense",
                ln1: "output.LayerNorm",
            },
            Arch::MPNet => Names {
                prefix: "mpnet.",
                q: "attn.q",
                k: "attn.k",
                v: "attn.v",
                o: "attn.o",
                ln1: "LayerNorm",
            },
        }
    }
}

impl Bert {
    /// Loads the encoder from `model.safetensors` in `dir`, as `config.json`
    /// describes it, for the family `arch`.
    pub fn load(dir: &Path, config: &Config, arch: Arch) -> Result<Bert, BertError> {
        if config.position_embedding_type != "absolute" {
            return Err(BertError::Unsupported(format!(
                "position_embedding_type {}",
                config.position_embedding_type
            )));
        }
        if arch == Arch::MPNet
            && let Some(b) = config.relative_attention_num_buckets
            && b != relative::BUCKETS
        {
            return Err(BertError::Unsupported(format!(
                "relative_attention_num_buckets {b} (transformers' MPNet always uses {})",
                relative::BUCKETS
            )));
        }
        let act = match config.hidden_act.as_str() {
            "gelu" => Act::GeluErf,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Act::GeluTanh,
            "relu" => Act::Relu,
            other => return Err(BertError::Unsupported(format!("hidden_act {other}"))),
        };
        let h = config.hidden_size;
        let heads = config.num_attention_heads;
        if heads == 0 || !h.is_multiple_of(heads) {
            return Err(BertError::Unsupported(format!(
                "hidden_size {h} is not a multiple of {heads} heads"
            )));
        }
        let max_tokens = config.max_tokens(arch);
        if max_tokens == 0 {
            return Err(BertError::Unsupported(format!(
                "max_position_embeddings {} leaves no position for a token",
                config.max_position_embeddings
            )));
        }
        let names = Names::of(arch);
        let path = dir.join("model.safetensors");
        let weights = Weights::open(&path)
            .map_err(|e| BertError::Weights(format!("{}: {e}", path.display())))?;
        weights.will_need();
        let i = config.intermediate_size;
        let (word, pos, type0, ln_g, ln_b, layers, relative) = {
            let bytes = weights.bytes();
            let st = SafeTensors::deserialize(bytes)
                .map_err(|e| BertError::Weights(format!("{}: {e}", path.display())))?;
            let prefix = if st.names().iter().any(|n| n.starts_with(names.prefix)) {
                names.prefix
            } else {
                ""
            };
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
                let panels = Panels::pack(view(bytes, &w), k, Precision::F32, None);
                Linear { w, panels, k }
            };
            let mut layers = Vec::with_capacity(config.num_hidden_layers);
            for l in 0..config.num_hidden_layers {
                let p = |n: &str| format!("encoder.layer.{l}.{n}");
                let att = |n: &str, what: &str| p(&format!("attention.{n}.{what}"));
                let w = |n: &str| get(&att(n, "weight"), &[h, h]);
                let b = |n: &str| get(&att(n, "bias"), &[h]);
                layers.push(Layer {
                    wqkv: linear(concat(&[w(names.q)?, w(names.k)?, w(names.v)?]), h),
                    bqkv: concat(&[b(names.q)?, b(names.k)?, b(names.v)?]),
                    wo: linear(w(names.o)?, h),
                    bo: b(names.o)?,
                    ln1_g: get(&att(names.ln1, "weight"), &[h])?,
                    ln1_b: get(&att(names.ln1, "bias"), &[h])?,
                    w1: linear(get(&p("intermediate.dense.weight"), &[i, h])?, h),
                    b1: get(&p("intermediate.dense.bias"), &[i])?,
                    w2: linear(get(&p("output.dense.weight"), &[h, i])?, i),
                    b2: get(&p("output.dense.bias"), &[h])?,
                    ln2_g: get(&p("output.LayerNorm.weight"), &[h])?,
                    ln2_b: get(&p("output.LayerNorm.bias"), &[h])?,
                });
            }
            let (type0, relative) = match arch {
                Arch::Bert => {
                    let types = [config.type_vocab_size, h];
                    (Some(get("embeddings.token_type_embeddings.weight", &types)?), None)
                }
                Arch::MPNet => {
                    let table =
                        get("encoder.relative_attention_bias.weight", &[relative::BUCKETS, heads])?;
                    (None, Some(relative::Bias::new(view(bytes, &table), heads, max_tokens)))
                }
            };
            (
                get("embeddings.word_embeddings.weight", &[config.vocab_size, h])?,
                get("embeddings.position_embeddings.weight", &[config.max_position_embeddings, h])?,
                type0,
                get("embeddings.LayerNorm.weight", &[h])?,
                get("embeddings.LayerNorm.bias", &[h])?,
                layers,
                relative,
            )
        };
        Ok(Bert {
            weights,
            max_tokens,
            pad: (arch == Arch::MPNet).then_some(super::MPNET_PADDING_IDX),
            hidden: h,
            heads,
            inter: i,
            eps: config.layer_norm_eps as f32,
            act,
            vocab: config.vocab_size,
            word,
            pos,
            type0,
            relative,
            ln_g,
            ln_b,
            layers,
        })
    }

    /// Repacks every linear layer's panels in `precision`, from the f32
    /// weights in the mapping.
    /// `ranges`, the linear layers' inputs' ranges on calibration texts,
    /// smooth each product (int8-dynamic's; the other forms ignore them).
    pub fn set_precision(&mut self, precision: Precision, ranges: Option<&Ranges>) {
        let bytes = self.weights.bytes();
        for (l, layer) in self.layers.iter_mut().enumerate() {
            let lins = [&mut layer.wqkv, &mut layer.wo, &mut layer.w1, &mut layer.w2];
            for (i, lin) in lins.into_iter().enumerate() {
                let w = view(bytes, &lin.w);
                let smooth = ranges.map(|r| smoothing(w, lin.k, r.of(l, i)));
                lin.panels = Panels::pack(w, lin.k, precision, smooth.as_deref());
            }
        }
    }

    pub(super) fn p<'a>(&'a self, p: &'a Param) -> &'a [f32] {
        view(self.weights.bytes(), p)
    }

    /// Stops counting the mapped weights' pages in this process's memory
    /// until they are read again (see [`Weights::release_pages`]): after
    /// loading, the query path reads only the packed copies, so the mapped
    /// encoder weights are needed again only by large batches.
    pub fn release_mapped(&self) {
        self.weights.release_pages();
    }
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

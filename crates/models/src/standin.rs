//! A timing stand-in for a deeper model: a model folder whose encoder
//! repeats the layers of a smaller one (L6's six layers, twice, for a
//! 12-layer model), so that its weights are as large and its forward pass
//! costs as much as the deeper model's, for measuring time and memory when
//! the deeper model cannot be fetched. Its vectors are meaningless for
//! search: it is named as a stand-in everywhere and never used for quality.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::Path;

use safetensors::SafeTensors;
use safetensors::tensor::TensorView;

use crate::{Error, ModelDir, import, paths};

/// The name a stand-in is filed under: `vembed-standin/all-MiniLM-L12-v2-timing`
/// for a 12-layer stand-in of `sentence-transformers/all-MiniLM-L6-v2`.
pub fn standin_name(src: &ModelDir, layers: usize) -> String {
    let short = src.name.rsplit('/').next().unwrap_or(&src.name);
    let base = match short.rsplit_once("-L") {
        Some((head, tail)) if tail.split('-').next().is_some_and(|n| n.parse::<u32>().is_ok()) => {
            let rest = tail.split_once('-').map_or(String::new(), |(_, r)| format!("-{r}"));
            format!("{head}-L{layers}{rest}")
        }
        _ => format!("{short}-{layers}layers"),
    };
    format!("vembed-standin/{base}-timing")
}

fn bad(path: &Path, message: impl Into<String>) -> Error {
    Error::Archive { path: path.to_path_buf(), message: message.into() }
}

/// Layer `i` of a tensor name such as `encoder.layer.3.attention...`, and
/// the name with that layer number replaced.
fn layer_of(name: &str) -> Option<(usize, impl Fn(usize) -> String + '_)> {
    let start = name.find("encoder.layer.")? + "encoder.layer.".len();
    let len = name[start..].find('.')?;
    let layer = name[start..start + len].parse().ok()?;
    Some((layer, move |n: usize| format!("{}{n}{}", &name[..start], &name[start + len..])))
}

/// Makes (or remakes) a `layers`-layer stand-in of `src` in vembed's model
/// cache: the same embeddings, tokenizer, pooling and normalization, with
/// `src`'s encoder layers repeated in order (layer `i` is `src`'s layer
/// `i % n`). `layers` must be a multiple of `src`'s layer count.
pub fn make_standin(src: &ModelDir, layers: usize) -> Result<ModelDir, Error> {
    let config_path = src.path.join("config.json");
    let text = fs::read_to_string(&config_path).map_err(|e| Error::io(&config_path, e))?;
    let mut config: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(&config_path, e.to_string()))?;
    let n = config["num_hidden_layers"]
        .as_u64()
        .ok_or_else(|| bad(&config_path, "no num_hidden_layers"))? as usize;
    if n == 0 || layers < n || !layers.is_multiple_of(n) {
        return Err(bad(
            &config_path,
            format!("a stand-in needs a multiple of the model's {n} layers, not {layers}"),
        ));
    }
    config["num_hidden_layers"] = layers.into();
    let name = standin_name(src, layers);
    config["_name_or_path"] = name.clone().into();

    let weights_path = src.weights();
    let bytes = fs::read(&weights_path).map_err(|e| Error::io(&weights_path, e))?;
    let tensors =
        SafeTensors::deserialize(&bytes).map_err(|e| bad(&weights_path, e.to_string()))?;
    let mut out: BTreeMap<String, TensorView<'_>> = BTreeMap::new();
    for (tensor, view) in tensors.tensors() {
        match layer_of(&tensor) {
            Some((i, rename)) => {
                for copy in 0..layers / n {
                    out.insert(rename(i + copy * n), view.clone());
                }
            }
            None => {
                out.insert(tensor.clone(), view);
            }
        }
    }
    let expected = tensors.names().len() + (layers - n) * per_layer(&tensors, n);
    if out.len() != expected {
        return Err(bad(&weights_path, "the encoder's layers are not numbered 0..n"));
    }

    let root = paths::cache_dir().join("models");
    fs::create_dir_all(&root).map_err(|e| Error::io(&root, e))?;
    let staging = tempfile::Builder::new()
        .prefix(".standin-")
        .tempdir_in(&root)
        .map_err(|e| Error::io(&root, e))?;
    copy_except(&src.path, staging.path(), true)?;
    let dst_config = staging.path().join("config.json");
    let pretty = serde_json::to_string_pretty(&config).expect("a JSON value serializes");
    fs::write(&dst_config, pretty + "\n").map_err(|e| Error::io(&dst_config, e))?;
    let readme = staging.path().join("README.md");
    let note = format!(
        "# {name}\n\nA TIMING STAND-IN, not a trained model: {src_name}'s {n} encoder layers \
         repeated to {layers} layers by `vembed model standin`. It costs what a {layers}-layer \
         model of this shape costs in time and memory; its vectors are not meant for search.\n",
        src_name = src.name
    );
    fs::write(&readme, note).map_err(|e| Error::io(&readme, e))?;
    let dst_weights = staging.path().join("model.safetensors");
    let metadata = HashMap::from([
        ("format".to_string(), "pt".to_string()),
        ("vembed_standin_of".to_string(), src.name.clone()),
    ]);
    safetensors::serialize_to_file(out, Some(metadata), &dst_weights)
        .map_err(|e| bad(&dst_weights, e.to_string()))?;
    import(staging.path(), Some(&name))
}

fn per_layer(tensors: &SafeTensors<'_>, n: usize) -> usize {
    tensors.names().iter().filter(|t| layer_of(t).is_some()).count() / n
}

/// Copies a model folder's files except its weights, their hash record,
/// config and README (written anew; the skipped names are top-level only) and any PyTorch weights (which
/// transformers would load instead of the stand-in's).
fn copy_except(src: &Path, dst: &Path, top: bool) -> Result<(), Error> {
    const SKIP: [&str; 6] = [
        "model.safetensors",
        crate::SHA256_RECORD,
        "config.json",
        "README.md",
        "pytorch_model.bin",
        "onnx",
    ];
    for entry in fs::read_dir(src).map_err(|e| Error::io(src, e))? {
        let entry = entry.map_err(|e| Error::io(src, e))?;
        let name = entry.file_name();
        let name_str = name.to_string_lossy();
        if name_str.starts_with('.') || (top && SKIP.contains(&name_str.as_ref())) {
            continue;
        }
        let (from, to) = (entry.path(), dst.join(&name));
        if from.is_dir() {
            fs::create_dir_all(&to).map_err(|e| Error::io(&to, e))?;
            copy_except(&from, &to, false)?;
        } else {
            fs::copy(&from, &to).map_err(|e| Error::io(&from, e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_say_stand_in() {
        let dir = |name: &str| ModelDir { name: name.into(), path: "/x".into() };
        assert_eq!(
            standin_name(&dir("sentence-transformers/all-MiniLM-L6-v2"), 12),
            "vembed-standin/all-MiniLM-L12-v2-timing"
        );
        assert_eq!(standin_name(&dir("org/tiny"), 4), "vembed-standin/tiny-4layers-timing");
    }

    #[test]
    fn layer_names_are_renumbered() {
        let (i, rename) = layer_of("encoder.layer.3.attention.self.query.weight").unwrap();
        assert_eq!(i, 3);
        assert_eq!(rename(9), "encoder.layer.9.attention.self.query.weight");
        assert!(layer_of("embeddings.word_embeddings.weight").is_none());
    }
}

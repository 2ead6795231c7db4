//! Loading diffusers' `diffusion_pytorch_model.safetensors` into our variables: by name, in F32,
//! F16 or BF16, the VAE's old attention names mapped to the new ones; every missing, unexpected
//! or mis-shaped tensor reported in one error.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use brainpipe_core::{Dtype, NamedTensor, SafetensorsFile, read_safetensors};
use brainpipe_tensor::{save_var_store, weight_mismatches};
use tch::{Kind, Tensor, nn};

use crate::error::{DiffusionError, Result};
use brainpipe_core::IoContext;

/// The weights file of a diffusers model folder.
pub const WEIGHTS_FILE: &str = "diffusion_pytorch_model.safetensors";
/// Its half-precision variant (`variant="fp16"`).
pub const WEIGHTS_FILE_FP16: &str = "diffusion_pytorch_model.fp16.safetensors";

/// The weights file in `dir`: the full-precision name, else the `fp16` variant.
pub fn weights_file(dir: &Path) -> Result<PathBuf> {
    [WEIGHTS_FILE, WEIGHTS_FILE_FP16]
        .iter()
        .map(|name| dir.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            DiffusionError::weights(&dir.join(WEIGHTS_FILE), "missing (no safetensors weights)")
        })
}

/// The new name of an old VAE attention tensor (`query`/`key`/`value`/`proj_attn` →
/// `to_q`/`to_k`/`to_v`/`to_out.0`), as diffusers' `_convert_deprecated_attention_blocks` maps.
fn modern_name(name: &str) -> Option<String> {
    if !name.contains(".attentions.") {
        return None;
    }
    let (prefix, last) = name.rsplit_once('.')?;
    let (prefix, layer) = prefix.rsplit_once('.')?;
    let new = match layer {
        "query" => "to_q",
        "key" => "to_k",
        "value" => "to_v",
        "proj_attn" => "to_out.0",
        _ => return None,
    };
    Some(format!("{prefix}.{new}.{last}"))
}

fn kind_of(dtype: Dtype) -> Option<Kind> {
    match dtype {
        Dtype::F32 => Some(Kind::Float),
        Dtype::F16 => Some(Kind::Half),
        Dtype::Bf16 => Some(Kind::BFloat16),
        _ => None,
    }
}

/// Reads a diffusers safetensors file, old VAE attention names mapped to the new ones (and
/// 1×1-conv shaped attention weights of the oldest checkpoints squeezed to the linear shape).
pub fn read_weights(path: &Path) -> Result<SafetensorsFile> {
    let mut file = read_safetensors(path)?;
    for tensor in &mut file.tensors {
        if let Some(new) = modern_name(&tensor.name) {
            tensor.name = new;
            if tensor.shape.len() == 4 && tensor.shape[2..] == [1, 1] {
                tensor.shape.truncate(2);
            }
        }
    }
    Ok(file)
}

/// Copies the tensors of `path` into `vs`'s variables by name (converted to the variables'
/// kind), as [`read_weights`] reads them.
pub fn load_weights(vs: &mut nn::VarStore, path: &Path) -> Result<()> {
    copy_weights(vs, &read_weights(path)?, path)
}

/// Copies `file` (read from `path` by [`read_weights`]) into `vs`'s variables by name.
pub fn copy_weights(vs: &mut nn::VarStore, file: &SafetensorsFile, path: &Path) -> Result<()> {
    let variables = vs.variables();
    let mut problems = weight_mismatches(&variables, file, |_| false);
    for t in &file.tensors {
        if kind_of(t.dtype).is_none() {
            problems.push(format!("`{}` is {}, expected F32, F16 or BF16", t.name, t.dtype.name()));
        }
    }
    if !problems.is_empty() {
        return Err(DiffusionError::weights(path, problems.join(", ")));
    }
    copy_into(&variables, &file.tensors)
}

fn copy_into(variables: &HashMap<String, Tensor>, tensors: &[NamedTensor]) -> Result<()> {
    tch::no_grad(|| {
        for t in tensors {
            let kind = kind_of(t.dtype).expect("checked above");
            let shape: Vec<i64> = t.shape.iter().map(|&d| d as i64).collect();
            let mut var = variables[&t.name].shallow_clone();
            let source = Tensor::from_data_size(&t.data, &shape, kind);
            var.copy_(&source.to_kind(var.kind()).to_device(var.device()));
        }
    });
    Ok(())
}

/// Writes `vs` as a diffusers model folder: `config.json` and
/// `diffusion_pytorch_model.safetensors` (F32, the config also in its metadata).
pub fn save_model_dir(
    vs: &nn::VarStore,
    dir: &Path,
    schema: &str,
    config: &serde_json::Value,
) -> Result<()> {
    std::fs::create_dir_all(dir).at(dir)?;
    save_var_store(vs, &dir.join(WEIGHTS_FILE), schema, config)?;
    write_json(&dir.join("config.json"), config)
}

/// Pretty JSON with a final newline.
pub(crate) fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| DiffusionError::config(path, e.to_string()))?;
    Ok(std::fs::write(path, text + "\n").at(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_vae_attention_names_map_to_new_ones() {
        let m = |s: &str| modern_name(s);
        assert_eq!(
            m("encoder.mid_block.attentions.0.query.weight").as_deref(),
            Some("encoder.mid_block.attentions.0.to_q.weight")
        );
        assert_eq!(
            m("decoder.mid_block.attentions.0.proj_attn.bias").as_deref(),
            Some("decoder.mid_block.attentions.0.to_out.0.bias")
        );
        assert_eq!(m("encoder.mid_block.attentions.0.group_norm.weight"), None);
        assert_eq!(m("encoder.conv_in.weight"), None);
    }
}

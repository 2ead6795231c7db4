//! Features of images from a user's TorchScript network, for the 2-way identification columns of
//! the field's reconstruction table (MindEye's AlexNet(2), AlexNet(5), Inception, EfficientNet,
//! SwAV): torchvision's weights cannot be downloaded here, so the network is whatever module the
//! user exported, e.g. `torch.jit.trace(alexnet(weights=...).features[:5], x)`, or AlexNet's
//! weights as a safetensors state dict (`alexnet.rs`).
//!
//! The preprocessing is MindEye's `two_way_identification` (MindEye1 `Reconstruction_Metrics.py`):
//! RGB scaled to `[0, 1]` in `f32` (`ToTensor`), torchvision's `Resize(size, BILINEAR)` on the
//! float tensor (LibTorch's own bilinear kernels, with or without antialiasing), an optional
//! centre crop (`CenterCrop`), then `Normalize(mean, std)`. The chosen output is flattened per
//! image (`.flatten(1)`), as MindEye does before `np.corrcoef`.

use std::path::{Path, PathBuf};

use brainpipe_artifacts::write_embeddings;
use brainpipe_core::{ArtifactKind, Context, Port, Stage, StageError};
use brainpipe_tensor::{ResolveDevice, device_name};
use rayon::prelude::*;
use tch::{CModule, Device, IValue, Kind, Tensor};

pub use brainpipe_params::clip::ExtractParams;

use crate::alexnet::AlexNetFeatures;
use crate::error::{ClipError, Result};
use crate::image::RgbImage;
use crate::stages::{IMAGES_DOC, STIMULI_DOC, reconstruction_images, study_images};

/// How images become the network's input (torchvision's transforms on float tensors).
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkPreprocessing {
    /// Resize target: the shorter side (or both sides when `square`); 0 keeps the size.
    pub size: usize,
    /// Resize both sides to `size` instead of the shorter one.
    pub square: bool,
    /// Side of the centre crop after resizing; 0: none.
    pub crop: usize,
    /// torchvision's `antialias` flag of the bilinear resize.
    pub antialias: bool,
    /// Per-channel mean subtracted from the `[0, 1]` values.
    pub mean: [f32; 3],
    /// Per-channel standard deviation the values are divided by.
    pub std: [f32; 3],
}

impl NetworkPreprocessing {
    /// `(height, width)` after the resize (torchvision's `_compute_resized_output_size` without
    /// `max_size`).
    pub fn resized_size(&self, height: usize, width: usize) -> (usize, usize) {
        if self.size == 0 {
            (height, width)
        } else if self.square {
            (self.size, self.size)
        } else if width <= height {
            ((self.size as f64 * height as f64 / width as f64) as usize, self.size)
        } else {
            (self.size, (self.size as f64 * width as f64 / height as f64) as usize)
        }
    }

    /// The normalised `3 × h × w` `f32` tensor of `image` (on the CPU); `path` names the image
    /// in errors.
    pub fn tensor(&self, image: &RgbImage, path: &Path) -> Result<Tensor> {
        let (h, w) = (image.height as i64, image.width as i64);
        let mut x = Tensor::from_slice(&image.pixels)
            .view([h, w, 3])
            .permute([2, 0, 1])
            .to_kind(Kind::Float)
            / 255.0;
        let (rh, rw) = self.resized_size(image.height, image.width);
        if (rh, rw) != (image.height, image.width) {
            let size = [rh as i64, rw as i64];
            let batch = x.unsqueeze(0);
            // torchvision calls F.interpolate, which picks the `_aa` kernel for antialias=True.
            x = if self.antialias {
                batch.f_internal_upsample_bilinear2d_aa(size, false, None, None)?
            } else {
                batch.f_upsample_bilinear2d(size, false, None, None)?
            }
            .squeeze_dim(0);
        }
        if self.crop > 0 {
            let c = self.crop;
            if c > rh || c > rw {
                return Err(ClipError::image(
                    path,
                    format!("{rw}×{rh} after resizing, smaller than the {c}×{c} crop"),
                ));
            }
            // torchvision's center_crop: int(round((h − crop) / 2)), Python's round (ties to even).
            let top = ((rh - c) as f64 / 2.0).round_ties_even() as i64;
            let left = ((rw - c) as f64 / 2.0).round_ties_even() as i64;
            x = x.narrow(1, top, c as i64).narrow(2, left, c as i64);
        }
        let mean = Tensor::from_slice(&self.mean).view([3, 1, 1]);
        let std = Tensor::from_slice(&self.std).view([3, 1, 1]);
        Ok(((x - mean) / std).contiguous())
    }
}

/// What computes the features.
enum Network {
    /// A user's TorchScript module.
    TorchScript(CModule),
    /// torchvision's AlexNet features from a safetensors state dict.
    AlexNet(AlexNetFeatures),
}

/// A user's network (TorchScript, or AlexNet weights), loaded on a device, and which of its
/// outputs to keep.
pub struct FeatureExtractor {
    network: Network,
    path: PathBuf,
    output: String,
    device: Device,
}

/// LibTorch's messages run over many lines (C++ frames, the TorchScript interpreter's traceback);
/// the Python-style `…Error: what` line says what went wrong, else the first line does.
fn first_line(e: &tch::TchError) -> String {
    let text = e.to_string();
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let python_error = lines.iter().rev().find_map(|l| {
        let (kind, what) = l.split_once(": ")?;
        (kind.ends_with("Error") && !kind.contains(' ')).then_some(what)
    });
    let line = python_error.or(lines.first().copied()).unwrap_or("unknown error");
    line.strip_prefix("Internal torch error: ").unwrap_or(line).to_owned()
}

/// Short name of an output's type, for errors.
fn type_name(v: &IValue) -> &'static str {
    match v {
        IValue::None => "None",
        IValue::Tensor(_) => "a tensor",
        IValue::Double(_) => "a float",
        IValue::Int(_) => "an int",
        IValue::Bool(_) => "a bool",
        IValue::Tuple(_) => "a tuple",
        IValue::IntList(_) | IValue::DoubleList(_) | IValue::BoolList(_) => "a list of numbers",
        IValue::String(_) => "a string",
        IValue::StringList(_) => "a list of strings",
        IValue::TensorList(_) | IValue::GenericList(_) => "a list",
        IValue::GenericDict(_) => "a dict",
        IValue::Object(_) => "an object",
        _ => "a value that is not a tensor",
    }
}

impl FeatureExtractor {
    /// Loads the TorchScript file `path` onto `device` in eval mode; `output` picks what
    /// [`FeatureExtractor::features`] keeps of the module's output: empty for a tensor, a dict
    /// key, or an index into a tuple or list.
    pub fn load(path: &Path, output: &str, device: Device) -> Result<Self> {
        if !path.is_file() {
            return Err(ClipError::module(path, "no such file"));
        }
        let mut module = CModule::load_on_device(path, device).map_err(|e| {
            ClipError::module(path, format!("cannot be loaded: {}", first_line(&e)))
        })?;
        module.set_eval();
        Ok(FeatureExtractor {
            network: Network::TorchScript(module),
            path: path.to_path_buf(),
            output: output.to_owned(),
            device,
        })
    }

    /// Loads the safetensors state dict `path` of torchvision's `AlexNet.features` (any widths)
    /// onto `device`, keeping layer `output` (`features.N`; empty: the whole block).
    pub fn load_alexnet(path: &Path, output: &str, device: Device) -> Result<Self> {
        if !path.is_file() {
            return Err(ClipError::module(path, "no such file"));
        }
        Ok(FeatureExtractor {
            network: Network::AlexNet(AlexNetFeatures::load(path, output, device)?),
            path: path.to_path_buf(),
            output: output.to_owned(),
            device,
        })
    }

    /// The device it computes on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The kept output of `batch` (`n × 3 × h × w`, any device), flattened per image to
    /// `n × dim` `f32` on the CPU.
    pub fn features(&self, batch: &Tensor) -> Result<Tensor> {
        let n = batch.size()[0];
        let input = batch.to_device(self.device);
        let failed = |e: tch::TchError| {
            ClipError::module(
                &self.path,
                format!("forward on a {:?} batch failed: {}", batch.size(), first_line(&e)),
            )
        };
        let tensor = match &self.network {
            Network::TorchScript(module) => {
                let out = tch::no_grad(|| module.forward_is(&[IValue::Tensor(input)]));
                self.select(out.map_err(failed)?)?
            }
            Network::AlexNet(net) => tch::no_grad(|| net.forward(&input)).map_err(|e| match e {
                ClipError::Torch(e) => failed(e),
                other => other,
            })?,
        };
        if tensor.dim() == 0 || tensor.size()[0] != n {
            return Err(ClipError::module(
                &self.path,
                format!("output of shape {:?} has not one row per image ({n})", tensor.size()),
            ));
        }
        Ok(tensor.to_device(Device::Cpu).to_kind(Kind::Float).flatten(1, -1).contiguous())
    }

    /// The tensor `self.output` names in `out`.
    fn select(&self, out: IValue) -> Result<Tensor> {
        let bad = |message: String| ClipError::module(&self.path, message);
        let key = self.output.as_str();
        let picked = match (out, key) {
            (IValue::Tensor(t), "") => return Ok(t),
            (other, "") => {
                return Err(bad(format!(
                    "returns {}, not a tensor: set `output` to the key or index to keep",
                    type_name(&other)
                )));
            }
            (IValue::GenericDict(entries), key) => {
                let names: Vec<String> = entries
                    .iter()
                    .filter_map(|(k, _)| match k {
                        IValue::String(s) => Some(s.clone()),
                        _ => None,
                    })
                    .collect();
                entries
                    .into_iter()
                    .find(|(k, _)| matches!(k, IValue::String(s) if s == key))
                    .map(|(_, v)| v)
                    .ok_or_else(|| {
                        bad(format!("its output has no key `{key}` (keys: {})", names.join(", ")))
                    })?
            }
            (IValue::Tuple(items) | IValue::GenericList(items), key) => {
                let len = items.len();
                let index = key.parse::<usize>().ok().filter(|&i| i < len).ok_or_else(|| {
                    bad(format!("`output` {key:?} is not an index into its {len} outputs"))
                })?;
                items.into_iter().nth(index).expect("index checked against the length")
            }
            (IValue::TensorList(items), key) => {
                let len = items.len();
                let index = key.parse::<usize>().ok().filter(|&i| i < len).ok_or_else(|| {
                    bad(format!("`output` {key:?} is not an index into its {len} outputs"))
                })?;
                return Ok(items.into_iter().nth(index).expect("index checked against the length"));
            }
            (other, key) => {
                return Err(bad(format!(
                    "returns {}: `output` {key:?} picks nothing",
                    type_name(&other)
                )));
            }
        };
        match picked {
            IValue::Tensor(t) => Ok(t),
            other => Err(bad(format!("output `{key}` is {}, not a tensor", type_name(&other)))),
        }
    }

    /// Features of image files, `batch_size` at a time: the flattened values (row-major) and
    /// their width. Every image must preprocess to the same size (set `crop` or `square` for
    /// images of different shapes).
    pub fn extract_files(
        &self,
        paths: &[PathBuf],
        preprocessing: &NetworkPreprocessing,
        batch_size: usize,
    ) -> Result<(Vec<f32>, usize)> {
        let mut values = Vec::new();
        let mut dim = 0;
        let mut shape: Option<(Vec<i64>, &PathBuf)> = None;
        for chunk in paths.chunks(batch_size.max(1)) {
            let inputs: Vec<Tensor> = chunk
                .par_iter()
                .map(|p| RgbImage::open(p).and_then(|image| preprocessing.tensor(&image, p)))
                .collect::<Result<_>>()?;
            for (t, p) in inputs.iter().zip(chunk) {
                match &shape {
                    None => shape = Some((t.size(), p)),
                    Some((first, first_path)) if *first != t.size() => {
                        return Err(ClipError::image(
                            p,
                            format!(
                                "preprocessed to {:?}, {} to {first:?}: set `crop` or `square` for images of different shapes",
                                t.size(),
                                first_path.display()
                            ),
                        ));
                    }
                    Some(_) => {}
                }
            }
            let features = self.features(&Tensor::stack(&inputs, 0))?;
            let width = features.size()[1] as usize;
            if dim != 0 && width != dim {
                return Err(ClipError::module(
                    &self.path,
                    format!("features of width {width} after {dim}"),
                ));
            }
            dim = width;
            values.extend(Vec::<f32>::try_from(&features.view([-1]))?);
        }
        Ok((values, dim))
    }
}

/// `clip.extract`: a TorchScript network's features of a study's images or of diffusion.decode's
/// reconstructions, as an `embeddings/1` table of `kind = image` rows (what eval.images takes as
/// `seen_features` / `reconstruction_features`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Extract;

impl Stage for Extract {
    type Params = ExtractParams;
    const NAME: &'static str = "clip.extract";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str = "Features of images from a user's TorchScript network (AlexNet, Inception… exported by torch.jit), preprocessed as MindEye's 2-way identification does";

    fn inputs(&self) -> Vec<Port> {
        vec![
            Port::input("stimuli", ArtifactKind::table(brainpipe_artifacts::STIMULI), STIMULI_DOC)
                .optional(),
            Port::input("images", ArtifactKind::Directory, IMAGES_DOC).optional(),
            Port::input(
                "reconstructions",
                ArtifactKind::table(brainpipe_artifacts::RECONSTRUCTIONS),
                "instead of stimuli: diffusion.decode's reconstructions, one table or several (their \
                 PNGs in the `images/` beside each table)",
            )
            .optional()
            .many(),
            Port::input(
                "model",
                ArtifactKind::File,
                "a TorchScript module (torch.jit.trace / torch.jit.script, saved with .save) taking \
                 an n × 3 × h × w float batch; with `architecture: alexnet`, a safetensors state \
                 dict of torchvision's AlexNet.features",
            ),
        ]
    }

    fn outputs(&self) -> Vec<Port> {
        vec![Port::output(
            "embeddings",
            "features.parquet",
            ArtifactKind::table(brainpipe_artifacts::EMBEDDINGS),
            "one `kind = image` row per image: stimulus, image path, the flattened features",
        )]
    }

    fn run(&self, ctx: &mut Context, p: &ExtractParams) -> Result<(), StageError> {
        let tables: Vec<PathBuf> =
            ctx.input_list("reconstructions").into_iter().map(Path::to_path_buf).collect();
        let (rows, files) = if tables.is_empty() {
            let table = ctx.input("stimuli").map_err(|_| {
                StageError::msg("clip.extract needs `stimuli` (a study) or `reconstructions`")
            })?;
            let table = table.to_path_buf();
            study_images(&table, ctx.optional_input("images"))?
        } else {
            if ctx.optional_input("stimuli").is_some() || ctx.optional_input("images").is_some() {
                return Err(StageError::msg(
                    "clip.extract: give `stimuli` (and `images`) or `reconstructions`, not both",
                ));
            }
            reconstruction_images(&tables)?
        };
        if rows.is_empty() {
            return Err(StageError::msg("clip.extract: no images in the inputs"));
        }
        let model = ctx.input("model")?.to_path_buf();
        brainpipe_tensor::apply_threads_param(p.threads);
        let device = p.device.resolve().map_err(ClipError::from)?;
        ctx.set_device(device_name(device));
        let extractor = match p.architecture.as_str() {
            "alexnet" => FeatureExtractor::load_alexnet(&model, &p.output, device)?,
            _ => FeatureExtractor::load(&model, &p.output, device)?,
        };
        let (values, dim) = extractor.extract_files(&files, &p.preprocessing(), p.batch_size)?;
        ctx.note("images", rows.len());
        ctx.note("dim", dim);
        write_embeddings(&ctx.output("embeddings"), &rows, values, dim)?;
        Ok(())
    }
}

/// The preprocessing `params` describe.
trait ExtractPreprocessing {
    fn preprocessing(&self) -> NetworkPreprocessing;
}

impl ExtractPreprocessing for ExtractParams {
    fn preprocessing(&self) -> NetworkPreprocessing {
        let three = |v: &[f64]| -> [f32; 3] { [v[0] as f32, v[1] as f32, v[2] as f32] };
        NetworkPreprocessing {
            size: self.size as usize,
            square: self.square,
            crop: self.crop as usize,
            antialias: self.antialias,
            mean: three(&self.mean),
            std: three(&self.std),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtorch_errors_shrink_to_the_line_that_says_what_went_wrong() {
        let interpreter = tch::TchError::Torch(
            "The following operation failed in the TorchScript interpreter.\nTraceback of TorchScript (most recent call last):\n  File \"x.py\", line 3\nRuntimeError: Given groups=1, expected input to have 1 channels, but got 3 channels instead\n".to_owned(),
        );
        assert_eq!(
            first_line(&interpreter),
            "Given groups=1, expected input to have 1 channels, but got 3 channels instead"
        );
        let plain =
            tch::TchError::Torch("PytorchStreamReader failed\nException raised from".into());
        assert_eq!(first_line(&plain), "PytorchStreamReader failed");
    }

    #[test]
    fn resized_sizes_follow_torchvision() {
        let p = NetworkPreprocessing {
            size: 256,
            square: false,
            crop: 0,
            antialias: true,
            mean: [0.0; 3],
            std: [1.0; 3],
        };
        assert_eq!(p.resized_size(425, 425), (256, 256));
        assert_eq!(p.resized_size(480, 640), (256, 341));
        assert_eq!(p.resized_size(640, 480), (341, 256));
        assert_eq!(
            NetworkPreprocessing { square: true, ..p.clone() }.resized_size(480, 640),
            (256, 256)
        );
        assert_eq!(NetworkPreprocessing { size: 0, ..p }.resized_size(480, 640), (480, 640));
    }
}

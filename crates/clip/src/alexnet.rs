//! torchvision's `AlexNet.features` built from a safetensors state dict, for the AlexNet(2) and
//! AlexNet(5) columns without TorchScript: the layer layout (kernels, strides, paddings, pools)
//! is torchvision's, the widths are read from the weights, and the variable names are
//! torchvision's (`features.0.weight`…, the `features.` prefix optional), so a state dict saved
//! with `safetensors.torch.save_file(alexnet(weights=…).state_dict(), …)` loads as it is (the
//! classifier's tensors are ignored).

use std::path::Path;

use tch::{Device, Kind, Tensor};

use crate::error::{ClipError, Result};

/// The convolutions of `features`: (layer index, kernel, stride, padding).
const CONVS: [(usize, i64, i64, i64); 5] =
    [(0, 11, 4, 2), (3, 5, 1, 2), (6, 3, 1, 1), (8, 3, 1, 1), (10, 3, 1, 1)];
/// The max-pools (3 × 3, stride 2).
const POOLS: [usize; 3] = [2, 5, 12];
/// The last layer of `features`.
const LAST: usize = 12;

/// `features[:last + 1]` of an AlexNet.
pub(crate) struct AlexNetFeatures {
    /// (weight, bias) of each convolution, in order.
    convs: Vec<(Tensor, Tensor)>,
    last: usize,
}

impl AlexNetFeatures {
    /// The weights of `path` on `device`, kept up to layer `output` (`features.N`, or empty for
    /// the whole block).
    pub(crate) fn load(path: &Path, output: &str, device: Device) -> Result<Self> {
        let bad = |m: String| ClipError::module(path, m);
        let last = match output {
            "" => LAST,
            name => name
                .strip_prefix("features.")
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|&n| n <= LAST)
                .ok_or_else(|| {
                    bad(format!("`output` {name:?} is not a layer of AlexNet's features (features.0 … features.12)"))
                })?,
        };
        let named = Tensor::read_safetensors(path)
            .map_err(|e| bad(format!("not a readable safetensors file: {e}")))?;
        let mut convs = Vec::new();
        let mut channels = 3;
        let mut problems = Vec::new();
        for (layer, kernel, _, _) in CONVS.iter().filter(|c| c.0 <= last) {
            let find = |what: &str| {
                named
                    .iter()
                    .find(|(n, _)| {
                        n.strip_prefix("features.").unwrap_or(n) == format!("{layer}.{what}")
                    })
                    .map(|(_, t)| t.to_kind(Kind::Float).to_device(device))
            };
            let (Some(w), Some(b)) = (find("weight"), find("bias")) else {
                problems.push(format!("features.{layer}.weight and .bias missing"));
                continue;
            };
            let shape = w.size();
            let out = shape[0];
            if shape.len() != 4 || shape[1] != channels || shape[2..] != [*kernel, *kernel] {
                problems.push(format!(
                    "features.{layer}.weight is {shape:?}, expected [_, {channels}, {kernel}, {kernel}]"
                ));
            }
            if b.size() != [out] {
                problems.push(format!("features.{layer}.bias is {:?}, expected [{out}]", b.size()));
            }
            channels = out;
            convs.push((w, b));
        }
        if !problems.is_empty() {
            return Err(bad(format!(
                "not an AlexNet features state dict: {}",
                problems.join("; ")
            )));
        }
        Ok(AlexNetFeatures { convs, last })
    }

    /// `features[:last + 1]` of `x` (`n × 3 × h × w`).
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.shallow_clone();
        let mut convs = self.convs.iter().zip(CONVS);
        for layer in 0..=self.last {
            x = if CONVS.iter().any(|c| c.0 == layer) {
                let ((w, b), (_, _, stride, pad)) =
                    convs.next().expect("one weight per convolution, checked at load");
                x.f_conv2d(w, Some(b), [stride, stride], [pad, pad], [1, 1], 1)?
            } else if POOLS.contains(&layer) {
                x.f_max_pool2d([3, 3], [2, 2], [0, 0], [1, 1], false)?
            } else {
                x.relu()
            };
        }
        Ok(x)
    }
}

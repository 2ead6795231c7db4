//! The Brain2Word networks (Affolter et al. 2020): Base, ROI and Autoencoder, built on a tch
//! `VarStore` whose variable paths are the names in `model.safetensors`.

use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

/// Keras' BatchNormalization defaults (Brain2Word is Keras): momentum 0.99 (PyTorch's 0.01),
/// epsilon 1e-3.
const BN_MOMENTUM: f64 = 0.01;
const BN_EPS: f64 = 1e-3;

/// Number format of the large matmuls (the first layer and the autoencoder's output layer); shared
/// with the CLIP stages.
pub use brainpipe_params::models::{ClassifierInput, DROPOUT, LEAKY_SLOPE, ModelKind, ROI_SCALE};
pub use brainpipe_tensor::{Precision, PrecisionExt, Tf32Guard};

/// Everything needed to rebuild a network: stored as `config` in `model.safetensors`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetConfig {
    /// Which network.
    pub kind: ModelKind,
    /// Columns the network reads (Brain2Word's template: 65,730).
    pub inputs: usize,
    /// Template columns read, ascending, when the fold selected its inputs (empty: every
    /// column of the features, `inputs` of them).
    #[serde(default)]
    pub columns: Vec<usize>,
    /// Width of the features table the columns index (0 when `columns` is empty).
    #[serde(default)]
    pub features_width: usize,
    /// Hidden widths after the first layer's (Base: 2000, 200; ROI: the ROI layer, then these
    /// minus the first).
    pub hidden: Vec<usize>,
    /// Width of the regression head (GloVe: 300).
    pub embedding: usize,
    /// Classes of the classification head (Pereira: 180).
    pub classes: usize,
    /// What the classification head reads (the default, the embedding, is not written, so
    /// files from before the choice keep their bytes).
    #[serde(default, skip_serializing_if = "ClassifierInput::is_embedding")]
    pub classifier_input: ClassifierInput,
    /// LeakyReLU slope.
    pub slope: f64,
    /// Dropout rate.
    pub dropout: f64,
    /// ROI model: the `(first column, size)` of each ROI block.
    pub rois: Vec<(usize, usize)>,
    /// ROI model: outputs per block = max(ceil(size / roi_scale), 1).
    pub roi_scale: usize,
    /// ROI model: ROIs are packed into this many size groups, one batched matmul each.
    #[serde(default = "one")]
    pub roi_groups: usize,
    /// Autoencoder: decoder weights are the encoder's, transposed.
    pub tied: bool,
    /// Number format of the large matmuls.
    #[serde(default)]
    pub precision: Precision,
    /// The mean target vector subtracted before training (empty: none); added back to every
    /// prediction, so predictions are in the targets' own space.
    #[serde(default)]
    pub target_mean: Vec<f32>,
}

impl NetConfig {
    /// Width of the features table this network expects.
    pub fn expected_features_width(&self) -> usize {
        if self.columns.is_empty() { self.inputs } else { self.features_width }
    }

    /// This config restricted to `selected` (inputs, columns and renumbered ROI blocks).
    pub fn restricted(&self, selected: &crate::select::Selected) -> NetConfig {
        NetConfig {
            inputs: selected.columns.len(),
            features_width: self.expected_features_width(),
            columns: selected.columns.clone(),
            rois: if self.kind == ModelKind::Roi { selected.blocks.clone() } else { Vec::new() },
            ..self.clone()
        }
    }

    /// Widths of the hidden layers as built (the ROI model's first is the ROI layer's).
    pub fn hidden_widths(&self) -> Vec<usize> {
        match self.kind {
            ModelKind::Roi => {
                let first = roi_outputs(&self.rois, self.roi_scale).iter().sum();
                std::iter::once(first).chain(self.hidden.iter().skip(1).copied()).collect()
            }
            _ => self.hidden.clone(),
        }
    }
}

/// Outputs of each ROI block: max(ceil(size / scale), 1).
pub fn roi_outputs(rois: &[(usize, usize)], scale: usize) -> Vec<usize> {
    rois.iter().map(|&(_, size)| size.div_ceil(scale.max(1)).max(1)).collect()
}

fn one() -> usize {
    1
}

fn leaky(x: &Tensor, slope: f64) -> Tensor {
    x.maximum(&(x * slope))
}

/// A dense layer with Keras' default init (Glorot uniform weights, zero bias), PyTorch layout.
#[derive(Debug)]
struct Dense {
    weight: Tensor,
    bias: Tensor,
}

impl Dense {
    fn new(p: nn::Path<'_>, inputs: usize, outputs: usize) -> Dense {
        let limit = (6.0 / (inputs + outputs) as f64).sqrt();
        Dense {
            weight: p.var(
                "weight",
                &[outputs as i64, inputs as i64],
                nn::Init::Uniform { lo: -limit, up: limit },
            ),
            bias: p.var("bias", &[outputs as i64], nn::Init::Const(0.0)),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.weight, Some(&self.bias))
    }

    /// The forward pass with the matmul in `precision`.
    fn forward_in(&self, x: &Tensor, precision: Precision) -> Tensor {
        match precision {
            Precision::Fp32 | Precision::Tf32 => self.forward(x),
            Precision::Bf16 => x
                .to_kind(Kind::BFloat16)
                .linear(
                    &self.weight.to_kind(Kind::BFloat16),
                    Some(&self.bias.to_kind(Kind::BFloat16)),
                )
                .to_kind(Kind::Float),
        }
    }
}

/// `a.bmm(b)` in `precision`, the result in f32.
fn bmm_in(a: &Tensor, b: &Tensor, precision: Precision) -> Tensor {
    match precision {
        Precision::Fp32 | Precision::Tf32 => a.bmm(b),
        Precision::Bf16 => {
            a.to_kind(Kind::BFloat16).bmm(&b.to_kind(Kind::BFloat16)).to_kind(Kind::Float)
        }
    }
}

/// ROIs packed together: a zero-padded `[rois, max_in, max_out]` weight for one `bmm`.
#[derive(Debug)]
struct RoiGroup {
    weight: Tensor,
    bias: Tensor,
    /// `[rois * max_in]`: input column of each packed position (`inputs` = the zero column).
    gather: Tensor,
    /// `[rois * max_out]` positions of this group's packed outputs that are real, in ROI order.
    real: Tensor,
    rois: i64,
    max_in: i64,
    max_out: i64,
}

/// Brain2Word's ROI layer — one dense block per ROI, outputs concatenated — as a few batched
/// matmuls instead of hundreds of small ones. ROIs are sorted by size and split into `groups`
/// groups of equal count; each group's weights are packed into a zero-padded
/// `[rois, max_in, max_out]` tensor, its inputs gathered into `[rois, batch, max_in]` (padding
/// reads a zero column) and multiplied with one `bmm`. Grouping by size keeps the padding small:
/// on Brain2Word's 333 template sizes one group would multiply 26× more zeros than weights.
/// Padded weights get zero gradients (their inputs are zero, their outputs dropped), so they stay
/// zero under Adam.
#[derive(Debug)]
struct RoiLayer {
    groups: Vec<RoiGroup>,
    /// `[Σ outputs]`: position, in the groups' concatenated real outputs, of each ROI output in
    /// the original ROI order.
    order: Tensor,
    /// `[inputs]`: position of each input column in the groups' concatenated packed inputs (the
    /// last position is a zero column), for the tied decoder.
    scatter_back: Tensor,
    /// Σ outputs.
    width: i64,
}

/// The ROI indices of each group: sorted by size, `groups` chunks of (nearly) equal count.
pub fn roi_groups(blocks: &[(usize, usize)], groups: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..blocks.len()).collect();
    order.sort_by_key(|&r| (blocks[r].1, r));
    let groups = groups.clamp(1, blocks.len().max(1));
    let per = blocks.len().div_ceil(groups).max(1);
    order.chunks(per).map(<[usize]>::to_vec).collect()
}

impl RoiLayer {
    fn new(
        p: nn::Path<'_>,
        inputs: usize,
        blocks: &[(usize, usize)],
        scale: usize,
        groups: usize,
    ) -> RoiLayer {
        let outputs = roi_outputs(blocks, scale);
        let device = p.device();
        let mut built = Vec::new();
        // Where each ROI's outputs land in the concatenated real outputs of the groups.
        let mut out_at = vec![0usize; blocks.len()];
        let mut in_at = vec![0usize; blocks.len()];
        let (mut real_offset, mut packed_offset) = (0, 0);
        for (g, members) in roi_groups(blocks, groups).iter().enumerate() {
            let rois = members.len();
            let max_in = members.iter().map(|&r| blocks[r].1).max().unwrap_or(1).max(1);
            let max_out = members.iter().map(|&r| outputs[r]).max().unwrap_or(1);
            let mut gather = vec![inputs as i64; rois * max_in];
            let mut real = Vec::new();
            let mut mask = vec![0f32; rois * max_in * max_out];
            let mut limits = vec![0f32; rois];
            for (k, &r) in members.iter().enumerate() {
                let (first, size) = blocks[r];
                for i in 0..size {
                    gather[k * max_in + i] = (first + i) as i64;
                    for o in 0..outputs[r] {
                        mask[(k * max_in + i) * max_out + o] = 1.0;
                    }
                }
                out_at[r] = real_offset + real.len();
                in_at[r] = packed_offset + k * max_in;
                real.extend((0..outputs[r]).map(|o| (k * max_out + o) as i64));
                limits[k] = (6.0 / (size + outputs[r]) as f32).sqrt();
            }
            let gp = &p / format!("group{g}");
            let shape = [rois as i64, max_in as i64, max_out as i64];
            let weight = gp.var("weight", &shape, nn::Init::Uniform { lo: -1.0, up: 1.0 });
            tch::no_grad(|| {
                let scale = Tensor::from_slice(&limits).view([rois as i64, 1, 1]).to_device(device);
                let mask = Tensor::from_slice(&mask).view(shape).to_device(device);
                let _ = weight.shallow_clone().g_mul_(&(scale * mask));
            });
            real_offset += real.len();
            packed_offset += rois * max_in;
            built.push(RoiGroup {
                weight,
                bias: gp.var("bias", &[rois as i64, max_out as i64], nn::Init::Const(0.0)),
                gather: Tensor::from_slice(&gather).to_device(device),
                real: Tensor::from_slice(&real).to_device(device),
                rois: rois as i64,
                max_in: max_in as i64,
                max_out: max_out as i64,
            });
        }
        let mut order: Vec<i64> = Vec::with_capacity(outputs.iter().sum());
        for (r, &out) in outputs.iter().enumerate() {
            order.extend((0..out).map(|o| (out_at[r] + o) as i64));
        }
        let mut scatter_back = vec![packed_offset as i64; inputs];
        for (r, &(first, size)) in blocks.iter().enumerate() {
            for i in 0..size {
                scatter_back[first + i] = (in_at[r] + i) as i64;
            }
        }
        RoiLayer {
            groups: built,
            width: order.len() as i64,
            order: Tensor::from_slice(&order).to_device(device),
            scatter_back: Tensor::from_slice(&scatter_back).to_device(device),
        }
    }

    fn forward(&self, x: &Tensor, precision: Precision) -> Tensor {
        let batch = x.size()[0];
        // Inputs as rows (`[inputs + 1, batch]`, the last a zero row for padding), so each group
        // gathers whole contiguous rows (a memcpy per input column) instead of strided columns;
        // the bmm reads the transposed view without a copy. Full-size ROI training step on the
        // CPU: 119 → 102 ms.
        let rows =
            Tensor::cat(&[x.transpose(0, 1), x.zeros_like().narrow(1, 0, 1).transpose(0, 1)], 0);
        let parts: Vec<Tensor> = self
            .groups
            .iter()
            .map(|g| {
                let packed = rows
                    .index_select(0, &g.gather.to_device(x.device()))
                    .view([g.rois, g.max_in, batch])
                    .transpose(1, 2);
                let y = bmm_in(&packed, &g.weight, precision) + g.bias.unsqueeze(1);
                y.transpose(0, 1)
                    .reshape([batch, g.rois * g.max_out])
                    .index_select(1, &g.real.to_device(x.device()))
            })
            .collect();
        // The index tensors are not variables: a `VarStore::set_device` leaves them where they
        // were built, so they follow the input (a no-op when already there).
        Tensor::cat(&parts, 1).index_select(1, &self.order.to_device(x.device()))
    }

    /// The transposed layer (tied decoder): ROI outputs → input columns, plus the decoder's own
    /// `bias`.
    fn backward(&self, h: &Tensor, bias: &Tensor, precision: Precision) -> Tensor {
        let batch = h.size()[0];
        // Back to the groups' concatenated real-output order.
        let mut grouped = Tensor::zeros([batch, self.width], (h.kind(), h.device()));
        grouped = grouped.index_copy(1, &self.order.to_device(h.device()), h);
        let mut parts = Vec::new();
        let mut offset = 0;
        for g in &self.groups {
            let n = g.real.size()[0];
            let packed = Tensor::zeros([batch, g.rois * g.max_out], (h.kind(), h.device()))
                .index_copy(1, &g.real.to_device(h.device()), &grouped.narrow(1, offset, n))
                .view([batch, g.rois, g.max_out])
                .transpose(0, 1);
            offset += n;
            let y = bmm_in(&packed, &g.weight.transpose(1, 2), precision);
            parts.push(y.transpose(0, 1).reshape([batch, g.rois * g.max_in]));
        }
        parts.push(h.zeros_like().narrow(1, 0, 1));
        Tensor::cat(&parts, 1).index_select(1, &self.scatter_back.to_device(h.device())) + bias
    }

    fn width(&self) -> i64 {
        self.width
    }
}

#[derive(Debug)]
enum First {
    Dense(Dense),
    Roi(RoiLayer),
}

/// What a forward pass gives.
#[derive(Debug)]
pub struct Outputs {
    /// Activations of each hidden layer (after LeakyReLU and BN, before dropout): what mean
    /// regularisation pulls towards the per-word means.
    pub hidden: Vec<Tensor>,
    /// The regression head (the predicted embedding).
    pub embedding: Tensor,
    /// The classification head's logits.
    pub logits: Tensor,
    /// The autoencoder's reconstruction of the input.
    pub reconstruction: Option<Tensor>,
}

/// A Brain2Word network.
#[derive(Debug)]
pub struct Net {
    config: NetConfig,
    first: First,
    layers: Vec<Dense>,
    norms: Vec<nn::BatchNorm>,
    head: Dense,
    /// The embedding's LeakyReLU + BN before the classifier (none when it reads the hidden layer).
    head_norm: Option<nn::BatchNorm>,
    classifier: Dense,
    decoder: Option<Decoder>,
}

#[derive(Debug)]
struct Decoder {
    layers: Vec<Dense>,
    norms: Vec<nn::BatchNorm>,
    /// Free weights: the last layer to the input; tied: only its bias.
    output: Option<Dense>,
    output_bias: Tensor,
}

fn batch_norm(p: nn::Path<'_>, width: usize) -> nn::BatchNorm {
    let cfg = nn::BatchNormConfig { momentum: BN_MOMENTUM, eps: BN_EPS, ..Default::default() };
    nn::batch_norm1d(p, width as i64, cfg)
}

impl Net {
    /// Builds the network under `root` (variables `encoder.*`, `head.*`, `classifier.*`,
    /// `decoder.*`).
    pub fn new(root: &nn::Path<'_>, config: &NetConfig) -> Net {
        let widths = config.hidden_widths();
        let enc = root / "encoder";
        let first = match config.kind {
            ModelKind::Roi => First::Roi(RoiLayer::new(
                &enc / "roi",
                config.inputs,
                &config.rois,
                config.roi_scale,
                config.roi_groups,
            )),
            _ => First::Dense(Dense::new(&enc / "dense0", config.inputs, widths[0])),
        };
        let mut layers = Vec::new();
        let mut norms = vec![batch_norm(&enc / "norm0", widths[0])];
        for i in 1..widths.len() {
            layers.push(Dense::new(&enc / format!("dense{i}"), widths[i - 1], widths[i]));
            norms.push(batch_norm(&enc / format!("norm{i}"), widths[i]));
        }
        let last = *widths.last().unwrap_or(&config.inputs);
        let head = Dense::new(root / "head", last, config.embedding);
        let (head_norm, classifier) = match config.classifier_input {
            ClassifierInput::Embedding => (
                Some(batch_norm(root / "head_norm", config.embedding)),
                Dense::new(root / "classifier", config.embedding, config.classes),
            ),
            ClassifierInput::Hidden => {
                (None, Dense::new(root / "classifier", last, config.classes))
            }
        };
        let decoder = (config.kind == ModelKind::Autoencoder).then(|| {
            let dec = root / "decoder";
            // Mirror: embedding → widths reversed → input.
            let mut chain = vec![config.embedding];
            chain.extend(widths.iter().rev().copied());
            let mut dl = Vec::new();
            let mut dn = Vec::new();
            for i in 1..chain.len() {
                dl.push(Dense::new(&dec / format!("dense{i}"), chain[i - 1], chain[i]));
                dn.push(batch_norm(&dec / format!("norm{i}"), chain[i]));
            }
            let output =
                (!config.tied).then(|| Dense::new(&dec / "output", widths[0], config.inputs));
            let output_bias = match &output {
                Some(d) => d.bias.shallow_clone(),
                None => {
                    (&dec / "output").var("bias", &[config.inputs as i64], nn::Init::Const(0.0))
                }
            };
            Decoder { layers: dl, norms: dn, output, output_bias }
        });
        Net { config: config.clone(), first, layers, norms, head, head_norm, classifier, decoder }
    }

    /// The config it was built from.
    pub fn config(&self) -> &NetConfig {
        &self.config
    }

    fn block(&self, x: Tensor, norm: &nn::BatchNorm, train: bool) -> (Tensor, Tensor) {
        let h = norm.forward_t(&leaky(&x, self.config.slope), train);
        let out = h.dropout(self.config.dropout, train);
        (h, out)
    }

    /// The forward pass; `train` turns on dropout and batch statistics.
    pub fn forward(&self, x: &Tensor, train: bool) -> Outputs {
        self.forward_with(x, train, train)
    }

    /// The forward pass with the encoder (`encoder.*`: first layer and hidden layers) in
    /// training mode only when `encoder_train`: a frozen encoder neither drops out nor updates
    /// its batch-normalisation statistics (Brain2CLIP's `pretrain_then_regression`).
    pub fn forward_with(&self, x: &Tensor, train: bool, encoder_train: bool) -> Outputs {
        let first = match &self.first {
            First::Dense(d) => d.forward_in(x, self.config.precision),
            First::Roi(r) => r.forward(x, self.config.precision),
        };
        let (h0, mut h) = self.block(first, &self.norms[0], encoder_train);
        let mut hidden = vec![h0];
        for (layer, norm) in self.layers.iter().zip(&self.norms[1..]) {
            let (kept, out) = self.block(layer.forward(&h), norm, encoder_train);
            hidden.push(kept);
            h = out;
        }
        let embedding = self.head.forward(&h);
        let logits = match &self.head_norm {
            Some(norm) => {
                self.classifier.forward(&self.block(embedding.shallow_clone(), norm, train).1)
            }
            None => self.classifier.forward(&h),
        };
        let reconstruction = self.decoder.as_ref().map(|dec| {
            let mut z = embedding.shallow_clone();
            for (layer, norm) in dec.layers.iter().zip(&dec.norms) {
                z = self.block(layer.forward(&z), norm, train).1;
            }
            let precision = self.config.precision;
            match (&dec.output, &self.first) {
                (Some(out), _) => out.forward_in(&z, precision),
                (None, First::Dense(d)) => {
                    let tied = Dense {
                        weight: d.weight.transpose(0, 1),
                        bias: dec.output_bias.shallow_clone(),
                    };
                    tied.forward_in(&z, precision)
                }
                (None, First::Roi(r)) => r.backward(&z, &dec.output_bias, precision),
            }
        });
        Outputs { hidden, embedding, logits, reconstruction }
    }

    /// Embeddings and logits of `x` in evaluation mode, `chunk` rows at a time.
    pub fn predict(&self, x: &Tensor, chunk: i64) -> (Tensor, Tensor) {
        tch::no_grad(|| {
            let n = x.size()[0];
            let mut e = Vec::new();
            let mut l = Vec::new();
            let mut start = 0;
            while start < n {
                let len = chunk.min(n - start);
                let out = self.forward(&x.narrow(0, start, len), false);
                e.push(out.embedding);
                l.push(out.logits);
                start += len;
            }
            (Tensor::cat(&e, 0), Tensor::cat(&l, 0))
        })
    }

    /// Width of the first layer's output.
    pub fn first_width(&self) -> i64 {
        match &self.first {
            First::Dense(d) => d.weight.size()[0],
            First::Roi(r) => r.width(),
        }
    }
}

/// Checks the packed ROI layer against the original's layout (one matmul per ROI, on the same
/// weights): returns (packed forward, per-ROI forward, packed tied backward, per-ROI backward).
#[doc(hidden)]
pub fn roi_layer_check(
    inputs: usize,
    blocks: &[(usize, usize)],
    scale: usize,
    groups: usize,
    batch: i64,
) -> (Tensor, Tensor, Tensor, Tensor) {
    let vs = nn::VarStore::new(Device::Cpu);
    let layer = RoiLayer::new(vs.root(), inputs, blocks, scale, groups);
    let x = Tensor::randn([batch, inputs as i64], (Kind::Float, Device::Cpu));
    let fast = layer.forward(&x, Precision::Fp32);
    let outs = roi_outputs(blocks, scale);
    let h = Tensor::randn([batch, layer.width()], (Kind::Float, Device::Cpu));
    let zero_bias = Tensor::zeros([inputs as i64], (Kind::Float, Device::Cpu));
    let fast_back = layer.backward(&h, &zero_bias, Precision::Fp32);
    let mut parts = Vec::new();
    let mut back = Tensor::zeros([batch, inputs as i64], (Kind::Float, Device::Cpu));
    let mut h_at = 0;
    for (r, (&(first, size), &out)) in blocks.iter().zip(&outs).enumerate() {
        let (g, k) = roi_groups(blocks, groups)
            .iter()
            .enumerate()
            .find_map(|(g, m)| m.iter().position(|&x| x == r).map(|k| (g, k as i64)))
            .expect("every ROI is in a group");
        let group = &layer.groups[g];
        let w = group.weight.get(k).narrow(0, 0, size as i64).narrow(1, 0, out as i64);
        let b = group.bias.get(k).narrow(0, 0, out as i64);
        parts.push(x.narrow(1, first as i64, size as i64).mm(&w) + b);
        let part = h.narrow(1, h_at, out as i64).mm(&w.transpose(0, 1));
        back = back.slice_scatter(&part, 1, Some(first as i64), Some((first + size) as i64), 1);
        h_at += out as i64;
    }
    (fast, Tensor::cat(&parts, 1), fast_back, back)
}

/// A freshly initialised packed ROI layer applied to `x` (`[batch, inputs]`, forward) and to `h`
/// (`[batch, Σ outputs]`, tied backward with a zero bias), for tests that check it against an
/// independent per-ROI implementation.
#[doc(hidden)]
pub fn roi_layer_apply(
    inputs: usize,
    blocks: &[(usize, usize)],
    scale: usize,
    groups: usize,
    x: &Tensor,
    h: &Tensor,
) -> (Tensor, Tensor) {
    let vs = nn::VarStore::new(Device::Cpu);
    let layer = RoiLayer::new(vs.root(), inputs, blocks, scale, groups);
    let zero_bias = Tensor::zeros([inputs as i64], (Kind::Float, Device::Cpu));
    tch::no_grad(|| {
        (layer.forward(x, Precision::Fp32), layer.backward(h, &zero_bias, Precision::Fp32))
    })
}

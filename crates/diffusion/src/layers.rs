//! The building blocks diffusers' UNet and VAE share, with diffusers' variable names: ResNet
//! blocks, attention (cross-attention and the VAE's single-head self-attention), the transformer
//! block of Stable Diffusion, down/up-sampling and the sinusoidal timestep embedding.

use tch::nn;
use tch::{Kind, Tensor};

/// `nn.GroupNorm(groups, channels, eps, affine=True)`.
pub(crate) fn group_norm(p: nn::Path<'_>, groups: i64, channels: i64, eps: f64) -> nn::GroupNorm {
    nn::group_norm(p, groups, channels, nn::GroupNormConfig { eps, ..Default::default() })
}

/// PyTorch's default initialisation of `nn.Conv2d` and `nn.Linear` weights (what diffusers
/// trains from): `kaiming_uniform_(a=√5)`, i.e. U(±1/√fan_in). tch's default (Kaiming with the
/// ReLU gain) draws √6 ≈ 2.45× larger weights, with which the UNet does not learn at all (its
/// denoising loss stays at 1.0; `tests/learning.rs`).
fn torch_weight_init() -> nn::Init {
    nn::Init::Kaiming {
        dist: nn::init::NormalOrUniform::Uniform,
        fan: nn::init::FanInOut::FanIn,
        non_linearity: nn::init::NonLinearity::ExplicitGain(1.0 / 3f64.sqrt()),
    }
}

/// PyTorch's default bias initialisation: U(±1/√fan_in).
fn torch_bias_init(fan_in: i64) -> nn::Init {
    let bound = 1.0 / (fan_in as f64).sqrt();
    nn::Init::Uniform { lo: -bound, up: bound }
}

/// `nn.Conv2d(cin, cout, k, stride, padding)` with bias, initialised as PyTorch does.
pub(crate) fn conv2d(
    p: nn::Path<'_>,
    cin: i64,
    cout: i64,
    k: i64,
    stride: i64,
    padding: i64,
) -> nn::Conv2D {
    let config = nn::ConvConfig {
        stride,
        padding,
        ws_init: torch_weight_init(),
        bs_init: torch_bias_init(cin * k * k),
        ..Default::default()
    };
    nn::conv2d(p, cin, cout, k, config)
}

/// `nn.Linear(cin, cout, bias)`, initialised as PyTorch does.
pub(crate) fn linear(p: nn::Path<'_>, cin: i64, cout: i64, bias: bool) -> nn::Linear {
    let config = nn::LinearConfig {
        bias,
        ws_init: torch_weight_init(),
        bs_init: Some(torch_bias_init(cin)),
    };
    nn::linear(p, cin, cout, config)
}

/// diffusers' `get_timestep_embedding`: `[N] → [N, dim]` sinusoids, computed in f32 as
/// diffusers does (exp of `-ln(max_period)·i / (half − shift)`), cosines first when
/// `flip_sin_to_cos` (Stable Diffusion's choice).
pub fn timestep_embedding(
    timesteps: &Tensor,
    dim: i64,
    flip_sin_to_cos: bool,
    freq_shift: f64,
) -> Tensor {
    let half = dim / 2;
    let device = timesteps.device();
    let exponent = Tensor::arange(half, (Kind::Float, device)) * (-(10_000f64.ln()));
    let exponent = exponent / (half as f64 - freq_shift);
    let freqs = exponent.exp();
    let args = timesteps.to_kind(Kind::Float).unsqueeze(1) * freqs.unsqueeze(0);
    let emb = Tensor::cat(&[args.sin(), args.cos()], -1);
    let emb = if flip_sin_to_cos {
        Tensor::cat(&[emb.narrow(1, half, half), emb.narrow(1, 0, half)], -1)
    } else {
        emb
    };
    if dim % 2 == 1 { emb.constant_pad_nd([0, 1, 0, 0]) } else { emb }
}

/// `TimestepEmbedding`: `linear_1 → SiLU → linear_2`.
#[derive(Debug)]
pub(crate) struct TimestepEmbedding {
    linear_1: nn::Linear,
    linear_2: nn::Linear,
}

impl TimestepEmbedding {
    pub fn new(p: nn::Path<'_>, channels: i64, dim: i64) -> Self {
        TimestepEmbedding {
            linear_1: linear(&p / "linear_1", channels, dim, true),
            linear_2: linear(&p / "linear_2", dim, dim, true),
        }
    }
    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.apply(&self.linear_1).silu().apply(&self.linear_2)
    }
}

/// `ResnetBlock2D` (`resnet_time_scale_shift="default"`, SiLU): two norm-act-conv stages, the
/// projected time embedding added between them, a 1×1 `conv_shortcut` when widths differ.
#[derive(Debug)]
pub(crate) struct ResnetBlock2D {
    norm1: nn::GroupNorm,
    conv1: nn::Conv2D,
    time_emb_proj: Option<nn::Linear>,
    norm2: nn::GroupNorm,
    conv2: nn::Conv2D,
    conv_shortcut: Option<nn::Conv2D>,
    output_scale_factor: f64,
}

/// The widths and norms of a [`ResnetBlock2D`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct ResnetShape {
    pub cin: i64,
    pub cout: i64,
    pub temb: Option<i64>,
    pub groups: i64,
    pub eps: f64,
    pub output_scale_factor: f64,
}

impl ResnetBlock2D {
    pub fn new(p: nn::Path<'_>, s: ResnetShape) -> Self {
        ResnetBlock2D {
            norm1: group_norm(&p / "norm1", s.groups, s.cin, s.eps),
            conv1: conv2d(&p / "conv1", s.cin, s.cout, 3, 1, 1),
            time_emb_proj: s.temb.map(|t| linear(&p / "time_emb_proj", t, s.cout, true)),
            norm2: group_norm(&p / "norm2", s.groups, s.cout, s.eps),
            conv2: conv2d(&p / "conv2", s.cout, s.cout, 3, 1, 1),
            conv_shortcut: (s.cin != s.cout)
                .then(|| conv2d(&p / "conv_shortcut", s.cin, s.cout, 1, 1, 0)),
            output_scale_factor: s.output_scale_factor,
        }
    }

    pub fn forward(&self, x: &Tensor, temb: Option<&Tensor>) -> Tensor {
        let h = x.apply(&self.norm1).silu().apply(&self.conv1);
        let h = match (&self.time_emb_proj, temb) {
            (Some(proj), Some(t)) => h + t.silu().apply(proj).unsqueeze(-1).unsqueeze(-1),
            _ => h,
        };
        let h = h.apply(&self.norm2).silu().apply(&self.conv2);
        let shortcut = match &self.conv_shortcut {
            Some(conv) => x.apply(conv),
            None => x.shallow_clone(),
        };
        let out = shortcut + h;
        if self.output_scale_factor == 1.0 { out } else { out / self.output_scale_factor }
    }
}

/// diffusers' `Attention` with `to_q`, `to_k`, `to_v`, `to_out.0`: multi-head scaled dot-product
/// attention over `context` (cross-attention) or over the input itself.
#[derive(Debug)]
pub(crate) struct Attention {
    to_q: nn::Linear,
    to_k: nn::Linear,
    to_v: nn::Linear,
    to_out: nn::Linear,
    heads: i64,
    /// Computes the softmax in f32 whatever the weights' type (`upcast_attention`).
    upcast: bool,
}

impl Attention {
    pub fn new(
        p: nn::Path<'_>,
        query_dim: i64,
        context_dim: i64,
        heads: i64,
        head_dim: i64,
        qkv_bias: bool,
        upcast: bool,
    ) -> Self {
        let inner = heads * head_dim;
        Attention {
            to_q: linear(&p / "to_q", query_dim, inner, qkv_bias),
            to_k: linear(&p / "to_k", context_dim, inner, qkv_bias),
            to_v: linear(&p / "to_v", context_dim, inner, qkv_bias),
            to_out: linear(&p / "to_out" / 0, inner, query_dim, true),
            heads,
            upcast,
        }
    }

    /// `x`: `[B, N, query_dim]`; `context`: `[B, M, context_dim]` (None: self-attention).
    pub fn forward(&self, x: &Tensor, context: Option<&Tensor>) -> Tensor {
        let context = context.unwrap_or(x);
        let (b, n) = (x.size()[0], x.size()[1]);
        let split = |t: Tensor| {
            let m = t.size()[1];
            t.view([b, m, self.heads, -1]).transpose(1, 2)
        };
        let q = split(x.apply(&self.to_q));
        let k = split(context.apply(&self.to_k));
        let v = split(context.apply(&self.to_v));
        let kind = q.kind();
        let (q, k, v) = if self.upcast && kind != Kind::Float {
            (q.to_kind(Kind::Float), k.to_kind(Kind::Float), v.to_kind(Kind::Float))
        } else {
            (q, k, v)
        };
        let out = Tensor::scaled_dot_product_attention::<Tensor>(
            &q, &k, &v, None, 0.0, false, None, false,
        )
        .to_kind(kind);
        out.transpose(1, 2).reshape([b, n, -1]).apply(&self.to_out)
    }
}

/// `GEGLU` feed-forward: `net.0.proj` to twice the inner width, value · GELU(gate) (exact GELU),
/// `net.2` back.
#[derive(Debug)]
pub(crate) struct FeedForward {
    proj: nn::Linear,
    out: nn::Linear,
}

impl FeedForward {
    pub fn new(p: nn::Path<'_>, dim: i64, mult: i64) -> Self {
        let inner = dim * mult;
        FeedForward {
            proj: linear(&p / "net" / 0 / "proj", dim, inner * 2, true),
            out: linear(&p / "net" / 2, inner, dim, true),
        }
    }
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let h = x.apply(&self.proj).chunk(2, -1);
        (&h[0] * h[1].gelu("none")).apply(&self.out)
    }
}

/// `BasicTransformerBlock` (`norm_type="layer_norm"`): self-attention, cross-attention and GEGLU
/// feed-forward, each pre-normed and residual.
#[derive(Debug)]
pub(crate) struct BasicTransformerBlock {
    norm1: nn::LayerNorm,
    attn1: Attention,
    norm2: nn::LayerNorm,
    attn2: Attention,
    norm3: nn::LayerNorm,
    ff: FeedForward,
}

impl BasicTransformerBlock {
    pub fn new(p: nn::Path<'_>, dim: i64, heads: i64, context_dim: i64, upcast: bool) -> Self {
        let head_dim = dim / heads;
        let ln = |name: &str| nn::layer_norm(&p / name, vec![dim], Default::default());
        BasicTransformerBlock {
            norm1: ln("norm1"),
            attn1: Attention::new(&p / "attn1", dim, dim, heads, head_dim, false, upcast),
            norm2: ln("norm2"),
            attn2: Attention::new(&p / "attn2", dim, context_dim, heads, head_dim, false, upcast),
            norm3: ln("norm3"),
            ff: FeedForward::new(&p / "ff", dim, 4),
        }
    }
    pub fn forward(&self, x: &Tensor, context: &Tensor) -> Tensor {
        let x = self.attn1.forward(&x.apply(&self.norm1), None) + x;
        let x = self.attn2.forward(&x.apply(&self.norm2), Some(context)) + x;
        self.ff.forward(&x.apply(&self.norm3)) + x
    }
}

/// How a `Transformer2DModel` maps channels to tokens: 1×1 convolutions (SD 1.x) or linear
/// layers (`use_linear_projection`, SD 2.x).
#[derive(Debug)]
enum Projection {
    Conv(nn::Conv2D),
    Linear(nn::Linear),
}

/// `Transformer2DModel` on continuous inputs: GroupNorm (eps 1e-6), `proj_in`, transformer
/// blocks over the H·W tokens, `proj_out`, residual.
#[derive(Debug)]
pub(crate) struct Transformer2D {
    norm: nn::GroupNorm,
    proj_in: Projection,
    blocks: Vec<BasicTransformerBlock>,
    proj_out: Projection,
}

/// The shape of a [`Transformer2D`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct TransformerShape {
    pub channels: i64,
    pub heads: i64,
    pub layers: i64,
    pub context_dim: i64,
    pub groups: i64,
    pub linear_projection: bool,
    pub upcast: bool,
}

impl Transformer2D {
    pub fn new(p: nn::Path<'_>, s: TransformerShape) -> Self {
        let c = s.channels;
        let projection = |name: &str| {
            if s.linear_projection {
                Projection::Linear(linear(&p / name, c, c, true))
            } else {
                Projection::Conv(conv2d(&p / name, c, c, 1, 1, 0))
            }
        };
        Transformer2D {
            norm: group_norm(&p / "norm", s.groups, c, 1e-6),
            proj_in: projection("proj_in"),
            blocks: (0..s.layers)
                .map(|i| {
                    BasicTransformerBlock::new(
                        &p / "transformer_blocks" / i,
                        c,
                        s.heads,
                        s.context_dim,
                        s.upcast,
                    )
                })
                .collect(),
            proj_out: projection("proj_out"),
        }
    }

    pub fn forward(&self, x: &Tensor, context: &Tensor) -> Tensor {
        let (b, c, h, w) = x.size4().expect("a 4-D feature map");
        let hidden = x.apply(&self.norm);
        let to_tokens = |t: Tensor| t.permute([0, 2, 3, 1]).reshape([b, h * w, c]);
        let mut tokens = match &self.proj_in {
            Projection::Conv(conv) => to_tokens(hidden.apply(conv)),
            Projection::Linear(lin) => to_tokens(hidden).apply(lin),
        };
        for block in &self.blocks {
            tokens = block.forward(&tokens, context);
        }
        let to_map = |t: Tensor| t.reshape([b, h, w, c]).permute([0, 3, 1, 2]).contiguous();
        let out = match &self.proj_out {
            Projection::Conv(conv) => to_map(tokens).apply(conv),
            Projection::Linear(lin) => to_map(tokens.apply(lin)),
        };
        out + x
    }
}

/// `Downsample2D` with a convolution: stride 2; `padding` 1 (UNet), or 0 after an explicit
/// (0, 1, 0, 1) pad (the VAE encoder).
#[derive(Debug)]
pub(crate) struct Downsample {
    conv: nn::Conv2D,
    asymmetric_pad: bool,
}

impl Downsample {
    pub fn new(p: nn::Path<'_>, channels: i64, padding: i64) -> Self {
        Downsample {
            conv: conv2d(&p / "conv", channels, channels, 3, 2, padding),
            asymmetric_pad: padding == 0,
        }
    }
    pub fn forward(&self, x: &Tensor) -> Tensor {
        if self.asymmetric_pad {
            x.constant_pad_nd([0, 1, 0, 1]).apply(&self.conv)
        } else {
            x.apply(&self.conv)
        }
    }
}

/// `Upsample2D`: nearest-neighbour to `size` (twice the input unless given), then a 3×3 conv.
#[derive(Debug)]
pub(crate) struct Upsample {
    conv: nn::Conv2D,
}

impl Upsample {
    pub fn new(p: nn::Path<'_>, channels: i64) -> Self {
        Upsample { conv: conv2d(&p / "conv", channels, channels, 3, 1, 1) }
    }
    pub fn forward(&self, x: &Tensor, size: Option<(i64, i64)>) -> Tensor {
        let (_, _, h, w) = x.size4().expect("a 4-D feature map");
        let (oh, ow) = size.unwrap_or((2 * h, 2 * w));
        x.upsample_nearest2d([oh, ow], None, None).apply(&self.conv)
    }
}

/// The VAE's attention: one head over the H·W positions, q/k/v with bias, GroupNorm first,
/// residual (`Attention(..., norm_num_groups, residual_connection=True)`; older checkpoints name
/// the same weights `query`/`key`/`value`/`proj_attn`, see the loader).
#[derive(Debug)]
pub(crate) struct VaeAttention {
    group_norm: nn::GroupNorm,
    to_q: nn::Linear,
    to_k: nn::Linear,
    to_v: nn::Linear,
    to_out: nn::Linear,
}

impl VaeAttention {
    pub fn new(p: nn::Path<'_>, channels: i64, groups: i64, eps: f64) -> Self {
        VaeAttention {
            group_norm: group_norm(&p / "group_norm", groups, channels, eps),
            to_q: linear(&p / "to_q", channels, channels, true),
            to_k: linear(&p / "to_k", channels, channels, true),
            to_v: linear(&p / "to_v", channels, channels, true),
            to_out: linear(&p / "to_out" / 0, channels, channels, true),
        }
    }
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let (b, c, h, w) = x.size4().expect("a 4-D feature map");
        let tokens = x.apply(&self.group_norm).view([b, c, h * w]).transpose(1, 2);
        let q = tokens.apply(&self.to_q).unsqueeze(1);
        let k = tokens.apply(&self.to_k).unsqueeze(1);
        let v = tokens.apply(&self.to_v).unsqueeze(1);
        let out = Tensor::scaled_dot_product_attention::<Tensor>(
            &q, &k, &v, None, 0.0, false, None, false,
        );
        let out = out.squeeze_dim(1).apply(&self.to_out);
        out.transpose(1, 2).reshape([b, c, h, w]) + x
    }
}

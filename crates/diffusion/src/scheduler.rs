//! The schedulers of diffusers that Stable Diffusion pipelines ship — `DDPMScheduler`,
//! `DDIMScheduler`, `PNDMScheduler` — read from `scheduler_config.json`, with diffusers' exact
//! timesteps and f32 coefficients (betas and their cumulative products are computed by LibTorch
//! in f32, as diffusers computes them with torch).

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tch::{Device, Kind, Tensor};

use crate::error::{DiffusionError, Result};
use brainpipe_core::IoContext;

/// Which sampler.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SchedulerKind {
    /// `DDPMScheduler` (ancestral; the training scheduler).
    #[serde(rename = "DDPMScheduler")]
    Ddpm,
    /// `DDIMScheduler` (deterministic with eta 0).
    #[serde(rename = "DDIMScheduler")]
    Ddim,
    /// `PNDMScheduler` (PLMS; Stable Diffusion's default).
    #[serde(rename = "PNDMScheduler")]
    Pndm,
}

impl SchedulerKind {
    /// diffusers' class name.
    pub fn class_name(self) -> &'static str {
        match self {
            SchedulerKind::Ddpm => "DDPMScheduler",
            SchedulerKind::Ddim => "DDIMScheduler",
            SchedulerKind::Pndm => "PNDMScheduler",
        }
    }
}

pub use brainpipe_params::diffusion::PredictionType;

/// How inference timesteps are spread over the training ones (Lin et al. 2023, table 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestepSpacing {
    /// `linspace(0, T−1, n)`, rounded.
    Linspace,
    /// `k · (T // n) + steps_offset`.
    Leading,
    /// `round(T − k · T/n) − 1`.
    Trailing,
}

/// The noise schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BetaSchedule {
    /// Linear from `beta_start` to `beta_end`.
    Linear,
    /// Linear in √β (latent diffusion).
    ScaledLinear,
    /// The cosine ᾱ of Nichol & Dhariwal 2021, betas capped at 0.999.
    #[serde(rename = "squaredcos_cap_v2")]
    SquaredcosCapV2,
}

/// A `scheduler_config.json`: the fields the three schedulers read, each class's defaults filled.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SchedulerConfig {
    /// Which scheduler (`_class_name`).
    pub kind: SchedulerKind,
    /// Training timesteps T.
    pub num_train_timesteps: i64,
    /// First beta.
    pub beta_start: f64,
    /// Last beta.
    pub beta_end: f64,
    /// The noise schedule.
    pub beta_schedule: BetaSchedule,
    /// Explicit betas (overrides the schedule).
    pub trained_betas: Option<Vec<f64>>,
    /// Clamp the predicted x₀ (DDPM, DDIM).
    pub clip_sample: bool,
    /// Its range.
    pub clip_sample_range: f64,
    /// ᾱ after the last step: 1, or ᾱ₀ (DDIM, PNDM).
    pub set_alpha_to_one: bool,
    /// Added to `leading` timesteps.
    pub steps_offset: i64,
    /// What the network predicts.
    pub prediction_type: PredictionType,
    /// How inference timesteps are spread.
    pub timestep_spacing: TimestepSpacing,
    /// PNDM: PLMS only, without the Runge–Kutta warm-up (Stable Diffusion: true).
    pub skip_prk_steps: bool,
    /// DDPM: `fixed_small` (the only one built).
    pub variance_type: String,
}

impl SchedulerConfig {
    /// The defaults of `kind` in diffusers.
    pub fn new(kind: SchedulerKind) -> Self {
        SchedulerConfig {
            kind,
            num_train_timesteps: 1000,
            beta_start: 0.0001,
            beta_end: 0.02,
            beta_schedule: BetaSchedule::Linear,
            trained_betas: None,
            clip_sample: kind != SchedulerKind::Pndm,
            clip_sample_range: 1.0,
            set_alpha_to_one: kind == SchedulerKind::Ddim,
            steps_offset: 0,
            prediction_type: PredictionType::Epsilon,
            timestep_spacing: TimestepSpacing::Leading,
            skip_prk_steps: false,
            variance_type: "fixed_small".to_owned(),
        }
    }

    /// Stable Diffusion 1.x's `scheduler/scheduler_config.json` (PNDM, scaled_linear
    /// 0.00085 → 0.012, steps_offset 1, PLMS only).
    pub fn sd15() -> Self {
        SchedulerConfig {
            beta_start: 0.00085,
            beta_end: 0.012,
            beta_schedule: BetaSchedule::ScaledLinear,
            clip_sample: false,
            steps_offset: 1,
            skip_prk_steps: true,
            ..SchedulerConfig::new(SchedulerKind::Pndm)
        }
    }

    /// The same schedule under another scheduler class (diffusers' `from_config` swap).
    pub fn with_kind(&self, kind: SchedulerKind) -> Self {
        SchedulerConfig { kind, ..self.clone() }
    }

    /// Parses a `scheduler_config.json` value (`_class_name` picks the class and its defaults;
    /// `_class_name` absent: `default`).
    pub fn from_json(value: &Value, default: SchedulerKind) -> std::result::Result<Self, String> {
        let map = value.as_object().ok_or("expected a JSON object")?;
        let kind = match map.get("_class_name") {
            None => default,
            Some(v) => serde_json::from_value(v.clone()).map_err(|_| {
                format!("unsupported scheduler {v} (DDPMScheduler, DDIMScheduler, PNDMScheduler)")
            })?,
        };
        let mut c = SchedulerConfig::new(kind);
        fn field<T: serde::de::DeserializeOwned>(
            map: &serde_json::Map<String, Value>,
            name: &str,
            into: &mut T,
        ) -> std::result::Result<(), String> {
            match map.get(name) {
                None | Some(Value::Null) => Ok(()),
                Some(v) => {
                    *into =
                        serde_json::from_value(v.clone()).map_err(|e| format!("`{name}`: {e}"))?;
                    Ok(())
                }
            }
        }
        field(map, "num_train_timesteps", &mut c.num_train_timesteps)?;
        field(map, "beta_start", &mut c.beta_start)?;
        field(map, "beta_end", &mut c.beta_end)?;
        field(map, "beta_schedule", &mut c.beta_schedule)?;
        if let Some(Value::Array(_)) = map.get("trained_betas") {
            let mut betas = Vec::new();
            field(map, "trained_betas", &mut betas)?;
            c.trained_betas = Some(betas);
        }
        field(map, "clip_sample", &mut c.clip_sample)?;
        field(map, "clip_sample_range", &mut c.clip_sample_range)?;
        field(map, "set_alpha_to_one", &mut c.set_alpha_to_one)?;
        field(map, "steps_offset", &mut c.steps_offset)?;
        field(map, "prediction_type", &mut c.prediction_type)?;
        field(map, "timestep_spacing", &mut c.timestep_spacing)?;
        field(map, "skip_prk_steps", &mut c.skip_prk_steps)?;
        field(map, "variance_type", &mut c.variance_type)?;
        for flag in ["thresholding", "rescale_betas_zero_snr"] {
            if map.get(flag) == Some(&Value::Bool(true)) {
                return Err(format!("`{flag}` is not supported"));
            }
        }
        if kind == SchedulerKind::Ddpm && c.variance_type != "fixed_small" {
            return Err(format!(
                "variance_type `{}` is not supported (fixed_small)",
                c.variance_type
            ));
        }
        if c.num_train_timesteps < 1 {
            return Err("num_train_timesteps must be positive".to_owned());
        }
        if c.trained_betas.as_ref().is_some_and(|b| b.len() as i64 != c.num_train_timesteps) {
            return Err("trained_betas must hold num_train_timesteps values".to_owned());
        }
        Ok(c)
    }

    /// Reads a `scheduler_config.json` file.
    pub fn from_file(path: &Path, default: SchedulerKind) -> Result<Self> {
        let text = std::fs::read_to_string(path).at(path)?;
        let value: Value =
            serde_json::from_str(&text).map_err(|e| DiffusionError::config(path, e.to_string()))?;
        SchedulerConfig::from_json(&value, default).map_err(|m| DiffusionError::config(path, m))
    }

    /// The `scheduler_config.json` diffusers writes for this scheduler.
    pub fn to_diffusers_json(&self) -> Value {
        let mut v = serde_json::json!({
            "_class_name": self.kind.class_name(),
            "_diffusers_version": "0.42.1",
            "num_train_timesteps": self.num_train_timesteps,
            "beta_start": self.beta_start,
            "beta_end": self.beta_end,
            "beta_schedule": self.beta_schedule,
            "trained_betas": self.trained_betas,
            "set_alpha_to_one": self.set_alpha_to_one,
            "steps_offset": self.steps_offset,
            "prediction_type": self.prediction_type,
            "timestep_spacing": self.timestep_spacing,
        });
        let map = v.as_object_mut().expect("an object");
        match self.kind {
            SchedulerKind::Pndm => {
                map.insert("skip_prk_steps".to_owned(), Value::from(self.skip_prk_steps));
                map.remove("clip_sample");
            }
            SchedulerKind::Ddpm | SchedulerKind::Ddim => {
                map.insert("clip_sample".to_owned(), Value::from(self.clip_sample));
                map.insert("clip_sample_range".to_owned(), Value::from(self.clip_sample_range));
                if self.kind == SchedulerKind::Ddpm {
                    map.remove("set_alpha_to_one");
                    map.insert("variance_type".to_owned(), Value::from(self.variance_type.clone()));
                }
            }
        }
        v
    }

    /// The betas, as diffusers computes them (f32).
    pub fn betas(&self) -> Vec<f32> {
        let t = self.num_train_timesteps;
        if let Some(betas) = &self.trained_betas {
            return betas.iter().map(|&b| b as f32).collect();
        }
        let opts = (Kind::Float, Device::Cpu);
        let tensor = match self.beta_schedule {
            BetaSchedule::Linear => Tensor::linspace(self.beta_start, self.beta_end, t, opts),
            BetaSchedule::ScaledLinear => {
                Tensor::linspace(self.beta_start.sqrt(), self.beta_end.sqrt(), t, opts)
                    .pow_tensor_scalar(2)
            }
            BetaSchedule::SquaredcosCapV2 => {
                let alpha_bar =
                    |x: f64| ((x + 0.008) / 1.008 * std::f64::consts::PI / 2.0).cos().powi(2);
                let betas: Vec<f32> = (0..t)
                    .map(|i| {
                        let (t1, t2) = (i as f64 / t as f64, (i + 1) as f64 / t as f64);
                        (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(0.999) as f32
                    })
                    .collect();
                return betas;
            }
        };
        Vec::<f32>::try_from(&tensor).expect("a 1-D f32 tensor")
    }

    /// ᾱ_t for every training timestep (f32 cumulative product by LibTorch, as torch does it).
    pub fn alphas_cumprod(&self) -> Vec<f32> {
        let betas = Tensor::from_slice(&self.betas());
        let alphas = betas.neg() + 1.0;
        Vec::<f32>::try_from(&alphas.cumprod(0, Kind::Float)).expect("a 1-D f32 tensor")
    }
}

/// `np.arange(start, stop, step)` in f64, as numpy fills it.
fn arange_f64(start: f64, stop: f64, step: f64) -> Vec<f64> {
    let n = ((stop - start) / step).ceil().max(0.0) as usize;
    (0..n).map(|i| start + i as f64 * step).collect()
}

/// `np.linspace(start, stop, n)`, as numpy computes it (last value exact).
fn linspace_f64(start: f64, stop: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![start];
    }
    let step = (stop - start) / (n - 1) as f64;
    let mut v: Vec<f64> = (0..n).map(|i| i as f64 * step + start).collect();
    v[n - 1] = stop;
    v
}

/// A scheduler with its inference timesteps set: `step` turns the network's output at timestep
/// `t` into the sample at the previous timestep.
#[derive(Debug)]
pub struct Scheduler {
    config: SchedulerConfig,
    alphas_cumprod: Vec<f32>,
    final_alpha_cumprod: f32,
    timesteps: Vec<i64>,
    inference_steps: i64,
    /// PNDM state.
    ets: Vec<Tensor>,
    counter: usize,
    cur_sample: Option<Tensor>,
    cur_model_output: Option<Tensor>,
    prk_len: usize,
}

impl Scheduler {
    /// A scheduler over `config`, timesteps not yet set.
    pub fn new(config: &SchedulerConfig) -> Self {
        let alphas_cumprod = config.alphas_cumprod();
        let final_alpha_cumprod = if config.set_alpha_to_one { 1.0 } else { alphas_cumprod[0] };
        Scheduler {
            config: config.clone(),
            alphas_cumprod,
            final_alpha_cumprod,
            timesteps: Vec::new(),
            inference_steps: 0,
            ets: Vec::new(),
            counter: 0,
            cur_sample: None,
            cur_model_output: None,
            prk_len: 0,
        }
    }

    /// Its config.
    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// ᾱ per training timestep.
    pub fn alphas_cumprod(&self) -> &[f32] {
        &self.alphas_cumprod
    }

    /// The inference timesteps, in the order `step` expects them.
    pub fn timesteps(&self) -> &[i64] {
        &self.timesteps
    }

    /// Sets `n` inference steps (diffusers' `set_timesteps`); resets the multistep state.
    pub fn set_timesteps(&mut self, n: usize) -> Result<()> {
        let c = &self.config;
        let t = c.num_train_timesteps;
        if n == 0 || n as i64 > t {
            return Err(DiffusionError::Params(format!(
                "{n} inference steps: must be between 1 and num_train_timesteps ({t})"
            )));
        }
        let ni = n as i64;
        // Ascending, as PNDM builds them; DDPM/DDIM use them descending.
        let ascending: Vec<i64> = match c.timestep_spacing {
            TimestepSpacing::Linspace => linspace_f64(0.0, (t - 1) as f64, n)
                .into_iter()
                .map(|v| v.round_ties_even() as i64)
                .collect(),
            TimestepSpacing::Leading => (0..ni).map(|k| k * (t / ni) + c.steps_offset).collect(),
            TimestepSpacing::Trailing => {
                let mut v: Vec<i64> = arange_f64(t as f64, 0.0, -(t as f64 / n as f64))
                    .into_iter()
                    .map(|v| v.round_ties_even() as i64 - 1)
                    .collect();
                v.reverse();
                v
            }
        };
        self.inference_steps = ni;
        self.ets.clear();
        self.counter = 0;
        self.cur_sample = None;
        self.cur_model_output = None;
        self.prk_len = 0;
        self.timesteps = match c.kind {
            SchedulerKind::Ddpm | SchedulerKind::Ddim => ascending.into_iter().rev().collect(),
            SchedulerKind::Pndm if c.skip_prk_steps => {
                let k = ascending.len();
                let mut v: Vec<i64> = ascending[..k - 1].to_vec();
                if k >= 2 {
                    v.push(ascending[k - 2]);
                }
                v.push(ascending[k - 1]);
                v.reverse();
                v
            }
            SchedulerKind::Pndm => {
                let order = 4;
                if ascending.len() < order {
                    return Err(DiffusionError::Params(format!(
                        "PNDM with Runge-Kutta warm-up steps needs at least {order} inference steps, got {n}"
                    )));
                }
                let half = t / ni / 2;
                let tail = &ascending[ascending.len() - order..];
                let mut prk: Vec<i64> =
                    tail.iter().flat_map(|&s| [s, s + half]).collect::<Vec<_>>();
                prk.pop();
                let mut doubled: Vec<i64> = prk.iter().flat_map(|&s| [s, s]).collect();
                doubled.remove(0);
                doubled.pop();
                doubled.reverse();
                self.prk_len = doubled.len();
                let plms: Vec<i64> =
                    ascending[..ascending.len().saturating_sub(3)].iter().rev().copied().collect();
                doubled.into_iter().chain(plms).collect()
            }
        };
        Ok(())
    }

    fn alpha(&self, t: i64) -> f32 {
        if t >= 0 { self.alphas_cumprod[t as usize] } else { self.final_alpha_cumprod }
    }

    /// The timestep before `t` for DDIM/PNDM: `t − T // n`.
    fn stride(&self) -> i64 {
        self.config.num_train_timesteps / self.inference_steps
    }

    /// `x_t = √ᾱ_t · x₀ + √(1 − ᾱ_t) · ε`, one timestep per sample (`timesteps`: `[B]`).
    pub fn add_noise(&self, original: &Tensor, noise: &Tensor, timesteps: &Tensor) -> Tensor {
        let table = Tensor::from_slice(&self.alphas_cumprod).to_device(original.device());
        let a = table.index_select(0, &timesteps.to_kind(Kind::Int64)).to_kind(original.kind());
        let shape: Vec<i64> =
            std::iter::once(-1).chain(std::iter::repeat_n(1, original.dim() - 1)).collect();
        let sqrt_a = a.sqrt().view(shape.as_slice());
        let sqrt_1ma = (a.neg() + 1.0).sqrt().view(shape.as_slice());
        sqrt_a * original + sqrt_1ma * noise
    }

    /// The training target for `prediction_type`: ε, or v = √ᾱ·ε − √(1−ᾱ)·x₀.
    pub fn training_target(&self, original: &Tensor, noise: &Tensor, timesteps: &Tensor) -> Tensor {
        match self.config.prediction_type {
            PredictionType::Epsilon => noise.shallow_clone(),
            PredictionType::VPrediction => {
                let table = Tensor::from_slice(&self.alphas_cumprod).to_device(original.device());
                let a =
                    table.index_select(0, &timesteps.to_kind(Kind::Int64)).to_kind(original.kind());
                let shape: Vec<i64> =
                    std::iter::once(-1).chain(std::iter::repeat_n(1, original.dim() - 1)).collect();
                let sqrt_a = a.sqrt().view(shape.as_slice());
                let sqrt_1ma = (a.neg() + 1.0).sqrt().view(shape.as_slice());
                sqrt_a * noise - sqrt_1ma * original
            }
        }
    }

    /// One reverse step at timestep `t`. `noise` is the variance noise of DDPM (used when
    /// `t > 0`; DDIM runs with eta 0 and PNDM is deterministic: both ignore it).
    pub fn step(
        &mut self,
        model_output: &Tensor,
        t: i64,
        sample: &Tensor,
        noise: Option<&Tensor>,
    ) -> Tensor {
        match self.config.kind {
            SchedulerKind::Ddim => self.step_ddim(model_output, t, sample),
            SchedulerKind::Ddpm => self.step_ddpm(model_output, t, sample, noise),
            SchedulerKind::Pndm => {
                if self.counter < self.prk_len && !self.config.skip_prk_steps {
                    self.step_prk(model_output, t, sample)
                } else {
                    self.step_plms(model_output, t, sample)
                }
            }
        }
    }

    /// x₀ from the model output (and ε for DDIM's direction).
    fn predict(&self, out: &Tensor, sample: &Tensor, a: f32, b: f32) -> (Tensor, Tensor) {
        match self.config.prediction_type {
            PredictionType::Epsilon => {
                ((sample - out * f64::from(b.sqrt())) / f64::from(a.sqrt()), out.shallow_clone())
            }
            PredictionType::VPrediction => (
                sample * f64::from(a.sqrt()) - out * f64::from(b.sqrt()),
                out * f64::from(a.sqrt()) + sample * f64::from(b.sqrt()),
            ),
        }
    }

    fn clip(&self, x0: Tensor) -> Tensor {
        if self.config.clip_sample {
            let r = self.config.clip_sample_range;
            x0.clamp(-r, r)
        } else {
            x0
        }
    }

    /// The two coefficients of a deterministic DDIM step at `t`: (√ᾱ_prev, √(1−ᾱ_prev)), with
    /// ᾱ_t and ᾱ_prev (for tests against diffusers).
    pub fn ddim_coefficients(&self, t: i64) -> [f32; 4] {
        let prev = t - self.stride();
        let (a, ap) = (self.alpha(t), self.alpha(prev));
        [a, ap, ap.sqrt(), (1.0 - ap).sqrt()]
    }

    fn step_ddim(&self, out: &Tensor, t: i64, sample: &Tensor) -> Tensor {
        let prev = t - self.stride();
        let (a, ap) = (self.alpha(t), self.alpha(prev));
        let b = 1.0 - a;
        let (x0, eps) = self.predict(out, sample, a, b);
        let x0 = self.clip(x0);
        let direction = eps * f64::from((1.0 - ap).sqrt());
        x0 * f64::from(ap.sqrt()) + direction
    }

    fn step_ddpm(&self, out: &Tensor, t: i64, sample: &Tensor, noise: Option<&Tensor>) -> Tensor {
        let index = self.timesteps.iter().position(|&s| s == t);
        let prev = match index {
            Some(i) if i + 1 < self.timesteps.len() => self.timesteps[i + 1],
            Some(_) => -1,
            None => t - 1,
        };
        let a = self.alphas_cumprod[t as usize];
        let ap = if prev >= 0 { self.alphas_cumprod[prev as usize] } else { 1.0 };
        let (b, bp) = (1.0 - a, 1.0 - ap);
        let current_alpha = a / ap;
        let current_beta = 1.0 - current_alpha;
        let (x0, _) = self.predict(out, sample, a, b);
        let x0 = self.clip(x0);
        let x0_coeff = ap.sqrt() * current_beta / b;
        let sample_coeff = current_alpha.sqrt() * bp / b;
        let mean = x0 * f64::from(x0_coeff) + sample * f64::from(sample_coeff);
        match noise {
            Some(noise) if t > 0 => {
                let variance = (bp / b * current_beta).max(1e-20);
                mean + noise * f64::from(variance.sqrt())
            }
            _ => mean,
        }
    }

    /// PNDM's `_get_prev_sample` (formula 9 of Liu et al. 2022).
    fn prev_sample(&self, sample: &Tensor, t: i64, prev: i64, out: &Tensor) -> Tensor {
        let (a, ap) = (self.alpha(t), self.alpha(prev));
        let (b, bp) = (1.0 - a, 1.0 - ap);
        let out = match self.config.prediction_type {
            PredictionType::VPrediction => out * f64::from(a.sqrt()) + sample * f64::from(b.sqrt()),
            PredictionType::Epsilon => out.shallow_clone(),
        };
        let sample_coeff = (ap / a).sqrt();
        let denom = a * bp.sqrt() + (a * b * ap).sqrt();
        sample * f64::from(sample_coeff) - out * f64::from(ap - a) / f64::from(denom)
    }

    fn step_prk(&mut self, out: &Tensor, t: i64, sample: &Tensor) -> Tensor {
        let half = self.stride() / 2;
        let diff = if self.counter % 2 == 1 { 0 } else { half };
        let prev = t - diff;
        let t = self.timesteps[self.counter / 4 * 4];
        let acc = |w: f64, o: &Tensor, cur: &Option<Tensor>| match cur {
            Some(c) => c + o * w,
            None => o * w,
        };
        let model_output = match self.counter % 4 {
            0 => {
                self.cur_model_output = Some(acc(1.0 / 6.0, out, &self.cur_model_output));
                self.ets.push(out.shallow_clone());
                self.cur_sample = Some(sample.shallow_clone());
                out.shallow_clone()
            }
            1 | 2 => {
                self.cur_model_output = Some(acc(1.0 / 3.0, out, &self.cur_model_output));
                out.shallow_clone()
            }
            _ => {
                let m = acc(1.0 / 6.0, out, &self.cur_model_output);
                self.cur_model_output = None;
                m
            }
        };
        let cur = self.cur_sample.as_ref().unwrap_or(sample).shallow_clone();
        let prev_sample = self.prev_sample(&cur, t, prev, &model_output);
        self.counter += 1;
        prev_sample
    }

    fn step_plms(&mut self, out: &Tensor, t: i64, sample: &Tensor) -> Tensor {
        let stride = self.stride();
        let (mut t, mut prev) = (t, t - stride);
        if self.counter != 1 {
            let keep = self.ets.len().saturating_sub(3);
            self.ets.drain(..keep);
            self.ets.push(out.shallow_clone());
        } else {
            prev = t;
            t += stride;
        }
        let e = &self.ets;
        let n = e.len();
        let mut sample = sample.shallow_clone();
        let model_output = if n == 1 && self.counter == 0 {
            self.cur_sample = Some(sample.shallow_clone());
            out.shallow_clone()
        } else if n == 1 && self.counter == 1 {
            sample = self.cur_sample.take().unwrap_or(sample);
            (out + &e[0]) / 2.0
        } else if n == 2 {
            (&e[1] * 3.0 - &e[0]) / 2.0
        } else if n == 3 {
            (&e[2] * 23.0 - &e[1] * 16.0 + &e[0] * 5.0) / 12.0
        } else {
            (&e[n - 1] * 55.0 - &e[n - 2] * 59.0 + &e[n - 3] * 37.0 - &e[n - 4] * 9.0)
                * (1.0 / 24.0)
        };
        let prev_sample = self.prev_sample(&sample, t, prev, &model_output);
        self.counter += 1;
        prev_sample
    }
}

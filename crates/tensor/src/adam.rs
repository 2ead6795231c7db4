//! Adam as one multi-tensor call: LibTorch's fused kernel (`at::_fused_adam_`, what
//! `torch.optim.Adam(fused=True)` runs) over every trainable variable of a `VarStore`.
//!
//! tch's `nn::Adam` steps each variable with a chain of separate element-wise ops (for amsgrad
//! about ten per variable), each a full pass over the variable in memory: for the 131-million
//! weight first layer of Brain2Word that is memory traffic, and on CUDA hundreds of kernel
//! launches per step. The fused kernel reads and writes each state tensor once, all variables in
//! one launch (CUDA) or one vectorised loop (CPU). Same update rule as `torch.optim.Adam`
//! (epsilon added to `√v̂`; `amsgrad` keeps the running maximum of `v`); tested equal to tch's
//! `nn::Adam` step by step.
//!
//! tch 0.24 binds no tensor-list ops, so `csrc/fused_adam.cpp` (compiled by build.rs against the
//! linked LibTorch's headers) makes the call.

use std::ffi::{c_char, c_void};

use tch::{Kind, Tensor, nn};

use crate::TensorError;
use crate::shim::checked;

unsafe extern "C" {
    fn brainpipe_fused_adam(
        params: *const *const c_void,
        grads: *const *const c_void,
        exp_avgs: *const *const c_void,
        exp_avg_sqs: *const *const c_void,
        max_exp_avg_sqs: *const *const c_void,
        n_max: usize,
        steps: *const *const c_void,
        n: usize,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
        amsgrad: bool,
        error: *mut c_char,
        error_len: usize,
    ) -> i32;
    fn brainpipe_clear_grads(tensors: *const *const c_void, n: usize);
}

/// Adam's hyper-parameters (`torch.optim.Adam`'s names and defaults).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f64,
    /// Decay of the first moment.
    pub beta1: f64,
    /// Decay of the second moment.
    pub beta2: f64,
    /// Added to `√v̂` (PyTorch's placement; Keras adds it to `√v` before bias correction).
    pub eps: f64,
    /// L2 penalty added to the gradient (Adam, not AdamW).
    pub weight_decay: f64,
    /// Keep the running maximum of the second moment (Reddi et al. 2018).
    pub amsgrad: bool,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            amsgrad: false,
        }
    }
}

/// Adam over the trainable variables of a `VarStore`, one fused call per step.
#[derive(Debug)]
pub struct FusedAdam {
    config: AdamConfig,
    params: Vec<Tensor>,
    exp_avgs: Vec<Tensor>,
    exp_avg_sqs: Vec<Tensor>,
    max_exp_avg_sqs: Vec<Tensor>,
    /// Steps taken, one f32 scalar on the variables' device (the kernel reads it there).
    step: Tensor,
}

impl FusedAdam {
    /// An optimizer for every trainable variable of `vs` (in name order), states zeroed.
    pub fn new(vs: &nn::VarStore, config: AdamConfig) -> Self {
        let mut named: Vec<(String, Tensor)> =
            vs.variables().into_iter().filter(|(_, v)| v.requires_grad()).collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let params: Vec<Tensor> = named.into_iter().map(|(_, v)| v).collect();
        let zeros = || params.iter().map(Tensor::zeros_like).collect::<Vec<_>>();
        FusedAdam {
            config,
            exp_avgs: zeros(),
            exp_avg_sqs: zeros(),
            max_exp_avg_sqs: if config.amsgrad { zeros() } else { Vec::new() },
            step: Tensor::zeros([], (Kind::Float, vs.device())),
            params,
        }
    }

    /// Sets the learning rate of the next steps.
    pub fn set_lr(&mut self, lr: f64) {
        self.config.lr = lr;
    }

    /// The hyper-parameters.
    pub fn config(&self) -> AdamConfig {
        self.config
    }

    /// Drops the gradients of every variable (`zero_grad(set_to_none=True)`, PyTorch's default):
    /// the next backward pass stores fresh gradients instead of adding into zeroed buffers.
    pub fn zero_grad(&mut self) {
        let handles: Vec<*const c_void> =
            self.params.iter().map(|p| p.as_ptr().cast::<c_void>()).collect();
        // SAFETY: every pointer is a live `at::Tensor` owned by `self.params`; the C++ side only
        // resets each one's gradient handle.
        unsafe { brainpipe_clear_grads(handles.as_ptr(), handles.len()) };
    }

    /// Zeroes the gradients, back-propagates `loss`, steps.
    pub fn backward_step(&mut self, loss: &Tensor) -> Result<(), TensorError> {
        self.zero_grad();
        loss.backward();
        self.step()
    }

    /// One Adam step from the variables' current gradients (variables without one are skipped,
    /// their state untouched).
    pub fn step(&mut self) -> Result<(), TensorError> {
        let grads: Vec<Tensor> = self.params.iter().map(Tensor::grad).collect();
        let live: Vec<usize> = (0..grads.len()).filter(|&i| grads[i].defined()).collect();
        if live.is_empty() {
            return Ok(());
        }
        tch::no_grad(|| {
            let _ = self.step.f_add_scalar_(1.0)?;
            Ok::<_, TensorError>(())
        })?;
        let pick = |list: &[Tensor]| -> Vec<*const c_void> {
            live.iter().map(|&i| list[i].as_ptr().cast::<c_void>()).collect()
        };
        let (params, grad_ptrs, m, v) =
            (pick(&self.params), pick(&grads), pick(&self.exp_avgs), pick(&self.exp_avg_sqs));
        // Without amsgrad the kernel wants an empty max_exp_avg_sqs list.
        let vmax = if self.config.amsgrad { pick(&self.max_exp_avg_sqs) } else { Vec::new() };
        let steps = vec![self.step.as_ptr().cast::<c_void>(); live.len()];
        let c = self.config;
        // SAFETY: every pointer is a live `at::Tensor` owned by `self`, `grads` or `self.step`
        // for the duration of the call; the lists have `live.len()` entries (`vmax`: its own
        // length); the C++ side copies the handles and writes a NUL-terminated message of at most
        // the buffer's length.
        checked("fused Adam", |error, error_len| unsafe {
            brainpipe_fused_adam(
                params.as_ptr(),
                grad_ptrs.as_ptr(),
                m.as_ptr(),
                v.as_ptr(),
                vmax.as_ptr(),
                vmax.len(),
                steps.as_ptr(),
                live.len(),
                c.lr,
                c.beta1,
                c.beta2,
                c.weight_decay,
                c.eps,
                c.amsgrad,
                error,
                error_len,
            )
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::{Module, OptimizerConfig};
    use tch::{Device, Kind};

    fn model(vs: &nn::VarStore) -> nn::Sequential {
        let root = vs.root();
        nn::seq()
            .add(nn::linear(&root / "a", 7, 5, Default::default()))
            .add_fn(|x| x.leaky_relu())
            .add(nn::linear(&root / "b", 5, 3, Default::default()))
    }

    fn loss(m: &nn::Sequential, x: &Tensor) -> Tensor {
        m.forward(x).square().mean(Kind::Float) + m.forward(x).sum(Kind::Float) * 0.01
    }

    #[test]
    fn fused_adam_equals_tch_adam_step_by_step() {
        for amsgrad in [false, true] {
            tch::manual_seed(5);
            let vs_a = nn::VarStore::new(Device::Cpu);
            let ma = model(&vs_a);
            let mut vs_b = nn::VarStore::new(Device::Cpu);
            let mb = model(&vs_b);
            vs_b.copy(&vs_a).expect("copy");
            let x = Tensor::randn([11, 7], (Kind::Float, Device::Cpu));
            let mut ours = FusedAdam::new(
                &vs_a,
                AdamConfig { lr: 1e-2, eps: 1e-7, amsgrad, ..AdamConfig::default() },
            );
            let mut theirs = nn::Adam { eps: 1e-7, amsgrad, ..Default::default() }
                .build(&vs_b, 1e-2)
                .expect("adam");
            for step in 0..12 {
                if step == 6 {
                    ours.set_lr(3e-3);
                    theirs.set_lr(3e-3);
                }
                ours.backward_step(&loss(&ma, &x)).expect("fused step");
                theirs.backward_step(&loss(&mb, &x));
            }
            let b = vs_b.variables();
            for (name, a) in vs_a.variables() {
                let diff = (&a - &b[&name]).abs().max().double_value(&[]);
                assert!(diff < 1e-6, "amsgrad {amsgrad}: {name} differs by {diff}");
                let moved = (&a - &a.detach().zeros_like()).abs().max().double_value(&[]);
                assert!(moved > 0.0);
            }
        }
    }

    #[test]
    fn a_libtorch_error_becomes_a_message() {
        let vs = nn::VarStore::new(Device::Cpu);
        let _ = vs.root().var("w", &[4], nn::Init::Const(1.0));
        let mut opt = FusedAdam::new(&vs, AdamConfig::default());
        // A state tensor of another dtype: LibTorch refuses, we report.
        opt.exp_avgs[0] = Tensor::zeros([4], (Kind::Double, Device::Cpu));
        vs.variables()["w"].sum(Kind::Float).backward();
        let err = opt.step().expect_err("shape mismatch");
        assert!(err.to_string().starts_with("fused Adam: "), "{err}");
    }
}

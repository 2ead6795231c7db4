//! Full-size Brain2Word training-step timings (65,730 inputs, batch 180, Adam amsgrad,
//! regression + classification loss; the autoencoder adds reconstruction) for `bench/gpu.sh`,
//! plus a CUDA correctness check: a model trained on the CPU predicts the same on CUDA.
//!
//! `gpu_step SIZES.npy [steps] [device]` prints one JSON object per line. Environment:
//! `MODELS=base,roi` picks models, `ROI_GROUPS=N` the ROI layer's size groups (default 8),
//! `PRECISION=bf16|tf32` the matmul precision, `OPTIMIZER=tch` tch's per-variable Adam, `GRAPH=1`
//! the whole step as one CUDA graph, `PARTS=1` forward + backward and the optimizer timed apart.
//!
//! Exits non-zero when a check fails: the CPU-vs-CUDA predictions differ by more than
//! [`CUDA_TOLERANCE`] (on a CUDA device the check always runs), or a graphed step leaves the
//! weights unchanged or non-finite.

use std::time::Instant;

use brainpipe_models::losses::{classification_loss, reconstruction_loss, regression_loss};
use brainpipe_models::net::{
    DROPOUT, LEAKY_SLOPE, ModelKind, Net, NetConfig, Precision, ROI_SCALE,
};
use brainpipe_tensor::{AdamConfig, CudaGraph, FusedAdam, PrecisionExt, ResolveDevice};
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Tensor};

type Error = Box<dyn std::error::Error>;

/// Largest |CPU − CUDA| prediction difference the correctness check accepts (fp32 on both sides;
/// measured on an H200: 2.4e-7).
const CUDA_TOLERANCE: f64 = 1e-6;

/// The 333 Gordon ROI template sizes of Brain2Word (`sizes.npy`, int64, Σ 65,730).
fn read_sizes(path: &str) -> Result<Vec<usize>, Error> {
    let bytes = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    let header = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let data = &bytes[10 + header..];
    Ok(data
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as usize)
        .collect())
}

fn config(kind: ModelKind, sizes: &[usize]) -> NetConfig {
    let mut first = 0;
    let rois = sizes
        .iter()
        .map(|&s| {
            first += s;
            (first - s, s)
        })
        .collect();
    NetConfig {
        kind,
        inputs: first,
        columns: Vec::new(),
        features_width: 0,
        hidden: vec![2000, 200],
        embedding: 300,
        classes: 180,
        classifier_input: Default::default(),
        slope: LEAKY_SLOPE,
        dropout: DROPOUT,
        rois,
        roi_scale: ROI_SCALE,
        roi_groups: std::env::var("ROI_GROUPS").ok().and_then(|g| g.parse().ok()).unwrap_or(8),
        tied: false,
        precision: match std::env::var("PRECISION").as_deref() {
            Ok("bf16") => Precision::Bf16,
            Ok("tf32") => Precision::Tf32,
            _ => Precision::Fp32,
        },
        target_mean: Vec::new(),
    }
}

/// The training loss of one batch: regression + classification (+ reconstruction).
fn batch_loss(net: &Net, xb: &Tensor, tb: &Tensor, cb: &Tensor) -> Tensor {
    let out = net.forward(xb, true);
    let loss = regression_loss(&out.embedding, tb) + classification_loss(&out.logits, cb);
    match &out.reconstruction {
        Some(r) => loss + reconstruction_loss(xb, r),
        None => loss,
    }
}

fn step_ms(kind: ModelKind, sizes: &[usize], steps: usize, device: Device) -> Result<f64, Error> {
    tch::manual_seed(1);
    let cfg = config(kind, sizes);
    let _tf32 = cfg.precision.activate();
    let vs = nn::VarStore::new(device);
    let net = Net::new(&vs.root(), &cfg);
    // OPTIMIZER=tch: tch's per-variable Adam; default: the fused multi-tensor Adam models.train uses.
    let mut tch_adam = if std::env::var("OPTIMIZER").as_deref() == Ok("tch") {
        Some(nn::Adam { amsgrad: true, eps: 1e-7, ..Default::default() }.build(&vs, 1e-3)?)
    } else {
        None
    };
    let mut fused = FusedAdam::new(
        &vs,
        AdamConfig { lr: 1e-3, eps: 1e-7, amsgrad: true, ..AdamConfig::default() },
    );
    // Data resident on the device: 540 scans (one subject), batches drawn by index.
    let x = Tensor::randn([540, cfg.inputs as i64], (Kind::Float, device));
    let t = Tensor::randn([540, 300], (Kind::Float, device));
    let c = Tensor::randint(180, [540], (Kind::Int64, device));
    let mut run = |n: usize| -> Result<(), Error> {
        for i in 0..n {
            let idx = Tensor::arange_start(
                (i % 3) as i64 * 180,
                (i % 3 + 1) as i64 * 180,
                (Kind::Int64, device),
            );
            let loss = batch_loss(
                &net,
                &x.index_select(0, &idx),
                &t.index_select(0, &idx),
                &c.index_select(0, &idx),
            );
            match tch_adam.as_mut() {
                Some(opt) => opt.backward_step(&loss),
                None => fused.backward_step(&loss)?,
            }
        }
        if let Device::Cuda(_) = device {
            tch::Cuda::synchronize(0);
        }
        Ok(())
    };
    run(5)?;
    let ms = if std::env::var("GRAPH").is_ok() && device.is_cuda() {
        // The whole step (forward, backward, fused Adam) as one CUDA graph: each step copies its
        // batch into the captured input tensors and replays.
        let batch = |i: usize| {
            Tensor::arange_start(
                (i % 3) as i64 * 180,
                (i % 3 + 1) as i64 * 180,
                (Kind::Int64, device),
            )
        };
        let idx = batch(0);
        let (mut xb, mut tb, mut cb) =
            (x.index_select(0, &idx), t.index_select(0, &idx), c.index_select(0, &idx));
        fused.zero_grad();
        let (graph, captured) = CudaGraph::capture(|| -> Result<(), Error> {
            batch_loss(&net, &xb, &tb, &cb).backward();
            fused.step()?;
            Ok(())
        })?;
        captured?;
        // The replays must train: the weights move and stay finite.
        let weights = || -> f64 {
            tch::no_grad(|| {
                vs.trainable_variables()
                    .iter()
                    .map(|v| v.abs().sum(Kind::Double).double_value(&[]))
                    .sum()
            })
        };
        let before = weights();
        let start = Instant::now();
        for i in 0..steps {
            let idx = batch(i);
            xb.copy_(&x.index_select(0, &idx));
            tb.copy_(&t.index_select(0, &idx));
            cb.copy_(&c.index_select(0, &idx));
            graph.replay()?;
        }
        tch::Cuda::synchronize(0);
        let ms = start.elapsed().as_secs_f64() * 1e3 / steps as f64;
        let after = weights();
        let ok = after.is_finite() && after != before;
        println!(
            "{}",
            serde_json::json!({"graph_check": kind.name(), "weights_l1_before": before, "weights_l1_after": after, "ok": ok})
        );
        if !ok {
            return Err(format!(
                "graph check failed for {}: weights L1 {before} → {after}",
                kind.name()
            )
            .into());
        }
        ms
    } else {
        let start = Instant::now();
        run(steps)?;
        start.elapsed().as_secs_f64() * 1e3 / steps as f64
    };
    if std::env::var("PARTS").is_ok() {
        // Where a step goes: forward + backward alone, then the optimizer alone on those
        // gradients.
        let sync = || {
            if let Device::Cuda(_) = device {
                tch::Cuda::synchronize(0);
            }
        };
        let idx = Tensor::arange(180, (Kind::Int64, device));
        let xb = x.index_select(0, &idx);
        let (tb, cb) = (t.index_select(0, &idx), c.index_select(0, &idx));
        let start = Instant::now();
        for _ in 0..steps {
            fused.zero_grad();
            batch_loss(&net, &xb, &tb, &cb).backward();
        }
        sync();
        let fwd_bwd = start.elapsed().as_secs_f64() * 1e3 / steps as f64;
        let start = Instant::now();
        for _ in 0..steps {
            fused.step()?;
        }
        sync();
        let adam = start.elapsed().as_secs_f64() * 1e3 / steps as f64;
        println!(
            "{}",
            serde_json::json!({"parts": kind.name(), "precision": cfg.precision, "roi_groups": cfg.roi_groups, "fwd_bwd_ms": fwd_bwd, "fused_adam_ms": adam})
        );
    }
    Ok(ms)
}

/// Trains a small network a few steps on the CPU, then compares CPU and CUDA predictions of the
/// same weights (evaluation mode).
fn cuda_check() -> Result<f64, Error> {
    tch::manual_seed(3);
    let sizes = [40usize, 25, 60, 7];
    let cfg = NetConfig {
        hidden: vec![64, 32],
        embedding: 16,
        classes: 10,
        ..config(ModelKind::Roi, &sizes)
    };
    let mut vs = nn::VarStore::new(Device::Cpu);
    let net = Net::new(&vs.root(), &cfg);
    let x = Tensor::randn([50, cfg.inputs as i64], (Kind::Float, Device::Cpu));
    let mut opt = nn::Adam { amsgrad: true, ..Default::default() }.build(&vs, 1e-3)?;
    for _ in 0..5 {
        let out = net.forward(&x, true);
        opt.backward_step(&regression_loss(
            &out.embedding,
            &Tensor::randn([50, 16], (Kind::Float, Device::Cpu)),
        ));
    }
    let (cpu, _) = net.predict(&x, 25);
    vs.set_device(Device::Cuda(0));
    let (gpu, _) = net.predict(&x.to_device(Device::Cuda(0)), 25);
    Ok((cpu - gpu.to_device(Device::Cpu)).abs().max().double_value(&[]))
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let sizes = read_sizes(args.get(1).ok_or("usage: gpu_step SIZES.npy [steps] [device]")?)?;
    let steps: usize = args.get(2).map_or(Ok(50), |s| s.parse())?;
    let device = brainpipe_tensor::DeviceChoice::parse(args.get(3).map_or("auto", String::as_str))?
        .resolve()?;
    println!(
        "{}",
        serde_json::json!({"impl": "brainpipe-tch", "device": brainpipe_tensor::device_name(device), "inputs": sizes.iter().sum::<usize>(), "precision": std::env::var("PRECISION").unwrap_or_else(|_| "fp32".into())})
    );
    let only = std::env::var("MODELS").unwrap_or_default();
    for kind in [ModelKind::Base, ModelKind::Roi, ModelKind::Autoencoder] {
        if !only.is_empty() && !only.split(',').any(|m| m == kind.name()) {
            continue;
        }
        let ms = step_ms(kind, &sizes, steps, device)?;
        println!(
            "{}",
            serde_json::json!({"impl": "brainpipe-tch", "model": kind.name(), "ms_per_step": ms, "steps": steps, "roi_groups": config(kind, &sizes).roi_groups, "precision": config(kind, &sizes).precision, "optimizer": std::env::var("OPTIMIZER").unwrap_or_else(|_| "fused".into()), "cuda_graph": std::env::var("GRAPH").is_ok()})
        );
    }
    if device.is_cuda() {
        let diff = cuda_check()?;
        let ok = diff <= CUDA_TOLERANCE;
        println!(
            "{}",
            serde_json::json!({"check": "cpu_vs_cuda_predictions", "max_abs_diff": diff, "tolerance": CUDA_TOLERANCE, "ok": ok})
        );
        if !ok {
            return Err(format!(
                "CPU and CUDA predictions differ by {diff:e} > {CUDA_TOLERANCE:e}"
            )
            .into());
        }
    }
    Ok(())
}

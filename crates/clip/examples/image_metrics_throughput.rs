//! Throughput of eval.images' pixel metrics on batches of 425 × 425 pairs (MindEye's size): the
//! LibTorch path (`brainpipe_clip::pair_metrics_batch`, `ssim_batch`) on a device in f64 or f32,
//! against eval's own CPU kernel (`brainpipe_eval::images`, one pair per thread over all cores).
//! Prints one JSON line per measurement (`pairs_per_s`) and one correctness check (the `f64`
//! values of the first pairs against eval's kernel, failing above 1e-6). Used by
//! `bench/gpu_image_metrics.sh`.
//!
//! `image_metrics_throughput [--device cpu|cuda|auto] [--pairs 64] [--iters 5] [--kinds f64,f32] [--eval-cpu true]`
use std::time::Instant;

use brainpipe_clip::{SsimWindow, pair_metrics_batch, ssim_batch};
use brainpipe_eval::images::{SsimVariant, pearson, ssim};
use brainpipe_tensor::{DeviceChoice, ResolveDevice, device_name};
use rayon::prelude::*;
use tch::{Device, Kind, Tensor};

const SIDE: i64 = 425;

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_owned())
}

fn sync(device: Device) {
    if let Device::Cuda(n) = device {
        tch::Cuda::synchronize(n as i64);
    }
}

/// Seconds per call of `f`, the fastest of `iters` after one warm-up call.
fn fastest(iters: usize, device: Device, mut f: impl FnMut()) -> f64 {
    f();
    sync(device);
    (0..iters)
        .map(|_| {
            let start = Instant::now();
            f();
            sync(device);
            start.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn report(implementation: &str, device: &str, kind: &str, what: &str, pairs: i64, seconds: f64) {
    println!(
        "{{\"impl\": \"{implementation}\", \"device\": \"{device}\", \"kind\": \"{kind}\", \"metrics\": \"{what}\", \"pairs\": {pairs}, \"side\": {SIDE}, \"seconds\": {seconds:.6}, \"pairs_per_s\": {:.1}, \"threads\": {}}}",
        pairs as f64 / seconds,
        rayon::current_num_threads()
    );
}

/// The first pairs' `f64` values against eval's CPU kernel on the same pixels: prints the largest
/// difference and fails above 1e-6 (the tolerance), so a device run checks correctness too.
fn check_against_eval(
    seen: &Tensor,
    recon: &Tensor,
    ours: &brainpipe_clip::PairMetricsBatch,
    device: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let n = SIDE as usize;
    let mut worst = 0f64;
    for i in 0..ours.pixcorr.len().min(4) {
        let hwc = |t: &Tensor| -> Result<Vec<f64>, tch::TchError> {
            Vec::<f64>::try_from(&t.get(i as i64).permute([1, 2, 0]).contiguous().view([-1]))
        };
        let (a, b) = (hwc(seen)?, hwc(recon)?);
        let gray = |v: &[f64]| -> Vec<f64> {
            v.chunks_exact(3).map(|p| 0.2125 * p[0] + 0.7154 * p[1] + 0.0721 * p[2]).collect()
        };
        let (ga, gb) = (gray(&a), gray(&b));
        for (theirs, mine) in [
            (pearson(&a, &b), ours.pixcorr[i]),
            (ssim(&gb, &ga, n, n, SsimVariant::Gaussian)?, ours.ssim_gaussian[i]),
            (ssim(&gb, &ga, n, n, SsimVariant::Uniform7)?, ours.ssim_uniform7[i]),
        ] {
            worst = worst.max((theirs - mine).abs());
        }
    }
    println!(
        "{{\"check\": \"tch f64 on {device} vs eval's CPU kernel\", \"max_abs_diff\": {worst:e}}}"
    );
    if worst.is_nan() || worst > 1e-6 {
        return Err(format!("{device}: LibTorch metrics differ from eval's by {worst}").into());
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let device = DeviceChoice::parse(&arg(&args, "--device", "auto"))?.resolve()?;
    let pairs: i64 = arg(&args, "--pairs", "64").parse()?;
    let iters: usize = arg(&args, "--iters", "5").parse()?;
    let name = device_name(device);
    // Smooth random images (a blurred uniform field), as photographs are smoother than noise;
    // the values do not change the work.
    tch::manual_seed(14);
    let noise = Tensor::rand([2 * pairs, 3, SIDE, SIDE], (Kind::Double, Device::Cpu));
    let images = noise.avg_pool2d([5, 5], [1, 1], [2, 2], false, true, None::<i64>);
    let (seen, recon) = (images.narrow(0, 0, pairs), images.narrow(0, pairs, pairs));
    for kind_name in arg(&args, "--kinds", "f64,f32").split(',') {
        let kind = if kind_name == "f32" { Kind::Float } else { Kind::Double };
        let (s, r) = (seen.to_kind(kind).to_device(device), recon.to_kind(kind).to_device(device));
        let t = fastest(iters, device, || {
            let _ = pair_metrics_batch(&s, &r).expect("metrics");
        });
        report("tch", &name, kind_name, "pixcorr+ssim_gaussian+ssim_uniform7", pairs, t);
        let (gs, gr) = (brainpipe_clip::gray_batch(&s), brainpipe_clip::gray_batch(&r));
        let t = fastest(iters, device, || {
            let _ = tch::no_grad(|| ssim_batch(&gr, &gs, SsimWindow::Gaussian)).expect("ssim");
        });
        report("tch", &name, kind_name, "ssim_gaussian", pairs, t);
        if kind == Kind::Double {
            check_against_eval(&seen, &recon, &pair_metrics_batch(&s, &r)?, &name)?;
        }
        // With the upload of the f64 pixels from the host (what a stage pays per batch).
        if device != Device::Cpu {
            let t = fastest(iters, device, || {
                let (s, r) =
                    (seen.to_device(device).to_kind(kind), recon.to_device(device).to_kind(kind));
                let _ = pair_metrics_batch(&s, &r).expect("metrics");
            });
            report("tch+upload", &name, kind_name, "pixcorr+ssim_gaussian+ssim_uniform7", pairs, t);
        }
    }
    if arg(&args, "--eval-cpu", "true") == "true" {
        // eval's kernel on the same pixels: gray HWC f64 per image, one pair per thread.
        let hwc = |t: &Tensor| -> Vec<Vec<f64>> {
            (0..pairs)
                .map(|i| {
                    Vec::<f64>::try_from(&t.get(i).permute([1, 2, 0]).contiguous().view([-1]))
                        .expect("f64")
                })
                .collect()
        };
        let (sh, rh) = (hwc(&seen), hwc(&recon));
        let gray = |v: &Vec<f64>| -> Vec<f64> {
            v.chunks_exact(3).map(|p| 0.2125 * p[0] + 0.7154 * p[1] + 0.0721 * p[2]).collect()
        };
        let n = SIDE as usize;
        let t = fastest(iters, Device::Cpu, || {
            let _: Vec<f64> = sh
                .par_iter()
                .zip(&rh)
                .map(|(a, b)| {
                    let (ga, gb) = (gray(a), gray(b));
                    pearson(a, b)
                        + ssim(&gb, &ga, n, n, SsimVariant::Gaussian).expect("ssim")
                        + ssim(&gb, &ga, n, n, SsimVariant::Uniform7).expect("ssim")
                })
                .collect();
        });
        report("eval-cpu", "cpu", "f64", "pixcorr+ssim_gaussian+ssim_uniform7", pairs, t);
        let (gs, gr): (Vec<Vec<f64>>, Vec<Vec<f64>>) =
            (sh.iter().map(gray).collect(), rh.iter().map(gray).collect());
        let t = fastest(iters, Device::Cpu, || {
            let _: Vec<f64> = gs
                .par_iter()
                .zip(&gr)
                .map(|(a, b)| ssim(b, a, n, n, SsimVariant::Gaussian).expect("ssim"))
                .collect();
        });
        report("eval-cpu", "cpu", "f64", "ssim_gaussian", pairs, t);
    }
    Ok(())
}

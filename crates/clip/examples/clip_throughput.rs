//! CLIP image-embedding throughput: random weights of a preset, random pixels, `batch` images per
//! forward pass, fp32, tf32 or bf16. Prints one JSON line per precision. Used by `bench/gpu_clip.sh`
//! (the same measurement as `bench/reference/clip_throughput.py` for transformers).
//!
//! `clip_throughput [--device cuda] [--preset vit-b-32] [--batch 256] [--iters 30] [--precision fp32,tf32,bf16]`
use std::time::Instant;

use brainpipe_clip::{ClipConfig, LoadedClip};
use brainpipe_tensor::{DeviceChoice, PrecisionExt, ResolveDevice, device_name};
use tch::{Device, Kind, Tensor};

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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let device = DeviceChoice::parse(&arg(&args, "--device", "auto"))?.resolve()?;
    let preset = arg(&args, "--preset", "vit-b-32");
    let batch: i64 = arg(&args, "--batch", "256").parse()?;
    let iters: usize = arg(&args, "--iters", "30").parse()?;
    let config = ClipConfig::preset(&preset).ok_or("unknown preset")?;
    let side = config.vision_config.image_size;
    for precision in arg(&args, "--precision", "fp32,bf16").split(',') {
        tch::manual_seed(0);
        let mut clip = LoadedClip::new(&config, device);
        let _tf32 = match precision {
            "tf32" => brainpipe_tensor::Precision::Tf32,
            _ => brainpipe_tensor::Precision::Fp32,
        }
        .activate();
        let kind = match precision {
            "bf16" => {
                clip.vs.bfloat16();
                Kind::BFloat16
            }
            _ => Kind::Float,
        };
        let pixels = Tensor::randn([batch, 3, side, side], (Kind::Float, device)).to_kind(kind);
        let run = || tch::no_grad(|| clip.model.image_features(&pixels));
        for _ in 0..3 {
            let _ = run();
        }
        sync(device);
        let start = Instant::now();
        for _ in 0..iters {
            let _ = run();
        }
        sync(device);
        let seconds = start.elapsed().as_secs_f64();
        let images_per_s = (batch as f64 * iters as f64) / seconds;
        println!(
            "{{\"impl\": \"brainpipe-clip\", \"device\": \"{}\", \"preset\": \"{preset}\", \"precision\": \"{precision}\", \"batch\": {batch}, \"iters\": {iters}, \"images_per_s\": {images_per_s:.1}, \"ms_per_batch\": {:.3}}}",
            device_name(device),
            seconds * 1000.0 / iters as f64
        );
    }
    Ok(())
}

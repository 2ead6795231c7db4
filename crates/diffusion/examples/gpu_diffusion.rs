//! End-to-end sampling throughput of an SD 1.5-shaped pipeline with random weights (the GPU
//! benchmark of bench/gpu_diffusion.sh): UNet (cross_attention_dim 768) + VAE decode, 512²
//! images (64² latents), DDIM with classifier-free guidance, one image-embedding token.
//!
//!     gpu_diffusion DEVICE KIND BATCH STEPS [REPEATS]      e.g. `cuda fp16 4 50 3`
//!
//! Prints one JSON line: images/s end to end (mean over REPEATS after one warm-up run).

use std::time::Instant;

use brainpipe_diffusion::{
    AutoencoderKL, SampleOptions, SchedulerConfig, SchedulerKind, UNet2DConditionModel, UNetConfig,
    VaeConfig, denoise,
};
use tch::{Device, Kind, Tensor, nn};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: gpu_diffusion DEVICE(cpu|cuda) KIND(fp32|fp16|bf16) BATCH STEPS [REPEATS]";
    if args.len() < 4 {
        return Err(usage.into());
    }
    let device = if args[0] == "cuda" { Device::Cuda(0) } else { Device::Cpu };
    let kind = match args[1].as_str() {
        "fp32" => Kind::Float,
        "fp16" => Kind::Half,
        "bf16" => Kind::BFloat16,
        _ => return Err(usage.into()),
    };
    let batch: i64 = args[2].parse()?;
    let steps: usize = args[3].parse()?;
    let repeats: usize = args.get(4).map(|r| r.parse()).transpose()?.unwrap_or(3);
    tch::manual_seed(0);
    let mut unet_vs = nn::VarStore::new(device);
    let unet = UNet2DConditionModel::new(&unet_vs.root(), &UNetConfig::sd15());
    unet_vs.set_kind(kind);
    let mut vae_vs = nn::VarStore::new(device);
    let vae = AutoencoderKL::new(&vae_vs.root(), &VaeConfig::sd15());
    vae_vs.set_kind(kind);
    let scheduler = SchedulerConfig::sd15().with_kind(SchedulerKind::Ddim);
    let scale = VaeConfig::sd15().scaling_factor;
    let run = || -> Result<Tensor, Box<dyn std::error::Error>> {
        let latents = Tensor::randn([batch, 4, 64, 64], (Kind::Float, device));
        let condition = Tensor::randn([batch, 1, 768], (kind, device));
        let x = denoise(
            &unet,
            &scheduler,
            &latents,
            &condition,
            &condition.zeros_like(),
            SampleOptions { steps, guidance_scale: 7.5 },
            |x| x.zeros_like(),
        )?;
        let images = tch::no_grad(|| vae.decode(&(x.to_kind(kind) / scale)));
        Ok(((images.to_kind(Kind::Float) + 1.0) * 127.5)
            .clamp(0.0, 255.0)
            .to_kind(Kind::Uint8)
            .to_device(Device::Cpu))
    };
    let _warm = run()?;
    let start = Instant::now();
    for _ in 0..repeats {
        let _images = run()?;
    }
    let seconds = start.elapsed().as_secs_f64() / repeats as f64;
    println!(
        "{}",
        serde_json::json!({
            "impl": "brainpipe-tch", "device": args[0], "kind": args[1], "batch": batch,
            "steps": steps, "seconds_per_batch": seconds, "images_per_s": batch as f64 / seconds,
        })
    );
    Ok(())
}

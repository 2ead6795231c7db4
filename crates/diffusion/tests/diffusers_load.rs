//! `diffusion.train`'s directory is a diffusers layout: diffusers 0.42.1 itself loads the UNet
//! and scheduler and samples the same images we sample (needs $BRAINPIPE_REF_PYTHON; skipped
//! without it, and a failure under CI=1).
//!
//! Both sides sample in f64: an 8-step guided loop of a barely trained model is ill-conditioned
//! enough that diffusers' own f32 run differs from its f64 run by ~8e-3 (measured), so an f32
//! comparison could neither pass at 1e-3 nor detect a real difference. In f64 the two differ by
//! 4.7e-5 (measured): the step coefficients are f32 on both sides (as diffusers keeps ᾱ), and
//! their last-bit differences are amplified ~1000× by the loop; a wrong layer or coefficient
//! gives differences of order 1.

use std::path::PathBuf;
use std::process::Command;

use brainpipe_core::{NamedTensor, read_safetensors, write_safetensors};
use brainpipe_diffusion::{
    DiffusionPipeline, PredictionType, SampleOptions, TrainOptions, condition_tokens, denoise,
    save_decoder, train_decoder,
};
use tch::{Device, Kind, Tensor};

fn reference_python() -> Option<PathBuf> {
    brainpipe_core::reference_python("the diffusers oracle")
}

fn f32_tensor(name: &str, t: &Tensor) -> NamedTensor {
    let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
    let values =
        Vec::<f64>::try_from(&t.to_kind(Kind::Double).contiguous().view([-1])).expect("f64");
    NamedTensor::f64(name, shape, &values)
}

#[test]
fn diffusers_loads_and_samples_the_trained_decoder_as_we_do() {
    let Some(python) = reference_python() else { return };
    tch::manual_seed(1);
    let images = Tensor::rand([6, 3, 16, 16], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
    let embeddings = Tensor::randn([6, 12], (Kind::Float, Device::Cpu));
    let options = TrainOptions {
        codec_factor: 2,
        channels: vec![16, 32],
        layers_per_block: 1,
        heads: 2,
        steps: 3,
        batch_size: 4,
        learning_rate: 1e-3,
        condition_dropout: 0.1,
        num_train_timesteps: 1000,
        seed: 0,
        prediction_type: PredictionType::Epsilon,
    };
    let (vs, config, scheduler, report) =
        train_decoder(&images, &embeddings, &options, Device::Cpu, |_| {}).expect("train");
    assert_eq!(report.loss_curve.len(), 1);
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("decoder");
    save_decoder(&model, &vs, &config, &scheduler, 2, 16).expect("save");

    let pipeline = DiffusionPipeline::load(&model, Device::Cpu, Kind::Double).expect("load ours");
    assert!(pipeline.normalize_condition);
    let latents = Tensor::randn([2, 12, 8, 8], (Kind::Double, Device::Cpu));
    let condition = condition_tokens(&embeddings.narrow(0, 0, 2)).to_kind(Kind::Double);
    let ours = denoise(
        &pipeline.unet,
        &pipeline.scheduler,
        &latents,
        &condition,
        &condition.zeros_like(),
        SampleOptions { steps: 8, guidance_scale: 2.5 },
        |x| x.zeros_like(),
    )
    .expect("denoise");
    let ours_images = pipeline.codec.decode(&ours);

    let inputs = dir.path().join("inputs.safetensors");
    let tensors = vec![
        f32_tensor("latents", &latents),
        f32_tensor("condition", &condition),
        f32_tensor("steps", &Tensor::from_slice(&[8f32])),
        f32_tensor("guidance", &Tensor::from_slice(&[2.5f32])),
    ];
    write_safetensors(&inputs, &tensors, "test/1", &serde_json::json!({})).expect("inputs");
    let out = dir.path().join("out.safetensors");
    let script = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    )
    .join("../../tests/fixtures/diffusion/check_diffusers_load.py");
    let run = Command::new(&python)
        .arg(&script)
        .arg(&model)
        .arg(&inputs)
        .arg(&out)
        .output()
        .expect("python");
    assert!(run.status.success(), "diffusers failed: {}", String::from_utf8_lossy(&run.stderr));
    let theirs = read_safetensors(&out).expect("out");
    let images = theirs.tensor("images").expect("images");
    let values = images.to_f64().expect("f64");
    let shape: Vec<i64> = images.shape.iter().map(|&d| d as i64).collect();
    let theirs_images = Tensor::from_slice(&values).view(shape.as_slice());
    let err = (&ours_images.to_kind(Kind::Double) - &theirs_images).abs().max().double_value(&[]);
    assert!(err <= 1e-3, "diffusers' sample differs from ours by {err}");
}

//! Parity with diffusers 0.42.1 on the committed fixtures (`tests/fixtures/diffusion/
//! make_fixtures.py` regenerates them): UNet forwards with both conditionings, VAE
//! encode/decode with both attention namings and F32/F16/BF16 weights, scheduler timesteps and
//! ᾱ exactly, scheduler step sequences, and 10-step guided DDIM and PNDM loops.

use std::collections::HashMap;
use std::path::PathBuf;

use brainpipe_core::{Dtype, read_safetensors};
use brainpipe_diffusion::{
    Codec, Conditioning, DiffusionPipeline, SampleOptions, Scheduler, SchedulerConfig,
    SchedulerKind, denoise,
};
use serde_json::Value;
use tch::{Device, Kind, Tensor};

fn fixtures() -> PathBuf {
    std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    )
    .join("../../tests/fixtures/diffusion")
}

fn reference() -> HashMap<String, Tensor> {
    let file = read_safetensors(&fixtures().join("reference.safetensors")).expect("reference");
    file.tensors
        .iter()
        .map(|t| {
            let kind = match t.dtype {
                Dtype::F32 => Kind::Float,
                Dtype::I64 => Kind::Int64,
                other => panic!("unexpected {other:?}"),
            };
            let shape: Vec<i64> = t.shape.iter().map(|&d| d as i64).collect();
            (t.name.clone(), Tensor::from_data_size(&t.data, &shape, kind))
        })
        .collect()
}

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shapes");
    (a - b).abs().max().double_value(&[])
}

fn load(name: &str) -> DiffusionPipeline {
    DiffusionPipeline::load(&fixtures().join(name), Device::Cpu, Kind::Float).expect(name)
}

fn vae(p: &DiffusionPipeline) -> &brainpipe_diffusion::AutoencoderKL {
    match &p.codec {
        Codec::Vae(v) => v,
        Codec::PixelUnshuffle(_) => panic!("a VAE pipeline"),
    }
}

#[test]
fn unet_forward_matches_diffusers_with_an_image_embedding_token() {
    let r = reference();
    let p = load("image_variation");
    assert_eq!(p.conditioning, Conditioning::ImageEmbedding { encoder: None });
    let context = r["image_embeds"].unsqueeze(1);
    let out = tch::no_grad(|| p.unet.forward(&r["unet_sample"], &r["unet_timesteps"], &context));
    let err = max_abs(&out, &r["unet_image_out"]);
    assert!(err <= 1e-4, "UNet (image token) max abs error {err}");
}

#[test]
fn unet_forward_matches_diffusers_with_text_hidden_states_and_bf16_weights() {
    let r = reference();
    let p = load("text2img");
    assert!(matches!(p.conditioning, Conditioning::TextHiddenStates { .. }));
    let out =
        tch::no_grad(|| p.unet.forward(&r["unet_sample"], &r["unet_timesteps"], &r["text_hidden"]));
    let err = max_abs(&out, &r["unet_text_out"]);
    assert!(err <= 1e-4, "UNet (text hidden states) max abs error {err}");
}

#[test]
fn vae_matches_diffusers_with_new_f16_and_old_attention_names() {
    let r = reference();
    for (dir, name) in [("image_variation", "vae_new"), ("text2img", "vae_old")] {
        let p = load(dir);
        let v = vae(&p);
        let (posterior, decoded) = tch::no_grad(|| {
            let posterior = v.encode(&r["vae_image"]);
            let decoded = v.decode(&r[&format!("{name}_mean")]);
            (posterior, decoded)
        });
        for (ours, theirs) in [
            (&posterior.mean, format!("{name}_mean")),
            (&posterior.logvar, format!("{name}_logvar")),
            (&decoded, format!("{name}_decoded")),
        ] {
            let err = max_abs(ours, &r[&theirs]);
            assert!(err <= 1e-4, "{theirs}: max abs error {err}");
        }
    }
}

fn guided_loop(dir: &str, condition: &Tensor, unconditional: &Tensor, scale: f64, prefix: &str) {
    let r = reference();
    let p = load(dir);
    let latents = denoise(
        &p.unet,
        &p.scheduler,
        &r["loop_latents"],
        condition,
        unconditional,
        SampleOptions { steps: 10, guidance_scale: scale },
        |x| x.zeros_like(),
    )
    .expect("denoise");
    let err = max_abs(&latents, &r[&format!("{prefix}_loop_latents")]);
    assert!(err <= 1e-3, "{prefix}: latents max abs error {err}");
    let image = tch::no_grad(|| p.codec.decode(&latents));
    let err = max_abs(&image, &r[&format!("{prefix}_loop_image")]);
    assert!(err <= 1e-3, "{prefix}: image max abs error {err}");
}

#[test]
fn ten_step_guided_ddim_loop_matches_diffusers() {
    let r = reference();
    let cond = r["image_embeds"].narrow(0, 0, 1).unsqueeze(1);
    guided_loop("image_variation", &cond, &cond.zeros_like(), 3.0, "ddim");
}

#[test]
fn ten_step_guided_pndm_loop_on_text_hidden_states_matches_diffusers() {
    let r = reference();
    let cond = r["text_hidden"].narrow(0, 0, 1);
    guided_loop("text2img", &cond, &r["text_empty_hidden"], 7.5, "pndm");
}

#[test]
fn scheduler_timesteps_and_alphas_are_exact() {
    let text = std::fs::read_to_string(fixtures().join("schedulers.json")).expect("schedulers");
    let all: Value = serde_json::from_str(&text).expect("json");
    let cases = all["cases"].as_array().expect("cases");
    assert!(cases.len() >= 27, "{} cases", cases.len());
    for case in cases {
        let config =
            SchedulerConfig::from_json(&case["config"], SchedulerKind::Ddim).expect("config");
        let schedule = case["config"]["beta_schedule"].as_str().expect("schedule");
        let alphas: Vec<f32> = all["alphas_cumprod"][schedule]
            .as_array()
            .expect("alphas")
            .iter()
            .map(|v| v.as_f64().expect("f64") as f32)
            .collect();
        assert_eq!(config.alphas_cumprod(), alphas, "ᾱ of {schedule}");
        let mut scheduler = Scheduler::new(&config);
        for (n, want) in case["steps"].as_object().expect("steps") {
            let want: Vec<i64> =
                want.as_array().expect("list").iter().map(|v| v.as_i64().expect("int")).collect();
            scheduler.set_timesteps(n.parse().expect("n")).expect("set_timesteps");
            assert_eq!(scheduler.timesteps(), want.as_slice(), "{} n={n}", case["config"]);
        }
    }
}

#[test]
fn scheduler_step_sequences_match_diffusers() {
    let r = reference();
    for name in ["ddim_eps", "ddim_v_clip", "pndm_plms", "pndm_prk", "ddpm_eps"] {
        let path = fixtures().join(format!("sched_{name}.json"));
        let config = SchedulerConfig::from_file(&path, SchedulerKind::Ddim).expect("config");
        let mut scheduler = Scheduler::new(&config);
        scheduler.set_timesteps(6).expect("set");
        let want: Vec<i64> =
            Vec::try_from(&r[&format!("steps_{name}_timesteps")]).expect("timesteps");
        assert_eq!(scheduler.timesteps(), want.as_slice(), "{name} timesteps");
        let noise = r.get(&format!("steps_{name}_noise"));
        let mut s = r["steps_sample"].shallow_clone();
        for (i, &t) in want.iter().enumerate() {
            let out = r["steps_outputs"].get((i % 16) as i64);
            let z = noise.map(|n| n.get(i as i64));
            s = scheduler.step(&out, t, &s, z.as_ref());
        }
        let err = max_abs(&s, &r[&format!("steps_{name}")]);
        assert!(err <= 1e-5, "{name}: max abs error {err}");
    }
}

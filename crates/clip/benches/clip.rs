//! CPU benchmarks of brainpipe-clip: image-embedding throughput (ViT-B/32 shape with random
//! weights, and the small trainable preset), tokenisation and preprocessing. The GPU comparison
//! with transformers is `bench/gpu_clip.sh`; the figures are in docs/BENCHMARKS.md.

use brainpipe_clip::{CONTEXT_LENGTH, ClipConfig, LoadedClip, Preprocessor, RgbImage, Tokenizer};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tch::{Device, Kind, Tensor};

fn image_embedding(c: &mut Criterion) {
    let mut group = c.benchmark_group("image_embedding_cpu_fp32");
    group.sample_size(10);
    for (name, batch) in [("vit-b-32", 8i64), ("small", 256)] {
        let config = ClipConfig::preset(name).expect("preset");
        tch::manual_seed(0);
        let clip = LoadedClip::new(&config, Device::Cpu);
        let side = config.vision_config.image_size;
        let pixels = Tensor::randn([batch, 3, side, side], (Kind::Float, Device::Cpu));
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(format!("{name}/batch{batch}"), |b| {
            b.iter(|| tch::no_grad(|| clip.model.image_features(&pixels)))
        });
    }
    group.finish();
}

fn tokenize(c: &mut Criterion) {
    let tokenizer = Tokenizer::new();
    let captions: Vec<String> = (0..256)
        .map(|i| {
            format!(
                "a photo of {i} red circles and a blue square on a white background, taken in 2024!"
            )
        })
        .collect();
    let mut group = c.benchmark_group("tokenize");
    group.throughput(Throughput::Elements(captions.len() as u64));
    group.bench_function("256_captions", |b| b.iter(|| tokenizer.batch(&captions, CONTEXT_LENGTH)));
    group.finish();
}

fn preprocess(c: &mut Criterion) {
    let (w, h) = (640, 480);
    let pixels: Vec<u8> = (0..w * h * 3).map(|i| (i * 31 % 251) as u8).collect();
    let image = RgbImage::new(w, h, pixels).expect("size");
    let p = Preprocessor::for_vision(&ClipConfig::vit_base_patch32().vision_config);
    let mut group = c.benchmark_group("preprocess");
    group.throughput(Throughput::Elements(1));
    group.bench_function("640x480_to_224", |b| b.iter(|| p.preprocess(&image)));
    group.finish();
}

criterion_group!(benches, image_embedding, tokenize, preprocess);
criterion_main!(benches);

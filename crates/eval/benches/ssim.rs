//! SSIM at MindEye's 425 × 425 against scikit-image (`bench/ssim.sh` times both in one run; the
//! figures are in docs/BENCHMARKS.md): one pair at a time on one thread (`ssim`), one pair with
//! its row bands over rayon's threads (`ssim_par`), a batch of pairs (rayon over pairs, the
//! per-pair throughput `eval.images` gets) and the whole per-pair pipeline (resize,
//! `rgb2gray`, PixCorr, both SSIM variants).

use brainpipe_eval::images::{
    MINDEYE_SIZE, SsimVariant, pair_metrics, read_png, resize_bilinear, rgb2gray, ssim, ssim_many,
    ssim_par,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// The fixture photographs resized to 425 × 425 and converted to gray, as the metric sees them.
fn gray_pair() -> (Vec<f64>, Vec<f64>) {
    let dir = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    )
    .join("tests/fixtures/images");
    let load = |n: &str| {
        let img = read_png(&dir.join(n)).expect("fixture");
        rgb2gray(&resize_bilinear(&img, MINDEYE_SIZE, MINDEYE_SIZE, true))
    };
    (load("astronaut.png"), load("coffee.png"))
}

fn ssim_425(c: &mut Criterion) {
    let (a, b) = gray_pair();
    let s = MINDEYE_SIZE;
    let mut group = c.benchmark_group("ssim_425");
    group.throughput(Throughput::Elements(1));
    for variant in [SsimVariant::Gaussian, SsimVariant::Uniform7] {
        group.bench_function(format!("{}/one_pair_serial", variant.metric()), |bench| {
            bench.iter(|| ssim(&a, &b, s, s, variant).expect("ssim"))
        });
        group.bench_function(format!("{}/one_pair_parallel", variant.metric()), |bench| {
            bench.iter(|| ssim_par(&a, &b, s, s, variant).expect("ssim"))
        });
    }
    let pairs: Vec<(&[f64], &[f64])> = (0..32).map(|_| (a.as_slice(), b.as_slice())).collect();
    group.throughput(Throughput::Elements(pairs.len() as u64));
    group.bench_function("ssim_gaussian/batch32_parallel", |bench| {
        bench.iter(|| ssim_many(&pairs, s, s, SsimVariant::Gaussian).expect("ssim"))
    });
    group.finish();
}

fn pipeline(c: &mut Criterion) {
    let dir = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    )
    .join("tests/fixtures/images");
    let seen = read_png(&dir.join("astronaut.png")).expect("fixture");
    let recon = read_png(&dir.join("coffee.png")).expect("fixture");
    let mut group = c.benchmark_group("pair_metrics_425");
    group.throughput(Throughput::Elements(1));
    group.bench_function("resize_gray_pixcorr_ssim2", |bench| {
        bench.iter(|| pair_metrics(&seen, &recon, MINDEYE_SIZE, true))
    });
    group.finish();
}

criterion_group!(benches, ssim_425, pipeline);
criterion_main!(benches);

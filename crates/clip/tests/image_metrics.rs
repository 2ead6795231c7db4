//! The LibTorch path of eval.images' PixCorr and SSIM (`brainpipe_clip::{ssim_batch, …}`) against
//! eval's CPU implementation on eval's fixture images (photographs, drawn scenes, a constant image,
//! non-square and 16-bit PNGs): within 1e-6 (the tolerance) in `f64` on the CPU; on CUDA
//! too when a GPU is present.

use std::path::PathBuf;

use brainpipe_clip::{SsimWindow, pair_metrics_batch, resize_square, ssim_batch};
use brainpipe_eval::images::{RgbImage, SsimVariant, pair_metrics, read_png, rgb2gray, ssim};
use tch::{Device, Kind, Tensor};

const TOLERANCE: f64 = 1e-6;

fn fixture(name: &str) -> PathBuf {
    std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    )
    .join("../eval/tests/fixtures/images")
    .join(name)
}

/// HWC `f64` → a `3 × h × w` tensor.
fn chw(image: &RgbImage) -> Tensor {
    Tensor::from_slice(&image.pixels)
        .view([image.height as i64, image.width as i64, 3])
        .permute([2, 0, 1])
        .contiguous()
}

const PAIRS: [(&str, &str); 6] = [
    ("astronaut.png", "coffee.png"),
    ("scene_a.png", "scene_b.png"),
    ("chelsea.png", "astronaut.png"),
    ("camera16.png", "coffee_rgba.png"),
    ("constant.png", "scene_a.png"),
    ("coffee.png", "coffee.png"),
];

fn devices() -> Vec<Device> {
    let mut out = vec![Device::Cpu];
    if tch::Cuda::is_available() {
        out.push(Device::Cuda(0));
    }
    out
}

#[test]
fn pair_metrics_match_eval_through_resize_and_gray() {
    for device in devices() {
        for (size, antialias) in [(425usize, true), (48, true), (48, false)] {
            let (mut seen, mut recon, mut cpu) = (Vec::new(), Vec::new(), Vec::new());
            for (a, b) in PAIRS {
                let (ia, ib) = (read_png(&fixture(a)).expect(a), read_png(&fixture(b)).expect(b));
                let to = |i: &RgbImage| {
                    resize_square(&chw(i).to_device(device), size as i64, antialias)
                        .expect("resize")
                };
                seen.push(to(&ia));
                recon.push(to(&ib));
                cpu.push(pair_metrics(&ia, &ib, size, antialias));
            }
            let batch = pair_metrics_batch(&Tensor::stack(&seen, 0), &Tensor::stack(&recon, 0))
                .expect("batch");
            let mut worst = 0f64;
            for (k, m) in cpu.iter().enumerate() {
                for (what, ours, theirs) in [
                    ("pixcorr", batch.pixcorr[k], m.pixcorr),
                    ("ssim_gaussian", batch.ssim_gaussian[k], m.ssim_gaussian),
                    ("ssim_uniform7", batch.ssim_uniform7[k], m.ssim_uniform7),
                ] {
                    if PAIRS[k].0 == "constant.png" && what == "pixcorr" {
                        // 0/0: a resized constant image is constant up to rounding, and what
                        // either side returns (NaN, or the correlation of its rounding noise) is
                        // noise: eval's parity tests and numpy agree it is undefined.
                        continue;
                    }
                    let d = (ours - theirs).abs();
                    worst = worst.max(d);
                    assert!(
                        d <= TOLERANCE,
                        "{device:?} {size} aa={antialias} {:?} {what}: {ours} vs {theirs}",
                        PAIRS[k]
                    );
                }
            }
            println!("{device:?} size {size} antialias {antialias}: max |tch − eval| = {worst:e}");
        }
    }
}

#[test]
fn ssim_on_raw_gray_images_matches_eval_and_rejects_bad_shapes() {
    // Unresized: 64 × 64 pairs, and the 7 × 7 image for the 7-tap window.
    let gray = |n: &str| rgb2gray(&read_png(&fixture(n)).expect(n));
    let (a, b) = (gray("astronaut.png"), gray("scene_b.png"));
    let t = |v: &[f64], h: i64, w: i64| Tensor::from_slice(v).view([1, h, w]);
    for (window, variant) in [
        (SsimWindow::Gaussian, SsimVariant::Gaussian),
        (SsimWindow::Uniform7, SsimVariant::Uniform7),
    ] {
        let ours = f64::try_from(ssim_batch(&t(&a, 64, 64), &t(&b, 64, 64), window).expect("ssim"))
            .expect("scalar");
        let theirs = ssim(&a, &b, 64, 64, variant).expect("eval");
        assert!((ours - theirs).abs() <= 1e-12, "{window:?}: {ours} vs {theirs}");
    }
    let tiny = gray("tiny7.png");
    let flipped: Vec<f64> = tiny.iter().rev().copied().collect();
    let ours = ssim_batch(&t(&tiny, 7, 7), &t(&flipped, 7, 7), SsimWindow::Uniform7).expect("7×7");
    let theirs = ssim(&tiny, &flipped, 7, 7, SsimVariant::Uniform7).expect("eval 7×7");
    assert!((f64::try_from(ours).expect("scalar") - theirs).abs() <= 1e-12);
    let err =
        ssim_batch(&t(&tiny, 7, 7), &t(&tiny, 7, 7), SsimWindow::Gaussian).expect_err("small");
    assert!(err.to_string().contains("smaller than the 11×11 SSIM window"), "{err}");
    let other = Tensor::zeros([1, 8, 7], (Kind::Double, Device::Cpu));
    let err = ssim_batch(&t(&tiny, 7, 7), &other, SsimWindow::Uniform7).expect_err("shapes");
    assert!(err.to_string().contains("same shape"), "{err}");
}

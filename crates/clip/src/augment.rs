//! Image augmentation for Brain2CLIP (the seed's ×4: random flip, crop, brightness, contrast and
//! Gaussian blur), deterministic for a seed.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::image::RgbImage;

/// How strongly to augment; each copy draws its own values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Augmentation {
    /// Probability of a horizontal flip.
    pub flip_probability: f64,
    /// Smallest fraction of the image area a random crop keeps (1: no cropping).
    pub min_crop_area: f64,
    /// Brightness factor drawn from 1 ± this.
    pub brightness: f64,
    /// Contrast factor drawn from 1 ± this.
    pub contrast: f64,
    /// Probability of a Gaussian blur.
    pub blur_probability: f64,
    /// Largest blur σ in pixels (σ is drawn from [0.1, this]).
    pub max_blur_sigma: f64,
}

impl Default for Augmentation {
    fn default() -> Self {
        Augmentation {
            flip_probability: 0.5,
            min_crop_area: 0.6,
            brightness: 0.2,
            contrast: 0.2,
            blur_probability: 0.5,
            max_blur_sigma: 1.5,
        }
    }
}

impl Augmentation {
    /// One augmented copy of `image`, the same size.
    pub fn apply(&self, image: &RgbImage, rng: &mut ChaCha8Rng) -> RgbImage {
        let mut out = self.random_crop(image, rng);
        if rng.gen_bool(self.flip_probability.clamp(0.0, 1.0)) {
            out = flip_horizontal(&out);
        }
        let brightness = 1.0 + rng.gen_range(-1.0..=1.0) * self.brightness;
        let contrast = 1.0 + rng.gen_range(-1.0..=1.0) * self.contrast;
        out = adjust(&out, brightness, contrast);
        if rng.gen_bool(self.blur_probability.clamp(0.0, 1.0)) {
            let sigma = rng.gen_range(0.1..=self.max_blur_sigma.max(0.1));
            out = gaussian_blur(&out, sigma);
        }
        out
    }

    fn random_crop(&self, image: &RgbImage, rng: &mut ChaCha8Rng) -> RgbImage {
        let area = rng.gen_range(self.min_crop_area.clamp(0.01, 1.0)..=1.0);
        let side = area.sqrt();
        let w = ((image.width as f64 * side).round() as usize).clamp(1, image.width);
        let h = ((image.height as f64 * side).round() as usize).clamp(1, image.height);
        let left = rng.gen_range(0..=image.width - w);
        let top = rng.gen_range(0..=image.height - h);
        image.crop(left, top, w, h).resize_bicubic(image.width, image.height)
    }
}

fn flip_horizontal(image: &RgbImage) -> RgbImage {
    let mut pixels = Vec::with_capacity(image.pixels.len());
    for row in image.pixels.chunks(image.width * 3) {
        for px in row.chunks_exact(3).rev() {
            pixels.extend_from_slice(px);
        }
    }
    RgbImage { pixels, ..*image }
}

/// Brightness scales every channel; contrast scales the distance to the mean grey level
/// (as Pillow's `ImageEnhance` does).
fn adjust(image: &RgbImage, brightness: f64, contrast: f64) -> RgbImage {
    let n = (image.width * image.height).max(1) as f64;
    let mean_grey = image
        .pixels
        .chunks_exact(3)
        .map(|p| 0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2]))
        .sum::<f64>()
        / n
        * brightness;
    let pixels = image
        .pixels
        .iter()
        .map(|&v| {
            let bright = f64::from(v) * brightness;
            (mean_grey + (bright - mean_grey) * contrast).round().clamp(0.0, 255.0) as u8
        })
        .collect();
    RgbImage { pixels, ..*image }
}

/// Separable Gaussian blur with edge clamping, radius ⌈3σ⌉.
fn gaussian_blur(image: &RgbImage, sigma: f64) -> RgbImage {
    let radius = (3.0 * sigma).ceil() as i64;
    let kernel: Vec<f64> =
        (-radius..=radius).map(|x| (-((x * x) as f64) / (2.0 * sigma * sigma)).exp()).collect();
    let total: f64 = kernel.iter().sum();
    let kernel: Vec<f64> = kernel.iter().map(|k| k / total).collect();
    let (w, h) = (image.width as i64, image.height as i64);
    let pass = |src: &[f64], horizontal: bool| -> Vec<f64> {
        let mut out = vec![0.0; src.len()];
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    let mut sum = 0.0;
                    for (i, k) in kernel.iter().enumerate() {
                        let d = i as i64 - radius;
                        let (sx, sy) = if horizontal {
                            ((x + d).clamp(0, w - 1), y)
                        } else {
                            (x, (y + d).clamp(0, h - 1))
                        };
                        sum += k * src[((sy * w + sx) * 3 + c) as usize];
                    }
                    out[((y * w + x) * 3 + c) as usize] = sum;
                }
            }
        }
        out
    };
    let values: Vec<f64> = image.pixels.iter().map(|&v| f64::from(v)).collect();
    let blurred = pass(&pass(&values, true), false);
    RgbImage {
        pixels: blurred.iter().map(|v| v.round().clamp(0.0, 255.0) as u8).collect(),
        ..*image
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn augmentation_is_seeded_and_keeps_size() {
        let pixels: Vec<u8> = (0..16 * 12 * 3).map(|i| (i * 7 % 256) as u8).collect();
        let image = RgbImage::new(16, 12, pixels).expect("size");
        let aug = Augmentation::default();
        let a = aug.apply(&image, &mut ChaCha8Rng::seed_from_u64(3));
        let b = aug.apply(&image, &mut ChaCha8Rng::seed_from_u64(3));
        let c = aug.apply(&image, &mut ChaCha8Rng::seed_from_u64(4));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!((a.width, a.height), (16, 12));
        let flat = RgbImage::new(5, 5, vec![100; 75]).expect("size");
        assert_eq!(gaussian_blur(&flat, 1.0), flat);
        assert_eq!(flip_horizontal(&flip_horizontal(&image)), image);
    }
}

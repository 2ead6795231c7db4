//! scikit-image's `rgb2gray`: the luminance `0.2125 R + 0.7154 G + 0.0721 B` (ITU-R BT.709
//! primaries, `skimage.color.rgb2gray`, unchanged through 0.26).

use super::image::RgbImage;

/// `rgb2gray`'s coefficients for red, green and blue.
pub const RGB2GRAY: [f64; 3] = [0.2125, 0.7154, 0.0721];

/// The luminance of every pixel, row-major (`height × width`).
pub fn rgb2gray(image: &RgbImage) -> Vec<f64> {
    image
        .pixels
        .chunks_exact(3)
        .map(|p| p[0] * RGB2GRAY[0] + p[1] * RGB2GRAY[1] + p[2] * RGB2GRAY[2])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coefficients_and_layout() {
        let img = RgbImage::new(2, 1, vec![1.0, 0.0, 0.0, 0.5, 0.5, 0.5]).expect("image");
        let g = rgb2gray(&img);
        assert_eq!(g[0], 0.2125);
        assert!((g[1] - 0.5).abs() < 1e-15);
    }
}

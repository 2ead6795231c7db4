//! Images as the metrics see them: `f64` RGB in `[0, 1]`, row-major `height × width × 3`, decoded
//! from PNG (8 or 16 bits; gray, gray + alpha, RGB, RGBA, palette).

use std::path::Path;

use brainpipe_core::IoContext;

use crate::error::{EvalError, Result};

/// An RGB image of `f64` values in `[0, 1]`, row-major, channels last (`height × width × 3`): the
/// layout of a float tensor after `ToTensor` (÷255), permuted to channels last.
#[derive(Clone, Debug, PartialEq)]
pub struct RgbImage {
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// `height × width × 3` values.
    pub pixels: Vec<f64>,
}

impl RgbImage {
    /// An image from its pixels; `None` when `pixels` is not `height × width × 3` long or a side
    /// is zero.
    pub fn new(width: usize, height: usize, pixels: Vec<f64>) -> Option<Self> {
        (width > 0 && height > 0 && pixels.len() == width * height * 3).then_some(RgbImage {
            width,
            height,
            pixels,
        })
    }

    /// Red, green and blue of pixel (`x`, `y`).
    pub fn pixel(&self, x: usize, y: usize) -> [f64; 3] {
        let i = (y * self.width + x) * 3;
        [self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]]
    }
}

/// Reads a PNG as [`RgbImage`]: 8-bit values ÷255, 16-bit values ÷65535 (as `img_as_float`);
/// gray is copied to the three channels and alpha is dropped (Pillow's `convert("RGB")`); palette
/// images are expanded. Every failure is an error naming `path`.
pub fn read_png(path: &Path) -> Result<RgbImage> {
    let bytes = std::fs::read(path).at(path)?;
    decode_png(&bytes, path)
}

/// Decodes PNG `bytes` read from `path` (named in errors).
pub fn decode_png(bytes: &[u8], path: &Path) -> Result<RgbImage> {
    let corrupt = |e: png::DecodingError| EvalError::data(path, format!("not a readable PNG: {e}"));
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    // Palette → RGB(A), gray below 8 bits → 8 bits; 16-bit samples are kept.
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder.read_info().map_err(corrupt)?;
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| EvalError::data(path, "PNG dimensions overflow"))?;
    let mut buffer = vec![0u8; size];
    let info = reader.next_frame(&mut buffer).map_err(corrupt)?;
    let (width, height) = (info.width as usize, info.height as usize);
    let channels = match info.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed => return Err(EvalError::data(path, "palette PNG not expanded")),
    };
    let wide = match info.bit_depth {
        png::BitDepth::Sixteen => true,
        png::BitDepth::Eight => false,
        other => {
            return Err(EvalError::data(path, format!("unsupported PNG bit depth {other:?}")));
        }
    };
    let bytes_per_sample = if wide { 2 } else { 1 };
    let sample = |row: &[u8], k: usize| -> f64 {
        if wide {
            f64::from(u16::from_be_bytes([row[2 * k], row[2 * k + 1]])) / 65535.0
        } else {
            f64::from(row[k]) / 255.0
        }
    };
    let mut pixels = Vec::with_capacity(width * height * 3);
    for row in buffer.chunks(info.line_size).take(height) {
        if row.len() < width * channels * bytes_per_sample {
            return Err(EvalError::data(path, "truncated PNG"));
        }
        for x in 0..width {
            let k = x * channels;
            if channels < 3 {
                let v = sample(row, k);
                pixels.extend_from_slice(&[v, v, v]);
            } else {
                pixels.extend_from_slice(&[sample(row, k), sample(row, k + 1), sample(row, k + 2)]);
            }
        }
    }
    RgbImage::new(width, height, pixels).ok_or_else(|| EvalError::data(path, "truncated PNG"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(
        width: u32,
        height: u32,
        color: png::ColorType,
        depth: png::BitDepth,
        data: &[u8],
    ) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut encoder = png::Encoder::new(&mut out, width, height);
            encoder.set_color(color);
            encoder.set_depth(depth);
            let mut writer = encoder.write_header().expect("header");
            writer.write_image_data(data).expect("data");
        }
        out
    }

    #[test]
    fn decodes_every_layout_to_rgb_in_unit_range() {
        let p = Path::new("x.png");
        let gray = encode(2, 1, png::ColorType::Grayscale, png::BitDepth::Eight, &[0, 255]);
        assert_eq!(decode_png(&gray, p).expect("gray").pixels, vec![0.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
        let rgba = encode(1, 1, png::ColorType::Rgba, png::BitDepth::Eight, &[51, 102, 255, 0]);
        assert_eq!(decode_png(&rgba, p).expect("rgba").pixels, vec![0.2, 0.4, 1.0]);
        let ga = encode(1, 1, png::ColorType::GrayscaleAlpha, png::BitDepth::Eight, &[51, 7]);
        assert_eq!(decode_png(&ga, p).expect("ga").pixels, vec![0.2; 3]);
        let wide = encode(
            1,
            1,
            png::ColorType::Rgb,
            png::BitDepth::Sixteen,
            &[0, 0, 0xff, 0xff, 0x80, 0x00],
        );
        let px = decode_png(&wide, p).expect("16-bit").pixels;
        assert_eq!(px, vec![0.0, 1.0, 32768.0 / 65535.0]);
    }

    #[test]
    fn bad_bytes_are_one_line_errors_naming_the_file() {
        let err = decode_png(b"not a png at all", Path::new("dir/bad.png")).expect_err("garbage");
        let text = err.to_string();
        assert!(text.starts_with("dir/bad.png: not a readable PNG"), "{text}");
        assert!(!text.contains('\n'), "{text}");
        let good = encode(4, 4, png::ColorType::Rgb, png::BitDepth::Eight, &[7; 48]);
        let err = decode_png(&good[..good.len() - 20], Path::new("t.png")).expect_err("truncated");
        assert!(err.to_string().starts_with("t.png: "), "{err}");
    }
}

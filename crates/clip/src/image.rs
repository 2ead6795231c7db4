//! Images in, CLIP pixel tensors out — the way `CLIPImageProcessor` prepares them: convert to RGB,
//! resize the shortest side (bicubic), centre-crop, rescale to [0, 1] and normalise with CLIP's
//! mean and std.
//!
//! The resize is Pillow's (`Image.resize(…, BICUBIC)`, which transformers' PIL backend calls)
//! re-implemented step for step: separable convolution with the a = −0.5 cubic kernel widened by
//! the downscale factor (antialiasing), fixed-point weights of 22 fractional bits, and rounding to
//! `u8` after the horizontal and after the vertical pass. Because the integer arithmetic is the
//! same, the pixels come out identical to Pillow's; the tests hold them to 1e-6.

use brainpipe_core::IoContext;
use std::path::Path;

use serde_json::Value;

use crate::config::VisionConfig;
use crate::error::{ClipError, Result};

/// CLIP's per-channel mean (OpenAI; `OPENAI_CLIP_MEAN` in transformers).
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// CLIP's per-channel standard deviation (`OPENAI_CLIP_STD` = 0.26862954, 0.26130258,
/// 0.27577711; written here with the digits an f32 holds).
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];
/// transformers' default `rescale_factor`: 1/255, applied in f64 then rounded to f32.
const RESCALE_FACTOR: f64 = 1.0 / 255.0;
/// Pillow's fixed-point precision for 8-bit resampling (`PRECISION_BITS` in Resample.c).
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// An 8-bit RGB image, rows top to bottom, `RGBRGB…`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbImage {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `height × width × 3` bytes.
    pub pixels: Vec<u8>,
}

impl RgbImage {
    /// An image from raw RGB bytes; `None` when the length does not match.
    pub fn new(width: usize, height: usize, pixels: Vec<u8>) -> Option<Self> {
        (pixels.len() == width * height * 3).then_some(RgbImage { width, height, pixels })
    }

    /// Reads an image file: PNG of any colour type and depth (transparency is composited over
    /// white, as transformers' `convert_to_rgb` does) or baseline/progressive JPEG (greyscale,
    /// YCbCr, CMYK → RGB). Anything else is an error naming the file.
    pub fn open(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).at(path)?;
        Self::decode(&bytes, path)
    }

    /// Decodes image bytes; `path` only names the source in errors.
    pub fn decode(bytes: &[u8], path: &Path) -> Result<Self> {
        if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            return decode_png(bytes, path);
        }
        if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            return decode_jpeg(bytes, path);
        }
        Err(ClipError::image(path, "unsupported or corrupt image (expected PNG or JPEG)"))
    }

    /// Writes the image as an 8-bit RGB PNG.
    pub fn save_png(&self, path: &Path) -> Result<()> {
        let file = std::fs::File::create(path).at(path)?;
        let png_error = |e: png::EncodingError| ClipError::image(path, e.to_string());
        let (w, h) = (dimension(self.width, path)?, dimension(self.height, path)?);
        let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), w, h);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(png_error)?;
        writer.write_image_data(&self.pixels).map_err(png_error)?;
        writer.finish().map_err(png_error)
    }

    /// Pillow's `resize((width, height), BICUBIC)`.
    ///
    /// Each pass rounds to `u8`, so the order of the passes shows in the pixels. Pillow 13
    /// (python-pillow/Pillow#9549) resizes vertically first when the height shrinks by more than
    /// twice as many pixels as the width; older Pillow always went horizontally first (so images
    /// like that differ by a few levels on some pixels from transformers run with Pillow ≤ 12).
    pub fn resize_bicubic(&self, width: usize, height: usize) -> RgbImage {
        let (w, h) = (self.width as i64, self.height as i64);
        let vertical_first = (height as i64) < h && 2 * (w - width as i64) < h - height as i64;
        let mut image = self.clone();
        if vertical_first && height != image.height {
            image = resample_vertical(&image, height);
        }
        if width != image.width {
            image = resample_horizontal(&image, width);
        }
        if height != image.height {
            image = resample_vertical(&image, height);
        }
        image
    }

    /// The `width × height` window whose top-left corner is (`left`, `top`); the caller keeps it
    /// inside the image.
    pub fn crop(&self, left: usize, top: usize, width: usize, height: usize) -> RgbImage {
        let mut pixels = Vec::with_capacity(width * height * 3);
        for y in top..top + height {
            let row = (y * self.width + left) * 3;
            pixels.extend_from_slice(&self.pixels[row..row + width * 3]);
        }
        RgbImage { width, height, pixels }
    }
}

fn dimension(value: usize, path: &Path) -> Result<u32> {
    u32::try_from(value).map_err(|_| ClipError::image(path, format!("side {value} is too large")))
}

fn decode_png(bytes: &[u8], path: &Path) -> Result<RgbImage> {
    let corrupt = |e: png::DecodingError| ClipError::image(path, format!("corrupt PNG: {e}"));
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().map_err(corrupt)?;
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| ClipError::image(path, "PNG dimensions overflow"))?;
    let mut buffer = vec![0u8; size];
    let info = reader.next_frame(&mut buffer).map_err(corrupt)?;
    let (width, height) = (info.width as usize, info.height as usize);
    let channels = match info.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed => {
            return Err(ClipError::image(path, "indexed PNG was not expanded"));
        }
    };
    let mut pixels = Vec::with_capacity(width * height * 3);
    for row in buffer.chunks(info.line_size).take(height) {
        for px in row[..width * channels].chunks_exact(channels) {
            match channels {
                1 => pixels.extend_from_slice(&[px[0]; 3]),
                2 => pixels.extend_from_slice(&[over_white(px[0], px[1]); 3]),
                3 => pixels.extend_from_slice(px),
                _ => pixels.extend(px[..3].iter().map(|&v| over_white(v, px[3]))),
            }
        }
    }
    RgbImage::new(width, height, pixels).ok_or_else(|| ClipError::image(path, "truncated PNG"))
}

fn decode_jpeg(bytes: &[u8], path: &Path) -> Result<RgbImage> {
    use zune_jpeg::zune_core::{
        bytestream::ZCursor, colorspace::ColorSpace, options::DecoderOptions,
    };
    let options = DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::RGB);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    let pixels =
        decoder.decode().map_err(|e| ClipError::image(path, format!("corrupt JPEG: {e:?}")))?;
    let info =
        decoder.info().ok_or_else(|| ClipError::image(path, "JPEG without a frame header"))?;
    RgbImage::new(usize::from(info.width), usize::from(info.height), pixels)
        .ok_or_else(|| ClipError::image(path, "JPEG decoded to an unexpected size"))
}

/// One channel of a pixel with opacity `alpha` composited over opaque white, as transformers'
/// `convert_to_rgb` does with Pillow's `alpha_composite` (7 fractional bits, rounded ÷255).
fn over_white(value: u8, alpha: u8) -> u8 {
    const BITS: u32 = 7;
    if alpha == 0 {
        return 255;
    }
    let (v, a) = (u32::from(value), u32::from(alpha));
    // Against an opaque background Pillow's coefficients reduce to a·2⁷ and (255 − a)·2⁷.
    let tmp = v * (a << BITS) + 255 * ((255 - a) << BITS) + (0x80 << BITS);
    let div255 = ((tmp >> 8) + tmp) >> 8;
    (div255 >> BITS) as u8
}

/// Pillow's bicubic kernel (a = −0.5).
fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Per output pixel: the first input pixel and the fixed-point weights (Pillow's
/// `precompute_coeffs` + `normalize_coeffs_8bpc`).
fn coefficients(in_size: usize, out_size: usize) -> Vec<(usize, Vec<i64>)> {
    const SUPPORT: f64 = 2.0;
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = SUPPORT * filterscale;
    let one = f64::from(1u32 << PRECISION_BITS);
    // Pillow multiplies by the reciprocal; dividing would round differently.
    let ss = 1.0 / filterscale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            // C's (int) truncates toward zero; the bounds are then clamped.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let weights: Vec<f64> =
                (xmin..xmax).map(|x| bicubic((x as f64 - center + 0.5) * ss)).collect();
            let total: f64 = weights.iter().sum();
            let fixed = weights
                .iter()
                .map(|&w| {
                    let w = if total != 0.0 { w / total } else { w };
                    if w < 0.0 { (-0.5 + w * one) as i64 } else { (0.5 + w * one) as i64 }
                })
                .collect();
            (xmin, fixed)
        })
        .collect()
}

fn clip8(sum: i64) -> u8 {
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

fn resample_horizontal(image: &RgbImage, width: usize) -> RgbImage {
    let coeffs = coefficients(image.width, width);
    let mut pixels = Vec::with_capacity(width * image.height * 3);
    for y in 0..image.height {
        let row = &image.pixels[y * image.width * 3..(y + 1) * image.width * 3];
        for (xmin, k) in &coeffs {
            for c in 0..3 {
                let mut sum = 1i64 << (PRECISION_BITS - 1);
                for (i, w) in k.iter().enumerate() {
                    sum += i64::from(row[(xmin + i) * 3 + c]) * w;
                }
                pixels.push(clip8(sum));
            }
        }
    }
    RgbImage { width, height: image.height, pixels }
}

fn resample_vertical(image: &RgbImage, height: usize) -> RgbImage {
    let coeffs = coefficients(image.height, height);
    let stride = image.width * 3;
    let mut pixels = Vec::with_capacity(height * stride);
    for (ymin, k) in &coeffs {
        for x in 0..stride {
            let mut sum = 1i64 << (PRECISION_BITS - 1);
            for (i, w) in k.iter().enumerate() {
                sum += i64::from(image.pixels[(ymin + i) * stride + x]) * w;
            }
            pixels.push(clip8(sum));
        }
    }
    RgbImage { width: image.width, height, pixels }
}

/// `CLIPImageProcessor`'s settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Preprocessor {
    /// The shortest side after resizing.
    pub shortest_edge: usize,
    /// Height and width of the centre crop.
    pub crop: (usize, usize),
    /// Per-channel mean.
    pub mean: [f32; 3],
    /// Per-channel standard deviation.
    pub std: [f32; 3],
}

impl Preprocessor {
    /// CLIP's defaults for a model whose input side is `vision.image_size`.
    pub fn for_vision(vision: &VisionConfig) -> Self {
        let side = vision.image_size.max(1) as usize;
        Preprocessor { shortest_edge: side, crop: (side, side), mean: CLIP_MEAN, std: CLIP_STD }
    }

    /// Reads a Hugging Face `preprocessor_config.json`; keys it lacks keep `self`'s values.
    pub fn with_file(mut self, path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).at(path)?;
        let json: Value =
            serde_json::from_str(&text).map_err(|e| ClipError::config(path, e.to_string()))?;
        let bad = |key: &str| ClipError::config(path, format!("`{key}` is not understood"));
        match &json["size"] {
            Value::Null => {}
            Value::Number(n) => {
                self.shortest_edge = n.as_u64().ok_or_else(|| bad("size"))? as usize
            }
            size => {
                self.shortest_edge =
                    size["shortest_edge"].as_u64().ok_or_else(|| bad("size.shortest_edge"))?
                        as usize
            }
        }
        match &json["crop_size"] {
            Value::Null => {}
            Value::Number(n) => {
                let side = n.as_u64().ok_or_else(|| bad("crop_size"))? as usize;
                self.crop = (side, side);
            }
            crop => {
                let h = crop["height"].as_u64().ok_or_else(|| bad("crop_size.height"))?;
                let w = crop["width"].as_u64().ok_or_else(|| bad("crop_size.width"))?;
                self.crop = (h as usize, w as usize);
            }
        }
        for (key, target) in [("image_mean", &mut self.mean), ("image_std", &mut self.std)] {
            if let Some(values) = json[key].as_array() {
                let parsed: Vec<f32> =
                    values.iter().filter_map(|v| v.as_f64().map(|v| v as f32)).collect();
                *target = parsed.try_into().map_err(|_| bad(key))?;
            }
        }
        if self.crop.0 > self.shortest_edge || self.crop.1 > self.shortest_edge {
            return Err(ClipError::config(
                path,
                "crop_size larger than size.shortest_edge is not supported",
            ));
        }
        Ok(self)
    }

    /// The size after resizing the shortest side (transformers' `get_resize_output_image_size`
    /// with `default_to_square=False`): `(width, height)`.
    pub fn resized_size(&self, width: usize, height: usize) -> (usize, usize) {
        let size = self.shortest_edge;
        let (short, long) = if width <= height { (width, height) } else { (height, width) };
        let new_long = (size as f64 * long as f64 / short.max(1) as f64) as usize;
        if width <= height { (size, new_long) } else { (new_long, size) }
    }

    /// The resized, centre-cropped RGB image, before rescaling.
    pub fn resize_and_crop(&self, image: &RgbImage) -> RgbImage {
        let (w, h) = self.resized_size(image.width, image.height);
        let resized = image.resize_bicubic(w, h);
        let (crop_h, crop_w) = self.crop;
        let top = (resized.height.saturating_sub(crop_h)) / 2;
        let left = (resized.width.saturating_sub(crop_w)) / 2;
        resized.crop(left, top, crop_w.min(resized.width), crop_h.min(resized.height))
    }

    /// Normalised `3 × crop_h × crop_w` values (channels first), as `pixel_values` holds them.
    pub fn normalize(&self, image: &RgbImage) -> Vec<f32> {
        let plane = image.width * image.height;
        let mut out = vec![0f32; 3 * plane];
        for (i, px) in image.pixels.chunks_exact(3).enumerate() {
            for c in 0..3 {
                let scaled = (f64::from(px[c]) * RESCALE_FACTOR) as f32;
                out[c * plane + i] = (scaled - self.mean[c]) / self.std[c];
            }
        }
        out
    }

    /// Resize, crop and normalise: one image's `pixel_values`.
    pub fn preprocess(&self, image: &RgbImage) -> Vec<f32> {
        self.normalize(&self.resize_and_crop(image))
    }

    /// Values per preprocessed image.
    pub fn len(&self) -> usize {
        3 * self.crop.0 * self.crop.1
    }

    /// Whether a preprocessed image is empty (a zero crop).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(width: usize, height: usize) -> RgbImage {
        let pixels = (0..width * height)
            .flat_map(|i| {
                let (x, y) = (i % width, i / width);
                [
                    (x * 255 / width.max(1)) as u8,
                    (y * 255 / height.max(1)) as u8,
                    ((x + y) % 256) as u8,
                ]
            })
            .collect();
        RgbImage::new(width, height, pixels).expect("size")
    }

    #[test]
    fn resize_keeps_constant_images_constant_and_png_round_trips() {
        let flat = RgbImage::new(10, 7, vec![200; 210]).expect("size");
        let resized = flat.resize_bicubic(23, 3);
        assert!(resized.pixels.iter().all(|&p| p == 200));
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("g.png");
        let image = gradient(13, 9);
        image.save_png(&path).expect("save");
        assert_eq!(RgbImage::open(&path).expect("open"), image);
    }

    #[test]
    fn preprocess_shapes_and_errors() {
        let p = Preprocessor { shortest_edge: 8, crop: (8, 8), mean: CLIP_MEAN, std: CLIP_STD };
        assert_eq!(p.resized_size(20, 10), (16, 8));
        assert_eq!(p.resized_size(10, 25), (8, 20));
        assert_eq!(p.preprocess(&gradient(20, 10)).len(), p.len());
        let err = RgbImage::decode(b"\xFF\xD8\xFFjunk", Path::new("x.jpg")).expect_err("jpeg");
        assert!(err.to_string().starts_with("x.jpg: image: corrupt JPEG"), "{err}");
        let err = RgbImage::decode(b"GIF89a", Path::new("x.gif")).expect_err("gif");
        assert!(err.to_string().starts_with("x.gif: image: unsupported"), "{err}");
        let err =
            RgbImage::decode(b"\x89PNG\r\n\x1a\nbroken", Path::new("b.png")).expect_err("corrupt");
        assert!(err.to_string().contains("b.png"), "{err}");
    }
}

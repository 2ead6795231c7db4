//! PNG in and out: study images as `[3, H, W]` f32 in [-1, 1], reconstructions back to 8-bit RGB.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use tch::{Kind, Tensor};

use crate::error::{DiffusionError, Result};

/// Where an image of a stimuli table lives: paths are relative to the study's output directory
/// (`images/img-00000.png`), so they resolve against the `images` port's parent, the `images`
/// directory itself, or the stimuli table's folder — the first that exists (as clip.embed
/// resolves them).
pub fn resolve_image(relative: &str, images_dir: Option<&Path>, stimuli: &Path) -> Result<PathBuf> {
    let given = Path::new(relative);
    if given.is_absolute() {
        return Ok(given.to_path_buf());
    }
    let mut candidates = Vec::new();
    if let Some(dir) = images_dir {
        if let Some(parent) = dir.parent() {
            candidates.push(parent.join(given));
        }
        candidates.push(dir.join(given));
        if let Some(name) = given.file_name() {
            candidates.push(dir.join(name));
        }
    }
    if let Some(folder) = stimuli.parent() {
        candidates.push(folder.join(given));
    }
    candidates.iter().find(|c| c.is_file()).cloned().ok_or_else(|| {
        DiffusionError::image(
            candidates.first().map_or(given, PathBuf::as_path),
            "not found (image of the stimuli table)",
        )
    })
}

/// Reads an 8-bit RGB, RGBA, grey or grey-alpha PNG as `[3, H, W]` in [-1, 1].
pub fn read_png(path: &Path) -> Result<Tensor> {
    let file = File::open(path).map_err(|e| DiffusionError::io(path, e))?;
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(|e| DiffusionError::image(path, e.to_string()))?;
    let mut buf = vec![0; reader.output_buffer_size().unwrap_or(0)];
    let info = reader.next_frame(&mut buf).map_err(|e| DiffusionError::image(path, e.to_string()))?;
    let (w, h) = (info.width as usize, info.height as usize);
    let channels = info.color_type.samples();
    let bytes = &buf[..info.buffer_size()];
    let mut rgb = Vec::with_capacity(w * h * 3);
    for px in bytes.chunks_exact(channels) {
        match channels {
            1 | 2 => rgb.extend_from_slice(&[px[0]; 3]),
            3 | 4 => rgb.extend_from_slice(&px[..3]),
            _ => return Err(DiffusionError::image(path, format!("{channels} channels"))),
        }
    }
    let t = Tensor::from_slice(&rgb).view([h as i64, w as i64, 3]).permute([2, 0, 1]);
    Ok(t.to_kind(Kind::Float) / 127.5 - 1.0)
}

/// Writes `[3, H, W]` in [-1, 1] (clamped, rounded) as an 8-bit RGB PNG, atomically.
pub fn write_png(path: &Path, image: &Tensor) -> Result<()> {
    let (c, h, w) = image.size3().map_err(DiffusionError::Torch)?;
    if c != 3 {
        return Err(DiffusionError::Shape(format!("an RGB image needs 3 channels, got {c}")));
    }
    let bytes = ((image.to_kind(Kind::Float).to_device(tch::Device::Cpu) + 1.0) * 127.5)
        .clamp(0.0, 255.0)
        .round()
        .to_kind(Kind::Uint8)
        .permute([1, 2, 0])
        .contiguous()
        .view([-1]);
    let data = Vec::<u8>::try_from(&bytes).map_err(DiffusionError::Torch)?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| DiffusionError::io(parent, e))?;
    }
    let tmp = path.with_extension("png.tmp");
    {
        let file = File::create(&tmp).map_err(|e| DiffusionError::io(&tmp, e))?;
        let mut encoder = png::Encoder::new(BufWriter::new(file), w as u32, h as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(|e| DiffusionError::image(path, e.to_string()))?;
        writer.write_image_data(&data).map_err(|e| DiffusionError::image(path, e.to_string()))?;
        writer.finish().map_err(|e| DiffusionError::image(path, e.to_string()))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| DiffusionError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_round_trip_is_exact_on_8_bit_values() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a/b.png");
        let values = Tensor::arange(3 * 4 * 5, (Kind::Float, tch::Device::Cpu)).view([3, 4, 5]);
        let image = values / 127.5 - 1.0;
        write_png(&path, &image).expect("write");
        let back = read_png(&path).expect("read");
        assert!((back - &image).abs().max().double_value(&[]) < 1e-6);
    }

    #[test]
    fn garbage_png_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad.png");
        std::fs::write(&path, b"not a png").expect("write");
        let err = read_png(&path).expect_err("garbage").to_string();
        assert!(err.contains("bad.png") && err.contains("image"), "{err}");
    }
}

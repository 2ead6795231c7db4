//! PNG in and out: study images as `[3, H, W]` f32 in [-1, 1], reconstructions back to 8-bit RGB.

use std::path::Path;

use tch::{Kind, Tensor};

use crate::error::{DiffusionError, Result};
use brainpipe_core::IoContext;

const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];

/// CRC-32 (ISO 3309, as PNG chunks use it).
fn crc32(parts: &[&[u8]]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for part in parts {
        for &byte in *part {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
            }
        }
    }
    !crc
}

fn paeth(a: u8, b: u8, c: u8) -> u8 {
    let (ia, ib, ic) = (i16::from(a), i16::from(b), i16::from(c));
    let p = ia + ib - ic;
    let (pa, pb, pc) = ((p - ia).abs(), (p - ib).abs(), (p - ic).abs());
    if pa <= pb && pa <= pc {
        a
    } else if pb <= pc {
        b
    } else {
        c
    }
}

/// Decodes a non-interlaced 8-bit grey, grey-alpha, RGB or RGBA PNG (what study images and our
/// reconstructions are) into RGB bytes, checking every chunk's CRC.
fn decode_png(bytes: &[u8]) -> std::result::Result<(usize, usize, Vec<u8>), String> {
    use std::io::Read;
    if bytes.len() < 8 || bytes[..8] != SIGNATURE {
        return Err("not a PNG (bad signature)".to_owned());
    }
    let (mut pos, mut header, mut idat) = (8, None, Vec::new());
    loop {
        if pos + 12 > bytes.len() {
            return Err("truncated (no IEND chunk)".to_owned());
        }
        let len = u32::from_be_bytes(bytes[pos..pos + 4].try_into().expect("4 bytes")) as usize;
        let kind = &bytes[pos + 4..pos + 8];
        let end =
            pos.checked_add(12 + len).filter(|&e| e <= bytes.len()).ok_or("truncated chunk")?;
        let data = &bytes[pos + 8..pos + 8 + len];
        let crc = u32::from_be_bytes(bytes[end - 4..end].try_into().expect("4 bytes"));
        if crc != crc32(&[kind, data]) {
            return Err(format!("chunk {} fails its CRC", String::from_utf8_lossy(kind)));
        }
        match kind {
            b"IHDR" if len == 13 => {
                let w = u32::from_be_bytes(data[0..4].try_into().expect("4 bytes")) as usize;
                let h = u32::from_be_bytes(data[4..8].try_into().expect("4 bytes")) as usize;
                let (depth, colour, interlace) = (data[8], data[9], data[12]);
                let channels = match colour {
                    0 => 1,
                    4 => 2,
                    2 => 3,
                    6 => 4,
                    _ => {
                        return Err(format!(
                            "colour type {colour} is not supported (grey, RGB, with alpha)"
                        ));
                    }
                };
                if depth != 8 || interlace != 0 {
                    return Err(format!(
                        "bit depth {depth}, interlace {interlace}: only 8-bit, non-interlaced"
                    ));
                }
                if w == 0 || h == 0 || w > 1 << 14 || h > 1 << 14 {
                    return Err(format!("{w}×{h} pixels is out of range"));
                }
                header = Some((w, h, channels));
            }
            b"IDAT" => idat.extend_from_slice(data),
            b"IEND" => break,
            _ => {}
        }
        pos = end;
    }
    let (w, h, channels) = header.ok_or("no IHDR chunk")?;
    let stride = w * channels;
    let mut raw = Vec::with_capacity((stride + 1) * h);
    flate2::read::ZlibDecoder::new(idat.as_slice())
        .take(((stride + 1) * h) as u64)
        .read_to_end(&mut raw)
        .map_err(|e| format!("image data: {e}"))?;
    if raw.len() != (stride + 1) * h {
        return Err("image data shorter than its rows".to_owned());
    }
    let mut pixels = vec![0u8; stride * h];
    for y in 0..h {
        let filter = raw[y * (stride + 1)];
        let line = &raw[y * (stride + 1) + 1..(y + 1) * (stride + 1)];
        for x in 0..stride {
            let a = if x >= channels { pixels[y * stride + x - channels] } else { 0 };
            let b = if y > 0 { pixels[(y - 1) * stride + x] } else { 0 };
            let c =
                if x >= channels && y > 0 { pixels[(y - 1) * stride + x - channels] } else { 0 };
            let predictor = match filter {
                0 => 0,
                1 => a,
                2 => b,
                3 => ((u16::from(a) + u16::from(b)) / 2) as u8,
                4 => paeth(a, b, c),
                f => return Err(format!("unknown row filter {f}")),
            };
            pixels[y * stride + x] = line[x].wrapping_add(predictor);
        }
    }
    let rgb = pixels
        .chunks_exact(channels)
        .flat_map(|px| if channels < 3 { [px[0]; 3] } else { [px[0], px[1], px[2]] })
        .collect();
    Ok((w, h, rgb))
}

/// Encodes RGB bytes as an 8-bit RGB PNG (rows unfiltered, zlib-compressed).
fn encode_png(w: usize, h: usize, rgb: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut raw = Vec::with_capacity((w * 3 + 1) * h);
    for row in rgb.chunks_exact(w * 3) {
        raw.push(0);
        raw.extend_from_slice(row);
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&raw).expect("writing to memory");
    let idat = z.finish().expect("writing to memory");
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&(w as u32).to_be_bytes());
    ihdr.extend_from_slice(&(h as u32).to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut out = SIGNATURE.to_vec();
    for (kind, data) in [(b"IHDR", ihdr.as_slice()), (b"IDAT", idat.as_slice()), (b"IEND", &[][..])]
    {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&crc32(&[&kind[..], data]).to_be_bytes());
    }
    out
}

/// Reads an 8-bit RGB, RGBA, grey or grey-alpha PNG as `[3, H, W]` in [-1, 1].
pub fn read_png(path: &Path) -> Result<Tensor> {
    let bytes = std::fs::read(path).at(path)?;
    let (w, h, rgb) = decode_png(&bytes).map_err(|m| DiffusionError::image(path, m))?;
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
        std::fs::create_dir_all(parent).at(parent)?;
    }
    let tmp = path.with_extension("png.tmp");
    std::fs::write(&tmp, encode_png(w as usize, h as usize, &data)).at(&tmp)?;
    Ok(std::fs::rename(&tmp, path).at(path)?)
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

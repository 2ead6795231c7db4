//! The images world: procedural scenes (shapes of several kinds, colours, sizes, positions and
//! counts on a coloured background), five captions each in varied wording — some partly wrong —
//! and the latent attribute vector responses are generated from.

use brainpipe_core::IoContext;
use std::io::BufWriter;
use std::path::Path;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::error::{IngestError, Result};
use crate::rng::{shuffle, stream};

const KINDS: [&str; 4] = ["circle", "square", "triangle", "cross"];
const COLOURS: [(&str, [u8; 3]); 6] = [
    ("red", [220, 40, 40]),
    ("green", [40, 170, 60]),
    ("blue", [50, 80, 220]),
    ("yellow", [235, 210, 40]),
    ("purple", [140, 60, 180]),
    ("orange", [240, 140, 30]),
];
const BACKGROUNDS: [(&str, [u8; 3]); 4] = [
    ("black", [15, 15, 15]),
    ("white", [240, 240, 240]),
    ("gray", [128, 128, 128]),
    ("beige", [225, 205, 165]),
];
const NUMBERS: [&str; 4] = ["no", "one", "two", "three"];
/// Most shapes in one scene.
const MAX_SHAPES: usize = 3;
/// Radius of small and large shapes, as a fraction of the image side.
const RADII: [f64; 2] = [0.11, 0.19];
/// Captions per image, as in COCO.
pub(crate) const CAPTIONS_PER_IMAGE: usize = 5;
/// Width of the latent attribute vector (see [`Scene::attributes`]).
pub(crate) const ATTRIBUTE_DIMS: usize = BACKGROUNDS.len() + 1 + KINDS.len() + COLOURS.len() + 3;

#[derive(Clone, Debug, PartialEq)]
struct Shape {
    kind: usize,
    colour: usize,
    large: bool,
    x: f64,
    y: f64,
}

/// One procedural scene.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Scene {
    background: usize,
    shapes: Vec<Shape>,
}

/// A scene with its captions.
pub(crate) struct Described {
    pub scene: Scene,
    pub captions: Vec<String>,
    pub best_caption: usize,
}

/// One of `n` values; with `rare_weight` ≠ 1 the last value has that weight against 1 for each
/// other (1: uniform, and the same draw as before the parameter existed).
fn draw(rng: &mut ChaCha8Rng, n: usize, rare_weight: f64) -> usize {
    if rare_weight == 1.0 {
        return rng.gen_range(0..n);
    }
    let u = rng.r#gen::<f64>() * ((n - 1) as f64 + rare_weight);
    (u.floor() as usize).min(n - 1)
}

impl Scene {
    /// A random scene; the rare values (the last background, kind and colour: beige, cross,
    /// orange) are drawn with weight `rare_weight` against 1 for every other value.
    pub fn random(rng: &mut ChaCha8Rng, rare_weight: f64) -> Self {
        let count = rng.gen_range(1..=MAX_SHAPES);
        let shapes = (0..count)
            .map(|_| {
                let large = rng.gen_bool(0.5);
                let r = RADII[usize::from(large)];
                Shape {
                    kind: draw(rng, KINDS.len(), rare_weight),
                    colour: draw(rng, COLOURS.len(), rare_weight),
                    large,
                    x: rng.gen_range(r..1.0 - r),
                    y: rng.gen_range(r..1.0 - r),
                }
            })
            .collect();
        Scene { background: draw(rng, BACKGROUNDS.len(), rare_weight), shapes }
    }

    /// The latent attributes: background one-hot, shape count / 3, count per kind, count per
    /// colour, fraction of large shapes, mean x, mean y (in [0, 1], image coordinates).
    pub fn attributes(&self) -> Vec<f32> {
        let mut v = vec![0.0f32; ATTRIBUTE_DIMS];
        v[self.background] = 1.0;
        let n = self.shapes.len() as f32;
        v[BACKGROUNDS.len()] = n / MAX_SHAPES as f32;
        let kinds = BACKGROUNDS.len() + 1;
        let colours = kinds + KINDS.len();
        let rest = colours + COLOURS.len();
        for s in &self.shapes {
            v[kinds + s.kind] += 1.0;
            v[colours + s.colour] += 1.0;
            v[rest] += f32::from(u8::from(s.large)) / n;
            v[rest + 1] += s.x as f32 / n;
            v[rest + 2] += s.y as f32 / n;
        }
        v
    }

    /// RGB pixels, row-major, `size × size`.
    pub fn render(&self, size: usize) -> Vec<u8> {
        let mut pixels = Vec::with_capacity(size * size * 3);
        for row in 0..size {
            for col in 0..size {
                let (px, py) = ((col as f64 + 0.5) / size as f64, (row as f64 + 0.5) / size as f64);
                let mut colour = BACKGROUNDS[self.background].1;
                for s in &self.shapes {
                    if s.covers(px - s.x, py - s.y) {
                        colour = COLOURS[s.colour].1;
                    }
                }
                pixels.extend_from_slice(&colour);
            }
        }
        pixels
    }

    fn describe_shape(&self, shape: &Shape, rng: &mut ChaCha8Rng) -> String {
        let size = if shape.large {
            ["large", "big"][rng.gen_range(0..2)]
        } else {
            ["small", "little"][rng.gen_range(0..2)]
        };
        format!("a {size} {} {}", COLOURS[shape.colour].0, KINDS[shape.kind])
    }

    fn list(&self, rng: &mut ChaCha8Rng) -> String {
        let parts: Vec<String> = self.shapes.iter().map(|s| self.describe_shape(s, rng)).collect();
        match parts.len() {
            1 => parts[0].clone(),
            n => format!("{} and {}", parts[..n - 1].join(", "), parts[n - 1]),
        }
    }

    /// Caption `template` (0 = the complete description … 4 = the vaguest).
    fn caption(&self, template: usize, rng: &mut ChaCha8Rng) -> String {
        let bg = BACKGROUNDS[self.background].0;
        let first = &self.shapes[0];
        let n = self.shapes.len();
        match template {
            0 => format!(
                "{} on a {bg} {}",
                self.list(rng),
                ["background", "backdrop"][rng.gen_range(0..2)]
            ),
            1 => format!(
                "{} {} on {bg}: {}",
                NUMBERS[n],
                if n == 1 { "shape" } else { "shapes" },
                self.list(rng)
            ),
            2 => {
                let side = if first.x < 0.5 { "left" } else { "right" };
                let height = if first.y < 0.5 { "top" } else { "bottom" };
                format!("{} in the {height} {side} of the picture", self.describe_shape(first, rng))
            }
            3 => {
                let others = if n > 1 { " with other shapes" } else { "" };
                format!("a {} {}{others}", COLOURS[first.colour].0, KINDS[first.kind])
            }
            _ => format!(
                "simple {} shapes on a {bg} picture",
                if n == 1 { "coloured" } else { "colourful" }
            ),
        }
    }

    /// This scene with one attribute changed: what a partly wrong caption describes.
    fn corrupted(&self, rng: &mut ChaCha8Rng) -> Scene {
        let mut wrong = self.clone();
        match rng.gen_range(0..3) {
            0 => {
                wrong.shapes[0].colour =
                    (self.shapes[0].colour + rng.gen_range(1..COLOURS.len())) % COLOURS.len()
            }
            1 => {
                wrong.shapes[0].kind =
                    (self.shapes[0].kind + rng.gen_range(1..KINDS.len())) % KINDS.len()
            }
            _ => {
                wrong.background =
                    (self.background + rng.gen_range(1..BACKGROUNDS.len())) % BACKGROUNDS.len()
            }
        }
        wrong
    }
}

impl Shape {
    fn covers(&self, dx: f64, dy: f64) -> bool {
        let r = RADII[usize::from(self.large)];
        match self.kind {
            0 => dx * dx + dy * dy <= r * r,
            1 => dx.abs() <= 0.85 * r && dy.abs() <= 0.85 * r,
            2 => dy <= 0.8 * r && dy >= -r && dx.abs() <= (dy + r) / 1.8,
            _ => (dx.abs() <= r / 3.0 && dy.abs() <= r) || (dy.abs() <= r / 3.0 && dx.abs() <= r),
        }
    }
}

/// Scene `index` of a study, with five captions (each wrong in one attribute with probability
/// `error_rate`) in shuffled order. The best caption is the most complete correct one: the
/// lowest template number among correct captions (or among all, if every caption is wrong).
pub(crate) fn described_scene(
    seed: u64,
    index: u64,
    error_rate: f64,
    rare_weight: f64,
) -> Described {
    let mut rng = stream(seed, "scene", index, 0);
    let scene = Scene::random(&mut rng, rare_weight);
    let mut captions: Vec<(bool, usize, String)> = (0..CAPTIONS_PER_IMAGE)
        .map(|template| {
            let wrong = rng.gen_bool(error_rate.clamp(0.0, 1.0));
            let text = if wrong {
                scene.corrupted(&mut rng).caption(template, &mut rng)
            } else {
                scene.caption(template, &mut rng)
            };
            (wrong, template, text)
        })
        .collect();
    let best = captions
        .iter()
        .min_by_key(|(wrong, template, _)| (*wrong, *template))
        .map(|c| c.1)
        .unwrap_or(0);
    shuffle(&mut rng, &mut captions);
    let best_caption = captions.iter().position(|c| c.1 == best).unwrap_or(0);
    Described { scene, captions: captions.into_iter().map(|c| c.2).collect(), best_caption }
}

/// Writes `pixels` (RGB, `size × size`) as a PNG.
pub(crate) fn write_png(path: &Path, pixels: &[u8], size: usize) -> Result<()> {
    let file = std::fs::File::create(path).at(path)?;
    let side = u32::try_from(size)
        .map_err(|_| IngestError::Params(format!("image_size {size} is too large")))?;
    let mut encoder = png::Encoder::new(BufWriter::new(file), side, side);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let png_error = |e: png::EncodingError| {
        brainpipe_core::Error::io(path, std::io::Error::other(e.to_string()))
    };
    let mut writer = encoder.write_header().map_err(png_error)?;
    writer.write_image_data(pixels).map_err(png_error)?;
    Ok(writer.finish().map_err(png_error)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenes_are_reproducible_and_captions_name_the_best() {
        let a = described_scene(3, 10, 0.3, 1.0);
        let b = described_scene(3, 10, 0.3, 1.0);
        assert_eq!(a.scene, b.scene);
        assert_eq!(a.captions, b.captions);
        assert_eq!(a.captions.len(), CAPTIONS_PER_IMAGE);
        assert_ne!(described_scene(4, 10, 0.3, 1.0).captions, a.captions);
        let clean = described_scene(3, 11, 0.0, 1.0);
        assert!(
            clean.captions[clean.best_caption].contains("background")
                || clean.captions[clean.best_caption].contains("backdrop")
        );
        assert_eq!(a.scene.attributes().len(), ATTRIBUTE_DIMS);
    }

    #[test]
    fn rare_weight_makes_the_last_values_rare() {
        let count = |w: f64| {
            (0..600u64)
                .map(|i| described_scene(5, i, 0.0, w).scene)
                .filter(|s| s.background == BACKGROUNDS.len() - 1)
                .count()
        };
        let (uniform, rare) = (count(1.0), count(0.1));
        assert!(uniform > 100 && rare < 40, "beige in 600 scenes: {uniform} uniform, {rare} rare");
    }

    #[test]
    fn render_paints_shapes_over_the_background() {
        let scene = described_scene(1, 0, 0.0, 1.0).scene;
        let pixels = scene.render(32);
        assert_eq!(pixels.len(), 32 * 32 * 3);
        let bg = BACKGROUNDS[scene.background].1;
        assert!(pixels.chunks(3).any(|p| p != bg), "some pixel belongs to a shape");
    }
}

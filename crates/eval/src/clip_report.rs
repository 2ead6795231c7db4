//! The Brain2CLIP section of `eval.report`: per model the closest-image / closest-caption /
//! MindEye table against chance and the images world's oracle, per held-out subject, rank
//! histograms, a gallery of fixed test trials (seen image, closest retrieved images as inline
//! thumbnails, chosen caption; a reconstruction column when a decoder provides one) and the
//! per-category table with the background confusion.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::clip_tables::ClipTrial;
use crate::error::{EvalError, Result};
use crate::report::{Oracle, bar_chart, esc, pct};
use crate::words::ALL;
use brainpipe_artifacts::MetricRow;
use brainpipe_artifacts::image_file_name as file_name;

/// Test images shown in the gallery (the first ones by name: the same for every model and run).
pub const GALLERY_IMAGES: usize = 8;
/// Retrieved images shown per model in the gallery.
pub const GALLERY_RETRIEVED: usize = 3;

/// What the section is drawn from.
pub struct ClipInputs {
    /// `metrics/1` of `eval.clip`.
    pub rows: Vec<MetricRow>,
    /// `clip-trials/1` of `eval.clip` (the gallery); empty: no gallery.
    pub trials: Vec<ClipTrial>,
    /// The study's `images` directory (thumbnails); `None`: captions only.
    pub images: Option<PathBuf>,
    /// Reconstructions per (model, subject, stimulus file name): PNG files (a diffusion decoder's), shown
    /// beside each model's retrieved images; model `truth` (the decoder fed the true embedding)
    /// gets its own column after the seen image.
    pub reconstructions: BTreeMap<(String, String, String), PathBuf>,
}

fn models(rows: &[MetricRow]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in rows {
        if !out.contains(&r.model) {
            out.push(r.model.clone());
        }
    }
    out
}

fn value(rows: &[MetricRow], model: &str, subject: &str, mode: &str, metric: &str) -> Option<f64> {
    rows.iter()
        .find(|r| {
            r.model == model
                && r.subject == subject
                && r.paradigm == mode
                && r.metric == metric
                && r.index.is_none()
        })
        .map(|r| r.value)
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(BASE64[((n >> (18 - 6 * k)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// An inline `<img>` of a PNG or JPEG (`images/img-00000.png` resolves against the images
/// directory's parent, `COCO/x.jpg` inside it, else by file name); a placeholder when it cannot
/// be read.
fn thumbnail(images: Option<&Path>, name: &str, title: &str) -> String {
    // Resolved as every stage resolves a stimuli table's image (brainpipe_artifacts).
    let file = images
        .and_then(|dir| brainpipe_artifacts::resolve_image(name, Some(dir), Path::new("")).ok());
    match file.and_then(|f| std::fs::read(f).ok()) {
        Some(bytes) => format!(
            "<img src=\"data:{};base64,{}\" width=\"64\" height=\"64\" alt=\"{t}\" title=\"{t}\">",
            if bytes.starts_with(&[0xff, 0xd8, 0xff]) { "image/jpeg" } else { "image/png" },
            base64(&bytes),
            t = esc(title)
        ),
        None => format!("<span title=\"{t}\">{t}</span>", t = esc(title)),
    }
}

/// The Brain2CLIP section.
pub fn section(c: &ClipInputs, oracle: Option<&Oracle>) -> String {
    let rows = &c.rows;
    let models = models(rows);
    let mut h = String::from(
        "<h2>Brain2CLIP: closest image and caption</h2><p>Predicted CLIP embeddings against the \
         test images' embeddings (cosine). top-k: the seen image among the k closest test \
         images; all images: among every image of the study; caption: the closest caption of \
         any test image belongs to the seen image; 2-way and N-way (MindEye; N = the subset \
         size): brain → image and image → brain. Means over held-out subjects.</p>",
    );
    for (mode, what) in [
        ("averaged", "predictions averaged over each test image's repeated presentations"),
        ("single", "single presentations (the oracle's setting)"),
    ] {
        let _ = write!(
            h,
            "<h3>{}</h3><table><tr><th>model</th><th>top-1</th><th>top-5</th><th>top-1 all images</th>\
             <th>caption</th><th>2-way b→i</th><th>2-way i→b</th><th>N-way b→i</th><th>N-way i→b</th>\
             <th>mean rank</th><th>top-1 / oracle</th></tr>",
            esc(what)
        );
        let v = |m: &str, k: &str| value(rows, m, ALL, mode, k);
        for m in &models {
            let frac = match (v(m, "top1"), oracle) {
                (Some(t), Some(o)) if o.top1 > 0.0 => format!("{:.0} %", 100.0 * t / o.top1),
                _ => "–".to_owned(),
            };
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
                 <td>{}</td><td>{}</td><td>{}</td><td>{frac}</td></tr>",
                esc(m),
                pct(v(m, "top1")),
                pct(v(m, "top5")),
                pct(v(m, "top1_all")),
                pct(v(m, "caption")),
                pct(v(m, "two_way_brain_to_image")),
                pct(v(m, "two_way_image_to_brain")),
                pct(v(m, "nway_brain_to_image")),
                pct(v(m, "nway_image_to_brain")),
                v(m, "mean_rank").map_or("–".to_owned(), |x| format!("{x:.1}")),
            );
        }
        let first = models.first().map(String::as_str).unwrap_or("");
        let chance = |k: &str| v(first, k);
        let nway = chance("chance_nway");
        let _ = write!(
            h,
            "<tr class=\"ref\"><td>chance</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td></td></tr>",
            pct(chance("chance_top1")),
            pct(chance("chance_top5")),
            pct(chance("chance_top1_all")),
            pct(chance("chance_caption")),
            pct(chance("chance_two_way")),
            pct(chance("chance_two_way")),
            pct(nway),
            pct(nway),
            chance("chance_top1")
                .map_or("–".to_owned(), |c| format!("{:.1}", (1.0 / c + 1.0) / 2.0)),
        );
        if let (Some(o), "single") = (oracle, mode) {
            let _ = write!(
                h,
                "<tr class=\"ref\"><td>oracle (synthetic ceiling)</td><td>{}</td><td>{}</td><td>–</td><td>–</td>\
                 <td>–</td><td>–</td><td>–</td><td>–</td><td>–</td><td>100 %</td></tr>",
                pct(Some(o.top1)),
                pct(Some(o.top5))
            );
        }
        h.push_str("</table>");
    }
    // Per held-out subject (averaged top-1).
    let subjects: BTreeSet<&str> =
        rows.iter().filter(|r| r.subject != ALL).map(|r| r.subject.as_str()).collect();
    h.push_str(
        "<h3>Per held-out subject (top-1, averaged presentations)</h3><table><tr><th>model</th>",
    );
    for s in &subjects {
        let _ = write!(h, "<th>{}</th>", esc(s));
    }
    h.push_str("</tr>");
    for m in &models {
        let _ = write!(h, "<tr><td>{}</td>", esc(m));
        for s in &subjects {
            let _ = write!(h, "<td>{}</td>", pct(value(rows, m, s, "averaged", "top1")));
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>");
    // Rank histograms.
    h.push_str(
        "<h3>Rank of the seen image</h3><p>Among the test images, averaged presentations, all \
         held-out subjects (rank 1 = the closest).</p><div class=\"charts\">",
    );
    for (i, m) in models.iter().enumerate() {
        let mut counts: Vec<(i32, f64)> = rows
            .iter()
            .filter(|r| {
                &r.model == m
                    && r.subject == ALL
                    && r.paradigm == "averaged"
                    && r.metric == "rank_count"
            })
            .filter_map(|r| r.index.map(|k| (k, r.value)))
            .collect();
        counts.sort_by_key(|c| c.0);
        if !counts.is_empty() {
            let colour = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"][i % 6];
            let _ = write!(
                h,
                "<figure>{}<figcaption>{}</figcaption></figure>",
                bar_chart(&counts, colour),
                esc(m)
            );
        }
    }
    h.push_str("</div>");
    gallery(&mut h, c, &models);
    categories(&mut h, rows, &models);
    h
}

/// The model name of reconstructions decoded from the true embeddings (diffusion.decode's
/// `source: own`).
const TRUTH: &str = "truth";

/// Reconstructions of diffusion.decode's `reconstructions/1` tables, keyed (model, subject,
/// stimulus file name); each table's PNGs sit in the `images/` directory beside it.
pub fn read_reconstructions(
    tables: &[&Path],
) -> Result<BTreeMap<(String, String, String), PathBuf>> {
    let mut out = BTreeMap::new();
    for table in tables {
        let dir = table.parent().unwrap_or(Path::new(".")).join("images");
        for r in crate::images::read_reconstructions(table)? {
            let png = dir.join(&r.image);
            if !png.is_file() {
                return Err(EvalError::data(
                    table,
                    format!("reconstruction `{}` not found in {}", r.image, dir.display()),
                ));
            }
            out.entry((r.model, r.subject, file_name(&r.stimulus))).or_insert(png);
        }
    }
    Ok(out)
}

/// Seen image, then per model its closest test images and chosen caption, for the first
/// [`GALLERY_IMAGES`] test images (by name) of the first held-out subject.
fn gallery(h: &mut String, c: &ClipInputs, models: &[String]) {
    let averaged: Vec<&ClipTrial> = c.trials.iter().filter(|t| t.mode == "averaged").collect();
    let Some(subject) = averaged.iter().map(|t| t.subject.as_str()).min() else { return };
    let stimuli: BTreeSet<&str> =
        averaged.iter().filter(|t| t.subject == subject).map(|t| t.stimulus.as_str()).collect();
    let truth = |stimulus: &str| {
        c.reconstructions.get(&(TRUTH.to_owned(), ALL.to_owned(), file_name(stimulus)))
    };
    let has_truth = stimuli.iter().any(|s| truth(s).is_some());
    let has_reconstructions = !c.reconstructions.is_empty();
    let _ = write!(
        h,
        "<h3>Gallery</h3><p>Held-out subject {}, predictions averaged over repeats: the seen image, \
         then per model the {GALLERY_RETRIEVED} closest test images (✓ marks the seen one){} and the \
         closest caption.{}</p><table><tr><th>seen</th>{}",
        esc(subject),
        if has_reconstructions {
            ", the image the diffusion decoder draws from the prediction (framed)"
        } else {
            ""
        },
        if has_truth {
            " <em>decoded from truth</em>: the same decoder fed the seen image's true CLIP \
             embedding — what a perfect prediction would draw."
        } else {
            ""
        },
        if has_truth { "<th>decoded from truth</th>" } else { "" }
    );
    for m in models {
        let _ = write!(h, "<th>{}</th>", esc(m));
    }
    h.push_str("</tr>");
    let images = c.images.as_deref();
    for stimulus in stimuli.iter().take(GALLERY_IMAGES) {
        let _ = write!(h, "<tr><td>{}</td>", thumbnail(images, stimulus, stimulus));
        if has_truth {
            let cell = truth(stimulus).map_or_else(String::new, |png| {
                thumbnail(png.parent(), &png.to_string_lossy(), "decoded from the true embedding")
            });
            let _ = write!(h, "<td>{cell}</td>");
        }
        for m in models {
            h.push_str("<td style=\"text-align:left\">");
            if let Some(t) = averaged
                .iter()
                .find(|t| &t.model == m && t.subject == subject && t.stimulus == *stimulus)
            {
                for r in t.retrieved.iter().take(GALLERY_RETRIEVED) {
                    let mark = if r.as_str() == *stimulus { " ✓" } else { "" };
                    h.push_str(&thumbnail(images, r, &format!("{r}{mark}")));
                    h.push_str(mark);
                }
                let key = (m.clone(), subject.to_owned(), file_name(stimulus));
                if let Some(png) = c.reconstructions.get(&key) {
                    let img = thumbnail(png.parent(), &png.to_string_lossy(), "reconstruction");
                    let _ = write!(
                        h,
                        "<span style=\"outline:2px solid #d62728;display:inline-block\">{img}</span>"
                    );
                }
                let _ = write!(
                    h,
                    "<br><small>{}{}</small>",
                    esc(&t.caption),
                    if t.caption_hit { " ✓" } else { "" }
                );
            }
            h.push_str("</td>");
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>");
}

/// Per category: training frequency, chance and each model's accuracy; the background confusion
/// of every model.
fn categories(h: &mut String, rows: &[MetricRow], models: &[String]) {
    let mut keys: Vec<(String, String)> = Vec::new();
    for r in
        rows.iter().filter(|r| r.metric.starts_with("category.") && r.metric.ends_with(".trials"))
    {
        let parts: Vec<&str> = r.metric.split('.').collect();
        let key = (parts[1].to_owned(), parts[2].to_owned());
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    if keys.is_empty() {
        return;
    }
    let get = |m: &str, g: &str, v: &str, what: &str| {
        value(rows, m, ALL, "averaged", &format!("category.{g}.{v}.{what}"))
    };
    h.push_str(
        "<h3>Per category</h3><p>The images world's attributes: accuracy = the closest test image \
         shares the seen image's attribute (averaged presentations, all held-out subjects), \
         against the attribute's share of the training images and of the test images \
         (chance).</p><table><tr><th>category</th><th>train share</th><th>chance</th><th>trials</th>",
    );
    for m in models {
        let _ = write!(h, "<th>{}</th>", esc(m));
    }
    h.push_str("</tr>");
    let first = models.first().map(String::as_str).unwrap_or("");
    for (g, v) in &keys {
        let _ = write!(
            h,
            "<tr><td>{} {}</td><td>{}</td><td>{}</td><td>{}</td>",
            esc(g),
            esc(v),
            pct(get(first, g, v, "train_frequency")),
            pct(get(first, g, v, "chance")),
            get(first, g, v, "trials").map_or("–".to_owned(), |x| format!("{x:.0}")),
        );
        for m in models {
            let _ = write!(h, "<td>{}</td>", pct(get(m, g, v, "accuracy")));
        }
        h.push_str("</tr>");
    }
    h.push_str("</table><h3>Background confusion</h3><div class=\"charts\">");
    for m in models {
        let prefix = "confusion.background.";
        let cells: Vec<(&str, &str, f64)> = rows
            .iter()
            .filter(|r| &r.model == m && r.metric.starts_with(prefix))
            .filter_map(|r| {
                let mut it = r.metric[prefix.len()..].splitn(2, '.');
                Some((it.next()?, it.next()?, r.value))
            })
            .collect();
        let names: BTreeSet<&str> = cells.iter().flat_map(|c| [c.0, c.1]).collect();
        let _ = write!(h, "<figure><table><tr><th>{} (seen ↓, retrieved →)</th>", esc(m));
        for n in &names {
            let _ = write!(h, "<th>{}</th>", esc(n));
        }
        h.push_str("</tr>");
        for t in &names {
            let _ = write!(h, "<tr><td>{}</td>", esc(t));
            for r in &names {
                let count = cells.iter().find(|c| c.0 == *t && c.1 == *r).map_or(0.0, |c| c.2);
                let _ = write!(h, "<td>{count:.0}</td>");
            }
            h.push_str("</tr>");
        }
        h.push_str("</table></figure>");
    }
    h.push_str("</div>");
}

/// A whole page holding only the Brain2CLIP section (a report without Brain2Word metrics).
pub fn page(title: &str, c: &ClipInputs, oracle: Option<&Oracle>) -> String {
    let mut h = crate::report::head(title);
    h.push_str(&section(c, oracle));
    h.push_str("</body></html>\n");
    h
}

/// Reads the section's inputs.
pub fn read(metrics: &Path, trials: Option<&Path>, images: Option<&Path>) -> Result<ClipInputs> {
    let rows = brainpipe_artifacts::read_metrics(metrics)?;
    if !rows.iter().any(|r| r.paradigm == "averaged" || r.paradigm == "single") {
        return Err(EvalError::data(
            metrics,
            "not a metrics table of eval.clip (no single/averaged rows)",
        ));
    }
    let trials = match trials {
        Some(p) => crate::clip_tables::read_clip_trials(p)?,
        None => Vec::new(),
    };
    Ok(ClipInputs {
        rows,
        trials,
        images: images.map(Path::to_path_buf),
        reconstructions: BTreeMap::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbnails_resolve_bold5000_subfolders_and_name_jpeg_as_jpeg() {
        let dir = std::env::temp_dir().join(format!("bp-thumb-{}", std::process::id()));
        let images = dir.join("Presented_Stimuli");
        std::fs::create_dir_all(images.join("COCO")).expect("mkdir");
        std::fs::write(images.join("COCO/a.jpg"), [0xff, 0xd8, 0xff, 0xe0]).expect("jpeg");
        std::fs::write(images.join("b.png"), [0x89, b'P', b'N', b'G']).expect("png");
        let jpeg = thumbnail(Some(&images), "COCO/a.jpg", "a");
        assert!(jpeg.starts_with("<img src=\"data:image/jpeg;base64,/9j/4A==\""), "{jpeg}");
        let png = thumbnail(Some(&images), "Scene/b.png", "b");
        assert!(png.starts_with("<img src=\"data:image/png;base64,"), "by file name: {png}");
        let missing = thumbnail(Some(&images), "COCO/c.jpg", "c");
        assert_eq!(missing, "<span title=\"c\">c</span>");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), want);
        }
    }

    #[test]
    fn the_gallery_shows_truth_and_each_model_s_reconstruction_of_the_gallery_subject() {
        let dir = std::env::temp_dir().join(format!("bp-gallery-{}", std::process::id()));
        let png = |name: &str| {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, [0x89, b'P', b'N', b'G', 1, 2, 3]).expect("png");
            path
        };
        let trial = |model: &str, subject: &str| ClipTrial {
            model: model.to_owned(),
            subject: subject.to_owned(),
            mode: "averaged".to_owned(),
            trial: -1,
            stimulus: "images/a.png".to_owned(),
            fold: 0,
            rank_test: 1,
            rank_all: 1,
            retrieved: vec!["images/a.png".to_owned()],
            caption: "a red disc".to_owned(),
            caption_hit: true,
        };
        let key = |m: &str, s: &str| (m.to_owned(), s.to_owned(), "a.png".to_owned());
        let c = ClipInputs {
            rows: Vec::new(),
            trials: vec![trial("ridge", "s1"), trial("ridge", "s2")],
            images: None,
            reconstructions: BTreeMap::from([
                (key("truth", ALL), png("truth.png")),
                (key("ridge", "s1"), png("ridge-s1.png")),
                (key("ridge", "s2"), png("ridge-s2.png")),
            ]),
        };
        let mut h = String::new();
        gallery(&mut h, &c, &["ridge".to_owned()]);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(h.contains("<th>decoded from truth</th>"), "{h}");
        assert_eq!(h.matches("alt=\"decoded from the true embedding\"").count(), 1, "{h}");
        // The gallery's subject is the first held-out one (s1): one reconstruction of ridge.
        assert_eq!(h.matches("alt=\"reconstruction\"").count(), 1, "{h}");
        assert!(h.contains(&base64(&[0x89, b'P', b'N', b'G', 1, 2, 3])));
    }
}

//! `eval.images`: reconstructions (a `reconstructions` table or a plain directory) + the seen
//! images → `image_metrics.parquet`, per pair and summarised per model and held-out subject.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use brainpipe_core::{ArtifactKind, Context, IoContext, Port, Stage, StageError};
use rayon::prelude::*;

use super::image::{RgbImage, read_png};
use super::tables::{
    ImageMetricRow, Reconstruction, read_image_features, read_image_metrics, read_reconstructions,
    read_stimulus_images, write_image_metrics,
};
use super::{pair_metrics, resize_bilinear, two_way};
use crate::error::{EvalError, Result};
use crate::words::ALL;
use brainpipe_artifacts::image_file_name as file_name;

brainpipe_core::params! {
    /// Params of `eval.images`.
    pub struct ImagesParams {
        /// Side both images are resized to before PixCorr and SSIM (MindEye: 425, NSD's size).
        pub size: u32 = 425,
        /// torchvision's `antialias` flag of that bilinear resize: `true` is torchvision ≥ 0.17's
        /// default (MindEye2), `false` reproduces torchvision < 0.17 on tensors (MindEye1). Only
        /// downscaling differs.
        pub antialias: bool = true,
        /// Side of the raw-pixel features of the `2way_pixels` baseline (bilinear, antialiased,
        /// flattened RGB); 0 leaves the baseline out.
        pub pixel_features: u32 = 64,
        /// Names of the feature sets given as `reconstruction_features` / `seen_features` (list
        /// inputs paired by position), one per pair of tables in the same order: each gives the
        /// 2-way metric `2way_<name>` (`clip`, `alexnet2`, `alexnet5`, `inception`…).
        pub feature_names: Vec<String> = vec!["clip".to_owned()],
        /// Model name: required for plain directories, overrides the table's `model` otherwise.
        pub model: String = String::new(),
    }
    validate = check_params;
}

/// Feature-set names become metric names (`2way_<name>`): distinct, not the pixel baseline's,
/// letters, digits, `_`, `-` and `.` only.
fn check_params(p: &ImagesParams) -> std::result::Result<(), String> {
    for (i, name) in p.feature_names.iter().enumerate() {
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
        if name.is_empty() || !name.chars().all(allowed) {
            return Err(format!(
                "`feature_names`: {name:?} is not a name (letters, digits, `_`, `-`, `.`)"
            ));
        }
        if name == "pixels" {
            return Err("`feature_names`: `pixels` is the raw-pixel baseline's name".to_owned());
        }
        if p.feature_names[..i].contains(name) {
            return Err(format!("`feature_names`: `{name}` twice"));
        }
    }
    Ok(())
}

/// `eval.images`: reconstructions + seen images → `image_metrics.parquet`.
pub struct Images;

impl Stage for Images {
    type Params = ImagesParams;
    const NAME: &'static str = "eval.images";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str = "Image reconstruction metrics as MindEye computes them: PixCorr, SSIM (Gaussian and scikit-image defaults), 2-way identification on raw pixels and on given features, per pair and per model and held-out subject";

    fn inputs(&self) -> Vec<Port> {
        vec![
            Port::input("reconstructions", ArtifactKind::table(brainpipe_artifacts::RECONSTRUCTIONS), "reconstructions.parquet of diffusion.decode (model, subject, trial, stimulus, image); one table per model, or several models in one").optional().many(),
            Port::input("reconstruction_images", ArtifactKind::Directory, "the decoder's images/ directory (table mode, where the table's own folder does not hold it), or a plain directory of PNGs paired with `images` by file name").optional(),
            Port::input("stimuli", ArtifactKind::table(brainpipe_artifacts::STIMULI), "the study's stimuli.parquet: stimulus name → seen image path").optional(),
            Port::input("images", ArtifactKind::Directory, "the seen images (the study's images directory)"),
            Port::input("reconstruction_features", ArtifactKind::table(brainpipe_artifacts::EMBEDDINGS), "image features of the reconstructions (clip.embed or clip.extract run on them; rows matched on `image`), one table per feature set named in `feature_names`").optional().many(),
            Port::input("pixel_metrics", ArtifactKind::table(brainpipe_artifacts::IMAGE_METRICS), "PixCorr and SSIM per pair computed elsewhere (clip.pixel_metrics on a GPU, same `size` and `antialias`), used instead of computing them here; rows matched on the reconstructions table's model, subject and trial").optional(),
            Port::input("seen_features", ArtifactKind::table(brainpipe_artifacts::EMBEDDINGS), "image features of the study (clip.embed or clip.extract run on it; rows matched on `stimulus`), in the order of `reconstruction_features`").optional().many(),
        ]
    }

    fn outputs(&self) -> Vec<Port> {
        vec![Port::output(
            "image_metrics",
            "image_metrics.parquet",
            ArtifactKind::table(brainpipe_artifacts::IMAGE_METRICS),
            "model, subject, trial, stimulus, metric, value: per pair, and summaries (trial -1)",
        )]
    }

    fn run(&self, ctx: &mut Context, params: &ImagesParams) -> Result<(), StageError> {
        let seen_dir = ctx.input("images")?.to_path_buf();
        let recon_dir = ctx.optional_input("reconstruction_images").map(Path::to_path_buf);
        let tables: Vec<PathBuf> =
            ctx.input_list("reconstructions").into_iter().map(Path::to_path_buf).collect();
        let pairs = if tables.is_empty() {
            let dir = recon_dir.ok_or_else(|| {
                StageError::msg(
                    "give `reconstructions` tables or a `reconstruction_images` directory",
                )
            })?;
            if params.model.is_empty() {
                return Err(StageError::msg("plain directories need the `model` param"));
            }
            directory_pairs(&dir, &seen_dir, &params.model)?
        } else {
            let stimuli = match ctx.optional_input("stimuli") {
                Some(p) => Some((p.to_path_buf(), read_stimulus_images(p)?)),
                None => None,
            };
            let mut pairs = Vec::new();
            for table in &tables {
                for mut r in read_reconstructions(table)? {
                    let table_model = r.model.clone();
                    if !params.model.is_empty() {
                        r.model.clone_from(&params.model);
                    }
                    let recon = resolve_reconstruction(&r.image, table, recon_dir.as_deref())?;
                    let seen = resolve_seen(&r.stimulus, stimuli.as_ref(), &seen_dir, table)?;
                    pairs.push(Pair { rec: r, table_model, recon, seen });
                }
            }
            pairs
        };
        let features = feature_sets(
            &ctx.input_list("reconstruction_features"),
            &ctx.input_list("seen_features"),
            &params.feature_names,
        )?;
        let options = Options {
            size: params.size as usize,
            antialias: params.antialias,
            pixel_features: params.pixel_features as usize,
        };
        let pixel = match ctx.optional_input("pixel_metrics") {
            Some(path) => Some(PixelMetrics::read(path)?),
            None => None,
        };
        let (rows, notes) = evaluate(&pairs, &options, &features, pixel.as_ref())?;
        for (k, v) in notes {
            ctx.note(k, v);
        }
        ctx.note("pairs", pairs.len());
        write_image_metrics(&ctx.output("image_metrics"), &rows)?;
        Ok(())
    }
}

/// One (reconstruction, seen image) pair with both files resolved.
struct Pair {
    rec: Reconstruction,
    /// The model as the reconstructions table names it (before the `model` param renames it).
    table_model: String,
    recon: PathBuf,
    seen: PathBuf,
}

/// What [`evaluate`] computes.
struct Options {
    size: usize,
    antialias: bool,
    pixel_features: usize,
}

/// PNGs of `dir` (sorted by name), each paired with the same file name in `seen_dir`.
fn directory_pairs(dir: &Path, seen_dir: &Path, model: &str) -> Result<Vec<Pair>> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .at(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x.eq_ignore_ascii_case("png")))
        .collect();
    names.sort();
    if names.is_empty() {
        return Err(EvalError::data(dir, "no .png reconstructions in the directory"));
    }
    let mut pairs = Vec::new();
    for (trial, recon) in names.into_iter().enumerate() {
        let name = recon.file_name().map(PathBuf::from).unwrap_or_default();
        let seen = seen_dir.join(&name);
        if !seen.is_file() {
            return Err(EvalError::data(
                &recon,
                format!("no seen image of the same name in {}", seen_dir.display()),
            ));
        }
        pairs.push(Pair {
            table_model: model.to_owned(),
            rec: Reconstruction {
                model: model.to_owned(),
                subject: ALL.to_owned(),
                trial: trial as i32,
                stimulus: name.to_string_lossy().into_owned(),
                fold: -1,
                image: name.to_string_lossy().into_owned(),
                seed: -1,
            },
            recon,
            seen,
        });
    }
    Ok(pairs)
}

/// The first existing file among `candidates`, else an error naming the first.
fn first_file(candidates: Vec<PathBuf>, what: &str) -> Result<PathBuf> {
    match candidates.iter().find(|c| c.is_file()) {
        Some(found) => Ok(found.clone()),
        None => Err(EvalError::data(
            candidates.first().map_or(Path::new("."), PathBuf::as_path),
            format!("not found ({what})"),
        )),
    }
}

/// A reconstruction's PNG: relative to the decoder's `images/` directory, which sits next to
/// its table or is given as `reconstruction_images`.
fn resolve_reconstruction(image: &str, table: &Path, dir: Option<&Path>) -> Result<PathBuf> {
    let given = Path::new(image);
    if given.is_absolute() {
        return first_file(vec![given.to_path_buf()], "reconstruction image");
    }
    let mut candidates = Vec::new();
    if let Some(d) = dir {
        candidates.push(d.join(given));
    }
    if let Some(folder) = table.parent() {
        candidates.push(folder.join("images").join(given));
        candidates.push(folder.join(given));
    }
    first_file(candidates, &format!("reconstruction image of {}", table.display()))
}

/// A seen image: the stimuli table's path for the stimulus (relative to the study's output
/// directory, i.e. the `images` directory's parent), else the stimulus itself as a path.
fn resolve_seen(
    stimulus: &str,
    stimuli: Option<&(PathBuf, HashMap<String, String>)>,
    images: &Path,
    table: &Path,
) -> Result<PathBuf> {
    let relative = match stimuli {
        Some((path, map)) => map.get(stimulus).cloned().ok_or_else(|| {
            EvalError::data(
                table,
                format!("stimulus `{stimulus}` has no image in {}", path.display()),
            )
        })?,
        None => stimulus.to_owned(),
    };
    let given = Path::new(&relative);
    if given.is_absolute() {
        return first_file(vec![given.to_path_buf()], "seen image");
    }
    let mut candidates = Vec::new();
    if let Some(parent) = images.parent() {
        candidates.push(parent.join(given));
    }
    candidates.push(images.join(given));
    if let Some(name) = given.file_name() {
        candidates.push(images.join(name));
    }
    if let Some((path, _)) = stimuli
        && let Some(folder) = path.parent()
    {
        candidates.push(folder.join(given));
    }
    first_file(candidates, &format!("seen image of stimulus `{stimulus}`"))
}

/// The named feature sets of the `reconstruction_features` and `seen_features` list inputs,
/// paired by position with `names`.
fn feature_sets(
    recon: &[&Path],
    seen: &[&Path],
    names: &[String],
) -> Result<Vec<Features>, StageError> {
    if recon.len() != seen.len() {
        return Err(StageError::msg(format!(
            "{} `reconstruction_features` tables but {} `seen_features`: give them in pairs",
            recon.len(),
            seen.len()
        )));
    }
    if !recon.is_empty() && recon.len() != names.len() {
        return Err(StageError::msg(format!(
            "{} feature sets but {} `feature_names` ({}): name each pair of tables, in order",
            recon.len(),
            names.len(),
            names.join(", ")
        )));
    }
    let read = |((r, s), name): ((&&Path, &&Path), &String)| Features::read(name, r, s);
    Ok(recon.iter().zip(seen).zip(names).map(read).collect::<Result<_>>()?)
}

/// Precomputed image features of reconstructions (by image path and file name) and of the seen
/// images (by stimulus).
struct Features {
    /// The metric: `2way_<name>`.
    metric: String,
    dim: usize,
    recon: HashMap<String, Vec<f64>>,
    seen: HashMap<String, Vec<f64>>,
    recon_path: PathBuf,
    seen_path: PathBuf,
}

impl Features {
    fn read(name: &str, recon_path: &Path, seen_path: &Path) -> Result<Features> {
        let (r, rdim) = read_image_features(recon_path)?;
        let (s, sdim) = read_image_features(seen_path)?;
        if rdim != sdim {
            return Err(EvalError::data(
                recon_path,
                format!(
                    "features of width {rdim}, the seen images' ({}) {sdim}",
                    seen_path.display()
                ),
            ));
        }
        let mut recon = HashMap::new();
        for (stimulus, image, v) in r {
            let key = image.unwrap_or(stimulus);
            if let Some(name) = Path::new(&key).file_name() {
                recon.entry(name.to_string_lossy().into_owned()).or_insert_with(|| v.clone());
            }
            recon.insert(key, v);
        }
        let mut seen = HashMap::new();
        for (stimulus, _, v) in s {
            // Also by file name: scans name an image stimulus by it (the events' trial_type).
            seen.entry(file_name(&stimulus)).or_insert_with(|| v.clone());
            seen.insert(stimulus, v);
        }
        Ok(Features {
            metric: format!("2way_{name}"),
            dim: rdim,
            recon,
            seen,
            recon_path: recon_path.to_path_buf(),
            seen_path: seen_path.to_path_buf(),
        })
    }

    /// (seen, reconstruction) features of `pair`.
    fn of(&self, pair: &Pair) -> Result<(&[f64], &[f64])> {
        let name = Path::new(&pair.rec.image)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let recon =
            self.recon.get(&pair.rec.image).or_else(|| self.recon.get(&name)).ok_or_else(|| {
                EvalError::data(&self.recon_path, format!("no features of `{}`", pair.rec.image))
            })?;
        let seen = self.seen.get(&pair.rec.stimulus).ok_or_else(|| {
            EvalError::data(
                &self.seen_path,
                format!("no features of stimulus `{}`", pair.rec.stimulus),
            )
        })?;
        Ok((seen.as_slice(), recon.as_slice()))
    }
}

/// PixCorr and SSIM per pair computed upstream (`clip.pixel_metrics`), by (model as the
/// reconstructions table names it, subject, trial).
struct PixelMetrics {
    path: PathBuf,
    values: HashMap<(String, String, i32), [Option<f64>; 3]>,
}

impl PixelMetrics {
    const METRICS: [&'static str; 3] = ["pixcorr", "ssim_gaussian", "ssim_uniform7"];

    fn read(path: &Path) -> Result<PixelMetrics> {
        let mut values: HashMap<(String, String, i32), [Option<f64>; 3]> = HashMap::new();
        for r in read_image_metrics(path)?.into_iter().filter(|r| r.trial >= 0) {
            if let Some(k) = Self::METRICS.iter().position(|m| *m == r.metric) {
                values.entry((r.model, r.subject, r.trial)).or_default()[k] = Some(r.value);
            }
        }
        Ok(PixelMetrics { path: path.to_path_buf(), values })
    }

    fn of(&self, pair: &Pair) -> Result<super::PairMetrics> {
        let key = (pair.table_model.clone(), pair.rec.subject.clone(), pair.rec.trial);
        let found = self.values.get(&key).copied().unwrap_or_default();
        let get = |k: usize| {
            found[k].ok_or_else(|| {
                EvalError::data(
                    &self.path,
                    format!(
                        "no `{}` of model `{}`, subject `{}`, trial {}",
                        Self::METRICS[k],
                        key.0,
                        key.1,
                        key.2
                    ),
                )
            })
        };
        Ok(super::PairMetrics { pixcorr: get(0)?, ssim_gaussian: get(1)?, ssim_uniform7: get(2)? })
    }
}

/// Manifest notes: (key, value).
type Notes = Vec<(String, f64)>;

/// Every metric of every pair, then the summaries; manifest notes on the side.
fn evaluate(
    pairs: &[Pair],
    options: &Options,
    features: &[Features],
    pixel: Option<&PixelMetrics>,
) -> Result<(Vec<ImageMetricRow>, Notes)> {
    if options.size < 11 {
        return Err(EvalError::data(
            pairs.first().map_or(Path::new("."), |p| p.recon.as_path()),
            format!("size {} is smaller than the 11-pixel SSIM window", options.size),
        ));
    }
    // Each seen image once (several reconstructions may share it).
    let mut seen_paths: Vec<&PathBuf> = pairs.iter().map(|p| &p.seen).collect();
    seen_paths.sort();
    seen_paths.dedup();
    let seen: HashMap<&PathBuf, RgbImage> =
        seen_paths.par_iter().map(|p| read_png(p).map(|img| (*p, img))).collect::<Result<_>>()?;
    let p = options.pixel_features;
    let per_pair: Vec<(super::PairMetrics, Vec<f64>, Vec<f64>)> = pairs
        .par_iter()
        .map(|pair| {
            let recon = read_png(&pair.recon)?;
            let s = &seen[&pair.seen];
            let m = match pixel {
                Some(table) => table.of(pair)?,
                None => pair_metrics(s, &recon, options.size, options.antialias),
            };
            let (fs, fr) = if p > 0 {
                (resize_bilinear(s, p, p, true).pixels, resize_bilinear(&recon, p, p, true).pixels)
            } else {
                (Vec::new(), Vec::new())
            };
            Ok((m, fs, fr))
        })
        .collect::<Result<_>>()?;
    let mut rows = Vec::new();
    let row = |pair: &Pair, metric: &str, value: f64| ImageMetricRow {
        model: pair.rec.model.clone(),
        subject: pair.rec.subject.clone(),
        trial: pair.rec.trial,
        stimulus: pair.rec.stimulus.clone(),
        metric: metric.to_owned(),
        value,
    };
    for (pair, (m, _, _)) in pairs.iter().zip(&per_pair) {
        rows.push(row(pair, "pixcorr", m.pixcorr));
        rows.push(row(pair, "ssim_gaussian", m.ssim_gaussian));
        rows.push(row(pair, "ssim_uniform7", m.ssim_uniform7));
    }
    // 2-way identification within each (model, held-out subject).
    let mut groups: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
    for (i, pair) in pairs.iter().enumerate() {
        groups.entry((pair.rec.model.as_str(), pair.rec.subject.as_str())).or_default().push(i);
    }
    let mut notes = Vec::new();
    let too_small = groups.values().filter(|g| g.len() < 2).count();
    if too_small > 0 {
        notes.push(("two_way_groups_skipped".to_owned(), too_small as f64));
    }
    for members in groups.values().filter(|g| g.len() >= 2) {
        if p > 0 {
            let reals: Vec<f64> = members.iter().flat_map(|&i| per_pair[i].1.clone()).collect();
            let preds: Vec<f64> = members.iter().flat_map(|&i| per_pair[i].2.clone()).collect();
            for (&i, v) in members.iter().zip(two_way(&reals, &preds, p * p * 3)) {
                rows.push(row(&pairs[i], "2way_pixels", v));
            }
        }
        for f in features {
            let (mut reals, mut preds) = (Vec::new(), Vec::new());
            for &i in members {
                let (s, r) = f.of(&pairs[i])?;
                reals.extend_from_slice(s);
                preds.extend_from_slice(r);
            }
            for (&i, v) in members.iter().zip(two_way(&reals, &preds, f.dim)) {
                rows.push(row(&pairs[i], &f.metric, v));
            }
        }
    }
    let summaries = summarise(&rows);
    for s in summaries.iter().filter(|s| s.subject == ALL) {
        notes.push((format!("{}.{}", s.model, s.metric), s.mean));
    }
    for s in summaries {
        rows.extend(s.rows());
    }
    Ok((rows, notes))
}

/// One summary: a metric of a model over one held-out subject's pairs, or over all (`all`).
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// Model.
    pub model: String,
    /// Held-out subject, or `all`.
    pub subject: String,
    /// Metric.
    pub metric: String,
    /// Mean over pairs (2-way: MindEye's "percent correct").
    pub mean: f64,
    /// Sample s.d. over pairs (NaN for one pair).
    pub sd: f64,
    /// Number of pairs.
    pub n: usize,
    /// For `all`: sample s.d. over the held-out subjects' means (NaN for one subject).
    pub subject_sd: Option<f64>,
}

impl Summary {
    fn rows(&self) -> Vec<ImageMetricRow> {
        let mut stats = vec![("mean", self.mean), ("sd", self.sd), ("n", self.n as f64)];
        if let Some(v) = self.subject_sd {
            stats.push(("subject_sd", v));
        }
        stats
            .into_iter()
            .map(|(stat, value)| ImageMetricRow {
                model: self.model.clone(),
                subject: self.subject.clone(),
                trial: -1,
                stimulus: String::new(),
                metric: format!("{}.{stat}", self.metric),
                value,
            })
            .collect()
    }
}

fn mean_sd(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let sd = if values.len() > 1 {
        (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        f64::NAN
    };
    (mean, sd)
}

/// Per (model, metric): per held-out subject and over all pairs (`all`), the mean, sample s.d.
/// and count of the per-pair rows (`trial` ≥ 0) of `rows`.
pub fn summarise(rows: &[ImageMetricRow]) -> Vec<Summary> {
    let mut by: BTreeMap<(&str, &str), BTreeMap<&str, Vec<f64>>> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.trial >= 0) {
        by.entry((r.model.as_str(), r.metric.as_str()))
            .or_default()
            .entry(r.subject.as_str())
            .or_default()
            .push(r.value);
    }
    let mut out = Vec::new();
    for ((model, metric), subjects) in by {
        let mut means = Vec::new();
        let mut all = Vec::new();
        for (subject, values) in &subjects {
            let (mean, sd) = mean_sd(values);
            all.extend_from_slice(values);
            if *subject != ALL {
                means.push(mean);
                out.push(Summary {
                    model: model.to_owned(),
                    subject: (*subject).to_owned(),
                    metric: metric.to_owned(),
                    mean,
                    sd,
                    n: values.len(),
                    subject_sd: None,
                });
            }
        }
        let (mean, sd) = mean_sd(&all);
        out.push(Summary {
            model: model.to_owned(),
            subject: ALL.to_owned(),
            metric: metric.to_owned(),
            mean,
            sd,
            n: all.len(),
            subject_sd: Some(if means.len() > 1 { mean_sd(&means).1 } else { f64::NAN }),
        });
    }
    out
}

//! `eval.clip`: Brain2CLIP's scores of predicted CLIP embeddings — closest image, closest
//! caption, MindEye's 2-way identification and N-way retrieval, per image category — per
//! held-out subject and averaged, on single presentations and on the mean over repeated ones.
//!
//! Definitions (all cosines in f64 on the stored f32 values; docs/BRAIN2CLIP.md):
//! - **Test images**: the stimuli of split `test` that have an image embedding; scored trials are
//!   the predictions of those stimuli. `single`: every presentation; `averaged`: per subject and
//!   test image, the mean of its presentations' predicted embeddings (BOLD5000's repeats).
//! - **Rank** of a trial: the number of candidate images at least as close (cosine) to the
//!   prediction as the seen image (ties count against it); among the test images (`top1`,
//!   `top5`, `mean_rank`, `rank_count`) and among every embedded image (`top1_all`, `top5_all`,
//!   `mean_rank_all`).
//! - **Closest caption**: the caption of a test image with the highest cosine to the prediction
//!   (the first in table order on ties); `caption` = the fraction that belong to the seen image.
//! - **2-way identification** (averaged mode; items = one per test image): with `S[i][j]` =
//!   cos(prediction i, image j), `two_way_brain_to_image` = mean over i of the fraction of j ≠ i
//!   with `S[i][i] > S[i][j]`; `two_way_image_to_brain` = mean over i of the fraction of j ≠ i
//!   with `S[i][i] > S[j][i]`.
//! - **N-way retrieval** (MindEye): `draws` random subsets of m = min(`subset`, n) items
//!   (SplitMix64 from `seed`, partial Fisher–Yates; the same subsets for every model); a hit when
//!   the true pair beats every other member of the subset (strictly), in either direction;
//!   averaged over the subset and then over draws.
//! - **Categories** (synthetic images world: the stimulus vector's background one-hot, counts per
//!   shape kind and per colour): per category value, on the averaged items of every subject
//!   together, `category.<group>.<value>.accuracy` = the fraction whose closest test image shares
//!   the value, `.top1`, `.trials`, `.train_frequency` (share of training images with it) and
//!   `.chance` (share of test images with it); `confusion.<group>.<true>.<retrieved>` counts
//!   (single-label: the background, the most frequent kind and colour).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use brainpipe_core::{ArtifactKind, Context, Port, Stage, StageError};

use crate::clip_tables::{
    ClipEmbeddings, ClipTrial, StimulusInfo, read_clip_embeddings, read_image_stimuli,
    write_clip_trials,
};
use crate::error::{EvalError, Result};
use crate::words::ALL;
use brainpipe_artifacts::{MetricRow, Predictions, read_predictions, write_metrics};

brainpipe_core::params! {
    /// Params of `eval.clip`.
    pub struct ClipParams {
        /// Images per subset of MindEye's N-way retrieval (300); fewer items: all of them.
        pub subset: usize = 300,
        /// Random subsets drawn for N-way retrieval (MindEye: 30).
        pub draws: usize = 30,
        /// Seed of the subsets (SplitMix64).
        pub seed: u64 = 7,
        /// Closest test images kept per trial in `trials.parquet` (the report's gallery).
        pub retrieved: usize = 5,
        /// Score categories from the stimulus vector of the synthetic images world (18 wide:
        /// background one-hot, shape count, counts per kind and colour, …); `false`, or a
        /// study without such vectors, skips them.
        pub categories: bool = true,
    }
}

/// `eval.clip`.
pub struct ClipEval;

impl Stage for ClipEval {
    type Params = ClipParams;
    const NAME: &'static str = "eval.clip";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str = "Brain2CLIP metrics: closest image (ranks, top-k), closest caption, MindEye 2-way and N-way retrieval both directions, per category; single and averaged presentations";

    fn inputs(&self) -> Vec<Port> {
        vec![
            Port::input(
                "predictions",
                ArtifactKind::table(brainpipe_artifacts::PREDICTIONS),
                "predictions.parquet of the models (CLIP-space embeddings), one table per model",
            )
            .many(),
            Port::input(
                "embeddings",
                ArtifactKind::table(brainpipe_artifacts::EMBEDDINGS),
                "embeddings.parquet of clip.embed: every image and caption",
            ),
            Port::input(
                "stimuli",
                ArtifactKind::table(brainpipe_artifacts::STIMULI),
                "the study's stimuli.parquet: split (test images are the candidates), vector",
            ),
        ]
    }

    fn outputs(&self) -> Vec<Port> {
        vec![
            Port::output(
                "metrics",
                "metrics.parquet",
                ArtifactKind::table(brainpipe_artifacts::METRICS),
                "per model, held-out subject and mode (`paradigm`: single / averaged): every score",
            ),
            Port::output(
                "trials",
                "trials.parquet",
                ArtifactKind::table(brainpipe_artifacts::CLIP_TRIALS),
                "per scored trial: ranks, closest test images, chosen caption",
            ),
        ]
    }

    fn run(&self, ctx: &mut Context, p: &ClipParams) -> Result<(), StageError> {
        let embeddings = read_clip_embeddings(ctx.input("embeddings")?)?;
        let stimuli_path = ctx.input("stimuli")?.to_path_buf();
        let stimuli = read_image_stimuli(&stimuli_path)?;
        let mut predictions = Vec::new();
        for path in ctx.input_list("predictions") {
            predictions.push((path.to_path_buf(), read_predictions(path)?));
        }
        let scored = score_clip(&predictions, &embeddings, &stimuli, &stimuli_path, p)?;
        ctx.note("test_images", scored.test_images);
        ctx.note("images", scored.all_images);
        write_metrics(&ctx.output("metrics"), &scored.rows)?;
        write_clip_trials(&ctx.output("trials"), &scored.trials)?;
        Ok(())
    }
}

/// What [`score_clip`] computes.
#[derive(Clone, Debug, Default)]
pub struct ClipScores {
    /// `metrics/1` rows (`paradigm` = mode).
    pub rows: Vec<MetricRow>,
    /// One row per scored trial and mode.
    pub trials: Vec<ClipTrial>,
    /// Candidates among the test images.
    pub test_images: usize,
    /// Every embedded image.
    pub all_images: usize,
}

/// SplitMix64 (the subsets of N-way retrieval; the numpy reference runs the same stream).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// `draws` subsets of `m` of `0..n`: a partial Fisher–Yates shuffle per draw, continuing on one
/// SplitMix64 stream from `seed` (index j = i + next mod (n − i) for i < m).
pub fn subsets(n: usize, m: usize, draws: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut rng = SplitMix(seed);
    (0..draws)
        .map(|_| {
            let mut idx: Vec<usize> = (0..n).collect();
            for i in 0..m.min(n) {
                let j = i + (rng.next() % (n - i) as u64) as usize;
                idx.swap(i, j);
            }
            idx.truncate(m.min(n));
            idx
        })
        .collect()
}

fn unit(v: &[f32]) -> Vec<f64> {
    let norm = v.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt().max(1e-12);
    v.iter().map(|&x| f64::from(x) / norm).collect()
}

fn unit64(v: &[f64]) -> Vec<f64> {
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
    v.iter().map(|x| x / norm).collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The synthetic images world's attribute groups (docs/SYNTHETIC.md): names and positions in the
/// 18-wide stimulus vector (kept in step with crates/ingest/src/images.rs).
const BACKGROUNDS: [&str; 4] = ["black", "white", "gray", "beige"];
const KINDS: [&str; 4] = ["circle", "square", "triangle", "cross"];
const COLOURS: [&str; 6] = ["red", "green", "blue", "yellow", "purple", "orange"];
const SYNTHETIC_VECTOR: usize = 18;

/// The categories of one image: per group, the values present and the single label.
struct Categories {
    present: [Vec<usize>; 3],
    label: [usize; 3],
}

fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best
}

fn categories(vector: &[f32]) -> Categories {
    let (bg, kinds, colours) = (&vector[0..4], &vector[5..9], &vector[9..15]);
    let present = |v: &[f32]| (0..v.len()).filter(|&i| v[i] > 0.0).collect::<Vec<_>>();
    Categories {
        present: [vec![argmax(bg)], present(kinds), present(colours)],
        label: [argmax(bg), argmax(kinds), argmax(colours)],
    }
}

const GROUPS: [(&str, &[&str]); 3] =
    [("background", &BACKGROUNDS), ("kind", &KINDS), ("colour", &COLOURS)];

/// One scored item: a presentation or the mean over a test image's presentations.
struct Item {
    trial: i32,
    stimulus: usize,
    fold: i32,
    /// Unit prediction.
    p: Vec<f64>,
}

/// Scores every predictions table (`(path, table)`, paths for error messages) against the
/// embeddings and the stimuli (read from `stimuli_path`).
pub fn score_clip(
    predictions: &[(PathBuf, Predictions)],
    emb: &ClipEmbeddings,
    stimuli: &[StimulusInfo],
    stimuli_path: &Path,
    p: &ClipParams,
) -> Result<ClipScores> {
    let dim = emb.dim;
    let split: HashMap<&str, &StimulusInfo> =
        stimuli.iter().map(|s| (s.name.as_str(), s)).collect();
    let images: Vec<Vec<f64>> = emb.images.chunks(dim).map(unit).collect();
    let mut image_row: HashMap<&str, usize> =
        emb.image_stimulus.iter().enumerate().map(|(i, s)| (s.as_str(), i)).collect();
    // Scans name an image by its file name (events), the embeddings by its path: an image also
    // answers to its file name unless another image has it.
    for (i, s) in emb.image_stimulus.iter().enumerate() {
        if let Some((_, file)) = s.rsplit_once('/') {
            image_row.entry(file).or_insert(i);
        }
    }
    // Test candidates in embeddings order.
    let test: Vec<usize> = (0..emb.image_stimulus.len())
        .filter(|&i| split.get(emb.image_stimulus[i].as_str()).is_some_and(|s| s.split == "test"))
        .collect();
    if test.len() < 2 {
        return Err(EvalError::data(
            stimuli_path,
            format!(
                "eval.clip needs at least 2 stimuli of split `test` with an image embedding, found {}",
                test.len()
            ),
        ));
    }
    let test_pos: HashMap<usize, usize> = test.iter().enumerate().map(|(k, &i)| (i, k)).collect();
    let captions: Vec<(usize, Vec<f64>)> = emb
        .caption_stimulus
        .iter()
        .zip(emb.captions.chunks(dim))
        .filter_map(|(s, v)| {
            image_row.get(s.as_str()).filter(|i| test_pos.contains_key(i)).map(|&i| (i, unit(v)))
        })
        .collect();
    let caption_text: Vec<&str> = emb
        .caption_stimulus
        .iter()
        .zip(&emb.caption_text)
        .filter(|(s, _)| image_row.get(s.as_str()).is_some_and(|i| test_pos.contains_key(i)))
        .map(|(_, t)| t.as_str())
        .collect();
    let synthetic = p.categories
        && stimuli.iter().all(|s| s.vector.len() == SYNTHETIC_VECTOR)
        && !stimuli.is_empty();
    let cats: Vec<Option<Categories>> = emb
        .image_stimulus
        .iter()
        .map(|s| split.get(s.as_str()).filter(|_| synthetic).map(|s| categories(&s.vector)))
        .collect();

    let mut out =
        ClipScores { test_images: test.len(), all_images: images.len(), ..ClipScores::default() };
    let n_test = test.len() as f64;
    for (path, table) in predictions {
        if table.embedding_dim != dim {
            return Err(EvalError::data(
                path,
                format!("predictions are {} wide, the CLIP embeddings {dim}", table.embedding_dim),
            ));
        }
        let models: BTreeSet<&str> = table.model.iter().map(String::as_str).collect();
        for model in models {
            let mut per_subject: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
            for i in 0..table.len() {
                let scored = image_row
                    .get(table.stimulus[i].as_str())
                    .is_some_and(|r| test_pos.contains_key(r));
                if table.model[i] == model && scored {
                    per_subject.entry(table.subject[i].as_str()).or_default().push(i);
                }
            }
            if per_subject.is_empty() {
                return Err(EvalError::data(
                    path,
                    format!("model {model}: no prediction of a test image"),
                ));
            }
            let mut subject_rows: Vec<MetricRow> = Vec::new();
            let mut pooled: Vec<Item> = Vec::new();
            for (subject, rows) in &per_subject {
                let row = |i: usize| &table.embedding[i * dim..(i + 1) * dim];
                let single: Vec<Item> = rows
                    .iter()
                    .map(|&i| Item {
                        trial: table.trial[i],
                        stimulus: image_row[table.stimulus[i].as_str()],
                        fold: table.fold[i],
                        p: unit(row(i)),
                    })
                    .collect();
                let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
                for &i in rows {
                    groups
                        .entry(test_pos[&image_row[table.stimulus[i].as_str()]])
                        .or_default()
                        .push(i);
                }
                let averaged: Vec<Item> = groups
                    .values()
                    .map(|members| {
                        let mut mean = vec![0.0f64; dim];
                        for &i in members {
                            for (m, &x) in mean.iter_mut().zip(row(i)) {
                                *m += f64::from(x);
                            }
                        }
                        for m in &mut mean {
                            *m /= members.len() as f64;
                        }
                        Item {
                            trial: -1,
                            stimulus: image_row[table.stimulus[members[0]].as_str()],
                            fold: table.fold[members[0]],
                            p: unit64(&mean),
                        }
                    })
                    .collect();
                let folds: BTreeSet<i32> = single.iter().map(|i| i.fold).collect();
                let fold =
                    if folds.len() == 1 { folds.into_iter().next().unwrap_or(-1) } else { -1 };
                for (mode, items) in [("single", &single), ("averaged", &averaged)] {
                    let metric = |name: &str, index: Option<i32>, value: f64| MetricRow {
                        model: model.to_owned(),
                        subject: (*subject).to_owned(),
                        fold,
                        paradigm: mode.to_owned(),
                        metric: name.to_owned(),
                        index,
                        value,
                    };
                    let (mut r_test, mut r_all, mut hits) = (Vec::new(), Vec::new(), 0usize);
                    for item in items.iter() {
                        let sims: Vec<f64> = images.iter().map(|v| dot(&item.p, v)).collect();
                        let own = sims[item.stimulus];
                        let rank_all = sims.iter().filter(|&&s| s >= own).count();
                        let rank_test = test.iter().filter(|&&c| sims[c] >= own).count();
                        let mut order: Vec<usize> = test.clone();
                        order.sort_by(|&a, &b| sims[b].total_cmp(&sims[a]).then(a.cmp(&b)));
                        let (mut best, mut best_sim) = (0, f64::NEG_INFINITY);
                        for (k, (_, c)) in captions.iter().enumerate() {
                            let s = dot(&item.p, c);
                            if s > best_sim {
                                (best, best_sim) = (k, s);
                            }
                        }
                        let hit = captions.get(best).is_some_and(|c| c.0 == item.stimulus);
                        hits += usize::from(hit);
                        r_test.push(rank_test);
                        r_all.push(rank_all);
                        out.trials.push(ClipTrial {
                            model: model.to_owned(),
                            subject: (*subject).to_owned(),
                            mode: mode.to_owned(),
                            trial: item.trial,
                            stimulus: emb.image_stimulus[item.stimulus].clone(),
                            fold: item.fold,
                            rank_test: rank_test as i32,
                            rank_all: rank_all as i32,
                            retrieved: order
                                .iter()
                                .take(p.retrieved)
                                .map(|&c| emb.image_stimulus[c].clone())
                                .collect(),
                            caption: caption_text.get(best).copied().unwrap_or("").to_owned(),
                            caption_hit: hit,
                        });
                    }
                    let n = items.len() as f64;
                    let frac =
                        |r: &[usize], k: usize| r.iter().filter(|&&x| x <= k).count() as f64 / n;
                    let mean = |r: &[usize]| r.iter().sum::<usize>() as f64 / n;
                    subject_rows.push(metric("trials", None, n));
                    subject_rows.push(metric("top1", None, frac(&r_test, 1)));
                    subject_rows.push(metric("top5", None, frac(&r_test, 5)));
                    subject_rows.push(metric("mean_rank", None, mean(&r_test)));
                    subject_rows.push(metric("top1_all", None, frac(&r_all, 1)));
                    subject_rows.push(metric("top5_all", None, frac(&r_all, 5)));
                    subject_rows.push(metric("mean_rank_all", None, mean(&r_all)));
                    subject_rows.push(metric("caption", None, hits as f64 / n));
                    let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
                    for &r in &r_test {
                        *counts.entry(r).or_default() += 1;
                    }
                    for (r, c) in counts {
                        subject_rows.push(metric("rank_count", Some(r as i32), c as f64));
                    }
                    if mode == "averaged" {
                        let truth: Vec<Vec<f64>> =
                            items.iter().map(|i| images[i.stimulus].clone()).collect();
                        let s: Vec<Vec<f64>> = items
                            .iter()
                            .map(|i| truth.iter().map(|t| dot(&i.p, t)).collect())
                            .collect();
                        let (b2i, i2b) = two_way(&s);
                        subject_rows.push(metric("two_way_brain_to_image", None, b2i));
                        subject_rows.push(metric("two_way_image_to_brain", None, i2b));
                        let m = p.subset.min(items.len());
                        let (nb, ni) = n_way(&s, &subsets(items.len(), m, p.draws, p.seed));
                        subject_rows.push(metric("nway_brain_to_image", None, nb));
                        subject_rows.push(metric("nway_image_to_brain", None, ni));
                        subject_rows.push(metric("nway_size", None, m as f64));
                    }
                }
                pooled.extend(averaged);
            }
            // Means over held-out subjects (rank counts and trials summed).
            let mut sums: BTreeMap<(String, String, Option<i32>), (f64, usize)> = BTreeMap::new();
            for r in &subject_rows {
                let e = sums.entry((r.paradigm.clone(), r.metric.clone(), r.index)).or_default();
                e.0 += r.value;
                e.1 += 1;
            }
            let subjects = per_subject.len() as f64;
            out.rows.extend(subject_rows);
            for ((mode, metric, index), (sum, _)) in sums {
                let summed = metric == "rank_count" || metric == "trials";
                out.rows.push(MetricRow {
                    model: model.to_owned(),
                    subject: ALL.to_owned(),
                    fold: -1,
                    paradigm: mode,
                    metric,
                    index,
                    value: if summed { sum } else { sum / subjects },
                });
            }
            for mode in ["single", "averaged"] {
                let chance = |metric: &str, value: f64| MetricRow {
                    model: model.to_owned(),
                    subject: ALL.to_owned(),
                    fold: -1,
                    paradigm: mode.to_owned(),
                    metric: metric.to_owned(),
                    index: None,
                    value,
                };
                out.rows.push(chance("chance_top1", 1.0 / n_test));
                out.rows.push(chance("chance_top5", (5.0 / n_test).min(1.0)));
                out.rows.push(chance("chance_top1_all", 1.0 / images.len() as f64));
                out.rows.push(chance("chance_caption", 1.0 / n_test));
                if mode == "averaged" {
                    out.rows.push(chance("chance_two_way", 0.5));
                    out.rows.push(chance("chance_nway", 1.0 / p.subset.min(test.len()) as f64));
                }
            }
            if synthetic {
                out.rows.extend(category_rows(model, &pooled, &images, &test, &cats, emb, &split));
            }
        }
    }
    Ok(out)
}

/// 2-way identification both directions on a square similarity matrix `s[i][j]` =
/// cos(prediction i, image j).
pub fn two_way(s: &[Vec<f64>]) -> (f64, f64) {
    let n = s.len();
    if n < 2 {
        return (f64::NAN, f64::NAN);
    }
    let (mut b2i, mut i2b) = (0.0, 0.0);
    for (i, row) in s.iter().enumerate() {
        let (mut a, mut b) = (0usize, 0usize);
        for (j, other) in s.iter().enumerate().filter(|&(j, _)| j != i) {
            a += usize::from(row[i] > row[j]);
            b += usize::from(row[i] > other[i]);
        }
        b2i += a as f64 / (n - 1) as f64;
        i2b += b as f64 / (n - 1) as f64;
    }
    (b2i / n as f64, i2b / n as f64)
}

/// N-way retrieval both directions over `subsets` of the items of `s`.
pub fn n_way(s: &[Vec<f64>], subsets: &[Vec<usize>]) -> (f64, f64) {
    let (mut b2i, mut i2b) = (0.0, 0.0);
    for subset in subsets {
        let (mut a, mut b) = (0usize, 0usize);
        for &i in subset {
            a += usize::from(subset.iter().all(|&j| j == i || s[i][i] > s[i][j]));
            b += usize::from(subset.iter().all(|&j| j == i || s[i][i] > s[j][i]));
        }
        b2i += a as f64 / subset.len() as f64;
        i2b += b as f64 / subset.len() as f64;
    }
    let d = subsets.len().max(1) as f64;
    (b2i / d, i2b / d)
}

/// Per category accuracy, frequency and confusion of `model`'s averaged items.
fn category_rows(
    model: &str,
    items: &[Item],
    images: &[Vec<f64>],
    test: &[usize],
    cats: &[Option<Categories>],
    emb: &ClipEmbeddings,
    split: &HashMap<&str, &StimulusInfo>,
) -> Vec<MetricRow> {
    let row = |metric: String, value: f64| MetricRow {
        model: model.to_owned(),
        subject: ALL.to_owned(),
        fold: -1,
        paradigm: "averaged".to_owned(),
        metric,
        index: None,
        value,
    };
    let train: Vec<usize> = (0..emb.image_stimulus.len())
        .filter(|&i| split.get(emb.image_stimulus[i].as_str()).is_some_and(|s| s.split == "train"))
        .collect();
    // The closest test image of each item.
    let closest: Vec<usize> = items
        .iter()
        .map(|item| {
            let mut best = test[0];
            for &c in test {
                if dot(&item.p, &images[c]) > dot(&item.p, &images[best]) {
                    best = c;
                }
            }
            best
        })
        .collect();
    let mut out = Vec::new();
    for (g, (group, names)) in GROUPS.iter().enumerate() {
        let has = |i: usize, v: usize| cats[i].as_ref().is_some_and(|c| c.present[g].contains(&v));
        for (v, name) in names.iter().enumerate() {
            let key = |what: &str| format!("category.{group}.{name}.{what}");
            let share = |set: &[usize]| {
                set.iter().filter(|&&i| has(i, v)).count() as f64 / set.len().max(1) as f64
            };
            let with: Vec<usize> =
                (0..items.len()).filter(|&k| has(items[k].stimulus, v)).collect();
            out.push(row(key("train_frequency"), share(&train)));
            out.push(row(key("chance"), share(test)));
            out.push(row(key("trials"), with.len() as f64));
            if !with.is_empty() {
                let n = with.len() as f64;
                let acc = with.iter().filter(|&&k| has(closest[k], v)).count() as f64 / n;
                let top1 = with.iter().filter(|&&k| closest[k] == items[k].stimulus).count();
                out.push(row(key("accuracy"), acc));
                out.push(row(key("top1"), top1 as f64 / n));
            }
        }
        let mut confusion: BTreeMap<(usize, usize), usize> = BTreeMap::new();
        for (k, item) in items.iter().enumerate() {
            if let (Some(t), Some(r)) = (&cats[item.stimulus], &cats[closest[k]]) {
                *confusion.entry((t.label[g], r.label[g])).or_default() += 1;
            }
        }
        for ((t, r), c) in confusion {
            out.push(row(format!("confusion.{group}.{}.{}", names[t], names[r]), c as f64));
        }
    }
    out
}

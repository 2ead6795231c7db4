//! Regression targets, made without LibTorch so they run in the driver: `clip.words` (Brain2Word:
//! one word vector per word stimulus) and `clip.select_captions` (Brain2CLIP: per image, the
//! caption whose stored CLIP embedding is closest to the image's). Both write `targets/1`.
//!
//! ```
//! use brainpipe_artifacts::{EmbeddingKind, EmbeddingRow};
//! use brainpipe_params::clip::TargetSource;
//!
//! let row = |kind, caption_index: Option<i32>| EmbeddingRow {
//!     stimulus: "images/img-00000.png".into(),
//!     stimulus_id: 0,
//!     kind,
//!     caption_index,
//!     caption: caption_index.map(|i| format!("caption {i}")),
//!     augmentation: None,
//!     image: None,
//! };
//! let rows = [row(EmbeddingKind::Image, None), row(EmbeddingKind::Caption, Some(0)), row(EmbeddingKind::Caption, Some(1))];
//! // The image points along x; caption 1 is closer to it than caption 0.
//! let values = [1.0, 0.0, 0.0, 1.0, 0.9, 0.1];
//! let targets = brainpipe_targets::select_captions(&rows, &values, 2, TargetSource::Caption);
//! assert_eq!(targets[0].caption_index, Some(1));
//! assert_eq!(targets[0].target, vec![0.9, 0.1]);
//!
//! // An image without captions (BOLD5000's Scene and ImageNet images): no caption target, but
//! // its own embedding when the target is the image.
//! let mut lone = row(EmbeddingKind::Image, None);
//! lone.stimulus_id = 1;
//! let rows = [rows[0].clone(), rows[1].clone(), rows[2].clone(), lone];
//! let values = [1.0, 0.0, 0.0, 1.0, 0.9, 0.1, 0.5, 0.5];
//! let captions = brainpipe_targets::select_captions(&rows, &values, 2, TargetSource::Caption);
//! assert_eq!(captions.len(), 1);
//! let images = brainpipe_targets::select_captions(&rows, &values, 2, TargetSource::Image);
//! assert_eq!(images.len(), 2);
//! assert_eq!((images[1].class, images[1].caption_index), (1, None));
//! assert_eq!(images[1].target, vec![0.5, 0.5]);
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use brainpipe_artifacts::{
    EMBEDDINGS, EmbeddingKind, EmbeddingRow, STIMULI, Stimulus, TARGETS, Target, read_embeddings,
    read_stimuli, read_word_vectors, write_targets,
};
use brainpipe_core::{ArtifactKind, Context, DynStage, Error, Port, Stage, StageError, closest};

pub use brainpipe_params::clip::{SelectParams, TargetSource};

/// The stages of this crate.
pub fn stages() -> Vec<Arc<dyn DynStage>> {
    vec![Arc::new(Words), Arc::new(SelectCaptions)]
}

/// `clip.select_captions`: per image, the caption closest (cosine) to the image.
#[derive(Clone, Copy, Debug, Default)]
pub struct SelectCaptions;

impl Stage for SelectCaptions {
    type Params = SelectParams;
    const NAME: &'static str = "clip.select_captions";
    const VERSION: u32 = 2;
    const SUMMARY: &'static str =
        "Per image, the caption whose CLIP embedding is closest to the image's";

    fn inputs(&self) -> Vec<Port> {
        vec![
            Port::input(
                "embeddings",
                ArtifactKind::table(EMBEDDINGS),
                "clip.embed's image and caption embeddings",
            ),
            Port::input(
                "stimuli",
                ArtifactKind::table(STIMULI),
                "when given, the recorded best captions are scored",
            )
            .optional(),
        ]
    }

    fn outputs(&self) -> Vec<Port> {
        vec![Port::output(
            "targets",
            "targets.parquet",
            ArtifactKind::table(TARGETS),
            "stimulus, class, target embedding, chosen caption, its index and cosine similarity",
        )]
    }

    fn run(&self, ctx: &mut Context, p: &SelectParams) -> Result<(), StageError> {
        let path = ctx.input("embeddings")?.to_path_buf();
        ctx.set_device("cpu");
        let (rows, values, dim) = read_embeddings(&path)?;
        let targets = select_captions(&rows, &values, dim, p.target);
        if targets.is_empty() {
            let what = match p.target {
                TargetSource::Caption => "no image with captions to select from",
                TargetSource::Image => "no image embedding to take as target",
            };
            return Err(Error::schema(&path, what).into());
        }
        ctx.note("images", targets.len());
        if let Some(stimuli) = ctx.optional_input("stimuli").map(Path::to_path_buf) {
            let stimuli = read_stimuli(&stimuli)?;
            let (accuracy, scored, chance) = best_caption_accuracy(&targets, &stimuli);
            ctx.note("best_caption_accuracy", accuracy);
            ctx.note("best_caption_scored", scored);
            ctx.note("best_caption_chance", chance);
        }
        write_targets(&ctx.output("targets"), &targets)?;
        Ok(())
    }
}

/// Per stimulus with an image and captions: the caption closest to the image; the target is the
/// caption's embedding or the image's own (`source`). With `source` image, images without
/// captions get their own embedding as target (no caption); with `source` caption they have none.
pub fn select_captions(
    rows: &[EmbeddingRow],
    values: &[f32],
    dim: usize,
    source: TargetSource,
) -> Vec<Target> {
    let row = |i: usize| &values[i * dim..(i + 1) * dim];
    let mut captions: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
    for (i, r) in rows.iter().enumerate().filter(|(_, r)| r.kind == EmbeddingKind::Caption) {
        captions.entry(r.stimulus_id).or_default().push(i);
    }
    rows.iter()
        .enumerate()
        .filter(|(_, r)| r.kind == EmbeddingKind::Image)
        .filter_map(|(i, r)| {
            let Some(candidates) = captions.get(&r.stimulus_id) else {
                // An image without captions (BOLD5000's Scene and ImageNet images) has a target
                // only when the target is the image itself.
                return (source == TargetSource::Image).then(|| Target {
                    stimulus: r.stimulus.clone(),
                    class: r.stimulus_id,
                    target: row(i).to_vec(),
                    caption: None,
                    caption_index: None,
                    similarity: None,
                });
            };
            let stacked: Vec<f32> =
                candidates.iter().flat_map(|&c| row(c).iter().copied()).collect();
            let (best, similarity) = closest(row(i), &stacked)?;
            let chosen = &rows[candidates[best]];
            let target = match source {
                TargetSource::Caption => row(candidates[best]).to_vec(),
                TargetSource::Image => row(i).to_vec(),
            };
            Some(Target {
                stimulus: r.stimulus.clone(),
                class: r.stimulus_id,
                target,
                caption: chosen.caption.clone(),
                caption_index: chosen.caption_index,
                similarity: Some(similarity),
            })
        })
        .collect()
}

/// The fraction of images whose chosen caption is the recorded best one, how many were scored,
/// and the chance level (mean 1 / captions).
pub fn best_caption_accuracy(targets: &[Target], stimuli: &[Stimulus]) -> (f64, usize, f64) {
    let by_id: HashMap<i32, &Stimulus> = stimuli.iter().map(|s| (s.id, s)).collect();
    let (mut hits, mut scored, mut chance) = (0usize, 0usize, 0.0);
    for t in targets {
        let Some(s) = by_id.get(&t.class) else { continue };
        let Some(best) = s.best_caption else { continue };
        scored += 1;
        chance += 1.0 / s.captions.len().max(1) as f64;
        hits += usize::from(t.caption_index == Some(best));
    }
    let n = scored.max(1) as f64;
    (hits as f64 / n, scored, chance / n)
}

/// `clip.words`: Brain2Word targets from a word → vector file.
#[derive(Clone, Copy, Debug, Default)]
pub struct Words;

impl Stage for Words {
    type Params = brainpipe_core::NoParams;
    const NAME: &'static str = "clip.words";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str =
        "Word targets (e.g. GloVe-300) from a word → vector file, in the shared targets schema";

    fn inputs(&self) -> Vec<Port> {
        vec![
            Port::input("vectors", ArtifactKind::File, "GloVe text, Pereira-style .mat (`words`, `data`) or Parquet (`word`, `vector`)"),
            Port::input("stimuli", ArtifactKind::table(STIMULI), "when given, one target per word stimulus, class = its id; else every word of the file, class = its row")
                .optional(),
        ]
    }

    fn outputs(&self) -> Vec<Port> {
        vec![Port::output(
            "targets",
            "targets.parquet",
            ArtifactKind::table(TARGETS),
            "stimulus (word), class, target vector",
        )]
    }

    fn run(&self, ctx: &mut Context, _: &brainpipe_core::NoParams) -> Result<(), StageError> {
        let path = ctx.input("vectors")?.to_path_buf();
        ctx.set_device("cpu");
        let vectors = read_word_vectors(&path)?;
        let targets = match ctx.optional_input("stimuli").map(Path::to_path_buf) {
            None => vectors
                .words
                .iter()
                .enumerate()
                .map(|(i, w)| word_target(w.clone(), i as i32, vectors.row(i)))
                .collect(),
            Some(table) => {
                let index: HashMap<String, usize> = vectors
                    .words
                    .iter()
                    .enumerate()
                    .rev()
                    .map(|(i, w)| (w.to_lowercase(), i))
                    .collect();
                let stimuli = read_stimuli(&table)?;
                let mut missing = Vec::new();
                let mut targets = Vec::new();
                for s in stimuli.iter().filter(|s| s.word.is_some()) {
                    let word = s.word.clone().unwrap_or_default();
                    match index.get(&word.to_lowercase()) {
                        Some(&i) => targets.push(word_target(word, s.id, vectors.row(i))),
                        None => missing.push(word),
                    }
                }
                if !missing.is_empty() {
                    let message =
                        format!("lacks {} stimulus words: {}", missing.len(), missing.join(", "));
                    return Err(Error::schema(&path, message).into());
                }
                targets
            }
        };
        if targets.is_empty() {
            return Err(Error::schema(&path, "no word stimuli to make targets for").into());
        }
        ctx.note("words", targets.len());
        ctx.note("dim", vectors.dim);
        write_targets(&ctx.output("targets"), &targets)?;
        Ok(())
    }
}

fn word_target(word: String, class: i32, vector: &[f32]) -> Target {
    Target {
        stimulus: word,
        class,
        target: vector.to_vec(),
        caption: None,
        caption_index: None,
        similarity: None,
    }
}

//! The stage `ingest.synthetic`: a generated fMRI study with a known ceiling.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, ListBuilder, RecordBatch, StringArray, StringBuilder};
use brainpipe_artifacts::{STIMULI, WordVectors, stimuli_schema};
use brainpipe_core::{
    ArtifactKind, Context, Dtype, IoContext, NamedTensor, Port, Stage, StageError, f32_list_array,
    f32_list_field, write_safetensors, write_table,
};
use brainpipe_nifti::NiftiWriter;
use rayon::prelude::*;
use serde_json::{Value, json};

use crate::brain::{Grid, gordon_sizes, mni_mask, parcellate};
use crate::error::{IngestError, Result};
use crate::images::{CAPTIONS_PER_IMAGE, Scene, described_scene, write_png};
use crate::model::{self, Encoding, EncodingSpec, NoiseSpec, Scores, score_block, trial_volume};
use crate::nifti::mni_options;
use crate::noise::Smoother;
use crate::params::{EncodingKind, SyntheticParams, World};
use crate::rng::{shuffle, stream};
use crate::subject_shards::{Part, SUBJECT_FILE, move_files, pick, read_records, write_record};
use crate::timeseries::{self, TRIAL_DURATION_S, schedule};
use crate::vectors::{DEFAULT_VECTORS_NAME, default_vectors, load_vectors};

/// Pereira et al. 2018's three paradigms, in the order trials are presented here.
pub const PEREIRA_PARADIGMS: [&str; 3] = ["word_cloud", "sentence", "picture"];
/// Schema of `encoding.safetensors`.
const ENCODING_SCHEMA: &str = "synthetic-encoding/1";
/// Trials generated in parallel before they are written in order (bounds memory per subject).
const TRIAL_CHUNK: usize = 16;

/// `ingest.synthetic`: generates a study — brain, atlas, stimuli, per-trial beta volumes and the
/// oracle ceiling. See docs/SYNTHETIC.md.
#[derive(Clone, Copy, Debug, Default)]
pub struct Synthetic;

impl Stage for Synthetic {
    type Params = SyntheticParams;
    const NAME: &'static str = "ingest.synthetic";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str = "Generate an fMRI study (Pereira-like words or BOLD5000-like images) with a known oracle ceiling";

    fn inputs(&self) -> Vec<Port> {
        vec![Port::input(
            "vectors",
            ArtifactKind::File,
            "word → vector file for the 180 Pereira words (GloVe text, Pereira .mat, Parquet); default: shipped GloVe 6B 50-d",
        )
        .optional()]
    }

    fn outputs(&self) -> Vec<Port> {
        vec![
            Port::output(
                "bold",
                "bold",
                ArtifactKind::Directory,
                "per subject sub-NN_bold.nii.gz (4D, one beta volume per trial) + sub-NN_events.tsv",
            ),
            Port::output(
                "timeseries",
                "timeseries",
                ArtifactKind::Directory,
                "BOLD time series per subject and run + BIDS events (empty unless time_series)",
            ),
            Port::output(
                "atlas",
                "atlas.nii.gz",
                ArtifactKind::Nifti,
                "int16 ROI labels 1..rois, 0 outside the parcellation",
            ),
            Port::output("mask", "mask.nii.gz", ArtifactKind::Nifti, "uint8 brain mask"),
            Port::output(
                "stimuli",
                "stimuli.parquet",
                ArtifactKind::table(brainpipe_artifacts::STIMULI),
                "id, word or image, captions, best caption, stimulus vector",
            ),
            Port::output(
                "images",
                "images",
                ArtifactKind::Directory,
                "img-NNNN.png per image (empty for the words world)",
            ),
            Port::output(
                "study",
                "study.json",
                ArtifactKind::Json,
                "every generating parameter, the informative ROIs and the oracle ceiling",
            ),
            Port::output(
                "encoding",
                "encoding.safetensors",
                ArtifactKind::Safetensors,
                "the true shared encoding the oracle decodes with (informative voxels, weights, amplitudes, gains, offsets), so the ceiling can be recomputed from the study's files",
            ),
        ]
    }

    fn run(&self, ctx: &mut Context, params: &Self::Params) -> Result<(), StageError> {
        generate(ctx, params, Part::Whole)
    }

    /// One shard per subject: a subject's volumes depend on the seed, the subject and the
    /// shared world alone.
    const SHARDABLE: bool = true;

    fn shards(&self, _ctx: &Context, params: &Self::Params) -> Result<usize, StageError> {
        params.check()?;
        Ok(params.subjects as usize)
    }

    fn planned_shards(&self, params: &Self::Params) -> Option<usize> {
        params.check().ok().map(|()| params.subjects as usize)
    }

    fn run_shard(
        &self,
        ctx: &mut Context,
        params: &Self::Params,
        index: usize,
        count: usize,
    ) -> Result<(), StageError> {
        generate(ctx, params, Part::Subject { index, count })
    }

    fn merge_shards(
        &self,
        ctx: &mut Context,
        params: &Self::Params,
        shards: &[PathBuf],
    ) -> Result<(), StageError> {
        generate(ctx, params, Part::Merge(shards))
    }
}

/// The stimuli of a study: their vectors, names and (images world) captions.
struct Stimuli {
    names: Vec<String>,
    vectors: Vec<f32>,
    dim: usize,
    /// Images world: (captions, best caption index) per image.
    captions: Vec<(Vec<String>, usize)>,
    /// Images world: the scenes, to render.
    scenes: Vec<Scene>,
    split: Vec<&'static str>,
    source: String,
}

/// One presentation.
#[derive(Clone, Copy, Debug)]
struct Trial {
    stimulus: usize,
    condition: usize,
    repeat: usize,
}

/// Generates the study (`Part::Whole`), one subject of it into a shard directory, or the study
/// from its subjects' shards: the shared world is generated the same way each time.
fn generate(ctx: &mut Context, params: &SyntheticParams, part: Part<'_>) -> Result<(), StageError> {
    params.check()?;
    let subjects: Vec<u32> = (0..params.subjects).collect();
    // A merge checks every shard before it writes anything.
    let recorded = match part {
        Part::Merge(shards) => {
            let names: Vec<String> = subjects.iter().map(|&s| subject_name(s)).collect();
            let results = read_records(shards, &names)?;
            results.iter().zip(shards).map(|(r, shard)| scores_from_json(r, shard)).collect()
        }
        Part::Whole | Part::Subject { .. } => Ok(Vec::new()),
    }?;
    // The subjects this process generates.
    let mine: &[u32] = match part {
        Part::Whole => &subjects,
        Part::Subject { index, count } => {
            std::slice::from_ref(pick(&subjects, (index, count), Path::new("params.subjects"))?)
        }
        Part::Merge(_) => &[],
    };
    let grid = mni_mask(params.resolution_mm)?;
    let brain = grid.brain_voxels();
    let rois = params.rois as usize;
    if rois > brain.len() {
        return Err(IngestError::Params(format!(
            "rois {rois} exceeds the {} brain voxels at resolution_mm {}",
            brain.len(),
            params.resolution_mm
        ))
        .into());
    }
    let stimuli = match params.paradigm {
        World::Words => word_stimuli(ctx.optional_input("vectors"))?,
        World::Images => image_stimuli(params),
    };
    let conditions: Vec<&str> = match params.paradigm {
        World::Words => PEREIRA_PARADIGMS.to_vec(),
        World::Images => vec!["image"],
    };

    let targets = gordon_sizes(rois, params.resolution_mm, params.seed);
    let labels = parcellate(&grid, &targets, params.seed);
    let roi_of_voxel: Vec<i16> = brain.iter().map(|&g| labels[g]).collect();
    let informative_count =
        ((params.informative_fraction * rois as f64).round() as usize).clamp(1, rois);
    let informative = model::pick_informative(params.seed, rois, informative_count);
    let strengths = model::roi_strengths(params.seed, informative.len());
    let smoother = Smoother::new(grid.dims, params.resolution_mm, params.smoothness_mm);
    let encoding = Encoding::new(EncodingSpec {
        seed: params.seed,
        roi_of_voxel: &roi_of_voxel,
        informative_rois: &informative,
        roi_strength: &strengths,
        snr: params.snr,
        features: model::zscore_columns(&stimuli.vectors, stimuli.dim),
        dims: stimuli.dim,
        kind: params.encoding,
        conditions: conditions.len(),
        grid_smoother: smoother.as_ref(),
        grid_len: grid.len(),
        brain: &brain,
    });

    if part.writes_shared() {
        write_mask_and_atlas(ctx, &grid, &labels)?;
        write_stimuli(&ctx.output("stimuli"), &stimuli, params.paradigm)?;
        write_encoding(&ctx.output("encoding"), &encoding, &brain, &conditions)?;
        let images_dir = ctx.output("images");
        create_dir(&images_dir)?;
        if params.paradigm == World::Images {
            write_images(&images_dir, &stimuli.scenes, params.image_size as usize)?;
        }
    }
    let bold_dir = ctx.output("bold");
    let series_dir = ctx.output("timeseries");
    create_dir(&bold_dir)?;
    create_dir(&series_dir)?;

    let trials_per_subject = design(params, 0, conditions.len(), stimuli.names.len()).len();
    let bar = ctx.progress(mine.len() as u64 * trials_per_subject as u64, "synthetic");
    let noise = NoiseSpec {
        seed: params.seed,
        smooth_fraction: params.smooth_fraction,
        smoother: smoother.as_ref(),
        grid_len: grid.len(),
        brain: &brain,
    };
    let job = SubjectJob {
        params,
        grid: &grid,
        encoding: &encoding,
        noise: &noise,
        stimuli: &stimuli,
        conditions: &conditions,
        bar: &bar,
    };
    // Subjects in groups of one per thread: a thread waiting inside a subject's nested parallel
    // loop could otherwise steal and start yet another subject, and memory would grow with it.
    let mut per_subject: Vec<Scores> = Vec::with_capacity(mine.len());
    for group in mine.chunks(rayon::current_num_threads().max(1)) {
        let scores: Vec<Scores> =
            group.par_iter().map(|&s| job.run(s, &bold_dir, &series_dir)).collect::<Result<_>>()?;
        per_subject.extend(scores);
    }
    bar.finish_and_clear();
    match part {
        Part::Whole => {}
        Part::Subject { index, count } => {
            let name = subject_name(subjects[index]);
            write_record(ctx.out_dir(), (index, count), &name, scores_json(&per_subject[0]))?;
            return Ok(());
        }
        Part::Merge(shards) => {
            per_subject = recorded;
            for shard in shards {
                move_files(ctx, "bold", shard)?;
                move_files(ctx, "timeseries", shard)?;
            }
        }
    }

    let oracle = mean_scores(&per_subject);
    let study = study_json(
        params,
        &grid,
        &targets,
        &labels,
        &informative,
        &strengths,
        &encoding,
        &stimuli,
        &conditions,
        trials_per_subject,
        oracle,
        &per_subject,
    );
    let study_path = ctx.output("study");
    let text = serde_json::to_string_pretty(&study)
        .map_err(|e| brainpipe_core::Error::io(&study_path, e.into()))?;
    std::fs::write(&study_path, text + "\n").at(&study_path)?;
    tracing::info!(
        top1 = oracle.top1,
        top5 = oracle.top5,
        pairwise = oracle.pairwise,
        "oracle ceiling"
    );
    ctx.note("oracle_top1", oracle.top1);
    ctx.note("oracle_top5", oracle.top5);
    ctx.note("oracle_pairwise", oracle.pairwise);
    ctx.note("brain_voxels", brain.len());
    Ok(())
}

/// `sub-01` for subject 0.
fn subject_name(subject: u32) -> String {
    format!("sub-{:02}", subject + 1)
}

/// A subject's oracle scores as a shard records them: the bits of each `f64`, so the merge
/// averages exactly the numbers the whole run averages.
fn scores_json(scores: &Scores) -> Value {
    json!({
        "top1_bits": scores.top1.to_bits(),
        "top5_bits": scores.top5.to_bits(),
        "pairwise_bits": scores.pairwise.to_bits(),
    })
}

/// The scores [`scores_json`] wrote in the record of `shard`.
fn scores_from_json(value: &Value, shard: &Path) -> Result<Scores> {
    let field = |name: &str| {
        value.get(name).and_then(Value::as_u64).map(f64::from_bits).ok_or_else(|| {
            IngestError::Shard(format!(
                "{}: no `{name}` among the subject's scores",
                shard.join(SUBJECT_FILE).display()
            ))
        })
    };
    Ok(Scores {
        top1: field("top1_bits")?,
        top5: field("top5_bits")?,
        pairwise: field("pairwise_bits")?,
    })
}

/// Writes the true shared encoding (see docs/SYNTHETIC.md, "The oracle"): `grid_index` [K] (i64,
/// the flat index into a volume, x fastest, of each informative voxel), `weights` [K, dims] (W),
/// `amplitude` [K] (a), `gains` [conditions] (g, as the signal uses them, f32) and `offsets`
/// [conditions, K] (o at the informative voxels). With the stimulus vectors z-scored per
/// dimension (x̃), the oracle's predicted pattern is `g · a · (W · x̃)` and a trial's observed one
/// its volume at `grid_index` less `offsets`. Nonlinear world (config `encoding: nonlinear`):
/// `weights` is [K, units] and also `hidden_roi` [K] (i64, the voxel's informative-ROI index),
/// `hidden_weights` [rois, units, dims] (A), `hidden_bias`, `hidden_mean`, `hidden_sd` [rois,
/// units]; the predicted pattern is `g · a · (W · h)` with `h = (φ(A · x̃ + b) − mean) / sd` of the
/// voxel's ROI.
fn write_encoding(
    path: &Path,
    encoding: &Encoding,
    brain: &[usize],
    conditions: &[&str],
) -> std::result::Result<(), StageError> {
    let k = encoding.informative.len();
    let grid_index: Vec<u8> =
        encoding.informative.iter().flat_map(|&v| (brain[v] as i64).to_le_bytes()).collect();
    let gains: Vec<f32> = encoding.gains.iter().map(|&g| g as f32).collect();
    let offsets: Vec<f32> = encoding
        .offsets
        .iter()
        .flat_map(|o| encoding.informative.iter().map(move |&v| o[v]))
        .collect();
    let mut tensors = vec![
        NamedTensor {
            name: "grid_index".into(),
            dtype: Dtype::I64,
            shape: vec![k],
            data: grid_index,
        },
        NamedTensor::f32("weights", vec![k, encoding.dims], &encoding.weights),
        NamedTensor::f32("amplitude", vec![k], &encoding.amplitude),
        NamedTensor::f32("gains", vec![conditions.len()], &gains),
        NamedTensor::f32("offsets", vec![conditions.len(), k], &offsets),
    ];
    let mut config =
        json!({"conditions": conditions, "dims": encoding.dims, "informative_voxels": k});
    if let Some(hidden) = &encoding.hidden {
        let (rois, units) = (encoding.tables.len(), model::NONLINEAR_HIDDEN_UNITS);
        let vector_dims = hidden.weights.len() / (rois * units).max(1);
        let roi_of_voxel: Vec<u8> =
            encoding.table_of_voxel.iter().flat_map(|&t| (t as i64).to_le_bytes()).collect();
        tensors.extend([
            NamedTensor {
                name: "hidden_roi".into(),
                dtype: Dtype::I64,
                shape: vec![k],
                data: roi_of_voxel,
            },
            NamedTensor::f32("hidden_weights", vec![rois, units, vector_dims], &hidden.weights),
            NamedTensor::f32("hidden_bias", vec![rois, units], &hidden.bias),
            NamedTensor::f32("hidden_mean", vec![rois, units], &hidden.mean),
            NamedTensor::f32("hidden_sd", vec![rois, units], &hidden.sd),
        ]);
        config["encoding"] = json!("nonlinear");
        config["nonlinearity"] = json!(model::NONLINEARITY_NAME);
    }
    write_safetensors(path, &tensors, ENCODING_SCHEMA, &config)?;
    Ok(())
}

fn create_dir(path: &Path) -> Result<()> {
    Ok(std::fs::create_dir_all(path).at(path)?)
}

fn word_stimuli(user_file: Option<&Path>) -> Result<Stimuli> {
    let (vectors, source): (WordVectors, String) = match user_file {
        // The file name only: the same content under another directory gives the same study.
        Some(path) => (
            load_vectors(path)?,
            path.file_name()
                .map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned()),
        ),
        None => (default_vectors()?, DEFAULT_VECTORS_NAME.to_owned()),
    };
    let n = vectors.words.len();
    Ok(Stimuli {
        names: vectors.words,
        vectors: vectors.values,
        dim: vectors.dim,
        captions: Vec::new(),
        scenes: Vec::new(),
        split: vec!["all"; n],
        source,
    })
}

fn image_stimuli(params: &SyntheticParams) -> Stimuli {
    let total = (params.train_images + params.test_images) as usize;
    let described: Vec<_> = (0..total as u64)
        .into_par_iter()
        .map(|i| {
            // Rare attributes only among the training images: the test images stay uniform, so
            // accuracy on rare categories can be measured.
            let rare = if i < u64::from(params.train_images) { params.rare_weight } else { 1.0 };
            described_scene(params.seed, i, params.caption_error_rate, rare)
        })
        .collect();
    let dim = crate::images::ATTRIBUTE_DIMS;
    Stimuli {
        names: (0..total).map(image_name).collect(),
        vectors: described.iter().flat_map(|d| d.scene.attributes()).collect(),
        dim,
        captions: described.iter().map(|d| (d.captions.clone(), d.best_caption)).collect(),
        scenes: described.into_iter().map(|d| d.scene).collect(),
        split: (0..total)
            .map(|i| if i < params.train_images as usize { "train" } else { "test" })
            .collect(),
        source: "procedural scenes (latent attributes)".to_owned(),
    }
}

fn image_name(index: usize) -> String {
    format!("img-{index:05}.png")
}

/// The presentation order of `subject`: words — each paradigm a block of the 180 words in a
/// subject-specific order; images — train images once and test images `test_repeats` times,
/// shuffled together.
fn design(params: &SyntheticParams, subject: u64, conditions: usize, stimuli: usize) -> Vec<Trial> {
    match params.paradigm {
        World::Words => (0..conditions)
            .flat_map(|condition| {
                let mut order: Vec<usize> = (0..stimuli).collect();
                shuffle(
                    &mut stream(params.seed, "trial-order", subject, condition as u64),
                    &mut order,
                );
                order.into_iter().map(move |stimulus| Trial { stimulus, condition, repeat: 0 })
            })
            .collect(),
        World::Images => {
            let train = params.train_images as usize;
            let mut trials: Vec<Trial> =
                (0..train).map(|stimulus| Trial { stimulus, condition: 0, repeat: 0 }).collect();
            for repeat in 0..params.test_repeats as usize {
                trials.extend((train..stimuli).map(|stimulus| Trial {
                    stimulus,
                    condition: 0,
                    repeat,
                }));
            }
            shuffle(&mut stream(params.seed, "trial-order", subject, 0), &mut trials);
            trials
        }
    }
}

/// Everything one subject's generation reads.
struct SubjectJob<'a> {
    params: &'a SyntheticParams,
    grid: &'a Grid,
    encoding: &'a Encoding,
    noise: &'a NoiseSpec<'a>,
    stimuli: &'a Stimuli,
    conditions: &'a [&'a str],
    bar: &'a indicatif::ProgressBar,
}

impl SubjectJob<'_> {
    /// Writes the subject's beta series, events and (optionally) time series; returns its oracle
    /// scores.
    fn run(&self, subject: u32, bold_dir: &Path, series_dir: &Path) -> Result<Scores> {
        let p = self.params;
        let id = u64::from(subject);
        let name = subject_name(subject);
        let trials = design(p, id, self.conditions.len(), self.stimuli.names.len());
        let weights = self.encoding.subject_weights(p.seed, id, p.subject_variability);
        let mut dims: Vec<usize> = self.grid.dims.to_vec();
        dims.push(trials.len());
        let path = bold_dir.join(format!("{name}_bold.nii.gz"));
        let options = mni_options(&self.grid.affine, None, true);
        let mut writer = NiftiWriter::<f32>::create(&path, &dims, &options)?;
        let mut patterns: Vec<Vec<f32>> = Vec::with_capacity(trials.len());
        // Time series: the current run's trial numbers and beta patterns (brain voxels), written as
        // soon as the run (a paradigm block) ends so one run at a time is held.
        let mut run: (Vec<usize>, Vec<Vec<f32>>) = (Vec::new(), Vec::new());
        for (chunk_index, chunk) in trials.chunks(TRIAL_CHUNK).enumerate() {
            let first = chunk_index * TRIAL_CHUNK;
            let volumes: Vec<_> = chunk
                .par_iter()
                .enumerate()
                .map(|(i, t)| {
                    trial_volume(
                        self.encoding,
                        &weights,
                        self.noise,
                        id,
                        (first + i) as u64,
                        t.stimulus,
                        t.condition,
                    )
                })
                .collect();
            for (i, volume) in volumes.into_iter().enumerate() {
                writer.write_volume(&volume.volume)?;
                if p.time_series {
                    let trial = first + i;
                    if run
                        .0
                        .first()
                        .is_some_and(|&f| trials[f].condition != trials[trial].condition)
                    {
                        self.write_run_series(
                            &name,
                            id,
                            &trials,
                            std::mem::take(&mut run),
                            series_dir,
                        )?;
                    }
                    run.0.push(trial);
                    run.1.push(self.noise.brain.iter().map(|&g| volume.volume[g]).collect());
                }
                patterns.push(volume.pattern);
            }
            self.bar.inc(chunk.len() as u64);
        }
        writer.finish()?;
        write_events(&bold_dir.join(format!("{name}_events.tsv")), &trials, None, self)?;
        if !run.0.is_empty() {
            self.write_run_series(&name, id, &trials, run, series_dir)?;
        }
        Ok(self.oracle(&trials, &patterns))
    }

    /// Writes one run's time series and BIDS events: `picked` are the run's trial numbers (all of
    /// one condition: words, a paradigm block; images, every trial), `betas` their patterns.
    fn write_run_series(
        &self,
        name: &str,
        id: u64,
        trials: &[Trial],
        (picked, betas): (Vec<usize>, Vec<Vec<f32>>),
        dir: &Path,
    ) -> Result<()> {
        let p = self.params;
        let run = trials[picked[0]].condition;
        let condition = self.conditions[run];
        let run_trials: Vec<Trial> = picked.iter().map(|&i| trials[i]).collect();
        let timing = schedule(p.seed, id, run as u64, run_trials.len(), p.tr_s);
        let mut dims = self.grid.dims.to_vec();
        dims.push(timing.volumes);
        let path = dir.join(format!("{name}_task-{condition}_bold.nii.gz"));
        let options = mni_options(&self.grid.affine, Some(p.tr_s), true);
        let mut writer = NiftiWriter::<f32>::create(&path, &dims, &options)?;
        timeseries::write_run(
            &mut writer,
            &betas,
            &timing,
            self.noise.brain,
            self.grid.len(),
            p.tr_s,
            p.seed,
            (id, run as u64),
        )?;
        writer.finish()?;
        let events = dir.join(format!("{name}_task-{condition}_events.tsv"));
        write_events(&events, &run_trials, Some((&timing.onsets, &picked)), self)
    }

    /// Decodes each trial with the true shared encoding (see docs/SYNTHETIC.md, "The oracle").
    fn oracle(&self, trials: &[Trial], patterns: &[Vec<f32>]) -> Scores {
        let blocks: Vec<(usize, usize, Vec<usize>)> = match self.params.paradigm {
            // One block per paradigm: candidates are the 180 words in that paradigm.
            World::Words => (0..self.conditions.len())
                .map(|c| (c, 0, (0..self.stimuli.names.len()).collect()))
                .collect(),
            // One block per repetition: candidates are the test images.
            World::Images => {
                let train = self.params.train_images as usize;
                (0..self.params.test_repeats as usize)
                    .map(|r| (0, r, (train..self.stimuli.names.len()).collect()))
                    .collect()
            }
        };
        let (mut t1, mut t5, mut hits, mut pairs, mut n) = (0, 0, 0, 0, 0);
        for (condition, repeat, candidates) in blocks {
            let observed: Vec<Vec<f32>> = candidates
                .iter()
                .filter_map(|&s| {
                    let i = trials.iter().position(|t| {
                        t.stimulus == s && t.condition == condition && t.repeat == repeat
                    })?;
                    Some(patterns[i].clone())
                })
                .collect();
            let predicted: Vec<Vec<f32>> = candidates
                .par_iter()
                .map(|&s| self.encoding.signal(&self.encoding.weights, s, condition))
                .collect();
            let (a, b, c, d) = score_block(&observed, &predicted);
            (t1, t5, hits, pairs, n) = (t1 + a, t5 + b, hits + c, pairs + d, n + observed.len());
        }
        let n = n.max(1) as f64;
        Scores {
            top1: t1 as f64 / n,
            top5: t5 as f64 / n,
            pairwise: hits as f64 / pairs.max(1) as f64,
        }
    }
}

/// Writes a BIDS-style events file: `trial stimulus trial_type paradigm split repeat`, with
/// `onset duration` first when `timing` (onsets, trial numbers) is given.
fn write_events(
    path: &Path,
    trials: &[Trial],
    timing: Option<(&[f64], &[usize])>,
    job: &SubjectJob<'_>,
) -> Result<()> {
    let mut text = String::new();
    if timing.is_some() {
        text.push_str("onset\tduration\t");
    }
    text.push_str("trial\tstimulus\ttrial_type\tparadigm\tsplit\trepeat\n");
    for (i, t) in trials.iter().enumerate() {
        let trial = match timing {
            Some((onsets, numbers)) => {
                let _ = write!(text, "{:.1}\t{TRIAL_DURATION_S:.1}\t", onsets[i]);
                numbers[i]
            }
            None => i,
        };
        let _ = writeln!(
            text,
            "{trial}\t{}\t{}\t{}\t{}\t{}",
            t.stimulus,
            job.stimuli.names[t.stimulus],
            job.conditions[t.condition],
            job.stimuli.split[t.stimulus],
            t.repeat
        );
    }
    Ok(std::fs::write(path, text).at(path)?)
}

fn write_mask_and_atlas(ctx: &Context, grid: &Grid, labels: &[i16]) -> Result<()> {
    let options = mni_options(&grid.affine, None, false);
    let mask: Vec<u8> = grid.mask.iter().map(|&m| u8::from(m)).collect();
    brainpipe_nifti::write_volume(&ctx.output("mask"), grid.dims, &mask, &options)?;
    brainpipe_nifti::write_volume(&ctx.output("atlas"), grid.dims, labels, &options)?;
    Ok(())
}

fn write_stimuli(path: &Path, stimuli: &Stimuli, world: World) -> Result<()> {
    let n = stimuli.names.len();
    let ids =
        Int32Array::from((0..n).map(|i| i32::try_from(i).unwrap_or(i32::MAX)).collect::<Vec<_>>());
    let words = |on: bool| {
        StringArray::from(
            stimuli.names.iter().map(|w| on.then_some(w.as_str())).collect::<Vec<_>>(),
        )
    };
    let images = StringArray::from(
        stimuli
            .names
            .iter()
            .map(|name| (world == World::Images).then(|| format!("images/{name}")))
            .collect::<Vec<_>>(),
    );
    let mut captions = ListBuilder::new(StringBuilder::new());
    let mut best = Vec::with_capacity(n);
    for i in 0..n {
        match stimuli.captions.get(i) {
            Some((texts, index)) => {
                for t in texts {
                    captions.values().append_value(t);
                }
                captions.append(true);
                best.push(i32::try_from(*index).ok());
            }
            None => {
                captions.append(false);
                best.push(None);
            }
        }
    }
    let schema = stimuli_schema(f32_list_field("vector", stimuli.dim, false));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(ids),
        Arc::new(words(world == World::Words)),
        Arc::new(images),
        Arc::new(StringArray::from(stimuli.split.clone())),
        Arc::new(captions.finish()),
        Arc::new(Int32Array::from(best)),
        f32_list_array(stimuli.vectors.clone(), stimuli.dim),
    ];
    let batch = RecordBatch::try_new(Arc::new(schema), columns)
        .map_err(|source| brainpipe_core::Error::Arrow { path: path.to_path_buf(), source })?;
    Ok(write_table(path, STIMULI, &[batch])?)
}

fn write_images(dir: &Path, scenes: &[Scene], size: usize) -> Result<()> {
    scenes
        .par_iter()
        .enumerate()
        .try_for_each(|(i, scene)| write_png(&dir.join(image_name(i)), &scene.render(size), size))
}

fn mean_scores(all: &[Scores]) -> Scores {
    let n = all.len().max(1) as f64;
    Scores {
        top1: all.iter().map(|s| s.top1).sum::<f64>() / n,
        top5: all.iter().map(|s| s.top5).sum::<f64>() / n,
        pairwise: all.iter().map(|s| s.pairwise).sum::<f64>() / n,
    }
}

#[expect(clippy::too_many_arguments, reason = "assembles one document from the generator's parts")]
fn study_json(
    params: &SyntheticParams,
    grid: &Grid,
    targets: &[usize],
    labels: &[i16],
    informative: &[i16],
    strengths: &[f64],
    encoding: &Encoding,
    stimuli: &Stimuli,
    conditions: &[&str],
    trials_per_subject: usize,
    oracle: Scores,
    per_subject: &[Scores],
) -> Value {
    let mut sizes = vec![0usize; targets.len()];
    for &l in labels.iter().filter(|&&l| l > 0) {
        sizes[(l - 1) as usize] += 1;
    }
    let candidates = match params.paradigm {
        World::Words => stimuli.names.len(),
        World::Images => params.test_images as usize,
    };
    let informative_rois: Vec<Value> = informative
        .iter()
        .zip(strengths)
        .map(|(&roi, &s)| json!({"roi": roi, "strength": s, "amplitude": params.snr.sqrt() * s, "voxels": sizes[(roi - 1) as usize]}))
        .collect();
    let mut constants = json!({
        "roi_strength_log_sd": model::ROI_STRENGTH_LOG_SD,
        "paradigm_gain_log_sd": model::PARADIGM_GAIN_LOG_SD,
        "paradigm_offset_sd": model::PARADIGM_OFFSET_SD,
        "noise_sd": 1.0,
        "trial_duration_s": TRIAL_DURATION_S,
        "iti_range_s": [timeseries::ITI_RANGE_S.0, timeseries::ITI_RANGE_S.1],
        "baseline": timeseries::BASELINE,
        "drift_sd": timeseries::DRIFT_SD,
        "temporal_noise_sd": timeseries::TEMPORAL_NOISE_SD,
        "captions_per_image": CAPTIONS_PER_IMAGE,
    });
    if params.encoding == EncodingKind::Nonlinear {
        constants["nonlinear_hidden_units"] = json!(model::NONLINEAR_HIDDEN_UNITS);
        constants["nonlinear_input_gain"] = json!(model::NONLINEAR_INPUT_GAIN);
        constants["nonlinearity"] = json!(model::NONLINEARITY_NAME);
    }
    json!({
        "format": "brainpipe.synthetic-study/1",
        "stage": Synthetic::NAME,
        "stage_version": Synthetic::VERSION,
        "params": params,
        "constants": constants,
        "stimuli": {"count": stimuli.names.len(), "vector_dim": stimuli.dim, "source": stimuli.source},
        "paradigms": conditions.iter().zip(&encoding.gains).map(|(c, g)| json!({"name": c, "gain": g})).collect::<Vec<_>>(),
        "grid": {
            "dims": grid.dims,
            "affine": grid.affine,
            "brain_voxels": grid.mask.iter().filter(|&&m| m).count(),
            "parcellated_voxels": sizes.iter().sum::<usize>(),
            "informative_voxels": encoding.informative.len(),
        },
        "rois": {"count": targets.len(), "sizes": sizes, "target_sizes": targets},
        "informative_rois": informative_rois,
        "subjects": (1..=params.subjects).map(|s| format!("sub-{s:02}")).collect::<Vec<_>>(),
        "trials_per_subject": trials_per_subject,
        "oracle": {
            "definition": "per held-out subject, each trial's offset-free pattern over informative voxels is correlated (Pearson) with the true shared-encoding pattern of every candidate in the same paradigm; top-k = true candidate among the k best; pairwise = Brain2Word pairwise per block; averaged over subjects",
            "candidates": candidates,
            "chance": {"top1": 1.0 / candidates as f64, "top5": (5.0 / candidates as f64).min(1.0), "pairwise": 0.5},
            "top1": oracle.top1,
            "top5": oracle.top5,
            "pairwise": oracle.pairwise,
            "per_subject": per_subject,
        },
    })
}

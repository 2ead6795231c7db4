//! `features.roi`: scans → per-subject feature rows grouped by ROI, normalised, optionally
//! stability-selected.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use brainpipe_core::{ArtifactKind, Context, IoContext, Port, Stage, StageError};
use brainpipe_nifti::{invert_affine, nearest_voxel, read_f32, voxel_to_world};
use rayon::prelude::*;
use serde::Serialize;

use crate::error::{FeaturesError, Result};
use crate::normalise::{Normalise, Standardiser};
use crate::select::{stability, top_columns};
use brainpipe_artifacts::{
    FEATURE_VOXELS, FeaturesWriter, ROWS_PER_GROUP, RoiBlock, SCANS, Trials, VOXELS, VoxelTable,
    gather_columns, keep_columns, read_trials, read_voxels, roi_label, subjects, write_rois,
    write_voxels,
};

/// Voxels Pereira et al. (2018) kept per subject by stability selection.
pub const PEREIRA_SELECTED_VOXELS: u32 = 5000;

/// Where each voxel's ROI label comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoiSource {
    /// The `atlas` input when given, else the scans' voxel tables (`roi` column).
    #[default]
    Auto,
    /// The `atlas` input (required).
    Atlas,
    /// The `roi` column of each `SUBJECT.voxels.parquet` (Pereira's Gordon columns).
    Voxels,
}

/// What happens to voxels outside every ROI (label 0 or no label).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outside {
    /// Left out.
    #[default]
    Drop,
    /// Kept as ROI 0, the first block.
    Keep,
}

/// Whether to select voxels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// Keep every usable voxel.
    #[default]
    None,
    /// Pereira et al. (2018)'s stability selection on training trials, top `select_top`.
    Stability,
}

brainpipe_core::params! {
    /// Params of `features.roi`.
    pub struct RoiParams {
        /// Source of ROI labels: `auto` (the `atlas` input if given, else the voxel tables' `roi`
        /// column), `atlas`, or `voxels`.
        pub roi_source: RoiSource = RoiSource::Auto,
        /// Voxels outside every ROI: `drop`, or `keep` as ROI 0 (the first block).
        pub outside: Outside = Outside::Drop,
        /// Per-voxel z-scoring over `none`, the `subject`'s trials, or each (session, `run`).
        pub normalise: Normalise = Normalise::Run,
        /// Voxel selection: `none`, or `stability` (Pereira et al. 2018; see docs/FEATURES.md).
        pub select: Selection = Selection::None,
        /// Voxels kept per subject by `select` (Pereira et al. 2018 kept 5,000).
        pub select_top: u32 = PEREIRA_SELECTED_VOXELS,
        /// Stimuli whose trials are test data: ignored when selecting voxels.
        pub holdout_stimuli: Vec<String> = Vec::new(),
        /// Runs (the scans' `run` labels) whose trials are test data: ignored when selecting.
        pub holdout_runs: Vec<String> = Vec::new(),
    }
}

/// `features.roi`: voxels grouped by ROI, z-scored, unusable voxels dropped, optionally selected.
pub struct RoiFeatures;

impl Stage for RoiFeatures {
    type Params = RoiParams;
    const NAME: &'static str = "features.roi";
    const VERSION: u32 = 2;
    const SUMMARY: &'static str = "scans → features grouped by ROI (atlas or Gordon columns), z-scored, NaN/constant voxels dropped, optional stability selection";

    fn inputs(&self) -> Vec<Port> {
        vec![
            Port::input("scans", ArtifactKind::Directory, "scans directory (docs/ARTIFACTS.md, Scans)"),
            Port::input(
                "atlas",
                ArtifactKind::Nifti,
                "ROI label volume (integer labels, 0 = none); resampled nearest-neighbour through the affines",
            )
            .optional(),
        ]
    }

    fn outputs(&self) -> Vec<Port> {
        vec![Port::output(
            "features",
            "features",
            ArtifactKind::Directory,
            "per subject SUBJECT.parquet (features/1), SUBJECT.voxels.parquet (feature-voxels/1), SUBJECT.rois.parquet (rois/1)",
        )]
    }

    fn run(&self, ctx: &mut Context, params: &RoiParams) -> Result<(), StageError> {
        let scans = ctx.input("scans")?.to_path_buf();
        let atlas = match (params.roi_source, ctx.optional_input("atlas")) {
            (RoiSource::Voxels, _) | (RoiSource::Auto, None) => None,
            (_, Some(path)) => Some(Atlas::read(path)?),
            (RoiSource::Atlas, None) => {
                return Err(StageError::msg("roi_source `atlas` needs the `atlas` input"));
            }
        };
        let names = subjects(&scans)?;
        let out = ctx.output("features");
        std::fs::create_dir_all(&out).at(&out)?;
        let bar = ctx.progress(names.len() as u64, "features.roi");
        let job = SubjectJob { scans: &scans, out: &out, atlas: atlas.as_ref(), params };
        let reports: Vec<SubjectReport> = names
            .par_iter()
            .map(|name| {
                let report = job.run(name);
                bar.inc(1);
                report
            })
            .collect::<Result<_>>()?;
        bar.finish_and_clear();
        let total = |f: fn(&SubjectReport) -> usize| reports.iter().map(f).sum::<usize>();
        ctx.note("dropped_outside_voxels", total(|r| r.outside));
        ctx.note("dropped_nan_voxels", total(|r| r.non_finite));
        ctx.note("dropped_constant_voxels", total(|r| r.constant));
        ctx.note("dropped_unselected_voxels", total(|r| r.unselected));
        let per_subject: BTreeMap<&str, &SubjectReport> =
            names.iter().map(String::as_str).zip(&reports).collect();
        ctx.note("subjects", per_subject);
        Ok(())
    }
}

/// What happened to one subject's voxels (recorded in the manifest).
#[derive(Clone, Debug, Default, Serialize)]
struct SubjectReport {
    /// Voxels in the scans.
    voxels: usize,
    /// Dropped: outside every ROI.
    outside: usize,
    /// Dropped: NaN or infinite in some trial.
    non_finite: usize,
    /// Dropped: zero variance in some normalisation group.
    constant: usize,
    /// Dropped by voxel selection.
    unselected: usize,
    /// Columns of the features table.
    kept: usize,
    /// Trials.
    trials: usize,
}

struct SubjectJob<'a> {
    scans: &'a Path,
    out: &'a Path,
    atlas: Option<&'a Atlas>,
    params: &'a RoiParams,
}

impl SubjectJob<'_> {
    fn run(&self, subject: &str) -> Result<SubjectReport> {
        let voxels_path = self.scans.join(format!("{subject}.voxels.parquet"));
        let voxels = read_voxels(&voxels_path, VOXELS)?;
        let labels = self.labels(subject, &voxels, &voxels_path)?;
        let mut report = SubjectReport { voxels: voxels.len(), ..SubjectReport::default() };

        // columns grouped by ROI in atlas (ascending label) order, column order within an ROI
        let mut order: Vec<usize> = (0..voxels.len())
            .filter(|&c| labels[c] != 0 || self.params.outside == Outside::Keep)
            .collect();
        order.sort_by_key(|&c| (labels[c], c));
        report.outside = voxels.len() - order.len();
        if order.iter().all(|&c| labels[c] == 0) {
            let source = self.atlas.map_or(voxels_path.clone(), |a| a.path.clone());
            return Err(FeaturesError::data(
                source,
                format!("no voxel of {subject}'s mask ({} voxels) lies in an ROI", voxels.len()),
            ));
        }

        let trials_path = self.scans.join(format!("{subject}.parquet"));
        let trials = read_trials(&trials_path, SCANS, voxels.len(), &order)?;
        if trials.is_empty() {
            return Err(FeaturesError::data(&trials_path, "no trials"));
        }
        report.trials = trials.len();
        let (session, run) = (trials.text("session")?, trials.text("run")?);
        let (stimulus, paradigm) = (trials.text("stimulus")?, trials.text("paradigm")?);
        let Trials { meta, mut values, .. } = trials;

        let groups = normalisation_groups(self.params.normalise, &session, &run);
        let standardiser = Standardiser::fit(&values, order.len(), &groups);
        let (usable, dropped) = standardiser.usable(&values);
        report.non_finite = dropped.non_finite;
        report.constant = dropped.constant;
        if self.params.normalise != Normalise::None {
            standardiser.apply(&mut values);
        }
        let mut keep: Vec<usize> = (0..order.len()).filter(|&c| usable[c]).collect();
        if keep.is_empty() {
            return Err(FeaturesError::data(
                &trials_path,
                format!(
                    "no usable voxel: all {} ROI voxels have NaN/inf values ({}) or zero variance ({})",
                    order.len(),
                    dropped.non_finite,
                    dropped.constant
                ),
            ));
        }

        if self.params.select == Selection::Stability {
            let usable_values = gather_columns(&values, order.len(), &keep);
            let train: Vec<bool> = (0..stimulus.len())
                .map(|t| {
                    !self.params.holdout_stimuli.contains(&stimulus[t])
                        && !self.params.holdout_runs.contains(&run[t])
                })
                .collect();
            let scores = stability(&usable_values, keep.len(), &stimulus, &paradigm, &train)
                .map_err(|m| FeaturesError::data(&trials_path, m))?;
            let top = usize::try_from(self.params.select_top).unwrap_or(usize::MAX);
            let chosen = top_columns(&scores, top);
            report.unselected = keep.len() - chosen.len();
            keep = chosen.into_iter().map(|i| keep[i]).collect();
        }

        keep_columns(&mut values, order.len(), &keep);
        let columns: Vec<usize> = keep.iter().map(|&i| order[i]).collect();
        report.kept = columns.len();
        let mut kept_voxels = voxels.select(&columns);
        kept_voxels.roi = columns.iter().map(|&c| Some(labels[c])).collect();

        let table_path = self.out.join(format!("{subject}.parquet"));
        let mut writer = FeaturesWriter::create(&table_path, &meta.schema(), columns.len())?;
        let width = columns.len();
        for start in (0..meta.num_rows()).step_by(ROWS_PER_GROUP) {
            let rows = ROWS_PER_GROUP.min(meta.num_rows() - start);
            let chunk = values[start * width..(start + rows) * width].to_vec();
            writer.write(&meta.slice(start, rows), chunk)?;
        }
        writer.finish()?;
        write_voxels(
            &self.out.join(format!("{subject}.voxels.parquet")),
            FEATURE_VOXELS,
            &kept_voxels,
        )?;
        write_rois(&self.out.join(format!("{subject}.rois.parquet")), &blocks(&kept_voxels))?;
        Ok(report)
    }

    /// The ROI label of every column (0: none).
    fn labels(&self, subject: &str, voxels: &VoxelTable, path: &Path) -> Result<Vec<i32>> {
        match self.atlas {
            Some(atlas) => Ok(atlas.labels(voxels)),
            None => {
                if voxels.roi.iter().all(Option::is_none) && !voxels.is_empty() {
                    return Err(FeaturesError::data(
                        path,
                        format!("{subject}'s voxels carry no ROI labels: give an `atlas` input"),
                    ));
                }
                Ok(voxels.roi.iter().map(|r| r.unwrap_or(0)).collect())
            }
        }
    }
}

/// Group id of every trial for z-scoring.
fn normalisation_groups(normalise: Normalise, session: &[String], run: &[String]) -> Vec<usize> {
    match normalise {
        Normalise::None | Normalise::Subject => vec![0; run.len()],
        Normalise::Run => {
            let mut ids: BTreeMap<(&str, &str), usize> = BTreeMap::new();
            session
                .iter()
                .zip(run)
                .map(|(s, r)| {
                    let next = ids.len();
                    *ids.entry((s.as_str(), r.as_str())).or_insert(next)
                })
                .collect()
        }
    }
}

/// The ROI blocks of columns already grouped by ROI.
fn blocks(voxels: &VoxelTable) -> Vec<RoiBlock> {
    let mut blocks: Vec<RoiBlock> = Vec::new();
    for (column, roi) in voxels.roi.iter().enumerate() {
        let roi = roi.unwrap_or(0);
        match blocks.last_mut() {
            Some(b) if b.roi == roi => b.count += 1,
            _ => blocks.push(RoiBlock { roi, label: roi_label(roi), first: column, count: 1 }),
        }
    }
    blocks
}

/// An atlas label volume.
pub struct Atlas {
    path: PathBuf,
    dims: [usize; 3],
    inverse: [[f64; 4]; 4],
    labels: Vec<i32>,
}

impl Atlas {
    /// Reads a 3-D label volume (its first volume if 4-D); labels are rounded to integers.
    pub fn read(path: &Path) -> Result<Atlas> {
        let (header, values) = read_f32(path)?;
        let dims = header.shape3();
        let affine = header.affine();
        let inverse = invert_affine(&affine)
            .ok_or_else(|| FeaturesError::format(path, "affine is not invertible"))?;
        let n = dims.iter().product::<usize>();
        let labels = values
            .iter()
            .take(n)
            .map(|v| if v.is_finite() { v.round() as i32 } else { 0 })
            .collect();
        Ok(Atlas { path: path.to_path_buf(), dims, inverse, labels })
    }

    /// The label under every voxel of `voxels`, nearest-neighbour through the affines as
    /// nilearn's `resample_to_img(..., interpolation="nearest")` and nibabel's
    /// `resample_from_to(..., order=0)` pick it — both are `scipy.ndimage.affine_transform` with
    /// `order=0, mode="constant", cval=0`: the atlas coordinate c = A_atlas⁻¹ · A_scans · ijk is
    /// outside (label 0) unless 0 ≤ c ≤ n − 1 on every axis, else the label at ⌊c + ½⌋
    /// (c within 1e-6 of an integer is taken as that integer).
    pub fn labels(&self, voxels: &VoxelTable) -> Vec<i32> {
        let [nx, ny, _] = self.dims;
        voxels
            .ijk
            .iter()
            .map(|&[i, j, k]| {
                let world =
                    voxel_to_world(&voxels.affine, [f64::from(i), f64::from(j), f64::from(k)]);
                match nearest_voxel(&self.inverse, self.dims, world) {
                    Some([a, b, c]) => self.labels[a + nx * (b + ny * c)],
                    None => 0,
                }
            })
            .collect()
    }
}

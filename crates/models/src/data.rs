//! The training data of a Brain2Word model: the scans of a `features` table joined to their
//! targets (`targets/1` of `clip.words`) by stimulus, and the ROI blocks of the template.

use std::collections::HashMap;
use std::path::Path;

use brainpipe_artifacts::{FEATURES, Predictions, Targets, column, read_rois, read_targets};
use brainpipe_core::{ArtifactKind, Port, open_table};

use crate::error::{ModelsError, Result};

/// Scans with a target: inputs, identifiers, and the target row of each.
#[derive(Clone, Debug, Default)]
pub struct Dataset {
    /// `scans × width` inputs.
    pub x: Vec<f32>,
    /// Input width.
    pub width: usize,
    /// Subject of each scan.
    pub subject: Vec<String>,
    /// Trial index of each scan.
    pub trial: Vec<i32>,
    /// Stimulus key of each scan.
    pub stimulus: Vec<String>,
    /// Paradigm of each scan.
    pub paradigm: Vec<String>,
    /// Row in [`Dataset::targets`] of each scan's target.
    pub target_row: Vec<usize>,
    /// The targets (every candidate word).
    pub targets: Targets,
    /// Scans dropped because their stimulus has no target.
    pub skipped: usize,
}

impl Dataset {
    /// Number of scans.
    pub fn len(&self) -> usize {
        self.subject.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.subject.is_empty()
    }

    /// Class index of each scan.
    pub fn classes(&self) -> Vec<i64> {
        self.target_row.iter().map(|&r| i64::from(self.targets.class[r])).collect()
    }

    /// The distinct subjects, sorted.
    pub fn subjects(&self) -> Vec<String> {
        let mut s: Vec<String> = self.subject.clone();
        s.sort();
        s.dedup();
        s
    }

    /// Reads `features` and joins every scan to `targets` by `join_column` (a Utf8 column of the
    /// features table matched against the targets' `stimulus`).
    pub fn read(features: &Path, targets: &Path, join_column: &str) -> Result<Dataset> {
        let targets = read_targets(targets)?;
        let mut row_of: HashMap<&str, usize> =
            targets.stimulus.iter().enumerate().map(|(i, s)| (s.as_str(), i)).collect();
        // Image targets are named by their path (`images/img-00000.png`), scans by the file name
        // their events give (`img-00000.png`): a target also answers to its file name, unless
        // another target already has that name.
        for (i, s) in targets.stimulus.iter().enumerate() {
            if let Some((_, file)) = s.rsplit_once('/') {
                row_of.entry(file).or_insert(i);
            }
        }
        let (_, reader) = open_table(features, Some(FEATURES), 256)?;
        let mut d = Dataset::default();
        for batch in reader {
            let batch = batch.map_err(column::arrow_error(features))?;
            let text = |name: &str| column::string_values(features, &batch, name);
            let trial = column::ints(features, &batch, "trial")?;
            let (values, width) = column::f32_rows(features, &batch, "voxels")?;
            d.width = width;
            let (subject, stimulus, paradigm, key) =
                (text("subject")?, text("stimulus")?, text("paradigm")?, text(join_column)?);
            for i in 0..batch.num_rows() {
                let Some(&row) = row_of.get(key[i].as_str()) else {
                    d.skipped += 1;
                    continue;
                };
                d.x.extend_from_slice(&values[i * width..(i + 1) * width]);
                d.subject.push(subject[i].clone());
                d.trial.push(trial.value(i));
                d.stimulus.push(stimulus[i].clone());
                d.paradigm.push(paradigm[i].clone());
                d.target_row.push(row);
            }
        }
        if d.is_empty() {
            return Err(ModelsError::data(
                features,
                format!(
                    "no scan's `{join_column}` matches a target's `stimulus` ({} scans)",
                    d.skipped
                ),
            ));
        }
        if d.x.iter().any(|v| !v.is_finite()) {
            return Err(ModelsError::data(features, "inputs hold NaN or infinite values"));
        }
        d.targets = targets;
        Ok(d)
    }

    /// The target vectors of `rows`, row-major.
    pub fn target_vectors(&self, rows: &[usize]) -> Vec<f32> {
        rows.iter().flat_map(|&i| self.targets.vector(self.target_row[i]).iter().copied()).collect()
    }

    /// A predictions table for `rows` of this dataset: identifiers and true classes from the
    /// scans, `embedding` (`rows × embedding_dim`) and `scores` (`rows × classes`, or empty).
    pub fn predictions(
        &self,
        rows: &[usize],
        model: &str,
        fold: usize,
        (embedding, embedding_dim): (Vec<f32>, usize),
        (scores, classes): (Vec<f32>, usize),
    ) -> Predictions {
        Predictions {
            model: vec![model.to_owned(); rows.len()],
            subject: rows.iter().map(|&i| self.subject[i].clone()).collect(),
            trial: rows.iter().map(|&i| self.trial[i]).collect(),
            stimulus: rows.iter().map(|&i| self.stimulus[i].clone()).collect(),
            paradigm: rows.iter().map(|&i| self.paradigm[i].clone()).collect(),
            fold: vec![fold as i32; rows.len()],
            class: rows.iter().map(|&i| self.targets.class[self.target_row[i]]).collect(),
            embedding,
            embedding_dim,
            scores,
            classes,
        }
    }

    /// The inputs of `rows`, row-major.
    pub fn inputs(&self, rows: &[usize]) -> Vec<f32> {
        rows.iter()
            .flat_map(|&i| self.x[i * self.width..(i + 1) * self.width].iter().copied())
            .collect()
    }

    /// The inputs of `rows` restricted to `columns` (`None`: every column), row-major.
    pub fn inputs_of(&self, rows: &[usize], columns: Option<&[usize]>) -> Vec<f32> {
        let Some(columns) = columns else { return self.inputs(rows) };
        let mut out = Vec::with_capacity(rows.len() * columns.len());
        for &i in rows {
            let row = &self.x[i * self.width..(i + 1) * self.width];
            out.extend(columns.iter().map(|&c| row[c]));
        }
        out
    }
}

/// The inputs of a training stage (`models.train`, `models.ridge`): features, targets and the
/// optional ROI blocks (`rois_use` says what they serve).
pub(crate) fn training_inputs(rois_use: &'static str) -> Vec<Port> {
    vec![
        Port::input(
            "features",
            ArtifactKind::table(brainpipe_artifacts::FEATURES),
            "features.parquet of features.template_pad: all subjects, one width",
        ),
        Port::input(
            "targets",
            ArtifactKind::table(brainpipe_artifacts::TARGETS),
            "targets.parquet of clip.words: target vector and class per stimulus",
        ),
        Port::input("rois", ArtifactKind::table(brainpipe_artifacts::ROIS), rois_use).optional(),
    ]
}

/// Reads the ROI blocks of a `rois/1` table as `(first, count)` column ranges.
pub fn read_roi_blocks(path: &Path, width: usize) -> Result<Vec<(usize, usize)>> {
    let mut blocks = Vec::new();
    for (i, block) in read_rois(path)?.into_iter().enumerate() {
        let (f, c) = (block.first, block.count);
        if c == 0 {
            continue;
        }
        if f + c > width {
            return Err(ModelsError::data(
                path,
                format!("row {i}: block {f}..{} exceeds the {width} input columns", f + c),
            ));
        }
        blocks.push((f, c));
    }
    if blocks.is_empty() {
        return Err(ModelsError::data(path, "no ROI blocks"));
    }
    Ok(blocks)
}

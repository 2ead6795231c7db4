//! The tables of models and evaluation: `predictions/1` (written by `models.*`), `training/1`
//! (per-epoch training records) and `metrics/1` (`eval.words`).

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Float64Array, Int32Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use brainpipe_core::{Error, Result, TableKind, f32_list_array, f32_list_field, read_table};

use crate::column::{
    f32_rows, int_values as ints, opt_floats, opt_ints, string_values as strings, utf8,
};
use crate::{METRICS, PREDICTIONS, TRAINING};

fn write_columns(
    path: &Path,
    kind: TableKind,
    fields: Vec<Field>,
    columns: Vec<ArrayRef>,
) -> Result<()> {
    crate::column::write_batch(path, kind, Schema::new(fields), columns)
}

/// One model's predictions, one entry per test scan (columnar).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Predictions {
    /// Model name (`base`, `roi`, `ridge`…).
    pub model: Vec<String>,
    /// Subject of the scan.
    pub subject: Vec<String>,
    /// Trial index of the scan in its subject's table.
    pub trial: Vec<i32>,
    /// Stimulus key (the word).
    pub stimulus: Vec<String>,
    /// Paradigm of the scan.
    pub paradigm: Vec<String>,
    /// Cross-validation fold whose model predicted the scan.
    pub fold: Vec<i32>,
    /// True class (from the targets), or -1 when the stimulus has no target.
    pub class: Vec<i32>,
    /// Predicted embeddings, `rows × embedding_dim`.
    pub embedding: Vec<f32>,
    /// Width of an embedding.
    pub embedding_dim: usize,
    /// Class scores (logits), `rows × classes`; empty for models without a classification head.
    pub scores: Vec<f32>,
    /// Number of classes (0 without scores).
    pub classes: usize,
}

impl Predictions {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.subject.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.subject.is_empty()
    }

    /// Appends `other`'s rows (same widths).
    pub fn extend(&mut self, other: Predictions) {
        self.embedding_dim = other.embedding_dim;
        self.classes = other.classes;
        self.model.extend(other.model);
        self.subject.extend(other.subject);
        self.trial.extend(other.trial);
        self.stimulus.extend(other.stimulus);
        self.paradigm.extend(other.paradigm);
        self.fold.extend(other.fold);
        self.class.extend(other.class);
        self.embedding.extend(other.embedding);
        self.scores.extend(other.scores);
    }
}

/// The Arrow schema of `predictions/1` for embeddings of width `dim` and `classes` class scores
/// (no `scores` column when 0).
pub fn predictions_schema(dim: usize, classes: usize) -> Schema {
    let mut fields = vec![
        Field::new("model", DataType::Utf8, false),
        Field::new("subject", DataType::Utf8, false),
        Field::new("trial", DataType::Int32, false),
        Field::new("stimulus", DataType::Utf8, false),
        Field::new("paradigm", DataType::Utf8, false),
        Field::new("fold", DataType::Int32, false),
        Field::new("class", DataType::Int32, false),
        f32_list_field("embedding", dim, false),
    ];
    if classes > 0 {
        fields.push(f32_list_field("scores", classes, false));
    }
    Schema::new(fields)
}

/// Writes a `predictions/1` table.
pub fn write_predictions(path: &Path, p: &Predictions) -> Result<()> {
    if p.is_empty() || p.embedding_dim == 0 {
        return Err(Error::schema(path, "no predictions to write"));
    }
    let fields = predictions_schema(p.embedding_dim, p.classes)
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    let mut columns: Vec<ArrayRef> = vec![
        utf8(&p.model),
        utf8(&p.subject),
        Arc::new(Int32Array::from(p.trial.clone())),
        utf8(&p.stimulus),
        utf8(&p.paradigm),
        Arc::new(Int32Array::from(p.fold.clone())),
        Arc::new(Int32Array::from(p.class.clone())),
        f32_list_array(p.embedding.clone(), p.embedding_dim),
    ];
    if p.classes > 0 {
        columns.push(f32_list_array(p.scores.clone(), p.classes));
    }
    write_columns(path, PREDICTIONS, fields, columns)
}

/// Reads a `predictions/1` table (the `scores` column is optional).
pub fn read_predictions(path: &Path) -> Result<Predictions> {
    let (_, batches) = read_table(path, Some(PREDICTIONS))?;
    let mut out = Predictions::default();
    for b in &batches {
        let (emb, dim) = f32_rows(path, b, "embedding")?;
        let (scores, classes) = match b.column_by_name("scores") {
            Some(a) => {
                let (v, c) = brainpipe_core::f32_list_values(path, "scores", a.as_ref())?;
                (v.to_vec(), c)
            }
            None => (Vec::new(), 0),
        };
        out.extend(Predictions {
            model: strings(path, b, "model")?,
            subject: strings(path, b, "subject")?,
            trial: ints(path, b, "trial")?,
            stimulus: strings(path, b, "stimulus")?,
            paradigm: strings(path, b, "paradigm")?,
            fold: ints(path, b, "fold")?,
            class: ints(path, b, "class")?,
            embedding: emb.to_vec(),
            embedding_dim: dim,
            scores,
            classes,
        });
    }
    if out.is_empty() {
        return Err(Error::schema(path, "the predictions table is empty"));
    }
    Ok(out)
}

/// One epoch of one fold's training.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EpochRecord {
    /// Model name.
    pub model: String,
    /// Fold.
    pub fold: i32,
    /// The fold's test subject(s), comma-separated.
    pub held_out: String,
    /// 0-based epoch.
    pub epoch: i32,
    /// Learning rate during the epoch.
    pub lr: f64,
    /// Mean total training loss.
    pub train_loss: f64,
    /// Mean regression loss (None when not used).
    pub train_regression: Option<f64>,
    /// Mean classification loss.
    pub train_classification: Option<f64>,
    /// Mean reconstruction loss.
    pub train_reconstruction: Option<f64>,
    /// Mean mean-regularisation loss.
    pub train_mean_reg: Option<f64>,
    /// Total loss on the validation scans.
    pub val_loss: Option<f64>,
    /// Top-1 on the validation scans (cosine to the targets).
    pub val_top1: Option<f64>,
    /// Top-5 on the validation scans.
    pub val_top5: Option<f64>,
    /// Training phase of the epoch (`pretrain`, `regression`, `joint`) under a Brain2CLIP
    /// schedule; `None` for the default single joint phase (the column is then not written, so
    /// the table's bytes are those of a run without schedules).
    pub phase: Option<String>,
}

// No wall-clock column: the table must be the same bytes for the same inputs (timings go into
// the stage's manifest notes).
const TRAINING_FLOATS: [&str; 8] = [
    "train_loss",
    "train_regression",
    "train_classification",
    "train_reconstruction",
    "train_mean_reg",
    "val_loss",
    "val_top1",
    "val_top5",
];

impl EpochRecord {
    fn floats(&self) -> [Option<f64>; 8] {
        [
            Some(self.train_loss),
            self.train_regression,
            self.train_classification,
            self.train_reconstruction,
            self.train_mean_reg,
            self.val_loss,
            self.val_top1,
            self.val_top5,
        ]
    }
}

/// The Arrow schema of `training/1`.
pub fn training_schema() -> Schema {
    let mut fields = vec![
        Field::new("model", DataType::Utf8, false),
        Field::new("fold", DataType::Int32, false),
        Field::new("held_out", DataType::Utf8, false),
        Field::new("epoch", DataType::Int32, false),
        Field::new("lr", DataType::Float64, false),
    ];
    for name in TRAINING_FLOATS {
        fields.push(Field::new(name, DataType::Float64, name != "train_loss"));
    }
    Schema::new(fields)
}

/// Writes a `training/1` table.
pub fn write_training(path: &Path, records: &[EpochRecord]) -> Result<()> {
    let mut fields: Vec<Field> =
        training_schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut columns: Vec<ArrayRef> = vec![
        utf8(records.iter().map(|r| &r.model)),
        Arc::new(Int32Array::from_iter_values(records.iter().map(|r| r.fold))),
        utf8(records.iter().map(|r| &r.held_out)),
        Arc::new(Int32Array::from_iter_values(records.iter().map(|r| r.epoch))),
        Arc::new(Float64Array::from_iter_values(records.iter().map(|r| r.lr))),
    ];
    for k in 0..TRAINING_FLOATS.len() {
        columns.push(Arc::new(Float64Array::from(
            records.iter().map(|r| r.floats()[k]).collect::<Vec<_>>(),
        )));
    }
    if records.iter().any(|r| r.phase.is_some()) {
        fields.push(Field::new("phase", DataType::Utf8, true));
        columns.push(Arc::new(StringArray::from(
            records.iter().map(|r| r.phase.as_deref()).collect::<Vec<_>>(),
        )));
    }
    write_columns(path, TRAINING, fields, columns)
}

/// Reads a `training/1` table.
pub fn read_training(path: &Path) -> Result<Vec<EpochRecord>> {
    let (_, batches) = read_table(path, Some(TRAINING))?;
    let mut out = Vec::new();
    for b in &batches {
        let model = strings(path, b, "model")?;
        let fold = ints(path, b, "fold")?;
        let held_out = strings(path, b, "held_out")?;
        let epoch = ints(path, b, "epoch")?;
        let lr = opt_floats(path, b, "lr")?;
        let floats: Vec<Vec<Option<f64>>> =
            TRAINING_FLOATS.iter().map(|n| opt_floats(path, b, n)).collect::<Result<_>>()?;
        let phase: Vec<Option<String>> = match b.column_by_name("phase") {
            None => vec![None; b.num_rows()],
            Some(_) => {
                let a = crate::column::strings(path, b, "phase")?;
                (0..a.len()).map(|i| a.is_valid(i).then(|| a.value(i).to_owned())).collect()
            }
        };
        for i in 0..b.num_rows() {
            out.push(EpochRecord {
                model: model[i].clone(),
                fold: fold[i],
                held_out: held_out[i].clone(),
                epoch: epoch[i],
                lr: lr[i].unwrap_or(f64::NAN),
                train_loss: floats[0][i].unwrap_or(f64::NAN),
                train_regression: floats[1][i],
                train_classification: floats[2][i],
                train_reconstruction: floats[3][i],
                train_mean_reg: floats[4][i],
                val_loss: floats[5][i],
                val_top1: floats[6][i],
                val_top5: floats[7][i],
                phase: phase[i].clone(),
            });
        }
    }
    Ok(out)
}

/// One row of `metrics/1`.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricRow {
    /// Model name.
    pub model: String,
    /// Held-out subject (`all` for an average over subjects).
    pub subject: String,
    /// Fold (-1 for an average over folds).
    pub fold: i32,
    /// Paradigm (`all` for every paradigm together).
    pub paradigm: String,
    /// Metric: `top1`, `top5`, `top10`, `pairwise`, `mean_rank`, `scans`, `rank_count`
    /// (with `index` = rank), `chance_top1`…, or `curve.<training column>` (with `index` = epoch).
    pub metric: String,
    /// Rank for `rank_count`, epoch for `curve.*`; null otherwise.
    pub index: Option<i32>,
    /// The value (fractions, not percent).
    pub value: f64,
}

/// The Arrow schema of `metrics/1`.
pub fn metrics_schema() -> Schema {
    Schema::new(vec![
        Field::new("model", DataType::Utf8, false),
        Field::new("subject", DataType::Utf8, false),
        Field::new("fold", DataType::Int32, false),
        Field::new("paradigm", DataType::Utf8, false),
        Field::new("metric", DataType::Utf8, false),
        Field::new("index", DataType::Int32, true),
        Field::new("value", DataType::Float64, false),
    ])
}

/// Writes a `metrics/1` table.
pub fn write_metrics(path: &Path, rows: &[MetricRow]) -> Result<()> {
    if rows.is_empty() {
        return Err(Error::schema(path, "no metrics to write"));
    }
    let fields = metrics_schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    let columns: Vec<ArrayRef> = vec![
        utf8(rows.iter().map(|r| &r.model)),
        utf8(rows.iter().map(|r| &r.subject)),
        Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.fold))),
        utf8(rows.iter().map(|r| &r.paradigm)),
        utf8(rows.iter().map(|r| &r.metric)),
        Arc::new(Int32Array::from(rows.iter().map(|r| r.index).collect::<Vec<_>>())),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.value))),
    ];
    write_columns(path, METRICS, fields, columns)
}

/// Reads a `metrics/1` table.
pub fn read_metrics(path: &Path) -> Result<Vec<MetricRow>> {
    let (_, batches) = read_table(path, Some(METRICS))?;
    let mut out = Vec::new();
    for b in &batches {
        let model = strings(path, b, "model")?;
        let subject = strings(path, b, "subject")?;
        let fold = ints(path, b, "fold")?;
        let paradigm = strings(path, b, "paradigm")?;
        let metric = strings(path, b, "metric")?;
        let index = opt_ints(path, b, "index")?;
        let value = opt_floats(path, b, "value")?;
        for i in 0..b.num_rows() {
            out.push(MetricRow {
                model: model[i].clone(),
                subject: subject[i].clone(),
                fold: fold[i],
                paradigm: paradigm[i].clone(),
                metric: metric[i].clone(),
                index: index[i],
                value: value[i].unwrap_or(f64::NAN),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predictions_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.parquet");
        let p = Predictions {
            model: vec!["base".into(); 2],
            subject: vec!["sub-01".into(); 2],
            trial: vec![0, 1],
            stimulus: vec!["a".into(), "b".into()],
            paradigm: vec!["picture".into(); 2],
            fold: vec![0, 0],
            class: vec![0, 1],
            embedding: vec![1.0, 2.0, 3.0, 4.0],
            embedding_dim: 2,
            scores: vec![0.5, -0.5, 0.1, 0.2],
            classes: 2,
        };
        write_predictions(&path, &p).expect("write");
        assert_eq!(read_predictions(&path).expect("read"), p);
    }

    #[test]
    fn metrics_and_training_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("m.parquet");
        let rows = vec![MetricRow {
            model: "ridge".into(),
            subject: "sub-02".into(),
            fold: 1,
            paradigm: "all".into(),
            metric: "rank_count".into(),
            index: Some(3),
            value: 7.0,
        }];
        write_metrics(&path, &rows).expect("write");
        assert_eq!(read_metrics(&path).expect("read"), rows);
        let path = dir.path().join("t.parquet");
        let records = vec![EpochRecord {
            model: "base".into(),
            fold: 0,
            held_out: "sub-01".into(),
            epoch: 2,
            lr: 1e-3,
            train_loss: -0.5,
            train_regression: Some(-0.4),
            val_loss: Some(-0.3),
            ..EpochRecord::default()
        }];
        write_training(&path, &records).expect("write");
        assert_eq!(read_training(&path).expect("read"), records);
        let phased: Vec<EpochRecord> = ["pretrain", "regression"]
            .iter()
            .enumerate()
            .map(|(e, phase)| EpochRecord {
                epoch: e as i32,
                phase: Some((*phase).to_owned()),
                ..records[0].clone()
            })
            .collect();
        write_training(&path, &phased).expect("write");
        assert_eq!(read_training(&path).expect("read"), phased);
    }
}

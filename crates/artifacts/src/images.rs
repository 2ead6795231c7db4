//! The image tables of Brain2CLIP: `reconstructions/1` (`diffusion.decode`), `image-metrics/1`
//! (`eval.images`) and `clip-trials/1` (`eval.clip`).

use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int32Array, Int64Array, ListBuilder,
    StringArray, StringBuilder,
};
use arrow::datatypes::{DataType, Field, Schema};
use brainpipe_core::{Error, Result, read_table};

use crate::column::{floats64, int_values, string_values, typed, utf8, write_batch};
use crate::{CLIP_TRIALS, IMAGE_METRICS, RECONSTRUCTIONS};

/// Refuses nulls in a column that must have none.
fn no_nulls(path: &Path, array: &dyn Array, name: &str) -> Result<()> {
    if array.null_count() > 0 {
        return Err(Error::schema(path, format!("null in column `{name}`")));
    }
    Ok(())
}

/// One row of `reconstructions/1`: an image the decoder drew.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reconstruction {
    /// Model name (`ridge`, `base`…, or `truth` / `shuffled` for embeddings decoded directly).
    pub model: String,
    /// Subject of the scan.
    pub subject: String,
    /// Trial of the scan.
    pub trial: i32,
    /// The stimulus the subject saw (its image path in the stimuli table).
    pub stimulus: String,
    /// Fold whose model predicted the embedding (-1 when a table written elsewhere has none).
    pub fold: i32,
    /// PNG path relative to the decoder's `images/` output directory.
    pub image: String,
    /// Seed of the row's initial noise (-1 when a table written elsewhere has none).
    pub seed: i64,
}

/// The Arrow schema of `reconstructions/1`.
pub fn reconstructions_schema() -> Schema {
    Schema::new(vec![
        Field::new("model", DataType::Utf8, false),
        Field::new("subject", DataType::Utf8, false),
        Field::new("trial", DataType::Int32, false),
        Field::new("stimulus", DataType::Utf8, false),
        Field::new("fold", DataType::Int32, false),
        Field::new("image", DataType::Utf8, false),
        Field::new("seed", DataType::Int64, false),
    ])
}

/// Writes a `reconstructions/1` table.
pub fn write_reconstructions(path: &Path, rows: &[Reconstruction]) -> Result<()> {
    let columns: Vec<ArrayRef> = vec![
        utf8(rows.iter().map(|r| &r.model)),
        utf8(rows.iter().map(|r| &r.subject)),
        Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.trial))),
        utf8(rows.iter().map(|r| &r.stimulus)),
        Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.fold))),
        utf8(rows.iter().map(|r| &r.image)),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.seed))),
    ];
    write_batch(path, RECONSTRUCTIONS, reconstructions_schema(), columns)
}

/// Reads a `reconstructions/1` table; refuses an empty one. `fold` and `seed` are optional (a
/// reconstruction stage of one's own may omit them: -1).
pub fn read_reconstructions(path: &Path) -> Result<Vec<Reconstruction>> {
    let (_, batches) = read_table(path, Some(RECONSTRUCTIONS))?;
    let mut out = Vec::new();
    for b in &batches {
        for name in ["model", "subject", "trial", "stimulus", "image"] {
            no_nulls(path, crate::column::column(path, b, name)?.as_ref(), name)?;
        }
        let model = string_values(path, b, "model")?;
        let subject = string_values(path, b, "subject")?;
        let trial = int_values(path, b, "trial")?;
        let stimulus = string_values(path, b, "stimulus")?;
        let image = string_values(path, b, "image")?;
        let fold = match b.column_by_name("fold") {
            Some(_) => int_values(path, b, "fold")?,
            None => vec![-1; b.num_rows()],
        };
        let seed: Vec<i64> = match b.column_by_name("seed") {
            Some(_) => typed::<Int64Array>(path, b, "seed", "Int64")?.values().to_vec(),
            None => vec![-1; b.num_rows()],
        };
        for i in 0..b.num_rows() {
            out.push(Reconstruction {
                model: model[i].clone(),
                subject: subject[i].clone(),
                trial: trial[i],
                stimulus: stimulus[i].clone(),
                fold: fold[i],
                image: image[i].clone(),
                seed: seed[i],
            });
        }
    }
    if out.is_empty() {
        return Err(Error::schema(path, "the reconstructions table is empty"));
    }
    Ok(out)
}

/// One row of `image-metrics/1`.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageMetricRow {
    /// Model name (`truth`: the decoder fed the true embeddings, the ceiling).
    pub model: String,
    /// Held-out subject; `all` in summaries pooled over subjects.
    pub subject: String,
    /// Trial of the reconstruction; -1 in summaries.
    pub trial: i32,
    /// The stimulus shown (empty in summaries).
    pub stimulus: String,
    /// Per pair: `pixcorr`, `ssim_gaussian`, `ssim_uniform7`, `2way_pixels`, `2way_<features>`.
    /// Summaries: `<metric>.mean`, `<metric>.sd` (sample s.d. over pairs), `<metric>.n`, and
    /// `<metric>.subject_sd` (s.d. over held-out subjects' means, subject `all`).
    pub metric: String,
    /// The value.
    pub value: f64,
}

/// The Arrow schema of `image-metrics/1`.
pub fn image_metrics_schema() -> Schema {
    Schema::new(vec![
        Field::new("model", DataType::Utf8, false),
        Field::new("subject", DataType::Utf8, false),
        Field::new("trial", DataType::Int32, false),
        Field::new("stimulus", DataType::Utf8, false),
        Field::new("metric", DataType::Utf8, false),
        Field::new("value", DataType::Float64, false),
    ])
}

/// Writes an `image-metrics/1` table; refuses an empty one.
pub fn write_image_metrics(path: &Path, rows: &[ImageMetricRow]) -> Result<()> {
    if rows.is_empty() {
        return Err(Error::schema(path, "no image metrics to write"));
    }
    let columns: Vec<ArrayRef> = vec![
        utf8(rows.iter().map(|r| &r.model)),
        utf8(rows.iter().map(|r| &r.subject)),
        Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.trial))),
        utf8(rows.iter().map(|r| &r.stimulus)),
        utf8(rows.iter().map(|r| &r.metric)),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.value))),
    ];
    write_batch(path, IMAGE_METRICS, image_metrics_schema(), columns)
}

/// Reads an `image-metrics/1` table (a null value reads as NaN).
pub fn read_image_metrics(path: &Path) -> Result<Vec<ImageMetricRow>> {
    let (_, batches) = read_table(path, Some(IMAGE_METRICS))?;
    let mut out = Vec::new();
    for b in &batches {
        for name in ["model", "subject", "trial", "stimulus", "metric"] {
            no_nulls(path, crate::column::column(path, b, name)?.as_ref(), name)?;
        }
        let model = string_values(path, b, "model")?;
        let subject = string_values(path, b, "subject")?;
        let trial = int_values(path, b, "trial")?;
        let stimulus = string_values(path, b, "stimulus")?;
        let metric = string_values(path, b, "metric")?;
        let value = floats64(path, b, "value")?;
        for i in 0..b.num_rows() {
            out.push(ImageMetricRow {
                model: model[i].clone(),
                subject: subject[i].clone(),
                trial: trial[i],
                stimulus: stimulus[i].clone(),
                metric: metric[i].clone(),
                value: if value.is_valid(i) { value.value(i) } else { f64::NAN },
            });
        }
    }
    Ok(out)
}

/// One scored trial of `eval.clip` (`clip-trials/1`).
#[derive(Clone, Debug, PartialEq)]
pub struct ClipTrial {
    /// Model.
    pub model: String,
    /// Held-out subject.
    pub subject: String,
    /// `single` (one presentation) or `averaged` (the mean prediction over its presentations).
    pub mode: String,
    /// Trial index (`single`), or -1 (`averaged`).
    pub trial: i32,
    /// The seen stimulus.
    pub stimulus: String,
    /// Fold of the predicting model.
    pub fold: i32,
    /// Rank of the seen image among the test images (1 = closest).
    pub rank_test: i32,
    /// Rank of the seen image among all images.
    pub rank_all: i32,
    /// The closest test images, closest first.
    pub retrieved: Vec<String>,
    /// The closest caption among the test images' captions.
    pub caption: String,
    /// Whether it is a caption of the seen image.
    pub caption_hit: bool,
}

/// The Arrow schema of `clip-trials/1`.
pub fn clip_trials_schema() -> Schema {
    let item = Arc::new(Field::new("item", DataType::Utf8, true));
    Schema::new(vec![
        Field::new("model", DataType::Utf8, false),
        Field::new("subject", DataType::Utf8, false),
        Field::new("mode", DataType::Utf8, false),
        Field::new("trial", DataType::Int32, false),
        Field::new("stimulus", DataType::Utf8, false),
        Field::new("fold", DataType::Int32, false),
        Field::new("rank_test", DataType::Int32, false),
        Field::new("rank_all", DataType::Int32, false),
        Field::new("retrieved", DataType::List(item), false),
        Field::new("caption", DataType::Utf8, false),
        Field::new("caption_hit", DataType::Boolean, false),
    ])
}

/// Writes a `clip-trials/1` table.
pub fn write_clip_trials(path: &Path, rows: &[ClipTrial]) -> Result<()> {
    let int = |f: &dyn Fn(&ClipTrial) -> i32| -> ArrayRef {
        Arc::new(Int32Array::from_iter_values(rows.iter().map(f)))
    };
    let mut retrieved = ListBuilder::new(StringBuilder::new());
    for r in rows {
        for s in &r.retrieved {
            retrieved.values().append_value(s);
        }
        retrieved.append(true);
    }
    let columns: Vec<ArrayRef> = vec![
        utf8(rows.iter().map(|r| &r.model)),
        utf8(rows.iter().map(|r| &r.subject)),
        utf8(rows.iter().map(|r| &r.mode)),
        int(&|r| r.trial),
        utf8(rows.iter().map(|r| &r.stimulus)),
        int(&|r| r.fold),
        int(&|r| r.rank_test),
        int(&|r| r.rank_all),
        Arc::new(retrieved.finish()),
        utf8(rows.iter().map(|r| &r.caption)),
        Arc::new(BooleanArray::from(rows.iter().map(|r| r.caption_hit).collect::<Vec<_>>())),
    ];
    write_batch(path, CLIP_TRIALS, clip_trials_schema(), columns)
}

/// Reads a `clip-trials/1` table.
pub fn read_clip_trials(path: &Path) -> Result<Vec<ClipTrial>> {
    let (_, batches) = read_table(path, Some(CLIP_TRIALS))?;
    let mut out = Vec::new();
    let not_list = || Error::schema(path, "column `retrieved` is not List<Utf8>");
    for b in &batches {
        let (model, subject, mode) = (
            string_values(path, b, "model")?,
            string_values(path, b, "subject")?,
            string_values(path, b, "mode")?,
        );
        let (stimulus, caption) =
            (string_values(path, b, "stimulus")?, string_values(path, b, "caption")?);
        let (trial, fold, rank_test, rank_all) = (
            int_values(path, b, "trial")?,
            int_values(path, b, "fold")?,
            int_values(path, b, "rank_test")?,
            int_values(path, b, "rank_all")?,
        );
        let retrieved = crate::column::column(path, b, "retrieved")?
            .as_list_opt::<i32>()
            .ok_or_else(not_list)?;
        let hit = typed::<BooleanArray>(path, b, "caption_hit", "Boolean")?;
        for i in 0..b.num_rows() {
            let list = retrieved.value(i);
            let list = list.as_any().downcast_ref::<StringArray>().ok_or_else(not_list)?;
            out.push(ClipTrial {
                model: model[i].clone(),
                subject: subject[i].clone(),
                mode: mode[i].clone(),
                trial: trial[i],
                stimulus: stimulus[i].clone(),
                fold: fold[i],
                rank_test: rank_test[i],
                rank_all: rank_all[i],
                retrieved: (0..list.len()).map(|j| list.value(j).to_owned()).collect(),
                caption: caption[i].clone(),
                caption_hit: hit.value(i),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_tables_round_trip_and_empty_ones_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let metrics = vec![ImageMetricRow {
            model: "ridge".into(),
            subject: "sub-01".into(),
            trial: 3,
            stimulus: "images/img-00003.png".into(),
            metric: "ssim_gaussian".into(),
            value: 0.25,
        }];
        let path = dir.path().join("m.parquet");
        write_image_metrics(&path, &metrics).expect("write");
        assert_eq!(read_image_metrics(&path).expect("read"), metrics);
        assert!(write_image_metrics(&dir.path().join("e.parquet"), &[]).is_err());

        let recon = vec![Reconstruction {
            model: "truth".into(),
            subject: "sub-02".into(),
            trial: 7,
            stimulus: "images/img-00007.png".into(),
            fold: 1,
            image: "truth/sub-02/00007.png".into(),
            seed: 42,
        }];
        let path = dir.path().join("r.parquet");
        write_reconstructions(&path, &recon).expect("write");
        assert_eq!(read_reconstructions(&path).expect("read"), recon);
        let empty = dir.path().join("r0.parquet");
        write_reconstructions(&empty, &[]).expect("write");
        let err = read_reconstructions(&empty).expect_err("empty");
        assert!(err.to_string().contains("empty"), "{err}");

        let trials = vec![ClipTrial {
            model: "ridge".into(),
            subject: "sub-01".into(),
            mode: "single".into(),
            trial: 0,
            stimulus: "images/img-00001.png".into(),
            fold: 0,
            rank_test: 2,
            rank_all: 5,
            retrieved: vec!["images/img-00004.png".into(), "images/img-00001.png".into()],
            caption: "a red square".into(),
            caption_hit: true,
        }];
        let path = dir.path().join("t.parquet");
        write_clip_trials(&path, &trials).expect("write");
        assert_eq!(read_clip_trials(&path).expect("read"), trials);
    }
}

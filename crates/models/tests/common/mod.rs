//! A tiny synthetic study written as the tables the stages read: `features.parquet`
//! (features/1), `targets.parquet` (targets/1) and `rois.parquet` (rois/1).

#![allow(dead_code, missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use brainpipe_core::{TableKind, f32_list_array, f32_list_field, write_table};

pub struct Study {
    pub features: PathBuf,
    pub targets: PathBuf,
    pub rois: PathBuf,
}

struct Rng(u64);
impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 11) as f64) / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f32 {
        let (u, v) = (self.uniform().max(1e-12), self.uniform());
        ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
    }
}

/// `subjects` × 2 paradigms × `words` scans; inputs = a shared linear map of the word vector
/// (only in the first three ROI blocks) + noise; 6 ROI blocks of 10 columns.
pub fn write_study(dir: &Path, subjects: usize, words: usize, dim: usize, noise: f32) -> Study {
    let width = 60;
    let mut rng = Rng(11);
    let vectors: Vec<f32> = (0..words * dim).map(|_| rng.normal()).collect();
    let map: Vec<f32> =
        (0..width * dim).map(|i| if i / dim < 30 { rng.normal() } else { 0.0 }).collect();
    let (mut subject, mut trial, mut stimulus, mut paradigm, mut voxels) =
        (vec![], vec![], vec![], vec![], vec![]);
    for s in 0..subjects {
        let mut t = 0;
        for para in ["picture", "sentence"] {
            for k in 0..words {
                let w = (k * 7 + s * 3) % words;
                subject.push(format!("sub-{:02}", s + 1));
                trial.push(t);
                t += 1;
                stimulus.push(format!("word{w}"));
                paradigm.push(para.to_owned());
                for v in 0..width {
                    let signal: f32 =
                        (0..dim).map(|d| map[v * dim + d] * vectors[w * dim + d]).sum();
                    voxels.push(signal / (dim as f32).sqrt() + noise * rng.normal());
                }
            }
        }
    }
    let features = dir.join("features.parquet");
    let schema = Arc::new(Schema::new(vec![
        Field::new("subject", DataType::Utf8, false),
        Field::new("trial", DataType::Int32, false),
        Field::new("stimulus", DataType::Utf8, false),
        Field::new("paradigm", DataType::Utf8, false),
        f32_list_field("voxels", width, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(subject)),
        Arc::new(Int32Array::from(trial)),
        Arc::new(StringArray::from(stimulus)),
        Arc::new(StringArray::from(paradigm)),
        f32_list_array(voxels, width),
    ];
    let batch = RecordBatch::try_new(schema, columns).expect("batch");
    write_table(&features, TableKind::new("features", 1), &[batch]).expect("features");

    let targets = dir.join("targets.parquet");
    let schema = Arc::new(Schema::new(vec![
        Field::new("stimulus", DataType::Utf8, false),
        Field::new("class", DataType::Int32, false),
        f32_list_field("target", dim, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values((0..words).map(|w| format!("word{w}")))),
        Arc::new(Int32Array::from_iter_values(0..words as i32)),
        f32_list_array(vectors, dim),
    ];
    let batch = RecordBatch::try_new(schema, columns).expect("batch");
    write_table(&targets, TableKind::new("targets", 1), &[batch]).expect("targets");

    let rois = dir.join("rois.parquet");
    let schema = Arc::new(Schema::new(vec![
        Field::new("roi", DataType::Int32, false),
        Field::new("label", DataType::Utf8, false),
        Field::new("first", DataType::Int32, false),
        Field::new("count", DataType::Int32, false),
    ]));
    let sizes = [10, 7, 13, 10, 12, 8];
    let mut first = vec![0];
    for s in &sizes[..5] {
        first.push(first.last().copied().unwrap_or(0) + s);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int32Array::from_iter_values(1..=6)),
        Arc::new(StringArray::from_iter_values((1..=6).map(|r| format!("roi-{r:03}")))),
        Arc::new(Int32Array::from(first)),
        Arc::new(Int32Array::from(sizes.to_vec())),
    ];
    let batch = RecordBatch::try_new(schema, columns).expect("batch");
    write_table(&rois, TableKind::new("rois", 1), &[batch]).expect("rois");
    Study { features, targets, rois }
}

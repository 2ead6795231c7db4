//! `template/1`: the per-ROI slice template of `features.template_pad`, one row per (roi, slice)
//! in layout order.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array};
use arrow::datatypes::{DataType, Field, Schema};
use brainpipe_core::{Error, Result, read_table};

use crate::TEMPLATE;
use crate::column::{ints, write_one_batch};

/// One row of a `template/1` table: `count` template positions of ROI `roi` in slice `z`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TemplateRow {
    /// ROI label.
    pub roi: i32,
    /// z-slice.
    pub z: i32,
    /// Template positions of the ROI in that slice.
    pub count: usize,
}

/// The Arrow schema of `template/1`.
pub fn template_schema() -> Schema {
    Schema::new(vec![
        Field::new("roi", DataType::Int32, false),
        Field::new("z", DataType::Int32, false),
        Field::new("count", DataType::Int32, false),
    ])
}

/// Writes a `template/1` table.
pub fn write_template(path: &Path, rows: &[TemplateRow]) -> Result<()> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.roi))),
        Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.z))),
        Arc::new(Int32Array::from_iter_values(
            rows.iter().map(|r| i32::try_from(r.count).unwrap_or(i32::MAX)),
        )),
    ];
    write_one_batch(path, TEMPLATE, Arc::new(template_schema()), columns)
}

/// Reads a `template/1` table; refuses negative counts.
pub fn read_template(path: &Path) -> Result<Vec<TemplateRow>> {
    let (_, batches) = read_table(path, Some(TEMPLATE))?;
    let mut out = Vec::new();
    for batch in &batches {
        let (roi, z, count) =
            (ints(path, batch, "roi")?, ints(path, batch, "z")?, ints(path, batch, "count")?);
        for row in 0..batch.num_rows() {
            let count = usize::try_from(count.value(row))
                .map_err(|_| Error::schema(path, format!("row {row}: negative count")))?;
            out.push(TemplateRow { roi: roi.value(row), z: z.value(row), count });
        }
    }
    Ok(out)
}

//! The voxel tables: a subject's trials (`scans/1`, `features/1`), where each column sits
//! (`voxels/1`, `feature-voxels/1`) and the ROI blocks of a features table (`rois/1`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Float32Array, Int32Array, RecordBatch, StringArray};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use brainpipe_core::{
    Error, IoContext, Result, TableKind, TableWriter, f32_list_array, f32_list_field, open_table,
};
use rayon::prelude::*;

use crate::column::{arrow_error, ints, strings, write_one_batch};

use crate::{FEATURE_VOXELS, FEATURES, ROIS};

/// Most trials per row group of a features table, and the batch size its readers ask for.
pub const ROWS_PER_GROUP: usize = 64;

/// The subject names of a `scans` or `features` directory: stems of `NAME.parquet` files that are
/// not side tables, sorted.
pub fn subjects(dir: &Path) -> Result<Vec<String>> {
    let entries = std::fs::read_dir(dir).at(dir)?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.at(dir)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".parquet") else { continue };
        if stem.contains('.') {
            continue; // SUBJECT.voxels.parquet, SUBJECT.rois.parquet
        }
        names.push(stem.to_owned());
    }
    names.sort();
    if names.is_empty() {
        return Err(Error::schema(dir, "no SUBJECT.parquet tables in this directory"));
    }
    Ok(names)
}

/// The columns of a subject's `scans/1` table of `width` voxels per trial, its importer's name
/// under the `brainpipe.source` metadata key.
pub fn scans_schema(width: usize, source: &str) -> Schema {
    Schema::new(vec![
        Field::new("subject", DataType::Utf8, false),
        Field::new("session", DataType::Utf8, false),
        Field::new("run", DataType::Utf8, false),
        Field::new("trial", DataType::Int32, false),
        Field::new("stimulus", DataType::Utf8, false),
        Field::new("paradigm", DataType::Utf8, false),
        Field::new("onset", DataType::Float64, true),
        f32_list_field("voxels", width, false),
    ])
    .with_metadata(std::collections::HashMap::from([(
        "brainpipe.source".to_owned(),
        source.to_owned(),
    )]))
}

/// A subject's trials: identifying columns as read, the chosen voxel columns row-major.
pub struct Trials {
    /// The table it came from.
    pub path: PathBuf,
    /// Every column but `voxels`, all trials.
    pub meta: RecordBatch,
    /// `trials × columns` values: the columns asked for, in that order.
    pub values: Vec<f32>,
}

impl Trials {
    /// Number of trials.
    pub fn len(&self) -> usize {
        self.meta.num_rows()
    }

    /// Whether there are no trials.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values of a Utf8 column of `meta`.
    pub fn text(&self, column: &str) -> Result<Vec<String>> {
        crate::column::string_values(&self.path, &self.meta, column)
    }
}

/// Reads a whole `scans` (or `features`) table of `width` voxels per trial, keeping only
/// `columns` (in that order) of each row as it streams, so one copy of the kept values is held.
pub fn read_trials(
    path: &Path,
    kind: TableKind,
    width: usize,
    columns: &[usize],
) -> Result<Trials> {
    let (schema, reader) = open_table(path, Some(kind), ROWS_PER_GROUP)?;
    let voxels_at =
        schema.index_of("voxels").map_err(|_| Error::schema(path, "no `voxels` column"))?;
    let file_width = voxel_width(&schema).unwrap_or(0);
    if file_width != width {
        return Err(Error::schema(
            path,
            format!("{file_width} voxels per trial, its voxel table has {width}"),
        ));
    }
    let meta_columns: Vec<usize> = (0..schema.fields().len()).filter(|&i| i != voxels_at).collect();
    let arrow_error = arrow_error(path);
    let meta_schema = Arc::new(schema.project(&meta_columns).map_err(&arrow_error)?);
    let mut metas = Vec::new();
    let mut values = Vec::new();
    for batch in reader {
        let batch = batch.map_err(&arrow_error)?;
        let (rows, _) =
            brainpipe_core::f32_list_values(path, "voxels", batch.column(voxels_at).as_ref())?;
        values.extend(gather_columns(rows, width, columns));
        metas.push(batch.project(&meta_columns).map_err(&arrow_error)?);
    }
    let meta = concat_batches(&meta_schema, &metas).map_err(&arrow_error)?;
    Ok(Trials { path: path.to_path_buf(), meta, values })
}

/// Copies `columns` of a row-major `rows × width` matrix into a new one.
pub fn gather_columns(values: &[f32], width: usize, columns: &[usize]) -> Vec<f32> {
    let rows = values.len() / width.max(1);
    let mut out = vec![0.0f32; rows * columns.len()];
    if columns.is_empty() {
        return out;
    }
    out.par_chunks_mut(columns.len()).zip(values.par_chunks(width.max(1))).for_each(|(o, row)| {
        for (slot, &c) in o.iter_mut().zip(columns) {
            *slot = row[c];
        }
    });
    out
}

/// Keeps the ascending `columns` of a row-major `rows × width` matrix, in place.
pub fn keep_columns(values: &mut Vec<f32>, width: usize, columns: &[usize]) {
    debug_assert!(columns.windows(2).all(|w| w[0] < w[1]));
    let rows = values.len() / width.max(1);
    if columns.len() == width {
        return;
    }
    // row r's kept value i moves from r·width + columns[i] to r·k + i, never to a later place,
    // so a forward pass never overwrites a value it still needs
    let k = columns.len();
    for r in 0..rows {
        for (i, &c) in columns.iter().enumerate() {
            values[r * k + i] = values[r * width + c];
        }
    }
    values.truncate(rows * k);
    values.shrink_to_fit();
}

fn voxel_width(schema: &Schema) -> Option<usize> {
    match schema.field_with_name("voxels").ok()?.data_type() {
        DataType::FixedSizeList(_, n) => usize::try_from(*n).ok(),
        _ => None,
    }
}

/// Streams rows (identifying columns + voxel values) into a `features` table.
pub struct FeaturesWriter {
    path: PathBuf,
    schema: SchemaRef,
    writer: TableWriter,
    width: usize,
}

impl FeaturesWriter {
    /// Creates `path` for rows with the columns of `meta_schema` plus `voxels` of `width`.
    pub fn create(path: &Path, meta_schema: &Schema, width: usize) -> Result<Self> {
        let mut fields: Vec<Field> =
            meta_schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(f32_list_field("voxels", width.max(1), false));
        let schema = Schema::new(fields);
        // As `scans`: 8 MB row groups (64 rows of 65,730 voxels would be 17 MB).
        let rows = brainpipe_core::wide_rows_per_group(4 * width.max(1), ROWS_PER_GROUP);
        let writer = TableWriter::with_row_group_rows(path, FEATURES, &schema, rows)?;
        let schema = writer.schema().clone();
        Ok(FeaturesWriter { path: path.to_path_buf(), schema, writer, width })
    }

    /// Appends rows: `meta` (the identifying columns) and `values` (`meta.num_rows() × width`).
    pub fn write(&mut self, meta: &RecordBatch, values: Vec<f32>) -> Result<()> {
        debug_assert_eq!(values.len(), meta.num_rows() * self.width);
        let mut columns: Vec<ArrayRef> = meta.columns().to_vec();
        columns.push(f32_list_array(values, self.width.max(1)));
        let batch =
            RecordBatch::try_new(self.schema.clone(), columns).map_err(arrow_error(&self.path))?;
        self.writer.write(&batch)?;
        Ok(())
    }

    /// Writes the footer.
    pub fn finish(self) -> Result<()> {
        self.writer.finish()
    }
}

/// A subject's voxel table: where each column sits and which ROI it belongs to.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VoxelTable {
    /// Grid dims `[X, Y, Z]`.
    pub dims: [usize; 3],
    /// Voxel → world affine.
    pub affine: [[f64; 4]; 4],
    /// Voxel indices per column.
    pub ijk: Vec<[i32; 3]>,
    /// World coordinates per column (mm).
    pub xyz: Vec<[f32; 3]>,
    /// ROI label per column, when known.
    pub roi: Vec<Option<i32>>,
    /// For features tables: the column of the `scans` table each column came from.
    pub scan_column: Vec<i32>,
}

impl VoxelTable {
    /// Number of columns.
    pub fn len(&self) -> usize {
        self.ijk.len()
    }

    /// Whether there are no columns.
    pub fn is_empty(&self) -> bool {
        self.ijk.is_empty()
    }

    /// The subset of columns `keep`, in that order.
    pub fn select(&self, keep: &[usize]) -> VoxelTable {
        VoxelTable {
            dims: self.dims,
            affine: self.affine,
            ijk: keep.iter().map(|&c| self.ijk[c]).collect(),
            xyz: keep.iter().map(|&c| self.xyz[c]).collect(),
            roi: keep.iter().map(|&c| self.roi[c]).collect(),
            scan_column: keep.iter().map(|&c| self.scan_column[c]).collect(),
        }
    }
}

/// Reads `SUBJECT.voxels.parquet` (`voxels/1`) or a features' `feature-voxels/1` table.
pub fn read_voxels(path: &Path, kind: TableKind) -> Result<VoxelTable> {
    let (schema, reader) = open_table(path, Some(kind), 1 << 16)?;
    let meta = |key: &str| -> Result<serde_json::Value> {
        let text = schema
            .metadata()
            .get(key)
            .ok_or_else(|| Error::schema(path, format!("no `{key}` schema metadata")))?;
        serde_json::from_str(text)
            .map_err(|e| Error::schema(path, format!("`{key}` metadata: {e}")))
    };
    let affine: [[f64; 4]; 4] = serde_json::from_value(meta("brainpipe.affine")?)
        .map_err(|e| Error::schema(path, format!("`brainpipe.affine`: {e}")))?;
    let dims: [usize; 3] = serde_json::from_value(meta("brainpipe.dims")?)
        .map_err(|e| Error::schema(path, format!("`brainpipe.dims`: {e}")))?;
    let mut table = VoxelTable { dims, affine, ..VoxelTable::default() };
    for batch in reader {
        let batch = batch.map_err(arrow_error(path))?;
        let int = |name: &str| ints(path, &batch, name);
        let float = |name: &str| crate::column::floats32(path, &batch, name);
        let (column, i, j, k) = (int("column")?, int("i")?, int("j")?, int("k")?);
        let (x, y, z) = (float("x")?, float("y")?, float("z")?);
        let roi = int("roi")?;
        let scan_column = if kind == FEATURE_VOXELS { Some(int("scan_column")?) } else { None };
        for row in 0..batch.num_rows() {
            let expected = table.ijk.len();
            if usize::try_from(column.value(row)).ok() != Some(expected) {
                return Err(Error::schema(
                    path,
                    format!(
                        "row {expected}: `column` is {}, expected {expected}",
                        column.value(row)
                    ),
                ));
            }
            table.ijk.push([i.value(row), j.value(row), k.value(row)]);
            table.xyz.push([x.value(row), y.value(row), z.value(row)]);
            table.roi.push(roi.is_valid(row).then(|| roi.value(row)));
            table.scan_column.push(match &scan_column {
                Some(c) => c.value(row),
                None => column.value(row),
            });
        }
    }
    Ok(table)
}

/// Writes a voxel table: `voxels/1` (as importers do: nullable `roi`) or a features'
/// `feature-voxels/1` (`scan_column`, the column of the `scans` table each voxel came from, and a
/// non-null `roi`).
pub fn write_voxels(path: &Path, kind: TableKind, voxels: &VoxelTable) -> Result<()> {
    let features = kind == FEATURE_VOXELS;
    let schema = Arc::new(voxels_schema(kind).with_metadata(std::collections::HashMap::from([
        ("brainpipe.affine".to_owned(), to_json(&voxels.affine)),
        ("brainpipe.dims".to_owned(), to_json(&voxels.dims)),
    ])));
    let index = |axis: usize| -> ArrayRef {
        Arc::new(Int32Array::from_iter_values(voxels.ijk.iter().map(|v| v[axis])))
    };
    let coord = |axis: usize| -> ArrayRef {
        Arc::new(Float32Array::from_iter_values(voxels.xyz.iter().map(|v| v[axis])))
    };
    let mut columns: Vec<ArrayRef> =
        vec![Arc::new(Int32Array::from_iter_values(0..voxels.len() as i32))];
    if features {
        columns.push(Arc::new(Int32Array::from(voxels.scan_column.clone())));
    }
    columns.extend([index(0), index(1), index(2), coord(0), coord(1), coord(2)]);
    columns.push(if features {
        Arc::new(Int32Array::from_iter_values(voxels.roi.iter().map(|r| r.unwrap_or(0))))
    } else {
        Arc::new(Int32Array::from(voxels.roi.clone()))
    });
    write_one_batch(path, kind, schema, columns)
}

/// The columns of a `voxels/1` table, or of a `feature-voxels/1` table for that `kind`
/// (without the `brainpipe.affine` and `brainpipe.dims` metadata a writer adds).
pub fn voxels_schema(kind: TableKind) -> Schema {
    let features = kind == FEATURE_VOXELS;
    let int = |name: &str| Field::new(name, DataType::Int32, false);
    let float = |name: &str| Field::new(name, DataType::Float32, false);
    let mut fields = vec![int("column")];
    if features {
        fields.push(int("scan_column"));
    }
    fields.extend([int("i"), int("j"), int("k"), float("x"), float("y"), float("z")]);
    fields.push(Field::new("roi", DataType::Int32, !features));
    Schema::new(fields)
}

/// Small metadata values (affines, dims) as JSON text.
fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// One ROI block of a features table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoiBlock {
    /// ROI label in the atlas (0: voxels outside every ROI, when kept).
    pub roi: i32,
    /// Name of the ROI.
    pub label: String,
    /// First column of the block.
    pub first: usize,
    /// Columns in the block.
    pub count: usize,
}

/// The default name of ROI `roi`: `outside` for 0, else `roi-NNN`.
pub fn roi_label(roi: i32) -> String {
    if roi == 0 { "outside".to_owned() } else { format!("roi-{roi:03}") }
}

/// The Arrow schema of `rois/1`.
pub fn rois_schema() -> Schema {
    Schema::new(vec![
        Field::new("roi", DataType::Int32, false),
        Field::new("label", DataType::Utf8, false),
        Field::new("first", DataType::Int32, false),
        Field::new("count", DataType::Int32, false),
    ])
}

/// Writes a `rois/1` table.
pub fn write_rois(path: &Path, blocks: &[RoiBlock]) -> Result<()> {
    let schema = Arc::new(rois_schema());
    let to_i32 = |v: usize| i32::try_from(v).unwrap_or(i32::MAX);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int32Array::from_iter_values(blocks.iter().map(|b| b.roi))),
        Arc::new(StringArray::from_iter_values(blocks.iter().map(|b| b.label.as_str()))),
        Arc::new(Int32Array::from_iter_values(blocks.iter().map(|b| to_i32(b.first)))),
        Arc::new(Int32Array::from_iter_values(blocks.iter().map(|b| to_i32(b.count)))),
    ];
    write_one_batch(path, ROIS, schema, columns)
}

/// Reads a `rois/1` table; refuses negative offsets and sizes.
pub fn read_rois(path: &Path) -> Result<Vec<RoiBlock>> {
    let (_, batches) = brainpipe_core::read_table(path, Some(ROIS))?;
    let mut blocks = Vec::new();
    for batch in &batches {
        let roi = ints(path, batch, "roi")?;
        let first = ints(path, batch, "first")?;
        let count = ints(path, batch, "count")?;
        let label = strings(path, batch, "label")?;
        for row in 0..batch.num_rows() {
            let (Ok(first), Ok(count)) =
                (usize::try_from(first.value(row)), usize::try_from(count.value(row)))
            else {
                return Err(Error::schema(path, format!("row {row}: negative first/count")));
            };
            blocks.push(RoiBlock {
                roi: roi.value(row),
                label: label.value(row).to_owned(),
                first,
                count,
            });
        }
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_gathered_and_compacted_in_place() {
        let values: Vec<f32> = (0..12).map(|v| v as f32).collect(); // 3 rows × 4
        assert_eq!(gather_columns(&values, 4, &[3, 0]), vec![3.0, 0.0, 7.0, 4.0, 11.0, 8.0]);
        let mut kept = values.clone();
        keep_columns(&mut kept, 4, &[1, 3]);
        assert_eq!(kept, vec![1.0, 3.0, 5.0, 7.0, 9.0, 11.0]);
    }
}

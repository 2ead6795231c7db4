//! Parquet tables through arrow-rs: zstd, the Arrow schema embedded (so `FixedSizeList<Float32>`
//! columns survive a round trip), and a `brainpipe.schema` key naming the table kind and version.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, FixedSizeListArray, Float32Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::error::{Error, IoContext, Result};

/// The schema metadata key that names a table's kind and version, e.g. `scans/1`.
pub const SCHEMA_KEY: &str = "brainpipe.schema";

/// Rows per Parquet row group unless a writer asks otherwise: large enough for zstd to do well,
/// small enough that a reader streaming one group at a time stays in memory.
pub const DEFAULT_ROW_GROUP_ROWS: usize = 1024;

/// Raw bytes of one row group that tables of wide rows (voxel rows: `scans`, `features`) aim
/// for: a writer buffers one group and a reader streams one at a time, so this bounds both
/// sides' memory (8 MB).
pub const WIDE_ROW_GROUP_BYTES: usize = 8 << 20;

/// Rows per row group for rows of `row_bytes` bytes: [`WIDE_ROW_GROUP_BYTES`] worth, between 1
/// and `max_rows`.
pub fn wide_rows_per_group(row_bytes: usize, max_rows: usize) -> usize {
    (WIDE_ROW_GROUP_BYTES / row_bytes.max(1)).clamp(1, max_rows.max(1))
}

/// The kind of a brainpipe table and the version of its schema (documented in docs/ARTIFACTS.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableKind {
    /// Table kind, e.g. `scans`.
    pub name: &'static str,
    /// Schema version; bumped when columns change meaning.
    pub version: u32,
}

impl TableKind {
    /// A table kind.
    pub const fn new(name: &'static str, version: u32) -> Self {
        TableKind { name, version }
    }

    /// The value stored under [`SCHEMA_KEY`].
    pub fn tag(&self) -> String {
        format!("{}/{}", self.name, self.version)
    }

    /// Returns `schema` with this kind's tag added to its metadata.
    pub fn tag_schema(&self, schema: &Schema) -> SchemaRef {
        let mut metadata = schema.metadata().clone();
        metadata.insert(SCHEMA_KEY.to_owned(), self.tag());
        Arc::new(schema.clone().with_metadata(metadata))
    }
}

/// Streams record batches into one Parquet file.
pub struct TableWriter {
    path: PathBuf,
    schema: SchemaRef,
    writer: ArrowWriter<File>,
}

impl TableWriter {
    /// Creates `path` for a table of `kind` with `schema` (the kind tag is added to its metadata).
    pub fn create(path: &Path, kind: TableKind, schema: &Schema) -> Result<Self> {
        Self::with_row_group_rows(path, kind, schema, DEFAULT_ROW_GROUP_ROWS)
    }

    /// Like [`TableWriter::create`] with an explicit row-group size in rows.
    pub fn with_row_group_rows(
        path: &Path,
        kind: TableKind,
        schema: &Schema,
        rows: usize,
    ) -> Result<Self> {
        let schema = kind.tag_schema(schema);
        let file = File::create(path).at(path)?;
        let props = writer_properties(&schema, rows);
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(props))
            .map_err(|source| Error::Parquet { path: path.to_path_buf(), source })?;
        Ok(TableWriter { path: path.to_path_buf(), schema, writer })
    }

    /// The schema batches must have (including the kind tag).
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Appends a batch. Its columns must match the writer's schema; metadata may differ.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let batch = batch
            .clone()
            .with_schema(self.schema.clone())
            .map_err(|source| Error::Arrow { path: self.path.clone(), source })?;
        self.writer
            .write(&batch)
            .map_err(|source| Error::Parquet { path: self.path.clone(), source })
    }

    /// Flushes the current row group so memory is released (for streaming writers).
    pub fn flush(&mut self) -> Result<()> {
        self.writer.flush().map_err(|source| Error::Parquet { path: self.path.clone(), source })
    }

    /// Writes the footer and closes the file.
    pub fn finish(self) -> Result<()> {
        let path = self.path;
        let file = self
            .writer
            .into_inner()
            .map_err(|source| Error::Parquet { path: path.clone(), source })?;
        file.sync_all().at(&path)
    }
}

/// zstd everywhere; float columns (and lists of floats: embeddings, voxel rows) without dictionary
/// encoding — which on distinct floats only costs time before Parquet falls back — and with
/// BYTE_STREAM_SPLIT, which groups the floats' bytes by significance so zstd compresses them better.
fn writer_properties(schema: &Schema, rows: usize) -> WriterProperties {
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(rows.max(1)))
        .set_statistics_enabled(EnabledStatistics::Chunk);
    let is_float = |t: &DataType| matches!(t, DataType::Float32 | DataType::Float64);
    for field in schema.fields() {
        let path = match field.data_type() {
            t if is_float(t) => Some(vec![field.name().clone()]),
            DataType::FixedSizeList(item, _) | DataType::List(item)
                if is_float(item.data_type()) =>
            {
                Some(vec![field.name().clone(), "list".to_owned(), item.name().clone()])
            }
            _ => None,
        };
        if let Some(path) = path {
            let column = ColumnPath::new(path);
            builder = builder
                .set_column_dictionary_enabled(column.clone(), false)
                .set_column_encoding(column, Encoding::BYTE_STREAM_SPLIT);
        }
    }
    builder.build()
}

/// Writes `batches` as one table of `kind` at `path`.
pub fn write_table(path: &Path, kind: TableKind, batches: &[RecordBatch]) -> Result<()> {
    let schema = match batches.first() {
        Some(batch) => batch.schema(),
        None => return Err(Error::schema(path, "refusing to write a table with no batches")),
    };
    let mut writer = TableWriter::create(path, kind, &schema)?;
    for batch in batches {
        writer.write(batch)?;
    }
    writer.finish()
}

/// Opens a table for streaming, batch by batch, after checking its kind. Returns the file's
/// schema (with its metadata, which the reader's own schema drops) and the reader.
///
/// `expected` `None` accepts any kind (tables written by other tools have no tag).
pub fn open_table(
    path: &Path,
    expected: Option<TableKind>,
    batch_rows: usize,
) -> Result<(SchemaRef, ParquetRecordBatchReader)> {
    let file = File::open(path).at(path)?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|source| Error::Parquet { path: path.to_path_buf(), source })?;
    let schema = builder.schema().clone();
    if let Some(kind) = expected {
        check_kind(path, &schema, kind)?;
    }
    let reader = builder
        .with_batch_size(batch_rows.max(1))
        .build()
        .map_err(|source| Error::Parquet { path: path.to_path_buf(), source })?;
    Ok((schema, reader))
}

/// Reads a whole table into memory.
pub fn read_table(
    path: &Path,
    expected: Option<TableKind>,
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let (schema, reader) = open_table(path, expected, 8192)?;
    let batches = reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|source| Error::Arrow { path: path.to_path_buf(), source })?;
    Ok((schema, batches))
}

/// Checks the `brainpipe.schema` tag of `schema` against `expected`.
///
/// A different kind is an error; an older version is accepted (readers stay backward compatible);
/// a newer version is an error because this build cannot know what changed.
pub fn check_kind(path: &Path, schema: &Schema, expected: TableKind) -> Result<()> {
    let Some(tag) = schema.metadata().get(SCHEMA_KEY) else {
        return Err(Error::schema(
            path,
            format!("no `{SCHEMA_KEY}` metadata: expected a `{}` table", expected.tag()),
        ));
    };
    let (name, version) = tag.split_once('/').unwrap_or((tag.as_str(), "0"));
    let version: u32 = version.parse().unwrap_or(0);
    if name != expected.name {
        return Err(Error::schema(
            path,
            format!("is a `{tag}` table, expected `{}`", expected.tag()),
        ));
    }
    if version > expected.version {
        return Err(Error::schema(
            path,
            format!("is a `{tag}` table, newer than this build reads (`{}`)", expected.tag()),
        ));
    }
    Ok(())
}

/// The Arrow field of a fixed-size list of `f32` (an embedding or a voxel row) of width `dim`.
pub fn f32_list_field(name: &str, dim: usize, nullable: bool) -> Field {
    Field::new(name, f32_list_type(dim), nullable)
}

/// `FixedSizeList<Float32>` of width `dim`.
pub fn f32_list_type(dim: usize) -> DataType {
    let dim = i32::try_from(dim).expect("vector width fits in i32 (Arrow's limit)");
    DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, false)), dim)
}

/// Packs row-major `values` (`rows × dim`) into a `FixedSizeList<Float32>` array.
pub fn f32_list_array(values: Vec<f32>, dim: usize) -> ArrayRef {
    assert!(dim > 0 && values.len().is_multiple_of(dim), "values must be rows × dim");
    let width = i32::try_from(dim).expect("vector width fits in i32 (Arrow's limit)");
    let field = Arc::new(Field::new("item", DataType::Float32, false));
    Arc::new(FixedSizeListArray::new(field, width, Arc::new(Float32Array::from(values)), None))
}

/// The row-major `f32` values and width of a `FixedSizeList<Float32>` column.
///
/// Fails (naming `path` and `column`) when the column has another type or holds nulls.
pub fn f32_list_values<'a>(
    path: &Path,
    column: &str,
    array: &'a dyn Array,
) -> Result<(&'a [f32], usize)> {
    let list = array.as_any().downcast_ref::<FixedSizeListArray>().ok_or_else(|| {
        Error::schema(
            path,
            format!("column `{column}` is {}, expected FixedSizeList<Float32>", array.data_type()),
        )
    })?;
    if list.null_count() > 0 {
        return Err(Error::schema(path, format!("column `{column}` has null rows")));
    }
    let values =
        list.values().as_any().downcast_ref::<Float32Array>().ok_or_else(|| {
            Error::schema(path, format!("column `{column}` items are not Float32"))
        })?;
    let dim = usize::try_from(list.value_length()).unwrap_or(0);
    let start = list.offset() * dim;
    Ok((&values.values()[start..start + list.len() * dim], dim))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int32Array, StringArray};

    const KIND: TableKind = TableKind::new("demo", 2);

    fn batch() -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int32, false),
            Field::new("word", DataType::Utf8, false),
            f32_list_field("vector", 3, false),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(Int32Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec!["ability", "accomplished"])),
                f32_list_array(vec![0.5, -1.0, 2.0, 3.0, f32::MIN_POSITIVE, -0.0], 3),
            ],
        )
        .expect("valid batch")
    }

    #[test]
    fn fixed_size_list_survives_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.parquet");
        write_table(&path, KIND, &[batch()]).expect("write");
        let (schema, batches) = read_table(&path, Some(KIND)).expect("read");
        assert_eq!(schema.field(2).data_type(), &f32_list_type(3));
        assert_eq!(schema.metadata().get(SCHEMA_KEY).map(String::as_str), Some("demo/2"));
        let (values, dim) =
            f32_list_values(&path, "vector", batches[0].column(2).as_ref()).expect("f32 list");
        assert_eq!(dim, 3);
        let bits: Vec<u32> = values.iter().map(|v| v.to_bits()).collect();
        let want: Vec<u32> =
            [0.5f32, -1.0, 2.0, 3.0, f32::MIN_POSITIVE, -0.0].iter().map(|v| v.to_bits()).collect();
        assert_eq!(bits, want, "bit-exact values");
    }

    #[test]
    fn wrong_kind_and_newer_version_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.parquet");
        write_table(&path, KIND, &[batch()]).expect("write");
        let err = read_table(&path, Some(TableKind::new("scans", 1))).expect_err("other kind");
        assert!(err.to_string().contains("expected `scans/1`"), "{err}");
        let err = read_table(&path, Some(TableKind::new("demo", 1))).expect_err("newer");
        assert!(err.to_string().contains("newer"), "{err}");
        read_table(&path, Some(TableKind::new("demo", 3))).expect("older version reads");
    }

    #[test]
    fn garbage_file_names_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad.parquet");
        std::fs::write(&path, b"not parquet at all").expect("write");
        let err = read_table(&path, None).expect_err("garbage");
        assert!(err.to_string().starts_with(&path.display().to_string()), "{err}");
    }
}

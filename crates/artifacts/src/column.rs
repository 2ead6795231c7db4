//! Typed access to the columns of a record batch, each failure naming the file and the column.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Float32Array, Float64Array, Int32Array, RecordBatch, StringArray,
};
use arrow::datatypes::{Schema, SchemaRef};
use brainpipe_core::{Error, Result, TableKind, TableWriter};

/// Column `name` of `batch`.
pub fn column<'a>(path: &Path, batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    batch.column_by_name(name).ok_or_else(|| Error::schema(path, format!("no column `{name}`")))
}

/// Column `name` of `batch` as Arrow array type `T` (`ty` names it in the error).
pub fn typed<'a, T: 'static>(
    path: &Path,
    batch: &'a RecordBatch,
    name: &str,
    ty: &str,
) -> Result<&'a T> {
    column(path, batch, name)?
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| Error::schema(path, format!("column `{name}` is not {ty}")))
}

/// Nullable Utf8 column `name`, or `None` when the table leaves it out (a nullable column may be
/// absent: every row is then null).
pub fn opt_strings<'a>(
    path: &Path,
    batch: &'a RecordBatch,
    name: &str,
) -> Result<Option<&'a StringArray>> {
    match batch.column_by_name(name) {
        None => Ok(None),
        Some(_) => strings(path, batch, name).map(Some),
    }
}

/// Nullable Int32 column `name`, or `None` when the table leaves it out.
pub fn opt_int_column<'a>(
    path: &Path,
    batch: &'a RecordBatch,
    name: &str,
) -> Result<Option<&'a Int32Array>> {
    match batch.column_by_name(name) {
        None => Ok(None),
        Some(_) => ints(path, batch, name).map(Some),
    }
}

/// A Utf8 column.
pub fn strings<'a>(path: &Path, batch: &'a RecordBatch, name: &str) -> Result<&'a StringArray> {
    typed(path, batch, name, "Utf8")
}

/// An Int32 column.
pub fn ints<'a>(path: &Path, batch: &'a RecordBatch, name: &str) -> Result<&'a Int32Array> {
    typed(path, batch, name, "Int32")
}

/// A Float32 column.
pub fn floats32<'a>(path: &Path, batch: &'a RecordBatch, name: &str) -> Result<&'a Float32Array> {
    typed(path, batch, name, "Float32")
}

/// A Float64 column.
pub fn floats64<'a>(path: &Path, batch: &'a RecordBatch, name: &str) -> Result<&'a Float64Array> {
    typed(path, batch, name, "Float64")
}

/// The values of a Utf8 column, owned (nulls read as empty strings).
pub fn string_values(path: &Path, batch: &RecordBatch, name: &str) -> Result<Vec<String>> {
    let a = strings(path, batch, name)?;
    Ok((0..a.len()).map(|i| a.value(i).to_owned()).collect())
}

/// The values of an Int32 column (nulls read as 0).
pub fn int_values(path: &Path, batch: &RecordBatch, name: &str) -> Result<Vec<i32>> {
    Ok(ints(path, batch, name)?.values().to_vec())
}

/// The values of a nullable Int32 column.
pub fn opt_ints(path: &Path, batch: &RecordBatch, name: &str) -> Result<Vec<Option<i32>>> {
    let a = ints(path, batch, name)?;
    Ok((0..a.len()).map(|i| opt_int(a, i)).collect())
}

/// The values of a nullable Float64 column.
pub fn opt_floats(path: &Path, batch: &RecordBatch, name: &str) -> Result<Vec<Option<f64>>> {
    let a = floats64(path, batch, name)?;
    Ok((0..a.len()).map(|i| a.is_valid(i).then(|| a.value(i))).collect())
}

/// Row `i` of a nullable Utf8 array.
pub fn opt_string(array: &StringArray, i: usize) -> Option<String> {
    array.is_valid(i).then(|| array.value(i).to_owned())
}

/// Row `i` of a nullable Int32 array.
pub fn opt_int(array: &Int32Array, i: usize) -> Option<i32> {
    array.is_valid(i).then(|| array.value(i))
}

/// The row-major values and width of `FixedSizeList<Float32>` column `name`.
pub fn f32_rows<'a>(path: &Path, batch: &'a RecordBatch, name: &str) -> Result<(&'a [f32], usize)> {
    brainpipe_core::f32_list_values(path, name, column(path, batch, name)?.as_ref())
}

/// A Utf8 array of `values`.
pub fn utf8(values: impl IntoIterator<Item = impl AsRef<str>>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(values))
}

/// Turns an Arrow error about the table at `path` into a brainpipe error.
pub fn arrow_error(path: &Path) -> impl Fn(arrow::error::ArrowError) -> Error + '_ {
    move |source| Error::Arrow { path: path.to_path_buf(), source }
}

/// Writes `columns` with `schema` as a one-batch table of `kind` (row groups of 65,536 rows).
pub fn write_one_batch(
    path: &Path,
    kind: TableKind,
    schema: SchemaRef,
    columns: Vec<ArrayRef>,
) -> Result<()> {
    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(arrow_error(path))?;
    let mut writer = TableWriter::with_row_group_rows(path, kind, &schema, 1 << 16)?;
    writer.write(&batch)?;
    writer.finish()
}

/// Writes `columns` with `schema` as a one-batch table of `kind` through
/// [`brainpipe_core::write_table`] (default row groups).
pub fn write_batch(
    path: &Path,
    kind: TableKind,
    schema: Schema,
    columns: Vec<ArrayRef>,
) -> Result<()> {
    let batch = RecordBatch::try_new(Arc::new(schema), columns).map_err(arrow_error(path))?;
    brainpipe_core::write_table(path, kind, &[batch])
}

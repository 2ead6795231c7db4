//! A Parquet table whose row groups are encoded on worker threads and appended in order.
//!
//! Encoding a row group of voxel rows (list levels, BYTE_STREAM_SPLIT, zstd) costs more CPU than
//! inflating the `.nii.gz` it came from, so a single encoder would be the importer's critical
//! path. Here each finished group is encoded on a worker thread while the caller fills the next
//! one, and another thread splices the encoded column chunks into the file in submission order,
//! so the bytes are the same however the threads are scheduled.
//!
//! Columns of non-null `FixedSizeList<Float32>` (voxel rows, embeddings) skip arrow-rs's generic
//! path, which computes a definition and a repetition level and gathers each value through a
//! per-value index, allocating about 12 bytes per 4-byte value: their levels are the same for
//! every row, so one row's are computed once per writer and the values are handed to Parquet's
//! column writer, row by row, as the contiguous slices they already are.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::thread::JoinHandle;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float32Type, Schema, SchemaRef};
use brainpipe_core::IoContext;
use brainpipe_core::TableKind;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::{
    ArrowColumnChunk, ArrowColumnWriter, ArrowRowGroupWriterFactory, compute_leaves,
};
use parquet::column::writer::{ColumnCloseResult, get_column_writer, get_typed_column_writer};
use parquet::data_type::FloatType;
use parquet::errors::ParquetError;
use parquet::file::properties::{WriterProperties, WriterPropertiesPtr};
use parquet::file::writer::{SerializedFileWriter, SerializedPageWriter, TrackedWrite};
use parquet::schema::types::{ColumnDescPtr, SchemaDescriptor};

use crate::error::{IngestError, Result};

/// Row groups encoding at once, each on its own worker thread. Two keep up with the thread that
/// inflates the volumes on a 2-core machine (CI's), and bound memory to two groups encoding plus
/// the one being filled.
const ENCODERS: usize = 2;

/// Bytes buffered before a write to the file: Parquet splices a column chunk through 8 KiB
/// copies, one `write` call each without this (1 MiB).
const WRITE_BUFFER_BYTES: usize = 1 << 20;

/// An encoded column chunk, ready to splice into its row group.
enum Chunk {
    /// Encoded by arrow-rs.
    Arrow(ArrowColumnChunk),
    /// A fixed-size float list encoded directly: the chunk's bytes and its metadata.
    Direct(Bytes, ColumnCloseResult),
}

/// Encoded column chunks of one row group, or why encoding failed.
type Encoded = std::result::Result<Vec<Chunk>, ParquetError>;

/// A row group to encode: its rows and a writer per leaf column.
type Job = (RecordBatch, Vec<ArrowColumnWriter>);

/// How the encoders write each top-level column.
enum Plan {
    /// Through arrow-rs.
    Arrow,
    /// Directly: a non-null `FixedSizeList<Float32>` column.
    FloatRows(FloatRows),
}

/// A non-null `FixedSizeList<Float32>` column of width `width`: its Parquet leaf and the levels
/// of one row (repetition 0 at the row's first value, else the maximum), written row by row.
struct FloatRows {
    width: usize,
    leaf: ColumnDescPtr,
    definition: Vec<i16>,
    repetition: Vec<i16>,
}

/// What every encoder shares: the schema, the file's properties and a plan per column.
struct Encoding {
    schema: SchemaRef,
    properties: WriterPropertiesPtr,
    plans: Vec<Plan>,
}

/// Streams record batches into one Parquet file, one row group per batch.
///
/// Threads: [`ENCODERS`] long-lived encoders (so their allocator arenas, and the memory in them,
/// are reused from group to group) take groups in turn; an appender takes the encoded groups in
/// the same turn and writes them, so the caller's thread only builds batches. Group `g` goes to
/// encoder `g % ENCODERS` through a rendezvous channel, so at most one group per encoder is
/// encoding while the caller fills the next.
pub(crate) struct ParallelTableWriter {
    path: PathBuf,
    encoding: Arc<Encoding>,
    factory: ArrowRowGroupWriterFactory,
    /// Each encoder's job queue.
    jobs: Vec<SyncSender<Job>>,
    /// Float-row buffers of encoded groups, for the caller to fill again: reusing them spares
    /// the kernel zeroing fresh pages for every group, on the thread that feeds the encoders.
    spares: Receiver<Vec<f32>>,
    /// Writes the encoded groups in order; returns how many it wrote.
    appender: Option<JoinHandle<Result<usize>>>,
    groups: usize,
}

impl ParallelTableWriter {
    /// Creates `path` for a table of `kind` with `schema` (the kind tag is added to its metadata,
    /// the Arrow schema is embedded as `ArrowWriter` embeds it).
    pub(crate) fn create(
        path: &Path,
        kind: TableKind,
        schema: &Schema,
        properties: WriterProperties,
    ) -> Result<Self> {
        let schema = kind.tag_schema(schema);
        let file = File::create(path).at(path)?;
        let file = BufWriter::with_capacity(WRITE_BUFFER_BYTES, file);
        let (file, factory) = ArrowWriter::try_new(file, schema.clone(), Some(properties))
            .and_then(ArrowWriter::into_serialized_writer)
            .map_err(parquet_error(path))?;
        let plans = plan_columns(&schema, file.schema_descr());
        let encoding = Arc::new(Encoding { schema, properties: file.properties().clone(), plans });
        let (spare, spares) = channel();
        let (jobs, encoded): (Vec<_>, Vec<_>) =
            (0..ENCODERS).map(|_| spawn_encoder(encoding.clone(), spare.clone())).unzip();
        let target = path.to_path_buf();
        let appender = std::thread::spawn(move || append_in_turn(file, &encoded, &target));
        Ok(ParallelTableWriter {
            path: path.to_path_buf(),
            encoding,
            factory,
            jobs,
            spares,
            appender: Some(appender),
            groups: 0,
        })
    }

    /// The schema batches must have (including the kind tag).
    pub(crate) fn schema(&self) -> &SchemaRef {
        &self.encoding.schema
    }

    /// An empty buffer that held the values of a `FixedSizeList<Float32>` column of a group
    /// already encoded, when one is back (its capacity kept).
    pub(crate) fn spare_f32_buffer(&mut self) -> Option<Vec<f32>> {
        self.spares.try_recv().ok()
    }

    /// Hands `batch` to its encoder as the next row group, waiting while that encoder is busy
    /// with its previous group.
    pub(crate) fn write(&mut self, batch: RecordBatch) -> Result<()> {
        let writers =
            self.factory.create_column_writers(self.groups).map_err(parquet_error(&self.path))?;
        if self.jobs[self.groups % ENCODERS].send((batch, writers)).is_err() {
            return Err(self.stop());
        }
        self.groups += 1;
        Ok(())
    }

    /// Waits for every group to be written, then for the footer and the file's sync.
    pub(crate) fn finish(mut self) -> Result<()> {
        self.jobs.clear();
        let written = self.join_appender()?;
        if written != self.groups {
            return Err(encoder_died(&self.path));
        }
        Ok(())
    }

    /// Why the threads stopped early: the appender's error, else a panicked encoder.
    fn stop(&mut self) -> IngestError {
        self.jobs.clear();
        match self.join_appender() {
            Err(error) => error,
            Ok(_) => encoder_died(&self.path),
        }
    }

    fn join_appender(&mut self) -> Result<usize> {
        let appender = self.appender.take().ok_or_else(|| encoder_died(&self.path))?;
        appender.join().unwrap_or_else(|_| Err(encoder_died(&self.path)))
    }
}

/// Starts an encoder thread: jobs in (rendezvous), encoded groups out (one waiting at most),
/// emptied float-row buffers back to the caller through `spare`.
fn spawn_encoder(
    encoding: Arc<Encoding>,
    spare: Sender<Vec<f32>>,
) -> (SyncSender<Job>, Receiver<Encoded>) {
    let (jobs, job_queue) = sync_channel::<Job>(0);
    let (done, encoded) = sync_channel(1);
    std::thread::spawn(move || {
        for (batch, writers) in job_queue {
            let chunks = encode(&encoding, &batch, writers);
            for buffer in reusable_buffers(&encoding, batch) {
                let _ = spare.send(buffer); // the writer may be gone; the buffer is then freed
            }
            if done.send(chunks).is_err() {
                break;
            }
        }
    });
    (jobs, encoded)
}

/// The appender: takes encoded groups from the encoders in turn (group `g` from encoder
/// `g % ENCODERS`) until the next one's encoder has hung up, splices each into the file, then
/// writes the footer and syncs. Returns the number of groups written.
fn append_in_turn(
    mut file: SerializedFileWriter<BufWriter<File>>,
    encoded: &[Receiver<Encoded>],
    path: &Path,
) -> Result<usize> {
    let error = parquet_error(path);
    let mut written = 0;
    while let Ok(chunks) = encoded[written % encoded.len()].recv() {
        let mut group = file.next_row_group().map_err(error)?;
        for chunk in chunks.map_err(error)? {
            match chunk {
                Chunk::Arrow(chunk) => chunk.append_to_row_group(&mut group),
                Chunk::Direct(bytes, close) => group.append_column(&bytes, close),
            }
            .map_err(error)?;
        }
        group.close().map_err(error)?;
        written += 1;
    }
    let file = file.into_inner().map_err(error)?;
    let file = file.into_inner().map_err(|e| brainpipe_core::Error::io(path, e.into_error()))?;
    file.sync_all().at(path)?;
    Ok(written)
}

/// Names `path` in a Parquet error.
fn parquet_error(path: &Path) -> impl Fn(ParquetError) -> IngestError + Copy + '_ {
    move |source| brainpipe_core::Error::Parquet { path: path.to_path_buf(), source }.into()
}

/// An encoder thread that hung up: it can only have panicked.
fn encoder_died(path: &Path) -> IngestError {
    parquet_error(path)(ParquetError::General("a row-group encoder thread panicked".to_owned()))
}

/// How to write each column of `schema`, whose Parquet leaves are `leaves`.
fn plan_columns(schema: &Schema, leaves: &SchemaDescriptor) -> Vec<Plan> {
    let mut first_leaf = 0;
    schema
        .fields()
        .iter()
        .map(|field| {
            let leaf = leaves.column(first_leaf);
            first_leaf += leaf_count(field.data_type());
            match field.data_type() {
                DataType::FixedSizeList(item, width)
                    if !field.is_nullable()
                        && !item.is_nullable()
                        && item.data_type() == &DataType::Float32 =>
                {
                    let width = usize::try_from(*width).unwrap_or(0).max(1);
                    let definition = vec![leaf.max_def_level(); width];
                    let mut repetition = vec![leaf.max_rep_level(); width];
                    repetition[0] = 0;
                    Plan::FloatRows(FloatRows { width, leaf, definition, repetition })
                }
                _ => Plan::Arrow,
            }
        })
        .collect()
}

/// Parquet leaf columns of an Arrow type.
fn leaf_count(data_type: &DataType) -> usize {
    match data_type {
        DataType::Struct(fields) => fields.iter().map(|f| leaf_count(f.data_type())).sum(),
        DataType::List(item) | DataType::LargeList(item) | DataType::FixedSizeList(item, _) => {
            leaf_count(item.data_type())
        }
        DataType::Map(entries, _) => leaf_count(entries.data_type()),
        _ => 1,
    }
}

/// Encodes every column of `batch`: through `writers` (one per Parquet leaf column, in order),
/// or directly where the plan says so.
fn encode(encoding: &Encoding, batch: &RecordBatch, writers: Vec<ArrowColumnWriter>) -> Encoded {
    let mut writers = writers.into_iter();
    let mut next_writer = || {
        writers.next().ok_or_else(|| {
            ParquetError::General("fewer column writers than leaf columns".to_owned())
        })
    };
    let mut chunks = Vec::new();
    let columns = encoding.schema.fields().iter().zip(&encoding.plans).zip(batch.columns());
    for ((field, plan), column) in columns {
        match plan {
            Plan::Arrow => {
                for leaf in compute_leaves(field, column)? {
                    let mut writer = next_writer()?;
                    writer.write(&leaf)?;
                    chunks.push(Chunk::Arrow(writer.close()?));
                }
            }
            Plan::FloatRows(rows) => {
                next_writer()?; // the leaf's arrow-rs writer, unused
                chunks.push(encode_float_rows(&encoding.properties, rows, column)?);
            }
        }
    }
    Ok(chunks)
}

/// The values buffers of `batch`'s directly encoded columns, emptied, where `batch` held the
/// only reference to them.
fn reusable_buffers(encoding: &Encoding, batch: RecordBatch) -> Vec<Vec<f32>> {
    let direct: Vec<ArrayRef> = encoding
        .plans
        .iter()
        .zip(batch.columns())
        .filter(|(plan, _)| matches!(plan, Plan::FloatRows(_)))
        .map(|(_, column)| column.clone())
        .collect();
    drop(batch);
    direct
        .into_iter()
        .filter_map(|column| {
            let list = column.as_fixed_size_list_opt()?.clone();
            drop(column);
            let (_, _, items, _) = list.into_parts();
            let floats = items.as_primitive_opt::<Float32Type>()?.clone();
            drop(items);
            let mut values = floats.into_parts().1.into_inner().into_vec::<f32>().ok()?;
            values.clear();
            Some(values)
        })
        .collect()
}

/// Encodes a non-null `FixedSizeList<Float32>` column with its precomputed levels.
fn encode_float_rows(
    properties: &WriterPropertiesPtr,
    rows: &FloatRows,
    column: &ArrayRef,
) -> std::result::Result<Chunk, ParquetError> {
    let width = rows.width;
    let list = column.as_fixed_size_list_opt().filter(|l| l.null_count() == 0);
    let values = list.and_then(|l| {
        let items = l.values().as_primitive_opt::<Float32Type>()?;
        if items.null_count() > 0 {
            return None;
        }
        items.values().get(l.offset() * width..(l.offset() + l.len()) * width)
    });
    let values = values.ok_or_else(|| {
        ParquetError::General("a FixedSizeList<Float32> column with nulls".to_owned())
    })?;
    let mut sink = TrackedWrite::new(Vec::new());
    let page_writer = SerializedPageWriter::new(&mut sink);
    let writer = get_column_writer(rows.leaf.clone(), properties.clone(), Box::new(page_writer));
    let mut writer = get_typed_column_writer::<FloatType>(writer);
    for row in values.chunks_exact(width) {
        writer.write_batch(row, Some(&rows.definition), Some(&rows.repetition))?;
    }
    let close = writer.close()?;
    Ok(Chunk::Direct(Bytes::from(sink.into_inner()?), close))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, Int32Array, StringArray};
    use arrow::datatypes::Field;
    use brainpipe_core::{f32_list_array, f32_list_field, f32_list_values, read_table};

    const KIND: TableKind = TableKind::new("test", 1);
    // Not a multiple of arrow-rs's 1024-value mini-batches, and several pages per row group.
    const WIDTH: usize = 1500;

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("trial", DataType::Int32, false),
            Field::new("stimulus", DataType::Utf8, false),
            Field::new("onset", DataType::Float64, true),
            f32_list_field("voxels", WIDTH, false),
        ])
    }

    fn batch(schema: &SchemaRef, first: i32, rows: usize) -> RecordBatch {
        let trials: Vec<i32> = (first..first + rows as i32).collect();
        let values: Vec<f32> =
            (0..rows * WIDTH).map(|v| first as f32 * 100.0 + v as f32 * 0.5 - 3.0).collect();
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int32Array::from(trials.clone())),
                Arc::new(StringArray::from_iter_values(trials.iter().map(|t| format!("s{t}")))),
                Arc::new(Float64Array::from_iter(
                    trials.iter().map(|&t| (t % 2 == 0).then_some(f64::from(t) * 1.5)),
                )),
                f32_list_array(values, WIDTH),
            ],
        )
        .expect("batch")
    }

    fn properties() -> WriterProperties {
        WriterProperties::builder()
            .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
            .set_data_page_size_limit(4096)
            .set_column_encoding(
                parquet::schema::types::ColumnPath::from("voxels.list.item"),
                parquet::basic::Encoding::BYTE_STREAM_SPLIT,
            )
            .set_column_dictionary_enabled(
                parquet::schema::types::ColumnPath::from("voxels.list.item"),
                false,
            )
            .build()
    }

    /// Writes groups of 3, 3 and 2 rows (the last one short, as at the end of a subject).
    fn write(path: &Path) -> Vec<RecordBatch> {
        let mut writer =
            ParallelTableWriter::create(path, KIND, &schema(), properties()).expect("create");
        let schema = writer.schema().clone();
        let batches = vec![batch(&schema, 0, 3), batch(&schema, 3, 3), batch(&schema, 6, 2)];
        for b in &batches {
            writer.write(b.clone()).expect("write");
            if let Some(spare) = writer.spare_f32_buffer() {
                assert!(spare.is_empty() && spare.capacity() >= 3 * WIDTH);
            }
        }
        writer.finish().expect("finish");
        batches
    }

    #[test]
    fn reads_back_in_order_with_the_fixed_size_list_type() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.parquet");
        let written = write(&path);
        let (schema, read) = read_table(&path, Some(KIND)).expect("read");
        assert_eq!(schema.field(3).data_type(), &brainpipe_core::f32_list_type(WIDTH));
        let read = arrow::compute::concat_batches(&read[0].schema(), &read).expect("concat");
        let written = arrow::compute::concat_batches(&written[0].schema(), &written).expect("c");
        assert_eq!(read.num_rows(), 8);
        for column in 0..3 {
            assert_eq!(read.column(column).as_ref(), written.column(column).as_ref());
        }
        let voxels = |b: &RecordBatch| {
            f32_list_values(&path, "voxels", b.column(3).as_ref()).expect("voxels").0.to_vec()
        };
        assert_eq!(voxels(&read), voxels(&written));
        let file = std::fs::File::open(&path).expect("open");
        let reader =
            parquet::file::reader::SerializedFileReader::new(file).expect("parquet reader");
        let groups: Vec<i64> = parquet::file::reader::FileReader::metadata(&reader)
            .row_groups()
            .iter()
            .map(|g| g.num_rows())
            .collect();
        assert_eq!(groups, vec![3, 3, 2]);
    }

    #[test]
    fn same_bytes_as_arrow_rs_and_every_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (dir.path().join("a.parquet"), dir.path().join("b.parquet"));
        let batches = write(&a);
        write(&b);
        let bytes = std::fs::read(&a).expect("read a");
        assert_eq!(bytes, std::fs::read(&b).expect("read b"));

        let reference = dir.path().join("arrow.parquet");
        let file = File::create(&reference).expect("create");
        let mut writer =
            ArrowWriter::try_new(file, batches[0].schema(), Some(properties())).expect("writer");
        for batch in &batches {
            writer.write(batch).expect("write");
            writer.flush().expect("flush");
        }
        writer.close().expect("close");
        assert_eq!(bytes, std::fs::read(&reference).expect("read reference"));
    }
}

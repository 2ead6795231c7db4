//! The ground every brainpipe stage stands on: artifact I/O, content hashes and the Stage contract.
//!
//! - **Tables** are Parquet files written through arrow-rs with zstd, the Arrow schema embedded
//!   (so `FixedSizeList<Float32>` embeddings and voxel rows survive a round trip) and a
//!   `brainpipe.schema` metadata key naming the table kind and version ([`TableWriter`],
//!   [`read_table`]).
//! - **Models** are safetensors files with the architecture config as JSON in `__metadata__`
//!   ([`write_safetensors`], [`read_safetensors`]).
//! - **Manifests** (`manifest.json`) record what a run read, which params it used and what it wrote.
//! - **Hashes** are streaming blake3 over file content, never modification times ([`hash_path`]).
//! - **Stages** implement [`Stage`]: a dotted name, a VERSION, typed [`Params`], named [`Port`]s,
//!   and `run`, which writes each output into the directory it is handed.
//!
//! ```
//! use std::sync::Arc;
//! use arrow::array::{Int32Array, RecordBatch};
//! use arrow::datatypes::{DataType, Field, Schema};
//! use brainpipe_core::{TableKind, f32_list_array, f32_list_field, read_table, write_table};
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("targets.parquet");
//! let schema = Arc::new(Schema::new(vec![
//!     Field::new("stimulus", DataType::Int32, false),
//!     f32_list_field("target", 2, false),
//! ]));
//! let batch = RecordBatch::try_new(schema, vec![
//!     Arc::new(Int32Array::from(vec![0, 1])),
//!     f32_list_array(vec![0.1, 0.2, 0.3, 0.4], 2),
//! ])?;
//! write_table(&path, TableKind::new("targets", 1), &[batch])?;
//! let (_, batches) = read_table(&path, Some(TableKind::new("targets", 1)))?;
//! assert_eq!(batches[0].num_rows(), 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod atomic;
mod compute;
mod error;
mod hash;
mod manifest;
mod reference;
mod remote;
mod stage;
mod standalone;
mod table;
mod tensors;
mod vector;

pub use atomic::{AtomicDir, make_read_only, make_writable, remove_tree, write_file_atomic};
pub use compute::{DeviceChoice, Precision, UnknownDevice};
pub use error::{Error, IoContext, Result, one_line};
pub use hash::{ContentHash, disk_size, hash_file, hash_path, hash_tree};
pub use manifest::{
    InputRecord, MANIFEST_FILE, MANIFEST_FORMAT, Manifest, OutputRecord, host_name, rfc3339_utc,
    unix_seconds,
};
pub use reference::reference_python;
pub use remote::{
    Catalogue, ParamInfo, PortInfo, RemoteStage, StageInfo, WORKER_ERROR_FILE, WORKER_NOTES_FILE,
    WORKER_PROTOCOL, WORKER_THREADS_ENV, exec_in_worker, exec_task_in_worker,
};
pub use stage::{
    ArtifactKind, Context, DynStage, NoParams, ParamDoc, Params, Port, ShardTask, Stage,
    StageError, canonical_params, input_list, list_input_key, reported_device, split_input_key,
};
pub use standalone::{check_inputs, check_outputs, output_files, run_standalone};
pub use table::{
    DEFAULT_ROW_GROUP_ROWS, SCHEMA_KEY, TableKind, TableWriter, WIDE_ROW_GROUP_BYTES, check_kind,
    f32_list_array, f32_list_field, f32_list_type, f32_list_values, open_table, read_table,
    wide_rows_per_group, write_table,
};
pub use tensors::{
    Dtype, NamedTensor, SAFETENSORS_CONFIG_KEY, SAFETENSORS_SCHEMA_KEY, SafetensorsFile,
    ShapeCheck, read_safetensors, write_safetensors,
};
pub use vector::{closest, cosine};

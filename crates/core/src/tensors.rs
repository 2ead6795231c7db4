//! safetensors files with the architecture config as JSON in `__metadata__`.
//!
//! The format is small enough to write directly (8-byte little-endian header length, JSON header,
//! raw little-endian data), and doing so keeps the bytes deterministic: the header's keys are
//! written in sorted order, so the same tensors and config always give the same file.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;

use serde_json::{Map, Value, json};

use crate::error::{Error, IoContext, Result};

/// The `__metadata__` key holding the table-kind-like tag, e.g. `brain2word-model/1`.
pub const SAFETENSORS_SCHEMA_KEY: &str = "brainpipe.schema";
/// The `__metadata__` key holding the architecture config as a JSON string.
pub const SAFETENSORS_CONFIG_KEY: &str = "config";

/// Headers larger than this are refused as corrupt rather than allocated.
const MAX_HEADER_BYTES: u64 = 100 << 20;

/// Element types brainpipe writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    /// 32-bit float.
    F32,
    /// 64-bit float.
    F64,
    /// bfloat16.
    Bf16,
    /// 16-bit float.
    F16,
    /// 64-bit signed integer.
    I64,
    /// 32-bit signed integer.
    I32,
    /// Unsigned byte.
    U8,
}

impl Dtype {
    /// The safetensors name of the type.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "F32",
            Dtype::F64 => "F64",
            Dtype::Bf16 => "BF16",
            Dtype::F16 => "F16",
            Dtype::I64 => "I64",
            Dtype::I32 => "I32",
            Dtype::U8 => "U8",
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 | Dtype::I32 => 4,
            Dtype::Bf16 | Dtype::F16 => 2,
            Dtype::I64 | Dtype::F64 => 8,
            Dtype::U8 => 1,
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "F32" => Dtype::F32,
            "F64" => Dtype::F64,
            "BF16" => Dtype::Bf16,
            "F16" => Dtype::F16,
            "I64" => Dtype::I64,
            "I32" => Dtype::I32,
            "U8" => Dtype::U8,
            _ => return None,
        })
    }
}

/// One named tensor: type, shape and little-endian bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    /// Variable path, e.g. `encoder.layers.0.weight`.
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Shape, outermost first.
    pub shape: Vec<usize>,
    /// `shape.product() * dtype.size()` little-endian bytes.
    pub data: Vec<u8>,
}

impl NamedTensor {
    /// An `f32` tensor.
    pub fn f32(name: impl Into<String>, shape: Vec<usize>, values: &[f32]) -> Self {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        NamedTensor { name: name.into(), dtype: Dtype::F32, shape, data }
    }

    /// An `f64` tensor.
    pub fn f64(name: impl Into<String>, shape: Vec<usize>, values: &[f64]) -> Self {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        NamedTensor { name: name.into(), dtype: Dtype::F64, shape, data }
    }

    /// The values of an `f64` tensor, or `None` for other types.
    pub fn to_f64(&self) -> Option<Vec<f64>> {
        (self.dtype == Dtype::F64).then(|| {
            self.data
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().expect("chunks of 8")))
                .collect()
        })
    }

    /// The values of an `f32` tensor, or `None` for other types.
    pub fn to_f32(&self) -> Option<Vec<f32>> {
        (self.dtype == Dtype::F32).then(|| {
            self.data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        })
    }
}

/// Writes `tensors` to `path`, with `schema` and `config` (any JSON) in `__metadata__`.
pub fn write_safetensors(
    path: &Path,
    tensors: &[NamedTensor],
    schema: &str,
    config: &Value,
) -> Result<()> {
    let mut sorted: Vec<&NamedTensor> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut header = Map::new();
    let mut metadata = Map::new();
    metadata.insert(SAFETENSORS_SCHEMA_KEY.into(), Value::String(schema.into()));
    metadata.insert(SAFETENSORS_CONFIG_KEY.into(), Value::String(config.to_string()));
    header.insert("__metadata__".into(), Value::Object(metadata));
    let mut offset = 0usize;
    for t in &sorted {
        let expected = t.shape.iter().product::<usize>() * t.dtype.size();
        if t.data.len() != expected {
            return Err(Error::Safetensors {
                path: path.to_path_buf(),
                message: format!(
                    "tensor `{}` has {} bytes, shape {:?} of {} needs {expected}",
                    t.name,
                    t.data.len(),
                    t.shape,
                    t.dtype.name()
                ),
            });
        }
        header.insert(
            t.name.clone(),
            json!({"dtype": t.dtype.name(), "shape": t.shape, "data_offsets": [offset, offset + expected]}),
        );
        offset += expected;
    }
    let mut header_bytes = serde_json::to_vec(&Value::Object(header))
        .map_err(|source| Error::Json { path: path.to_path_buf(), source })?;
    // The data section must start 8-byte aligned; the spec pads the header with spaces.
    while !header_bytes.len().is_multiple_of(8) {
        header_bytes.push(b' ');
    }
    let file = File::create(path).at(path)?;
    let mut out = BufWriter::new(file);
    out.write_all(&(header_bytes.len() as u64).to_le_bytes()).at(path)?;
    out.write_all(&header_bytes).at(path)?;
    for t in &sorted {
        out.write_all(&t.data).at(path)?;
    }
    out.into_inner().map_err(|e| Error::io(path, e.into_error()))?.sync_all().at(path)
}

/// A safetensors file read into memory.
#[derive(Clone, Debug, PartialEq)]
pub struct SafetensorsFile {
    /// The `__metadata__` map (empty when absent).
    pub metadata: BTreeMap<String, String>,
    /// The tensors in file order.
    pub tensors: Vec<NamedTensor>,
}

impl SafetensorsFile {
    /// The config JSON stored under [`SAFETENSORS_CONFIG_KEY`], if any.
    pub fn config(&self, path: &Path) -> Result<Option<Value>> {
        self.metadata
            .get(SAFETENSORS_CONFIG_KEY)
            .map(|s| {
                serde_json::from_str(s).map_err(|source| Error::Json { path: path.into(), source })
            })
            .transpose()
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<&NamedTensor> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// Checks that the sizes a model's config gives are the shapes of tensors in its weights, before
/// the model is built: a config is never trusted for an allocation, each size must be backed by
/// the file's bytes. Collects the first disagreement; later checks are skipped once one failed.
#[derive(Debug)]
pub struct ShapeCheck<'a> {
    file: &'a SafetensorsFile,
    /// The config's file name, as messages call it (`config.json`).
    config: &'a str,
    problem: Option<String>,
}

impl<'a> ShapeCheck<'a> {
    /// A check of `config`'s sizes against `file`.
    pub fn new(file: &'a SafetensorsFile, config: &'a str) -> Self {
        ShapeCheck { file, config, problem: None }
    }

    /// The tensor `name` must exist with `shape`.
    pub fn shape(&mut self, name: &str, shape: &[i64]) -> &mut Self {
        if self.problem.is_none() {
            let wanted: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
            let config = self.config;
            self.problem = match self.file.tensor(name) {
                Some(t) if t.shape == wanted => None,
                Some(t) => {
                    Some(format!("`{name}` is {:?}, but {config} makes it {wanted:?}", t.shape))
                }
                None => Some(format!("no `{name}`, which {config} needs")),
            };
        }
        self
    }

    /// Tensors named `{prefix}.{i}.…` must exist for `i` in `0..count` and not for `count`:
    /// `count` is the config's `field`, and the error counts what was found as `things`.
    pub fn count(&mut self, prefix: &str, count: i64, things: &str, field: &str) -> &mut Self {
        let has = |i: i64| {
            let start = format!("{prefix}.{i}.");
            self.file.tensors.iter().any(|t| t.name.starts_with(&start))
        };
        if self.problem.is_none() && ((count > 0 && !has(count - 1)) || has(count)) {
            let found = (0..).take_while(|&i| has(i)).count();
            self.problem =
                Some(format!("{found} {things}, but {} gives {field} {count}", self.config));
        }
        self
    }

    /// The first disagreement, if any.
    pub fn finish(&self) -> std::result::Result<(), String> {
        self.problem.clone().map_or(Ok(()), Err)
    }
}

/// Reads and validates a safetensors file (header bounds, offsets, types).
pub fn read_safetensors(path: &Path) -> Result<SafetensorsFile> {
    // Names and dtypes are the file's text: control characters in them are escaped (one line).
    let corrupt = |message: String| Error::Safetensors {
        path: path.to_path_buf(),
        message: crate::one_line(&message),
    };
    let mut file = File::open(path).at(path)?;
    let file_len = file.metadata().at(path)?.len();
    let mut len_bytes = [0u8; 8];
    file.read_exact(&mut len_bytes)
        .map_err(|_| corrupt("shorter than the 8-byte header length".into()))?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > MAX_HEADER_BYTES || 8 + header_len > file_len {
        return Err(corrupt(format!(
            "header length {header_len} exceeds the file ({file_len} bytes)"
        )));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).at(path)?;
    let header: Map<String, Value> = serde_json::from_slice(&header)
        .map_err(|e| corrupt(format!("header is not a JSON object: {e}")))?;
    let mut data = Vec::with_capacity((file_len - 8 - header_len) as usize);
    file.read_to_end(&mut data).at(path)?;
    let mut metadata = BTreeMap::new();
    let mut tensors = Vec::new();
    for (name, info) in header {
        if name == "__metadata__" {
            for (k, v) in info.as_object().into_iter().flatten() {
                let v =
                    v.as_str().ok_or_else(|| corrupt(format!("metadata `{k}` is not a string")))?;
                metadata.insert(k.clone(), v.to_owned());
            }
            continue;
        }
        let dtype_name = info["dtype"].as_str().unwrap_or_default();
        let dtype = Dtype::parse(dtype_name).ok_or_else(|| {
            corrupt(format!("tensor `{name}` has unsupported dtype `{dtype_name}`"))
        })?;
        let shape: Vec<usize> = serde_json::from_value(info["shape"].clone())
            .map_err(|_| corrupt(format!("tensor `{name}` has no valid shape")))?;
        let [begin, end]: [usize; 2] = serde_json::from_value(info["data_offsets"].clone())
            .map_err(|_| corrupt(format!("tensor `{name}` has no valid data_offsets")))?;
        // A shape whose byte size overflows cannot match any offsets (and must not wrap).
        let expected = shape
            .iter()
            .try_fold(dtype.size(), |n, &d| n.checked_mul(d))
            .ok_or_else(|| corrupt(format!("tensor `{name}`: shape {shape:?} overflows")))?;
        if begin > end || end > data.len() || end - begin != expected {
            return Err(corrupt(format!(
                "tensor `{name}` offsets [{begin}, {end}) disagree with shape {shape:?} or the file size"
            )));
        }
        tensors.push((begin, NamedTensor { name, dtype, shape, data: data[begin..end].to_vec() }));
    }
    tensors.sort_by_key(|(begin, _)| *begin);
    Ok(SafetensorsFile { metadata, tensors: tensors.into_iter().map(|(_, t)| t).collect() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shape_whose_size_overflows_is_refused_not_wrapped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("huge.safetensors");
        // 2^32 · 2^32 · 4 bytes wraps to 0 in usize: it must not match the empty data range.
        let header =
            br#"{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        std::fs::write(&path, bytes).expect("write");
        let err = read_safetensors(&path).expect_err("refused").to_string();
        assert!(err.contains("overflows") && err.contains("huge.safetensors"), "{err}");
        assert!(!err.contains('\n'), "one line: {err}");
    }

    #[test]
    fn names_holding_newlines_give_one_line_errors() {
        // Found by the safetensors fuzz target: a metadata key with an escaped newline.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("names.safetensors");
        for header in [
            br#"{"__metadata__":{"con\nfig":1}}"#.as_slice(),
            br#"{"w\r\nx":{"dtype":"F\n32","shape":[1],"data_offsets":[0,4]}}"#,
            br#"{"w\nx":{"dtype":"F32","shape":"?","data_offsets":[0,4]}}"#,
        ] {
            let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
            bytes.extend_from_slice(header);
            bytes.extend_from_slice(&[0; 4]);
            std::fs::write(&path, bytes).expect("write");
            let err = read_safetensors(&path).expect_err("refused").to_string();
            assert!(!err.contains('\n') && !err.contains('\r'), "one line: {err}");
            assert!(err.contains("names.safetensors") && err.contains(r"\n"), "{err}");
        }
    }

    #[test]
    fn round_trip_keeps_values_and_config_and_is_deterministic() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = dir.path().join("a.safetensors");
        let b = dir.path().join("b.safetensors");
        let tensors = vec![
            NamedTensor::f32("w", vec![2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, -6.5]),
            NamedTensor::f32("b", vec![3], &[0.0, 0.25, f32::NAN]),
        ];
        let config = json!({"model": "base", "hidden": [2000, 200]});
        write_safetensors(&a, &tensors, "test-model/1", &config).expect("write");
        let mut reversed = tensors.clone();
        reversed.reverse();
        write_safetensors(&b, &reversed, "test-model/1", &config).expect("write");
        assert_eq!(std::fs::read(&a).expect("a"), std::fs::read(&b).expect("b"));
        let read = read_safetensors(&a).expect("read");
        assert_eq!(read.config(&a).expect("config"), Some(config));
        assert_eq!(read.metadata[SAFETENSORS_SCHEMA_KEY], "test-model/1");
        assert_eq!(read.tensor("w").and_then(NamedTensor::to_f32).expect("w")[5], -6.5);
        assert!(read.tensor("b").and_then(NamedTensor::to_f32).expect("b")[2].is_nan());
    }

    #[test]
    fn truncated_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("m.safetensors");
        write_safetensors(&path, &[NamedTensor::f32("w", vec![4], &[1.0; 4])], "m/1", &json!({}))
            .expect("write");
        let bytes = std::fs::read(&path).expect("read");
        std::fs::write(&path, &bytes[..bytes.len() - 3]).expect("truncate");
        let err = read_safetensors(&path).expect_err("truncated");
        assert!(err.to_string().contains("m.safetensors"), "{err}");
        assert!(err.to_string().contains("offsets"), "{err}");
    }
}

//! The one place where brainpipe meets LibTorch (through `tch`): which device to compute on, what
//! the runtime offers (`brainpipe doctor`), Arrow columns to tensors and back, and model weights to
//! safetensors files with their architecture config.
//!
//! ```
//! use brainpipe_tensor::{DeviceChoice, ResolveDevice, f32_rows_to_tensor, tensor_to_f32_rows};
//!
//! let device = DeviceChoice::parse("cpu")?.resolve()?;
//! let t = f32_rows_to_tensor(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 3, device)?;
//! assert_eq!(t.size(), vec![2, 3]);
//! let (values, dim) = tensor_to_f32_rows(&t)?;
//! assert_eq!((values.len(), dim), (6, 3));
//! # Ok::<(), brainpipe_tensor::TensorError>(())
//! ```

mod adam;
mod graph;
mod shim;

pub use adam::{AdamConfig, FusedAdam};
pub use graph::CudaGraph;

use std::path::Path;

use std::collections::HashMap;

use brainpipe_core::{NamedTensor, SafetensorsFile, read_safetensors, write_safetensors};
use serde::Serialize;
use tch::{Device, Kind, Tensor};

/// The LibTorch version torch-sys was built against (from the wheel's `version.py`).
pub const LIBTORCH_VERSION: &str = env!("BRAINPIPE_LIBTORCH_VERSION");

/// Errors of the tensor glue.
#[derive(Debug, thiserror::Error)]
pub enum TensorError {
    /// A device string that is not `auto`, `cpu`, `cuda` or `cuda:N`.
    #[error(transparent)]
    BadDevice(#[from] brainpipe_core::UnknownDevice),
    /// CUDA was asked for but is not available.
    #[error("device `{0}` requested but CUDA is not available ({1} CUDA devices visible)")]
    NoCuda(String, i64),
    /// LibTorch raised an error.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// A shape that does not fit the data.
    #[error("{0}")]
    Shape(String),
    /// Reading or writing an artifact failed.
    #[error(transparent)]
    Artifact(#[from] brainpipe_core::Error),
}

pub use brainpipe_core::{DeviceChoice, Precision};

/// Turns a [`DeviceChoice`] of params into a LibTorch device.
pub trait ResolveDevice {
    /// The tch device, checking that a requested CUDA device exists.
    fn resolve(self) -> Result<Device, TensorError>;
}

impl ResolveDevice for DeviceChoice {
    fn resolve(self) -> Result<Device, TensorError> {
        let count = tch::Cuda::device_count();
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Auto if count > 0 => Ok(Device::Cuda(0)),
            DeviceChoice::Auto => Ok(Device::Cpu),
            DeviceChoice::Cuda(n) if (n.unwrap_or(0) as i64) < count => {
                Ok(Device::Cuda(n.unwrap_or(0)))
            }
            DeviceChoice::Cuda(n) => {
                Err(TensorError::NoCuda(format!("cuda:{}", n.unwrap_or(0)), count))
            }
        }
    }
}

/// `cpu` or `cuda:N`, as recorded in manifests.
pub fn device_name(device: Device) -> String {
    match device {
        Device::Cuda(n) => format!("cuda:{n}"),
        Device::Mps => "mps".to_owned(),
        Device::Vulkan => "vulkan".to_owned(),
        Device::Cpu => "cpu".to_owned(),
    }
}

/// Sets LibTorch's intra-op CPU threads (at least 1).
pub fn set_cpu_threads(threads: i32) {
    tch::set_num_threads(threads.max(1));
}

/// Applies a stage's `threads` param: a positive count sets LibTorch's CPU threads (float
/// reductions split by thread count, so a fixed count gives the same CPU bytes whatever `--jobs`
/// gives the worker); 0 keeps the worker's share of the cores.
pub fn apply_threads_param(threads: i32) {
    if threads > 0 {
        tch::set_num_threads(threads);
    }
}

/// LibTorch's global TF32 switches (`torch.backends.cuda.matmul.allow_tf32` and
/// `torch.backends.cudnn.allow_tf32` in Python), which tch does not expose.
///
/// They are members of `at::Context`, reached through their C++ symbols in `libtorch_cpu`
/// (Itanium ABI: the object pointer is the first argument). The symbol names are those of the
/// pinned LibTorch 2.11.0; a LibTorch without them fails to link, never misbehaves at run time.
mod tf32 {
    use std::ffi::c_void;

    unsafe extern "C" {
        #[link_name = "_ZN2at13globalContextEv"]
        fn at_global_context() -> *mut c_void;
        #[link_name = "_ZN2at7Context18setAllowTF32CuBLASEb"]
        fn at_set_allow_tf32_cublas(context: *mut c_void, allow: bool);
        #[link_name = "_ZNK2at7Context15allowTF32CuBLASEv"]
        fn at_allow_tf32_cublas(context: *const c_void) -> bool;
        #[link_name = "_ZN2at7Context17setAllowTF32CuDNNEb"]
        fn at_set_allow_tf32_cudnn(context: *mut c_void, allow: bool);
    }

    pub(super) fn set(allow: bool) {
        // SAFETY: `at::globalContext()` returns a reference to a process-wide object that lives
        // until exit; the setters take that object and a bool, and only store the flag.
        unsafe {
            let context = at_global_context();
            at_set_allow_tf32_cublas(context, allow);
            at_set_allow_tf32_cudnn(context, allow);
        }
    }

    pub(super) fn get() -> bool {
        // SAFETY: as in `set`; the getter only reads the flag.
        unsafe { at_allow_tf32_cublas(at_global_context()) }
    }
}

/// Lets (or forbids) CUDA's f32 matmuls and convolutions use TF32 tensor cores: 10-bit
/// mantissa products with f32 accumulation, several times the f32 throughput on Ampere and later
/// (`precision: tf32` of the training stages). Process-wide; CPU computation is unaffected.
pub fn set_tf32(allow: bool) {
    tf32::set(allow);
}

/// Whether CUDA f32 matmuls may use TF32 (see [`set_tf32`]).
pub fn tf32_allowed() -> bool {
    tf32::get()
}

/// What a [`Precision`] means to LibTorch.
pub trait PrecisionExt {
    /// The tensor kind of the casts this precision asks for.
    fn kind(self) -> Kind;
    /// Sets LibTorch's TF32 switch for this precision until the guard is dropped.
    fn activate(self) -> Tf32Guard;
}

impl PrecisionExt for Precision {
    fn kind(self) -> Kind {
        match self {
            Precision::Bf16 => Kind::BFloat16,
            Precision::Fp32 | Precision::Tf32 => Kind::Float,
        }
    }

    fn activate(self) -> Tf32Guard {
        let previous = tf32_allowed();
        set_tf32(self == Precision::Tf32);
        Tf32Guard { previous }
    }
}

/// Restores LibTorch's TF32 switch when dropped (from [`PrecisionExt::activate`]).
#[derive(Debug)]
pub struct Tf32Guard {
    previous: bool,
}

impl Drop for Tf32Guard {
    fn drop(&mut self) {
        set_tf32(self.previous);
    }
}

/// What the LibTorch runtime offers, for `brainpipe doctor`.
#[derive(Clone, Debug, Serialize)]
pub struct RuntimeInfo {
    /// LibTorch version linked.
    pub libtorch: String,
    /// Whether CUDA is usable.
    pub cuda_available: bool,
    /// Number of CUDA devices.
    pub cuda_devices: i64,
    /// Device names (from `nvidia-smi` when present; LibTorch's C API does not expose them).
    pub device_names: Vec<String>,
    /// Whether cuDNN is usable.
    pub cudnn_available: bool,
    /// Intra-op CPU threads LibTorch uses.
    pub threads: i32,
    /// Whether CUDA f32 matmuls may use TF32 tensor cores.
    pub tf32: bool,
}

impl RuntimeInfo {
    /// Probes the runtime.
    pub fn probe() -> Self {
        let cuda_devices = tch::Cuda::device_count();
        RuntimeInfo {
            libtorch: LIBTORCH_VERSION.to_owned(),
            cuda_available: tch::Cuda::is_available(),
            cuda_devices,
            device_names: if cuda_devices > 0 { gpu_names() } else { Vec::new() },
            cudnn_available: tch::Cuda::cudnn_is_available(),
            threads: tch::get_num_threads(),
            tf32: tf32_allowed(),
        }
    }
}

fn gpu_names() -> Vec<String> {
    std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=name,memory.total", "--format=csv,noheader"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().map(|l| l.trim().to_owned()).collect())
        .unwrap_or_default()
}

/// Row-major `rows × dim` values (e.g. a `FixedSizeList<Float32>` column) as a `[rows, dim]` tensor.
pub fn f32_rows_to_tensor(
    values: &[f32],
    dim: usize,
    device: Device,
) -> Result<Tensor, TensorError> {
    if dim == 0 || !values.len().is_multiple_of(dim) {
        return Err(TensorError::Shape(format!(
            "{} values do not form rows of {dim}",
            values.len()
        )));
    }
    let rows = (values.len() / dim) as i64;
    Ok(Tensor::from_slice(values).view([rows, dim as i64]).to_device(device))
}

/// A 2-D tensor's values as row-major `f32` (moved to the CPU) and its row width.
pub fn tensor_to_f32_rows(tensor: &Tensor) -> Result<(Vec<f32>, usize), TensorError> {
    let size = tensor.size();
    let [_, dim] = size[..] else {
        return Err(TensorError::Shape(format!("expected a 2-D tensor, got shape {size:?}")));
    };
    let flat = tensor.to_device(Device::Cpu).to_kind(Kind::Float).contiguous().view([-1]);
    Ok((Vec::<f32>::try_from(&flat)?, dim as usize))
}

/// Saves every variable of `vs` (as `f32`) to a safetensors file with `schema` and `config`.
///
/// Variable names are the VarStore paths (`encoder.layers.0.weight`), so the file reads like the
/// model's own layout in any safetensors tool.
pub fn save_var_store(
    vs: &tch::nn::VarStore,
    path: &Path,
    schema: &str,
    config: &serde_json::Value,
) -> Result<(), TensorError> {
    let mut tensors = Vec::new();
    for (name, var) in vs.variables() {
        let shape: Vec<usize> = var.size().iter().map(|&d| d as usize).collect();
        let flat = var.detach().to_device(Device::Cpu).to_kind(Kind::Float).contiguous().view([-1]);
        let values = Vec::<f32>::try_from(&flat)?;
        tensors.push(NamedTensor::f32(name, shape, &values));
    }
    write_safetensors(path, &tensors, schema, config)?;
    Ok(())
}

/// Every disagreement between a model's `variables` and the tensors of a weights file, sorted:
/// `missing `name``, `unexpected `name``, `` `name` has shape [..], the model needs [..]``.
/// Tensors whose name `skip` accepts (e.g. buffers an old checkpoint carries) are ignored.
pub fn weight_mismatches(
    variables: &HashMap<String, Tensor>,
    file: &SafetensorsFile,
    skip: impl Fn(&str) -> bool,
) -> Vec<String> {
    let mut problems: Vec<String> = variables
        .keys()
        .filter(|name| file.tensor(name).is_none())
        .map(|name| format!("missing `{name}`"))
        .collect();
    for tensor in file.tensors.iter().filter(|t| !skip(&t.name)) {
        match variables.get(&tensor.name) {
            None => problems.push(format!("unexpected `{}`", tensor.name)),
            Some(var) => {
                let want: Vec<usize> = var.size().iter().map(|&d| d as usize).collect();
                if want != tensor.shape {
                    problems.push(format!(
                        "`{}` has shape {:?}, the model needs {want:?}",
                        tensor.name, tensor.shape
                    ));
                }
            }
        }
    }
    problems.sort();
    problems
}

/// Loads a safetensors file into the variables of `vs`, returning its config. Missing or
/// unexpected names, or shape mismatches, are one error listing them all.
pub fn load_var_store(
    vs: &mut tch::nn::VarStore,
    path: &Path,
) -> Result<Option<serde_json::Value>, TensorError> {
    let file = read_safetensors(path)?;
    let variables = vs.variables();
    let problems = weight_mismatches(&variables, &file, |_| false);
    if !problems.is_empty() {
        return Err(TensorError::Shape(format!("{}: {}", path.display(), problems.join(", "))));
    }
    tch::no_grad(|| -> Result<(), TensorError> {
        for tensor in &file.tensors {
            let values = tensor.to_f32().ok_or_else(|| {
                TensorError::Shape(format!("{}: `{}` is not F32", path.display(), tensor.name))
            })?;
            let mut var = variables[&tensor.name].shallow_clone();
            let shape: Vec<i64> = tensor.shape.iter().map(|&d| d as i64).collect();
            let source = Tensor::from_slice(&values).view(shape.as_slice()).to_device(var.device());
            var.copy_(&source);
        }
        Ok(())
    })?;
    Ok(file.config(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_strings() {
        assert_eq!(DeviceChoice::parse("auto").ok(), Some(DeviceChoice::Auto));
        assert_eq!(DeviceChoice::parse("cuda:1").ok(), Some(DeviceChoice::Cuda(Some(1))));
        assert!(DeviceChoice::parse("gpu").is_err());
        assert_eq!(DeviceChoice::Cpu.resolve().ok(), Some(Device::Cpu));
    }

    #[test]
    fn tf32_switch_reaches_libtorch() {
        // The flag LibTorch itself reads back: proves the symbols and the calling convention.
        let before = tf32_allowed();
        set_tf32(true);
        assert!(tf32_allowed());
        set_tf32(false);
        assert!(!tf32_allowed());
        set_tf32(before);
    }

    #[test]
    fn var_store_round_trip_gives_identical_outputs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("m.safetensors");
        tch::manual_seed(3);
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let layer = tch::nn::linear(vs.root() / "encoder" / "dense0", 5, 3, Default::default());
        let x = Tensor::randn([4, 5], (Kind::Float, Device::Cpu));
        let before = x.apply(&layer);
        let config = serde_json::json!({"hidden": 3});
        save_var_store(&vs, &path, "test/1", &config).expect("save");
        tch::manual_seed(99);
        let mut other = tch::nn::VarStore::new(Device::Cpu);
        let layer2 = tch::nn::linear(other.root() / "encoder" / "dense0", 5, 3, Default::default());
        assert_eq!(load_var_store(&mut other, &path).expect("load"), Some(config));
        let after = x.apply(&layer2);
        assert!(before.equal(&after), "identical predictions after reload");
    }

    #[test]
    fn load_lists_missing_and_unexpected_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("m.safetensors");
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let _ = tch::nn::linear(vs.root() / "a", 2, 2, Default::default());
        save_var_store(&vs, &path, "test/1", &serde_json::json!({})).expect("save");
        let mut other = tch::nn::VarStore::new(Device::Cpu);
        let _ = tch::nn::linear(other.root() / "b", 2, 2, Default::default());
        let err = load_var_store(&mut other, &path).expect_err("mismatch").to_string();
        assert!(
            err.contains("missing `b.weight`") && err.contains("unexpected `a.weight`"),
            "{err}"
        );
    }
}

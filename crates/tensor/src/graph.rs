//! CUDA graphs (tch binds none): record the kernels a closure launches once, replay them with a
//! single launch. For a training step of many small kernels this removes the launch overhead
//! (docs/BENCHMARKS.md, "GPU training step"). Through `csrc/cuda_graph.cpp`.
//!
//! The usual rules of CUDA graphs hold: tensors the closure reads must stay where they are
//! (copy new data into them before each replay), shapes are fixed, and nothing may synchronise
//! with the host while capturing.

use std::ffi::{c_char, c_void};

use crate::TensorError;
use crate::shim::{checked, message};

unsafe extern "C" {
    fn brainpipe_graph_new(error: *mut c_char, error_len: usize) -> *mut c_void;
    fn brainpipe_graph_begin(graph: *mut c_void, error: *mut c_char, error_len: usize) -> i32;
    fn brainpipe_graph_end(graph: *mut c_void, error: *mut c_char, error_len: usize) -> i32;
    fn brainpipe_graph_replay(graph: *mut c_void, error: *mut c_char, error_len: usize) -> i32;
    fn brainpipe_graph_free(graph: *mut c_void);
}

/// A captured CUDA graph.
#[derive(Debug)]
pub struct CudaGraph {
    handle: *mut c_void,
}

impl CudaGraph {
    /// Captures the kernels `f` launches on the current CUDA device. `f` runs once, on a side
    /// stream, and its work is recorded, not executed; run it eagerly a few times first so that
    /// lazily created state (cuBLAS handles, allocator pools) exists before capture.
    pub fn capture<T>(f: impl FnOnce() -> T) -> Result<(CudaGraph, T), TensorError> {
        let mut error = vec![0 as c_char; 1024];
        // SAFETY: the buffer outlives the call; the C++ side writes a NUL-terminated message.
        let handle = unsafe { brainpipe_graph_new(error.as_mut_ptr(), error.len()) };
        if handle.is_null() {
            return Err(message("CUDA graph", &error));
        }
        let graph = CudaGraph { handle };
        // SAFETY: `handle` is the live graph created above.
        checked("CUDA graph", |e, n| unsafe { brainpipe_graph_begin(graph.handle, e, n) })?;
        let out = f();
        // SAFETY: as above; ends the capture begun above and restores the previous stream.
        checked("CUDA graph", |e, n| unsafe { brainpipe_graph_end(graph.handle, e, n) })?;
        Ok((graph, out))
    }

    /// Launches the captured work again (asynchronously, on the current stream's device).
    pub fn replay(&self) -> Result<(), TensorError> {
        // SAFETY: `handle` is a live, fully captured graph owned by `self`.
        checked("CUDA graph", |e, n| unsafe { brainpipe_graph_replay(self.handle, e, n) })
    }
}

impl Drop for CudaGraph {
    fn drop(&mut self) {
        // SAFETY: `handle` came from `brainpipe_graph_new` and is freed once, here.
        unsafe { brainpipe_graph_free(self.handle) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_without_cuda_is_an_error_not_a_crash() {
        if tch::Cuda::is_available() {
            return; // exercised by the device script (bench/gpu.sh) where a GPU exists
        }
        let result = CudaGraph::capture(|| ());
        assert!(result.is_err(), "no CUDA device: capture must fail cleanly");
    }
}

use std::path::{Path, PathBuf};

/// Everything that can go wrong while training or applying a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelsError {
    /// Reading or writing an artifact failed.
    #[error(transparent)]
    Artifact(#[from] brainpipe_core::Error),
    /// Tensor glue (device, safetensors) failed.
    #[error(transparent)]
    Tensor(#[from] brainpipe_tensor::TensorError),
    /// LibTorch raised an error.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// An input's content does not fit (no matching targets, bad ROI table…).
    #[error("{}: {message}", path.display())]
    Data {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Params that cannot work together (e.g. a ROI model without ROI blocks).
    #[error("params: {0}")]
    Params(String),
}

impl ModelsError {
    /// A [`ModelsError::Data`] for `path`.
    pub fn data(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        ModelsError::Data { path: path.as_ref().to_path_buf(), message: message.into() }
    }
}

/// `Result` with [`ModelsError`].
pub type Result<T, E = ModelsError> = std::result::Result<T, E>;

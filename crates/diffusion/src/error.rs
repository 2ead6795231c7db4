use brainpipe_core::one_line;
use std::path::{Path, PathBuf};

/// Everything that can go wrong in the diffusion crate. Each message is one line and names the
/// file it concerns, when there is one.
#[derive(Debug, thiserror::Error)]
pub enum DiffusionError {
    /// A config (`config.json`, `scheduler_config.json`, `model_index.json`) that cannot be used.
    #[error("{}: config: {message}", path.display())]
    Config {
        /// The config file (or the pipeline directory).
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Weights that do not fit the model: missing, unexpected or mis-shaped names, dtypes.
    #[error("{}: weights: {message}", path.display())]
    Weights {
        /// The safetensors file.
        path: PathBuf,
        /// Every problem found, joined.
        message: String,
    },
    /// An image that cannot be read or written.
    #[error("{}: image: {message}", path.display())]
    Image {
        /// The image file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An input table without the columns or values a stage needs.
    #[error("{}: {message}", path.display())]
    Table {
        /// The table.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Parameters that cannot work together.
    #[error("params: {0}")]
    Params(String),
    /// Tensors whose shapes do not fit the model.
    #[error("shape: {0}")]
    Shape(String),
    /// LibTorch raised an error.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// The tensor glue failed.
    #[error(transparent)]
    Tensor(#[from] brainpipe_tensor::TensorError),
    /// Reading or writing an artifact failed.
    #[error(transparent)]
    Artifact(#[from] brainpipe_core::Error),
}

impl DiffusionError {
    // Config and weights messages may quote the file's JSON (names, values): escaped to one line.
    pub(crate) fn config(path: &Path, message: impl Into<String>) -> Self {
        DiffusionError::Config { path: path.to_path_buf(), message: one_line(&message.into()) }
    }
    pub(crate) fn weights(path: &Path, message: impl Into<String>) -> Self {
        DiffusionError::Weights { path: path.to_path_buf(), message: one_line(&message.into()) }
    }
    pub(crate) fn image(path: &Path, message: impl Into<String>) -> Self {
        DiffusionError::Image { path: path.to_path_buf(), message: message.into() }
    }
    pub(crate) fn table(path: &Path, message: impl Into<String>) -> Self {
        DiffusionError::Table { path: path.to_path_buf(), message: message.into() }
    }
}

/// The crate's result type.
pub type Result<T, E = DiffusionError> = std::result::Result<T, E>;

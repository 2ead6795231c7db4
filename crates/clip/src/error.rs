use std::path::{Path, PathBuf};

/// Everything that can go wrong in the CLIP crate. Each message is one line and names the file
/// it concerns, when there is one.
#[derive(Debug, thiserror::Error)]
pub enum ClipError {
    /// An image that cannot be decoded, or whose format is not supported.
    #[error("{}: image: {message}", path.display())]
    Image {
        /// The image file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A model config (`config.json`, preprocessor config) that cannot be used.
    #[error("{}: config: {message}", path.display())]
    Config {
        /// The config file (or the model directory).
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Weights that do not fit the model: missing or unexpected names, shapes, dtypes.
    #[error("{}: weights: {message}", path.display())]
    Weights {
        /// The safetensors file.
        path: PathBuf,
        /// Every problem found, joined.
        message: String,
    },
    /// A TorchScript feature extractor that cannot be loaded or run, or whose output is unusable.
    #[error("{}: TorchScript module: {message}", path.display())]
    Module {
        /// The module file.
        path: PathBuf,
        /// What is wrong (LibTorch's message cut to its first line).
        message: String,
    },
    /// A tokenizer file (`vocab.json`, `merges.txt`) that is missing or malformed.
    #[error("{}: tokenizer: {message}", path.display())]
    Tokenizer {
        /// The tokenizer file.
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
    /// Invalid parameters.
    #[error("params: {0}")]
    Params(String),
    /// LibTorch raised an error.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// The tensor glue failed (device choice, conversions).
    #[error(transparent)]
    Tensor(#[from] brainpipe_tensor::TensorError),
    /// Reading or writing an artifact failed.
    #[error(transparent)]
    Artifact(#[from] brainpipe_core::Error),
}

impl From<brainpipe_hf::HfError> for ClipError {
    fn from(e: brainpipe_hf::HfError) -> Self {
        match e {
            brainpipe_hf::HfError::Config { path, message } => ClipError::Config { path, message },
            brainpipe_hf::HfError::Tokenizer { path, message } => {
                ClipError::Tokenizer { path, message }
            }
            brainpipe_hf::HfError::Io(e) => ClipError::Artifact(e),
        }
    }
}

impl ClipError {
    /// An [`ClipError::Image`] for `path`.
    pub(crate) fn image(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        ClipError::Image { path: path.as_ref().to_path_buf(), message: message.into() }
    }

    /// A [`ClipError::Config`] for `path`.
    pub(crate) fn config(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        ClipError::Config {
            path: path.as_ref().to_path_buf(),
            message: brainpipe_core::one_line(&message.into()),
        }
    }

    /// A [`ClipError::Module`] for `path`.
    pub(crate) fn module(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        ClipError::Module { path: path.as_ref().to_path_buf(), message: message.into() }
    }

    /// A [`ClipError::Tokenizer`] for `path`.
    pub(crate) fn tokenizer(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        ClipError::Tokenizer {
            path: path.as_ref().to_path_buf(),
            message: brainpipe_core::one_line(&message.into()),
        }
    }

    /// A [`ClipError::Table`] for `path`.
    pub(crate) fn table(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        ClipError::Table { path: path.as_ref().to_path_buf(), message: message.into() }
    }
}

/// `Result` with [`ClipError`].
pub type Result<T, E = ClipError> = std::result::Result<T, E>;

use std::path::{Path, PathBuf};

/// Everything that can go wrong in evaluation, each naming the file concerned.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// Reading or writing an artifact failed.
    #[error(transparent)]
    Artifact(#[from] brainpipe_core::Error),
    /// A file is readable but its content does not fit (missing column, unknown stimulus…).
    #[error("{}: {message}", path.display())]
    Data {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl EvalError {
    /// An [`EvalError::Data`] for `path`.
    pub fn data(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        EvalError::Data { path: path.as_ref().to_path_buf(), message: message.into() }
    }
}

/// `Result` with [`EvalError`].
pub type Result<T, E = EvalError> = std::result::Result<T, E>;

use std::path::{Path, PathBuf};

/// Why a features stage failed. Every message names the file it concerns and fits on one line.
#[derive(Debug, thiserror::Error)]
pub enum FeaturesError {
    /// A file is malformed or does not hold what this crate reads.
    #[error("{}: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The inputs are readable but cannot give features (no overlap, nothing left, too small).
    #[error("{}: {message}", path.display())]
    Data {
        /// The file the problem shows in.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A table could not be read or written.
    #[error(transparent)]
    Table(#[from] brainpipe_core::Error),
    /// A NIfTI volume could not be read.
    #[error(transparent)]
    Nifti(#[from] brainpipe_nifti::NiftiError),
}

impl FeaturesError {
    /// A [`FeaturesError::Format`] for `path`.
    pub fn format(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        FeaturesError::Format { path: path.as_ref().to_path_buf(), message: message.into() }
    }

    /// A [`FeaturesError::Data`] for `path`.
    pub fn data(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        FeaturesError::Data { path: path.as_ref().to_path_buf(), message: message.into() }
    }
}

/// `Result` with [`FeaturesError`].
pub type Result<T, E = FeaturesError> = std::result::Result<T, E>;

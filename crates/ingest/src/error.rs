use std::path::{Path, PathBuf};

/// Everything that can go wrong while generating or reading a study.
///
/// Each message fits on one line and names the file (or the parameter) at fault.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// A parameter is out of range or inconsistent with another.
    #[error("params: {0}")]
    Params(String),
    /// A word-vector file could not be read or lacks the stimulus words.
    #[error("{}: word vectors: {message}", path.display())]
    Vectors {
        /// The vector file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A NIfTI file is malformed or of an unsupported kind.
    #[error("{}: nifti: {message}", path.display())]
    Nifti {
        /// The NIfTI file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A MATLAB file is malformed or lacks what the importer needs.
    #[error("{}: {message}", path.display())]
    Mat {
        /// The MAT-file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An ROI mask is malformed or does not fit its subject's grid.
    #[error("{}: roi mask: {message}", path.display())]
    Roi {
        /// The mask file (or the ROI directory).
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An events file is malformed.
    #[error("{}: events: {message}", path.display())]
    Events {
        /// The events file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A subject shard is not the one expected, or the inputs no longer split into the shards
    /// planned (the message names the file or the input).
    #[error("{0}")]
    Shard(String),
    /// An artifact error from brainpipe-core (Parquet, schema).
    #[error(transparent)]
    Core(#[from] brainpipe_core::Error),
}

impl From<brainpipe_nifti::NiftiError> for IngestError {
    fn from(error: brainpipe_nifti::NiftiError) -> Self {
        match error {
            brainpipe_nifti::NiftiError::Io { path, source } => {
                IngestError::Core(brainpipe_core::Error::Io { path, source })
            }
            brainpipe_nifti::NiftiError::Malformed { path, message } => {
                IngestError::Nifti { path, message }
            }
        }
    }
}

impl IngestError {
    pub(crate) fn vectors(path: &Path, message: impl Into<String>) -> Self {
        IngestError::Vectors { path: path.to_path_buf(), message: message.into() }
    }

    pub(crate) fn nifti(path: &Path, message: impl Into<String>) -> Self {
        IngestError::Nifti { path: path.to_path_buf(), message: message.into() }
    }

    pub(crate) fn roi(path: &Path, message: impl Into<String>) -> Self {
        IngestError::Roi { path: path.to_path_buf(), message: message.into() }
    }
}

/// `Result` with [`IngestError`].
pub type Result<T, E = IngestError> = std::result::Result<T, E>;

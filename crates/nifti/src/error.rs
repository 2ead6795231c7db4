use std::path::PathBuf;

/// Why a NIfTI file could not be read or written. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum NiftiError {
    /// An operating-system error.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not valid NIfTI, or not one brainpipe reads.
    #[error("{}: {message}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

use std::path::{Path, PathBuf};

/// Everything that can go wrong while reading or writing brainpipe artifacts.
///
/// Each variant names the file it concerns, so a message can be printed on one line and a user
/// knows which file to look at.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system error on a file or directory.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A Parquet file could not be read or written.
    #[error("{}: parquet: {source}", path.display())]
    Parquet {
        /// The Parquet file.
        path: PathBuf,
        /// The underlying error.
        source: parquet::errors::ParquetError,
    },
    /// An Arrow array or batch could not be built or converted.
    #[error("{}: arrow: {source}", path.display())]
    Arrow {
        /// The file the batch belongs to.
        path: PathBuf,
        /// The underlying error.
        source: arrow::error::ArrowError,
    },
    /// A JSON document (manifest, metadata) could not be parsed or written.
    #[error("{}: json: {source}", path.display())]
    Json {
        /// The JSON file, or the file whose metadata holds the JSON.
        path: PathBuf,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// A safetensors file is malformed.
    #[error("{}: safetensors: {message}", path.display())]
    Safetensors {
        /// The safetensors file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An artifact does not have the schema the reader expects.
    #[error("{}: {message}", path.display())]
    Schema {
        /// The artifact.
        path: PathBuf,
        /// What is wrong, e.g. `expected table kind scans v1, found features v1`.
        message: String,
    },
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io { path: path.as_ref().to_path_buf(), source }
    }

    /// An [`Error::Schema`] for `path`.
    pub fn schema(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        Error::Schema { path: path.as_ref().to_path_buf(), message: message.into() }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds the path to an `io::Result`, turning it into this crate's [`Error`].
pub trait IoContext<T> {
    /// Attaches `path` to the error, if any.
    fn at(self, path: impl AsRef<Path>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|source| Error::io(path, source))
    }
}

/// `text` with its control characters escaped (`\n` → `\\n`, …): error messages quote what a file
/// holds (a key, a variable name), and must stay one line whatever that is.
///
/// ```
/// assert_eq!(brainpipe_core::one_line("a\r\nb\tc"), "a\\r\\nb\\tc");
/// assert_eq!(brainpipe_core::one_line("élève 🧠"), "élève 🧠");
/// ```
pub fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

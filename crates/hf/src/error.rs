use std::path::{Path, PathBuf};

/// What can go wrong reading Hugging Face model files. Each message is one line and names the
/// file.
#[derive(Debug, thiserror::Error)]
pub enum HfError {
    /// A model config (`config.json`) that cannot be used.
    #[error("{}: config: {message}", path.display())]
    Config {
        /// The config file (or the model directory).
        path: PathBuf,
        /// What is wrong.
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
    /// Reading or writing a file failed.
    #[error(transparent)]
    Io(#[from] brainpipe_core::Error),
}

impl HfError {
    /// An [`HfError::Config`] for `path`. Control characters in `message` (which may quote the
    /// file's text) are escaped: the error stays one line.
    pub(crate) fn config(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        let message = brainpipe_core::one_line(&message.into());
        HfError::Config { path: path.as_ref().to_path_buf(), message }
    }

    /// An [`HfError::Tokenizer`] for `path`, its message made one line as for
    /// [`HfError::config`].
    pub(crate) fn tokenizer(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        let message = brainpipe_core::one_line(&message.into());
        HfError::Tokenizer { path: path.as_ref().to_path_buf(), message }
    }
}

/// `Result` with [`HfError`].
pub type Result<T, E = HfError> = std::result::Result<T, E>;

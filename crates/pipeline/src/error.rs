use crate::spec::SpecError;

/// Why a pipeline could not be planned or run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The pipeline file is invalid.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// An artifact or cache file could not be read or written.
    #[error(transparent)]
    Artifact(#[from] brainpipe_core::Error),
    /// A stage failed.
    #[error("stage `{id}` ({stage}) failed: {message}")]
    Stage {
        /// Stage id in the pipeline.
        id: String,
        /// Stage name (`run` for external commands).
        stage: String,
        /// The stage's one-line error.
        message: String,
        /// An external command's exit status (128 + the signal when a signal ended it), for
        /// a Slurm job to exit with it; `None` for every other failure.
        exit_code: Option<i32>,
    },
    /// `--force` or another option names something the pipeline lacks.
    #[error("{0}")]
    Usage(String),
}

impl RunError {
    /// The exit status of the external command whose failure this is, if it is one.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            RunError::Stage { exit_code, .. } => *exit_code,
            _ => None,
        }
    }
}

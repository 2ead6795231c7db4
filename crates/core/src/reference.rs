//! The Python interpreter of the peers venv, for tests that compare with an independent
//! reference (numpy, nibabel, pyarrow, transformers, diffusers). One rule for all of them: where
//! `CI` is set a missing oracle is a failure, never a skip.

use std::path::PathBuf;

/// `$BRAINPIPE_REF_PYTHON` (the peers venv `make refenv` builds), when it names a file. Without
/// it: a panic under `CI` (the oracle must run there), else `None` after one line on stderr
/// saying that `what` (a test's name) was skipped.
pub fn reference_python(what: &str) -> Option<PathBuf> {
    let python = std::env::var_os("BRAINPIPE_REF_PYTHON").map(PathBuf::from);
    match python.filter(|p| p.is_file()) {
        Some(p) => Some(p),
        None if std::env::var_os("CI").is_some() => panic!(
            "{what}: CI is set but BRAINPIPE_REF_PYTHON names no interpreter (make refenv): the oracle must run"
        ),
        None => {
            eprintln!("skipped {what}: BRAINPIPE_REF_PYTHON is not set (make test sets it)");
            None
        }
    }
}

//! The scratch directory of the targets that read files: one per fuzzing process (libFuzzer's
//! `-jobs`/`-fork` run several), under `TMPDIR` (`/dev/shm` makes them several times faster),
//! removed when the process ends normally.

use std::path::Path;
use std::sync::OnceLock;

/// This process's scratch directory.
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("fuzz scratch dir")).path()
}

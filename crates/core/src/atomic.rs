//! Directories that appear whole or not at all.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, IoContext, Result};

/// A temporary directory beside its final path, renamed into place by [`AtomicDir::commit`].
///
/// Dropped without a commit (an error, a panic) it removes itself; a killed process leaves only a
/// `.NAME.tmp-*` directory that no reader mistakes for the real one, and that `brainpipe gc` sweeps.
#[derive(Debug)]
pub struct AtomicDir {
    temp: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl AtomicDir {
    /// Creates the temporary directory for `target` (whose parent is created if needed).
    pub fn new(target: &Path) -> Result<Self> {
        let parent =
            target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        fs::create_dir_all(parent).at(parent)?;
        let name = target
            .file_name()
            .ok_or_else(|| Error::schema(target, "output directory needs a name"))?
            .to_string_lossy();
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let temp = parent.join(format!(".{name}.tmp-{}-{nanos}", std::process::id()));
        fs::create_dir(&temp).at(&temp)?;
        Ok(AtomicDir { temp, target: target.to_path_buf(), committed: false })
    }

    /// The temporary directory to write into.
    pub fn path(&self) -> &Path {
        &self.temp
    }

    /// The final path.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Renames the temporary directory to the target. Fails if the target exists and is not empty
    /// (the caller decides whether replacing is safe and removes it first).
    pub fn commit(mut self) -> Result<PathBuf> {
        // Make the contents durable before the rename publishes them.
        if let Ok(dir) = fs::File::open(&self.temp) {
            let _ = dir.sync_all();
        }
        fs::rename(&self.temp, &self.target).at(&self.target)?;
        self.committed = true;
        Ok(self.target.clone())
    }
}

impl Drop for AtomicDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = make_writable(&self.temp);
            let _ = fs::remove_dir_all(&self.temp);
        }
    }
}

/// Marks a tree read-only (files 0444, directories 0555), as cache entries are.
pub fn make_read_only(path: &Path) -> Result<()> {
    set_tree_mode(path, 0o444, 0o555)
}

/// Undoes [`make_read_only`] so a tree can be removed.
pub fn make_writable(path: &Path) -> Result<()> {
    set_tree_mode(path, 0o644, 0o755)
}

fn set_tree_mode(path: &Path, file_mode: u32, dir_mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = fs::symlink_metadata(path).at(path)?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    if meta.is_dir() {
        // Directories must stay writable while their children change, so order matters.
        fs::set_permissions(path, fs::Permissions::from_mode(0o755)).at(path)?;
        for entry in fs::read_dir(path).at(path)? {
            set_tree_mode(&entry.at(path)?.path(), file_mode, dir_mode)?;
        }
        fs::set_permissions(path, fs::Permissions::from_mode(dir_mode)).at(path)
    } else {
        fs::set_permissions(path, fs::Permissions::from_mode(file_mode)).at(path)
    }
}

/// Removes a tree even if it was made read-only.
pub fn remove_tree(path: &Path) -> Result<()> {
    if fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    make_writable(path)?;
    fs::remove_dir_all(path).at(path)
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub fn write_file_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(parent).at(parent)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let temp = parent.join(format!(".{name}.tmp-{}-{nanos}", std::process::id()));
    fs::write(&temp, bytes).at(&temp)?;
    fs::rename(&temp, path).at(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncommitted_dir_vanishes_and_committed_dir_appears() {
        let root = tempfile::tempdir().expect("tempdir");
        let target = root.path().join("out");
        {
            let dir = AtomicDir::new(&target).expect("new");
            fs::write(dir.path().join("a"), b"x").expect("write");
        }
        assert!(!target.exists());
        assert_eq!(fs::read_dir(root.path()).expect("ls").count(), 0, "temp dir removed");
        let dir = AtomicDir::new(&target).expect("new");
        fs::write(dir.path().join("a"), b"x").expect("write");
        dir.commit().expect("commit");
        assert_eq!(fs::read(target.join("a")).expect("read"), b"x");
    }

    #[test]
    fn read_only_tree_can_still_be_removed() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("entry");
        fs::create_dir_all(dir.join("sub")).expect("mkdir");
        fs::write(dir.join("sub/f"), b"1").expect("write");
        make_read_only(&dir).expect("ro");
        assert!(fs::write(dir.join("sub/g"), b"2").is_err() || nix_root());
        remove_tree(&dir).expect("remove");
        assert!(!dir.exists());
    }

    /// Root ignores permission bits, so the write-refused check only holds for other users.
    fn nix_root() -> bool {
        std::env::var("USER").map(|u| u == "root").unwrap_or(false)
            || std::fs::read_to_string("/proc/self/status")
                .map(|s| {
                    s.lines()
                        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
                })
                .unwrap_or(false)
    }
}

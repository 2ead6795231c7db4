//! Streaming blake3 content hashes of files and directory trees.
//!
//! Hashes name content, never modification times: two artifacts with the same bytes have the same
//! hash wherever and whenever they were written, which is what makes the cache content-addressed.

use std::fmt;
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{IoContext, Result};

/// A blake3 content hash, rendered as 64 lowercase hex digits.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ContentHash(String);

impl ContentHash {
    /// The hash of `bytes`.
    pub fn of_bytes(bytes: &[u8]) -> Self {
        ContentHash(blake3::hash(bytes).to_hex().to_string())
    }

    /// The hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 hex digits, enough to tell entries apart in messages.
    pub fn short(&self) -> &str {
        &self.0[..12.min(self.0.len())]
    }

    /// Wraps hex digits read back from a manifest.
    pub fn from_hex(hex: impl Into<String>) -> Self {
        ContentHash(hex.into())
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Hashes one file, memory-mapped and multi-threaded for large files.
pub fn hash_file(path: &Path) -> Result<ContentHash> {
    let mut hasher = blake3::Hasher::new();
    hasher.update_mmap_rayon(path).at(path)?;
    Ok(ContentHash(hasher.finalize().to_hex().to_string()))
}

/// Hashes a file, or a directory tree as the sorted list of its entries' relative paths, kinds and
/// content hashes (symlinks by their target text), so renaming a file inside changes the hash.
pub fn hash_path(path: &Path) -> Result<ContentHash> {
    hash_tree(path, &mut hash_file)
}

/// [`hash_path`] with a custom hasher for regular files, e.g. one that remembers hashes by
/// (path, size, mtime, inode) so unchanged gigabytes are not read again.
pub fn hash_tree(
    path: &Path,
    file_hash: &mut dyn FnMut(&Path) -> Result<ContentHash>,
) -> Result<ContentHash> {
    let meta = fs::symlink_metadata(path).at(path)?;
    if meta.is_dir() {
        let mut listing = String::new();
        list_tree(path, path, file_hash, &mut |rel, line| {
            listing.push_str(line);
            listing.push(' ');
            listing.push_str(rel);
            listing.push('\n');
        })?;
        Ok(ContentHash::of_bytes(listing.as_bytes()))
    } else if meta.file_type().is_symlink() {
        let target = fs::read_link(path).at(path)?;
        Ok(ContentHash::of_bytes(target.to_string_lossy().as_bytes()))
    } else {
        file_hash(path)
    }
}

fn list_tree(
    root: &Path,
    dir: &Path,
    file_hash: &mut dyn FnMut(&Path) -> Result<ContentHash>,
    emit: &mut dyn FnMut(&str, &str),
) -> Result<()> {
    let mut entries: Vec<_> =
        fs::read_dir(dir).at(dir)?.collect::<std::io::Result<Vec<_>>>().at(dir)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let rel = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().into_owned();
        let kind = entry.file_type().at(&path)?;
        if kind.is_dir() {
            emit(&rel, "d");
            list_tree(root, &path, file_hash, emit)?;
        } else if kind.is_symlink() {
            let target = fs::read_link(&path).at(&path)?;
            emit(&rel, &format!("l {}", target.to_string_lossy()));
        } else {
            emit(&rel, &format!("f {}", file_hash(&path)?));
        }
    }
    Ok(())
}

/// Total size in bytes of a file or directory tree (symlinks not followed).
pub fn disk_size(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else { return 0 };
    if !meta.is_dir() {
        return meta.len();
    }
    fs::read_dir(path)
        .map(|entries| entries.flatten().map(|e| disk_size(&e.path())).sum())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_hash_is_blake3_of_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("a.bin");
        fs::write(&file, b"brainpipe").expect("write");
        assert_eq!(hash_file(&file).expect("hash"), ContentHash::of_bytes(b"brainpipe"));
    }

    #[test]
    fn directory_hash_sees_content_and_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("d");
        fs::create_dir_all(root.join("sub")).expect("mkdir");
        fs::write(root.join("sub/x"), b"1").expect("write");
        let first = hash_path(&root).expect("hash");
        assert_eq!(first, hash_path(&root).expect("hash"), "stable");
        fs::write(root.join("sub/x"), b"2").expect("write");
        let changed = hash_path(&root).expect("hash");
        assert_ne!(first, changed, "content");
        fs::rename(root.join("sub/x"), root.join("sub/y")).expect("rename");
        assert_ne!(changed, hash_path(&root).expect("hash"), "names");
    }
}

//! The content-addressed cache: keys, immutable entries, per-key locks, the input hash index and the
//! per-pipeline record of what ran last (which `plan` diffs against).
//!
//! Layout under the cache root:
//! ```text
//! entries/<key>/           read-only: the outputs and manifest.json
//! tmp/<key>.<pid>.<nanos>.<host>/ a run in progress; renamed to entries/<key> only on success
//! locks/<key>.lock         exists while one process computes <key> (O_EXCL + heartbeat; lock.rs)
//! locks/index.lock         exists while one process merges its records into index.json
//! index.json               external input hashes by (path, size, mtime, inode)
//! state/<pipeline>/<id>.json  what stage <id> of <pipeline> last resolved to
//! runs/<pipeline>/<id>/<file> symlinks to the outputs of the last run
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use brainpipe_core::{
    ContentHash, IoContext, MANIFEST_FILE, Manifest, hash_file, hash_tree, write_file_atomic,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::RunError;

/// Version of the key material layout; bumping it invalidates every cache entry.
const KEY_FORMAT: u32 = 1;

/// The file in `state/<pipeline>/` naming the pipeline file that owns the name (stage ids
/// cannot contain `.`, so no stage's record can take this name).
const OWNER_FILE: &str = ".pipeline";

/// A cache rooted at a directory.
#[derive(Debug)]
pub struct Cache {
    root: PathBuf,
    index: Mutex<HashIndex>,
}

/// Everything a cache key is computed from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyMaterial {
    /// Stage name (`run` for external commands).
    pub stage: String,
    /// Stage VERSION.
    pub version: u32,
    /// Canonical params.
    pub params: Value,
    /// Input content hashes by port.
    pub inputs: BTreeMap<String, ContentHash>,
    /// External command template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// External command outputs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<String>,
    /// Dependency file hashes by path as written.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub deps: BTreeMap<String, ContentHash>,
}

impl KeyMaterial {
    /// The cache key: blake3 of the canonical JSON of the material.
    pub fn key(&self) -> ContentHash {
        let material = json!({ "format": KEY_FORMAT, "material": self });
        ContentHash::of_bytes(material.to_string().as_bytes())
    }
}

/// A cache entry as found on disk.
#[derive(Clone, Debug)]
pub enum EntryState {
    /// No committed entry (never computed, removed by `gc`, or quarantined).
    Missing,
    /// Committed, and its outputs are what the manifest says.
    Intact(Manifest),
    /// Committed, but an output was changed, truncated or removed since.
    Damaged {
        /// The entry's manifest.
        manifest: Manifest,
        /// What is wrong, in one line.
        detail: String,
    },
}

/// What a pipeline stage last resolved to, for `plan` to explain the next change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageRecord {
    /// The key it resolved to.
    pub key: ContentHash,
    /// The material of that key.
    pub material: KeyMaterial,
}

impl Cache {
    /// Opens (creating if needed) a cache at `root`.
    pub fn open(root: &Path) -> Result<Self, RunError> {
        for sub in ["entries", "tmp", "locks", "state", "runs"] {
            let dir = root.join(sub);
            fs::create_dir_all(&dir).at(&dir)?;
        }
        let root = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
        let index = HashIndex::load(&root.join("index.json"));
        Ok(Cache { root, index: Mutex::new(index) })
    }

    /// The cache root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the entry for `key` lives (whether or not it exists).
    pub fn entry_dir(&self, key: &ContentHash) -> PathBuf {
        self.root.join("entries").join(key.as_str())
    }

    /// The manifest of a committed entry whose outputs are intact, or `None` (see
    /// [`Cache::entry_state`]).
    pub fn entry(&self, key: &ContentHash) -> Option<Manifest> {
        match self.entry_state(key) {
            EntryState::Intact(manifest) => Some(manifest),
            EntryState::Missing | EntryState::Damaged { .. } => None,
        }
    }

    /// Whether `key` has a committed entry and whether its outputs are still what its manifest
    /// says. Cheap when nothing changed: each output file's size, mtime, ctime and inode are
    /// compared with the index, and only a file whose stat data changed is hashed again.
    pub fn entry_state(&self, key: &ContentHash) -> EntryState {
        let dir = self.entry_dir(key);
        // The manifest is written last and the directory renamed into place whole, so a readable
        // manifest means a complete entry.
        let Some(manifest) = Manifest::read(&dir).ok().filter(|m| m.key == key.as_str()) else {
            return EntryState::Missing;
        };
        match self.check_outputs(&manifest, false) {
            Ok(()) => EntryState::Intact(manifest),
            Err(detail) => EntryState::Damaged { manifest, detail },
        }
    }

    /// Compares an entry's outputs with its manifest: through the index (`full == false`) or by
    /// hashing every byte again (`full`, for `brainpipe verify`). `Err` says what is wrong.
    pub fn check_outputs(&self, manifest: &Manifest, full: bool) -> Result<(), String> {
        let dir = self.entry_dir(&ContentHash::from_hex(manifest.key.clone()));
        for (port, record) in &manifest.outputs {
            let path = dir.join(&record.file);
            if fs::symlink_metadata(&path).is_err() {
                return Err(format!("output `{port}` ({}) is missing", record.file));
            }
            let hash = if full {
                brainpipe_core::hash_path(&path)
            } else {
                let mut index = self.index.lock().expect("index lock is never poisoned");
                hash_tree(&path, &mut |file| index.hash(file))
            };
            match hash {
                Ok(hash) if hash == record.hash => {}
                Ok(hash) => {
                    return Err(format!(
                        "output `{port}` ({}) changed: its content hashes to {}, the manifest says {}",
                        record.file,
                        hash.short(),
                        record.hash.short()
                    ));
                }
                Err(e) => return Err(format!("output `{port}` ({}) unreadable: {e}", record.file)),
            }
        }
        Ok(())
    }

    /// [`Cache::entry`] for an entry another process (a Slurm job) has just committed: the
    /// hashes that process recorded for its outputs while writing them (in `index.json`, merged
    /// on save; the file is read again only when it changed) are taken first, so a file whose
    /// stat data still match is not read again. The
    /// index is trusted as any later run trusts it; a file whose size, mtime, ctime, inode or
    /// device differ (another node's view, an update lost to a concurrent save) is hashed.
    pub fn committed_entry(&self, key: &ContentHash) -> Option<Manifest> {
        let path = self.root.join("index.json");
        // Saved atomically (a new file each time): the same stat data, nothing new to read. The
        // records of every entry are taken (jobs ending together save one file in turn).
        let stamp =
            fs::metadata(&path).ok().map(|m| IndexEntry::stamp(&m, ContentHash::of_bytes(b"")));
        let mut index = self.index.lock().expect("index lock is never poisoned");
        if stamp.is_some() && index.read_back != stamp {
            index.read_back = stamp;
            let on_disk = HashIndex::load(&path);
            let entries = self.root.join("entries");
            let recorded =
                on_disk.files.range(entries.clone()..).take_while(|(f, _)| f.starts_with(&entries));
            for (file, entry) in recorded {
                index.files.insert(file.clone(), entry.clone());
            }
        }
        drop(index);
        self.entry(key)
    }

    /// How many files this process has hashed by content so far (those the index could not
    /// vouch for).
    pub fn files_hashed(&self) -> usize {
        self.index.lock().expect("index lock is never poisoned").hashed
    }

    /// Records the stat data of a just-committed entry's outputs with their known hashes, so
    /// the first use of the entry needs no rehash.
    pub fn remember_outputs(&self, files: &[(PathBuf, ContentHash)]) {
        let mut index = self.index.lock().expect("index lock is never poisoned");
        for (file, hash) in files {
            if let Ok(meta) = fs::metadata(file) {
                let file = std::path::absolute(file).unwrap_or_else(|_| file.clone());
                index.files.insert(file, IndexEntry::stamp(&meta, hash.clone()));
                index.dirty = true;
            }
        }
    }

    /// Moves a damaged entry out of `entries/` into `quarantine/<key>.<nanos>` (kept for
    /// inspection, never used again), and returns where it went.
    pub fn quarantine(&self, key: &ContentHash) -> Result<PathBuf, RunError> {
        let from = self.entry_dir(key);
        let dir = self.root.join("quarantine");
        fs::create_dir_all(&dir).at(&dir)?;
        let nanos = unix_nanos();
        let to = dir.join(format!("{}.{nanos}", key.as_str()));
        fs::rename(&from, &to).at(&from)?;
        Ok(to)
    }

    /// A fresh temporary directory for computing `key`: `tmp/<key>.<pid>.<nanos>.<host>`, so that
    /// `gc` on one node of a cluster can tell a live run of its own (the PID exists) from one of
    /// another node (which it leaves alone).
    pub fn temp_dir(&self, key: &ContentHash) -> Result<PathBuf, RunError> {
        let nanos = unix_nanos();
        let dir = self.root.join("tmp").join(format!(
            "{}.{}.{nanos}.{}",
            key.as_str(),
            std::process::id(),
            host_name()
        ));
        fs::create_dir_all(&dir).at(&dir)?;
        Ok(dir)
    }

    /// Blocks until this process holds the lock for `key`; dropping the guard releases it. It
    /// holds across the nodes of a shared file system without `flock`; a lock whose process
    /// died on this host is taken over at once, one of another host after its lease (60 s, or
    /// `BRAINPIPE_LOCK_LEASE_SECONDS`) without a heartbeat, so a killed run never wedges the
    /// cache (see `lock.rs`).
    pub fn lock(&self, key: &ContentHash) -> Result<crate::KeyLock, RunError> {
        let path = self.root.join("locks").join(format!("{}.lock", key.as_str()));
        crate::lock::acquire(&path, lock_lease())
    }

    /// Content hash of an external input file or tree, reusing the index when unchanged.
    pub fn hash_input(&self, path: &Path) -> Result<ContentHash, RunError> {
        let mut index = self.index.lock().expect("index lock is never poisoned: no panics inside");
        Ok(hash_tree(path, &mut |file| index.hash(file))?)
    }

    /// Writes the hash index back (merged with what other processes wrote meanwhile).
    pub fn save_index(&self) -> Result<(), RunError> {
        let index = self.index.lock().expect("index lock is never poisoned: no panics inside");
        if !index.dirty {
            return Ok(());
        }
        // Read, merge and replace under the cache's lock of the index file, so that processes
        // saving at once (Slurm jobs ending together) do not drop each other's records.
        let _held =
            crate::lock::acquire(&self.root.join("locks").join("index.lock"), lock_lease())?;
        index.save(&self.root.join("index.json"))
    }

    /// The last record of stage `id` in `pipeline`.
    pub fn record(&self, pipeline: &str, id: &str) -> Option<StageRecord> {
        let path = self.state_path(pipeline, id);
        serde_json::from_slice(&fs::read(path).ok()?).ok()
    }

    /// Stores the record of stage `id` in `pipeline`.
    pub fn set_record(
        &self,
        pipeline: &str,
        id: &str,
        record: &StageRecord,
    ) -> Result<(), RunError> {
        let path = self.state_path(pipeline, id);
        let bytes = serde_json::to_vec_pretty(record)
            .map_err(|source| brainpipe_core::Error::Json { path: path.clone(), source })?;
        write_file_atomic(&path, &bytes)?;
        Ok(())
    }

    fn state_path(&self, pipeline: &str, id: &str) -> PathBuf {
        self.root.join("state").join(safe_name(pipeline)).join(format!("{}.json", safe_name(id)))
    }

    /// The folder of `pipeline`'s `runs/` links.
    pub fn runs_dir(&self, pipeline: &str) -> PathBuf {
        self.root.join("runs").join(safe_name(pipeline))
    }

    /// Checks that the pipeline `name` in this cache belongs to `file` (runs/ and state/ are
    /// kept by name): a different file under the same name is refused, unless it has the same
    /// content (the same pipeline in another clone sharing the cache). With `claim`, records
    /// `file` as the owner.
    pub fn check_owner(&self, name: &str, file: &Path, claim: bool) -> Result<(), RunError> {
        let record = self.root.join("state").join(safe_name(name)).join(OWNER_FILE);
        let file = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
        if let Ok(owner) = fs::read_to_string(&record) {
            let owner = PathBuf::from(owner.trim_end_matches('\n'));
            let same_text =
                || matches!((fs::read(&owner), fs::read(&file)), (Ok(a), Ok(b)) if a == b);
            if owner != file && owner.exists() && !same_text() {
                return Err(RunError::Usage(format!(
                    "{}: pipeline name `{name}` is already used in cache {} by {}; give one of them another `name:` (or use another --cache)",
                    file.display(),
                    self.root.display(),
                    owner.display()
                )));
            }
            if owner == file {
                return Ok(());
            }
        }
        if claim {
            let text = format!("{}\n", file.display());
            write_file_atomic(&record, text.as_bytes())?;
        }
        Ok(())
    }

    /// Points `runs/<pipeline>/<id>/<file>` at the entry's outputs (`<file>`: each output's name in
    /// the entry, e.g. `report.html`).
    pub fn link_run(&self, pipeline: &str, id: &str, manifest: &Manifest) -> Result<(), RunError> {
        let dir = self.root.join("runs").join(safe_name(pipeline)).join(safe_name(id));
        fs::create_dir_all(&dir).at(&dir)?;
        let entry = self.entry_dir(&ContentHash::from_hex(manifest.key.clone()));
        let mut links: Vec<(String, PathBuf)> = manifest
            .outputs
            .values()
            // Named like the file (`report.html`, `features.parquet`), so browsers and file
            // managers know what they open; for most ports that is the port name plus extension.
            .map(|out| (out.file.clone(), entry.join(&out.file)))
            .collect();
        links.push((MANIFEST_FILE.to_owned(), entry.join(MANIFEST_FILE)));
        for (name, target) in links {
            let link = dir.join(&name);
            if fs::read_link(&link).is_ok_and(|current| current == target) {
                continue;
            }
            let temp = dir.join(format!(".{name}.{}", std::process::id()));
            let _ = fs::remove_file(&temp);
            std::os::unix::fs::symlink(&target, &temp).at(&temp)?;
            fs::rename(&temp, &link).at(&link)?;
        }
        Ok(())
    }

    /// Every committed entry key.
    pub fn entry_keys(&self) -> Vec<ContentHash> {
        let dir = self.root.join("entries");
        let mut keys: Vec<ContentHash> = fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| ContentHash::from_hex(e.file_name().to_string_lossy().into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        keys.sort();
        keys
    }
}

/// A pipeline name or stage id as one path component, injectively: any Unicode text stays as
/// written except `/`, `%`, control characters and a leading `.`, which are percent-encoded, so
/// two names never share a folder and the folder printed is the one that exists.
pub fn safe_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for (i, c) in name.chars().enumerate() {
        if c == '/' || c == '%' || c.is_control() || (i == 0 && c == '.') {
            let mut utf8 = [0u8; 4];
            for byte in c.encode_utf8(&mut utf8).bytes() {
                out.push_str(&format!("%{byte:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    if out.is_empty() { "%".to_owned() } else { out }
}

/// Hashes of external files by what git's index uses to tell a file unchanged.
#[derive(Debug, Default, Serialize, Deserialize)]
struct HashIndex {
    files: BTreeMap<PathBuf, IndexEntry>,
    #[serde(skip)]
    dirty: bool,
    /// Files hashed by content by this process.
    #[serde(skip)]
    hashed: usize,
    /// The stat data of the saved index last read back (`Cache::committed_entry`).
    #[serde(skip)]
    read_back: Option<IndexEntry>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct IndexEntry {
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    inode: u64,
    device: u64,
    hash: ContentHash,
}

impl IndexEntry {
    fn stamp(meta: &fs::Metadata, hash: ContentHash) -> Self {
        IndexEntry {
            size: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
            inode: meta.ino(),
            device: meta.dev(),
            hash,
        }
    }
}

impl HashIndex {
    fn load(path: &Path) -> Self {
        fs::read(path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
    }

    fn hash(&mut self, file: &Path) -> brainpipe_core::Result<ContentHash> {
        let file = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
        let meta = fs::metadata(&file).at(&file)?;
        if let Some(entry) = self.files.get(&file) {
            let probe = IndexEntry::stamp(&meta, entry.hash.clone());
            if probe == *entry {
                return Ok(entry.hash.clone());
            }
        }
        let hash = hash_file(&file)?;
        self.hashed += 1;
        self.files.insert(file, IndexEntry::stamp(&meta, hash.clone()));
        self.dirty = true;
        Ok(hash)
    }

    fn save(&self, path: &Path) -> Result<(), RunError> {
        if !self.dirty {
            return Ok(());
        }
        let mut merged = HashIndex::load(path);
        merged.files.extend(self.files.iter().map(|(k, v)| (k.clone(), v.clone())));
        merged.files.retain(|file, _| file.exists());
        let bytes = serde_json::to_vec(&merged)
            .map_err(|source| brainpipe_core::Error::Json { path: path.to_path_buf(), source })?;
        write_file_atomic(path, &bytes)?;
        Ok(())
    }
}

/// This machine's host name, reduced to `[A-Za-z0-9_-]` (a temporary directory's name part);
/// `unknown-host` when it cannot be read.
/// Nanoseconds since the Unix epoch: the part of temporary, quarantine and lock names that keeps
/// two of one process apart.
pub(crate) fn unix_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// The start time of process `pid` on this host (clock ticks after boot, `/proc/<pid>/stat`
/// field 22), or `None` when no such process runs: whether a PID named in a temporary directory
/// or lock file still runs, and whether it is still the same process.
pub(crate) fn process_start(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from the last `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The lease after which another host's unchanged lock is taken over.
fn lock_lease() -> std::time::Duration {
    std::env::var("BRAINPIPE_LOCK_LEASE_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map_or(crate::DEFAULT_LEASE, std::time::Duration::from_secs_f64)
}

pub(crate) fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into our buffer.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name: String = String::from_utf8_lossy(&buf[..end])
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
        .collect();
    if rc != 0 || name.is_empty() { "unknown-host".to_owned() } else { name }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_changes_with_every_part() {
        let base = KeyMaterial {
            stage: "features.roi".into(),
            version: 1,
            params: json!({"roi_scale": 20}),
            inputs: BTreeMap::from([("scans".into(), ContentHash::of_bytes(b"a"))]),
            command: None,
            outputs: vec![],
            deps: BTreeMap::new(),
        };
        let key = base.key();
        let mut other = base.clone();
        other.version = 2;
        assert_ne!(key, other.key());
        let mut other = base.clone();
        other.params = json!({"roi_scale": 10});
        assert_ne!(key, other.key());
        let mut other = base.clone();
        other.inputs.insert("scans".into(), ContentHash::of_bytes(b"b"));
        assert_ne!(key, other.key());
        assert_eq!(key, base.clone().key(), "deterministic");
    }

    #[test]
    fn index_rehashes_only_changed_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = Cache::open(&dir.path().join("cache")).expect("open");
        let file = dir.path().join("in.bin");
        fs::write(&file, b"one").expect("write");
        let first = cache.hash_input(&file).expect("hash");
        assert_eq!(first, ContentHash::of_bytes(b"one"));
        cache.save_index().expect("save");
        let reopened = Cache::open(&dir.path().join("cache")).expect("reopen");
        assert_eq!(reopened.hash_input(&file).expect("hash"), first);
        fs::write(&file, b"two!").expect("rewrite");
        assert_eq!(reopened.hash_input(&file).expect("hash"), ContentHash::of_bytes(b"two!"));
    }
}

//! `brainpipe verify`: hash every byte of cache entries again and compare with their manifests.
//!
//! Runs check an entry cheaply each time they use it (stat data against the index, a rehash
//! only where those changed, see [`Cache::entry_state`]); `verify` trusts nothing and reads
//! everything, for a cache copied between machines, restored from backup or shared by a lab.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use brainpipe_core::{ContentHash, MANIFEST_FILE, Manifest, disk_size};

use crate::cache::Cache;
use crate::error::RunError;
use crate::graph::Pipeline;

/// One damaged entry.
#[derive(Clone, Debug)]
pub struct Damaged {
    /// Its key.
    pub key: ContentHash,
    /// What is wrong, in one line.
    pub detail: String,
    /// Where it was moved (`None` when kept in place).
    pub quarantined: Option<PathBuf>,
}

/// What `verify` found.
#[derive(Clone, Debug, Default)]
pub struct VerifyReport {
    /// Entries checked.
    pub checked: usize,
    /// Bytes read.
    pub bytes: u64,
    /// Entries whose outputs or manifest are not what they should be.
    pub damaged: Vec<Damaged>,
}

/// The keys the given pipelines last resolved to in `cache` (their stages' state records).
pub fn pipeline_keys(pipelines: &[Pipeline], cache: &Cache) -> BTreeSet<ContentHash> {
    pipelines
        .iter()
        .flat_map(|p| p.nodes.iter().filter_map(|n| cache.record(&p.name, &n.id)))
        .map(|record| record.key)
        .collect()
}

/// Rehashes the entries `keys` (every committed entry when `None`) on `threads` threads, and
/// moves damaged ones to `quarantine/` unless `keep`. `progress` is called after each entry
/// with (done, total).
pub fn verify(
    cache: &Cache,
    keys: Option<&BTreeSet<ContentHash>>,
    keep: bool,
    threads: usize,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<VerifyReport, RunError> {
    let all = cache.entry_keys();
    let keys: Vec<ContentHash> = match keys {
        Some(wanted) => all.into_iter().filter(|k| wanted.contains(k)).collect(),
        None => all,
    };
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let found: Mutex<Vec<(ContentHash, String, u64)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1).min(keys.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(key) = keys.get(i) else { break };
                    let dir = cache.entry_dir(key);
                    let bytes = disk_size(&dir);
                    let problem = match Manifest::read(&dir) {
                        Err(e) => Some(format!("{MANIFEST_FILE} unreadable: {e}")),
                        Ok(m) if m.key != key.as_str() => {
                            Some(format!("{MANIFEST_FILE} names key {}", m.key))
                        }
                        Ok(m) => cache.check_outputs(&m, true).err(),
                    };
                    found.lock().expect("no panics while held").push((
                        key.clone(),
                        problem.unwrap_or_default(),
                        bytes,
                    ));
                    progress(done.fetch_add(1, Ordering::Relaxed) + 1, keys.len());
                }
            });
        }
    });
    let mut report = VerifyReport { checked: keys.len(), ..VerifyReport::default() };
    let mut found = found.into_inner().expect("threads joined");
    found.sort_by(|a, b| a.0.cmp(&b.0));
    for (key, problem, bytes) in found {
        report.bytes += bytes;
        if problem.is_empty() {
            continue;
        }
        let quarantined = if keep {
            None
        } else {
            let _lock = cache.lock(&key)?;
            Some(cache.quarantine(&key)?)
        };
        report.damaged.push(Damaged { key, detail: problem, quarantined });
    }
    Ok(report)
}

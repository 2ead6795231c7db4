//! `brainpipe gc`: remove cache entries no given pipeline references, and leftovers of killed runs.

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;

use brainpipe_core::{ContentHash, disk_size, remove_tree};

use crate::cache::Cache;
use crate::error::RunError;
use crate::graph::Pipeline;
use crate::plan::plan;

/// What `gc` removed (or would remove, with `dry_run`).
#[derive(Clone, Debug, Default)]
pub struct GcReport {
    /// Entries removed.
    pub entries: Vec<ContentHash>,
    /// Temporary directories of runs that no longer exist.
    pub temp_dirs: Vec<PathBuf>,
    /// Bytes freed.
    pub bytes: u64,
    /// Temporary directories of other hosts (a cluster's other nodes), left alone: whether
    /// their run still lives cannot be told from here.
    pub other_hosts: Vec<PathBuf>,
    /// Shards of a Slurm job array (`shards/<key>/<array>`) whose stage has no entry, left
    /// alone: the array's tasks or its merge job may still run. (Those of a stage whose entry
    /// exists are leftovers, removed and listed in `temp_dirs`.)
    pub shard_areas: Vec<PathBuf>,
}

/// Removes every entry that none of `pipelines` resolves to, and temporary directories of this
/// host whose process is gone (other hosts' are listed in [`GcReport::other_hosts`], kept).
pub fn gc(pipelines: &[Pipeline], cache: &Cache, dry_run: bool) -> Result<GcReport, RunError> {
    let mut keep: BTreeSet<ContentHash> = BTreeSet::new();
    for pipeline in pipelines {
        for stage in plan(pipeline, cache, &[])? {
            keep.extend(stage.key);
        }
    }
    let mut report = GcReport::default();
    for key in cache.entry_keys() {
        if keep.contains(&key) {
            continue;
        }
        let dir = cache.entry_dir(&key);
        report.bytes += disk_size(&dir);
        if !dry_run {
            remove_tree(&dir)?;
        }
        report.entries.push(key);
    }
    let tmp = cache.root().join("tmp");
    let this_host = crate::cache::host_name();
    for entry in fs::read_dir(&tmp).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let mut parts = name.split('.');
        let pid: Option<u32> = parts.nth(1).and_then(|p| p.parse().ok());
        // `<key>.<pid>.<nanos>.<host>`; names without a host are from before hosts were written.
        let host = parts.nth(1);
        if host.is_some_and(|h| h != this_host) {
            // Another node's run: its PID means nothing here, so it is left alone.
            report.other_hosts.push(entry.path());
            continue;
        }
        let alive = pid.is_some_and(|pid| crate::cache::process_start(pid).is_some());
        if alive {
            continue;
        }
        report.bytes += disk_size(&entry.path());
        if !dry_run {
            remove_tree(&entry.path())?;
        }
        report.temp_dirs.push(entry.path());
    }
    shard_leftovers(cache, dry_run, &mut report)?;
    Ok(report)
}

/// Removes the shard folders of stages whose entry exists (merged, or computed otherwise) and
/// lists the others in `report.shard_areas`.
fn shard_leftovers(cache: &Cache, dry_run: bool, report: &mut GcReport) -> Result<(), RunError> {
    let shards = cache.root().join("shards");
    for key_dir in fs::read_dir(&shards).into_iter().flatten().flatten() {
        let key = ContentHash::from_hex(key_dir.file_name().to_string_lossy().into_owned());
        let merged = cache.entry(&key).is_some() || report.entries.contains(&key);
        for area in fs::read_dir(key_dir.path()).into_iter().flatten().flatten() {
            if !merged {
                report.shard_areas.push(area.path());
                continue;
            }
            report.bytes += disk_size(&area.path());
            if !dry_run {
                remove_tree(&area.path())?;
            }
            report.temp_dirs.push(area.path());
        }
        if !dry_run {
            // Only once empty.
            let _ = fs::remove_dir(key_dir.path());
        }
    }
    Ok(())
}

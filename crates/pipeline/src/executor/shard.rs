//! Shards: a stage whose work splits into independent parts (`models.train`: one per
//! cross-validation fold; `ingest.*`: one per subject) computed as the tasks of one Slurm job array, then merged into the
//! stage's entry by one more job.
//!
//! Task `k` of array job `A` writes shard `k` into `<cache>/shards/<key>/<A>/<k>`: computed in
//! a temporary directory under `tmp/`, `shard.json` written last, then renamed into place, so a
//! shard directory is complete or absent. The merge job (`--dependency=afterok:A`) checks that
//! every shard is there and is the one it expects, then builds the entry through the local code
//! path (per-key lock, temporary directory, manifest last, one rename) from the shards instead
//! of running the stage whole, and removes the shards. A stage's bytes do not depend on
//! whether it was sharded (the stage's merge writes through the writer of the whole run), so
//! neither does its key. Nothing under `shards/` is ever read as an entry.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use brainpipe_core::{ContentHash, Context, IoContext, Manifest, ShardTask, remove_tree};
use serde::{Deserialize, Serialize};

use crate::cache::{Cache, KeyMaterial};
use crate::error::RunError;
use crate::graph::{Node, NodeKind};
use crate::run::{MergeShards, RunOptions, StageOutcome, TempEntry, check_inputs, input_paths};

/// What one job of a sharded stage does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShardRole {
    /// Computes shard `index` of `count` for the array job `array`.
    Shard {
        /// 0-based shard (the array task id).
        index: usize,
        /// Shards in all.
        count: usize,
        /// The array job's id (`SLURM_ARRAY_JOB_ID`): the shards' folder.
        array: String,
    },
    /// Builds the stage's entry from the `count` shards of the array job `array`.
    Merge {
        /// Shards in all.
        count: usize,
        /// The array job's id.
        array: String,
    },
}

/// The file that completes a shard directory, written last.
const SHARD_RECORD: &str = "shard.json";

/// What a shard directory records about itself.
#[derive(Debug, Serialize, Deserialize)]
struct ShardRecord {
    key: String,
    index: usize,
    count: usize,
    array: String,
    /// The Slurm job (`<array>_<index>`) that computed it, when known.
    #[serde(default)]
    slurm_job_id: Option<String>,
    notes: serde_json::Map<String, serde_json::Value>,
}

/// The folder of the shards of array job `array` computing `key`.
pub(crate) fn shard_area(cache: &Cache, key: &ContentHash, array: &str) -> PathBuf {
    cache.root().join("shards").join(key.as_str()).join(array)
}

fn shard_dir(area: &Path, index: usize) -> PathBuf {
    area.join(format!("{index:04}"))
}

/// How many shards `node`'s work on the upstream entries `upstream` splits into, if its stage
/// shards at all (asking a LibTorch stage costs a worker start and a read of its inputs).
pub(crate) fn shard_count(
    cache: &Cache,
    node: &Node,
    upstream: &BTreeMap<String, Manifest>,
) -> Result<Option<usize>, RunError> {
    let NodeKind::Builtin { stage } = &node.kind else { return Ok(None) };
    if !stage.shardable() {
        return Ok(None);
    }
    let inputs = input_paths(cache, node, upstream);
    let ctx = Context::new(inputs, stage.outputs(), PathBuf::new());
    let count = stage.shards_json(&ctx, &node.params).map_err(|e| RunError::Stage {
        id: node.id.clone(),
        stage: node.stage_name().to_owned(),
        exit_code: None,
        message: format!("counting its shards: {e}"),
    })?;
    Ok(Some(count))
}

/// How many shards `node` splits into whatever its inputs hold, when its params alone say
/// (`ingest.synthetic`: its subjects); `None` when the count depends on the inputs or the stage
/// does not shard.
pub(crate) fn planned_shard_count(node: &Node) -> Option<usize> {
    let NodeKind::Builtin { stage } = &node.kind else { return None };
    stage.shardable().then(|| stage.planned_shards_json(&node.params)).flatten()
}

/// Computes shard `index` of `count` of `node` (keyed `key` from `upstream`) into its shard
/// directory, unless the stage's entry or that shard already exists. Returns the directory.
#[expect(clippy::too_many_arguments, reason = "a job's whole description")]
pub(crate) fn compute_shard(
    cache: &Cache,
    options: &RunOptions,
    node: &Node,
    upstream: &BTreeMap<String, Manifest>,
    (key, material): (&ContentHash, &KeyMaterial),
    (index, count): (usize, usize),
    array: &str,
    force: bool,
) -> Result<PathBuf, RunError> {
    let fail = |message: String| RunError::Stage {
        id: node.id.clone(),
        stage: node.stage_name().to_owned(),
        exit_code: None,
        message: format!("shard {index} of {count}: {message}"),
    };
    let NodeKind::Builtin { stage } = &node.kind else {
        return Err(fail("a `run:` command does not split into shards".to_owned()));
    };
    let area = shard_area(cache, key, array);
    let dir = shard_dir(&area, index);
    if !force && cache.entry(key).is_some() {
        tracing::info!(stage = %node.id, key = key.short(), "cached: no shard to compute");
        return Ok(cache.entry_dir(key));
    }
    if read_record(&dir).is_ok_and(|r| r.key == key.as_str() && r.index == index) {
        tracing::info!(stage = %node.id, shard = index, "shard already computed");
        return Ok(dir);
    }
    let inputs = input_paths(cache, node, upstream);
    check_inputs(cache, node, material, &inputs)?;
    tracing::info!(stage = %node.id, shard = index, shards = count, key = key.short(), "running");
    let temp = TempEntry::new(cache.temp_dir(key)?);
    let mut ctx =
        Context::new(inputs, stage.outputs(), temp.0.clone()).with_progress(options.progress);
    stage
        .run_task_json(&mut ctx, &node.params, &ShardTask::Shard { index, count })
        .map_err(|e| fail(e.to_string()))?;
    let record = ShardRecord {
        key: key.as_str().to_owned(),
        index,
        count,
        array: array.to_owned(),
        slurm_job_id: options.slurm_job_id.clone(),
        notes: ctx.notes().clone(),
    };
    let json = serde_json::to_vec_pretty(&record).map_err(|e| fail(e.to_string()))?;
    let record_path = temp.0.join(SHARD_RECORD);
    fs::write(&record_path, json).at(&record_path)?;
    fs::create_dir_all(&area).at(&area)?;
    if fs::symlink_metadata(&dir).is_ok() {
        // An incomplete or foreign directory (a task requeued after a crash): replaced.
        remove_tree(&dir)?;
    }
    fs::rename(&temp.0, &dir).at(&dir)?;
    temp.committed();
    tracing::info!(stage = %node.id, shard = index, "done");
    Ok(dir)
}

fn read_record(dir: &Path) -> Result<ShardRecord, String> {
    let path = dir.join(SHARD_RECORD);
    let bytes = fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| format!("{}: not a shard record: {e}", path.display()))
}

/// Builds `node`'s entry (keyed `key`) from the `count` shards of array job `array`, each
/// checked to be complete and the one expected, then removes them. An entry already there
/// (another run's) is reused and the shards removed all the same.
#[expect(clippy::too_many_arguments, reason = "a job's whole description")]
pub(crate) fn merge_shards(
    pipeline: &crate::graph::Pipeline,
    cache: &Cache,
    options: &RunOptions,
    node: &Node,
    upstream: &BTreeMap<String, Manifest>,
    key: &ContentHash,
    (count, array): (usize, &str),
    force: bool,
) -> Result<StageOutcome, RunError> {
    let area = shard_area(cache, key, array);
    let fail = |message: String| RunError::Stage {
        id: node.id.clone(),
        stage: node.stage_name().to_owned(),
        exit_code: None,
        message,
    };
    let already = (!force).then(|| cache.entry(key)).flatten();
    let mut dirs = Vec::new();
    if already.is_none() {
        for index in 0..count {
            let dir = shard_dir(&area, index);
            let record = read_record(&dir)
                .map_err(|e| fail(format!("shard {index} of {count} of array job {array}: {e}")))?;
            if record.key != key.as_str() || record.index != index || record.count != count {
                return Err(fail(format!(
                    "{}: shard {} of {} for key {}, expected shard {index} of {count} for key {}",
                    dir.join(SHARD_RECORD).display(),
                    record.index,
                    record.count,
                    ContentHash::from_hex(record.key).short(),
                    key.short()
                )));
            }
            dirs.push(dir);
        }
    }
    let merge = MergeShards { dirs, array: array.to_owned() };
    let outcome =
        crate::run::execute_task(pipeline, cache, options, node, upstream, force, Some(&merge))?;
    remove_area(&area);
    Ok(outcome)
}

/// Removes a shard area and its key's folder once empty (a failure only costs disk space:
/// `brainpipe gc` removes it later).
pub(crate) fn remove_area(area: &Path) {
    if let Err(e) = remove_tree(area) {
        tracing::warn!("cannot remove shards {}: {e}", area.display());
    }
    if let Some(key_dir) = area.parent() {
        let _ = fs::remove_dir(key_dir);
    }
}

/// Shard areas of array jobs this process submitted and has not seen merged: what a Ctrl-C
/// removes once their jobs are cancelled.
static AREAS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Remembers a shard area to remove if the run is interrupted.
pub(crate) fn track_area(area: &Path) {
    AREAS.lock().unwrap_or_else(|e| e.into_inner()).push(area.to_path_buf());
}

/// The area was merged or removed.
pub(crate) fn forget_area(area: &Path) {
    AREAS.lock().unwrap_or_else(|e| e.into_inner()).retain(|a| a != area);
}

/// Removes every tracked area (their jobs have been cancelled).
pub(crate) fn remove_tracked_areas() {
    let areas = std::mem::take(&mut *AREAS.lock().unwrap_or_else(|e| e.into_inner()));
    for area in areas {
        remove_area(&area);
    }
}

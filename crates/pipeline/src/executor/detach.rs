//! `brainpipe run --executor slurm --detach`: the whole remaining DAG submitted at once, each
//! stage's job after its upstream jobs (`afterok`), and the driver gone. The jobs are recorded in
//! the cache so that `brainpipe status` can show their states; a later `run` resumes from whatever
//! landed.

use std::collections::BTreeMap;
use std::path::PathBuf;

use brainpipe_core::{Manifest, write_file_atomic};
use serde::{Deserialize, Serialize};

use super::SlurmConfig;
use super::job::StageJob;
use super::shard::{planned_shard_count, shard_count};
use super::slurm::{
    JobState, Reuse, classify, forget_all, listed_tasks, reuse, squeue, submit, submit_sharded,
};
use crate::cache::{Cache, safe_name};
use crate::error::RunError;
use crate::graph::Pipeline;
use crate::plan::forced_set;
use crate::run::{RunOptions, StageOutcome, bookkeeping};

/// What a detached run left behind.
#[derive(Clone, Debug)]
pub struct Detached {
    /// Stages whose entries were reused, in pipeline order.
    pub cached: Vec<StageOutcome>,
    /// The job of every other stage, in pipeline order.
    pub jobs: Vec<DetachedJob>,
    /// Where the jobs are recorded.
    pub record: PathBuf,
}

/// One stage's job in a detached run, and (from [`detached_jobs`]) its state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetachedJob {
    /// Stage id.
    pub stage: String,
    /// Slurm job id.
    pub job: String,
    /// `PENDING`, `RUNNING`, `COMPLETED`, `FAILED`, `CANCELLED`, …, or `UNKNOWN` once Slurm no
    /// longer lists the job; empty when only submitted.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub state: String,
    /// Slurm's reason (`Dependency`, `DependencyNeverSatisfied`, `NonZeroExitCode`, …).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// For a sharded stage (`job` is then its merge job): the job array computing its shards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array: Option<String>,
    /// For a sharded stage: its shards (the array's tasks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<usize>,
    /// For a sharded stage, from [`detached_jobs`]: its tasks' states as Slurm lists them,
    /// counted (`2 COMPLETED, 1 RUNNING`); empty when only submitted.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tasks: String,
}

/// The record of a pipeline's last detached run.
#[derive(Serialize, Deserialize)]
struct Record {
    submitted: String,
    jobs: Vec<DetachedJob>,
}

fn record_path(cache: &Cache, pipeline: &Pipeline) -> PathBuf {
    cache.root().join("slurm").join(safe_name(&pipeline.name)).join("detached.json")
}

/// Submits every stage of `pipeline` that has no intact entry as one Slurm job, after the jobs
/// of its upstream stages (`--dependency=afterok:…`, `--kill-on-invalid-dep=yes`: a failure
/// cancels everything downstream of it), records them and returns without waiting.
pub fn submit_detached(
    pipeline: &Pipeline,
    cache: &Cache,
    options: &RunOptions,
    config: &SlurmConfig,
) -> Result<Detached, RunError> {
    let forced = forced_set(pipeline, &options.force)?;
    cache.check_owner(&pipeline.name, &pipeline.file, false)?;
    bookkeeping(cache.check_owner(&pipeline.name, &pipeline.file, true), true)?;
    let logs = cache.root().join("slurm").join(safe_name(&pipeline.name));
    let mut done: BTreeMap<String, Manifest> = BTreeMap::new();
    let mut job_of: BTreeMap<&str, String> = BTreeMap::new();
    let mut cached = Vec::new();
    let mut jobs = Vec::new();
    for node in &pipeline.nodes {
        let force = forced.contains(&node.id);
        let after: Vec<String> =
            node.upstream().iter().filter_map(|u| job_of.get(u).cloned()).collect();
        let (job, shards) = if after.is_empty() {
            match reuse(pipeline, cache, node, &done, force)? {
                Reuse::Cached(outcome) => {
                    done.insert(node.id.clone(), outcome.manifest.clone());
                    cached.push(*outcome);
                    continue;
                }
                Reuse::Compute { key, upstream, .. } => {
                    // Its inputs exist: counted as an attached run counts them.
                    let shards = if config.shards {
                        let manifests: BTreeMap<String, Manifest> = node
                            .upstream()
                            .into_iter()
                            .filter_map(|u| done.get(u).map(|m| (u.to_owned(), m.clone())))
                            .collect();
                        shard_count(cache, node, &manifests)?
                    } else {
                        None
                    };
                    let job = StageJob {
                        stage: node.id.clone(),
                        key: Some(key),
                        upstream,
                        force,
                        shard: None,
                    };
                    (job, shards)
                }
            }
        } else {
            // Its key hashes upstream outputs that do not exist yet: the job plans it. It
            // shards only when its params alone give the count.
            let shards = if config.shards { planned_shard_count(node) } else { None };
            if config.shards && shards.is_none() && node.shardable() {
                tracing::info!(
                    stage = %node.id,
                    "one job, not shards: its shard count depends on upstream outputs that do not exist yet"
                );
            }
            let job = StageJob {
                stage: node.id.clone(),
                key: None,
                upstream: BTreeMap::new(),
                force,
                shard: None,
            };
            (job, shards)
        };
        let (id, array, shards) = match shards.filter(|&n| n >= 2) {
            Some(count) => {
                let (merge, _, array) =
                    submit_sharded(pipeline, cache, config, &logs, node, job, &after, count)?;
                tracing::info!(stage = %node.id, job = %merge, array = %array, shards = count, "submitted");
                (merge, Some(array), Some(count))
            }
            None => {
                let (id, _) = submit(pipeline, cache, config, &logs, node, &job, &after)?;
                tracing::info!(stage = %node.id, job = %id, "submitted");
                (id, None, None)
            }
        };
        job_of.insert(node.id.as_str(), id.clone());
        jobs.push(DetachedJob {
            stage: node.id.clone(),
            job: id,
            state: String::new(),
            reason: String::new(),
            array,
            shards,
            tasks: String::new(),
        });
    }
    let record = record_path(cache, pipeline);
    let text = serde_json::to_vec_pretty(&Record {
        submitted: brainpipe_core::rfc3339_utc(std::time::SystemTime::now()),
        jobs: jobs.clone(),
    })
    .map_err(|source| brainpipe_core::Error::Json { path: record.clone(), source })?;
    write_file_atomic(&record, &text)?;
    bookkeeping(cache.save_index(), jobs.is_empty())?;
    // Submitted to outlive this process: an exit from here on must not cancel them.
    forget_all();
    Ok(Detached { cached, jobs, record })
}

/// The jobs of `pipeline`'s last detached run in `cache`, with their states as Slurm lists them
/// now, and when they were submitted; `None` if it never ran detached.
pub fn detached_jobs(
    pipeline: &Pipeline,
    cache: &Cache,
) -> Result<Option<(String, Vec<DetachedJob>)>, RunError> {
    let path = record_path(cache, pipeline);
    let Ok(bytes) = std::fs::read(&path) else { return Ok(None) };
    let record: Record = serde_json::from_slice(&bytes)
        .map_err(|source| brainpipe_core::Error::Json { path: path.clone(), source })?;
    let ids: Vec<&str> = record
        .jobs
        .iter()
        .flat_map(|j| std::iter::once(j.job.as_str()).chain(j.array.as_deref()))
        .collect();
    let states = if ids.is_empty() { BTreeMap::new() } else { squeue(&ids).unwrap_or_default() };
    let jobs = record
        .jobs
        .iter()
        .map(|job| {
            let (state, reason) = states
                .get(&job.job)
                .cloned()
                .unwrap_or_else(|| ("UNKNOWN".to_owned(), String::new()));
            let tasks = job.array.as_deref().map(|a| task_states(&states, a)).unwrap_or_default();
            DetachedJob { state, reason, tasks, ..job.clone() }
        })
        .collect();
    Ok(Some((record.submitted, jobs)))
}

/// A job of an earlier detached run that a later `run` waits for instead of submitting its own.
pub(super) struct Adopted {
    /// The stage's job (a sharded stage's merge job).
    pub(super) job: String,
    /// A sharded stage's job array and its task count.
    pub(super) array: Option<(String, usize)>,
}

/// Stage id → job of `pipeline`'s last detached run that Slurm lists as queued or running.
pub(super) fn active_jobs(pipeline: &Pipeline, cache: &Cache) -> BTreeMap<String, Adopted> {
    let Ok(Some((_, jobs))) = detached_jobs(pipeline, cache) else { return BTreeMap::new() };
    jobs.into_iter()
        .filter(|job| matches!(classify(&job.state), JobState::Active))
        .map(|job| {
            let array = job.array.zip(job.shards);
            (job.stage, Adopted { job: job.job, array })
        })
        .collect()
}

/// The states of array job `array`'s tasks, counted: `2 COMPLETED, 1 RUNNING` (pending tasks
/// listed together, `12_[2-3]`, count as many as they name).
fn task_states(states: &BTreeMap<String, (String, String)>, array: &str) -> String {
    let prefix = format!("{array}_");
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (id, (state, _)) in states.iter().filter(|(id, _)| id.starts_with(&prefix)) {
        let one = BTreeMap::from([(id.clone(), (state.clone(), String::new()))]);
        *counts.entry(state.as_str()).or_default() += listed_tasks(&one, array).len().max(1);
    }
    let parts: Vec<String> = counts.iter().map(|(state, n)| format!("{n} {state}")).collect();
    if parts.is_empty() { "none listed".to_owned() } else { parts.join(", ") }
}

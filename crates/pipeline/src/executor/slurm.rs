//! The Slurm driver: each stage to compute becomes one `sbatch` job once its inputs have landed;
//! `squeue` says when it ends; its entry in the shared cache is the result.
//!
//! No accounting database is assumed (`sacct` is not used): finished jobs are read from `squeue
//! -t all` (kept for `MinJobAge`, 300 s by default) and their exit codes from `scontrol show job`.
//! A job gone from both is judged by the cache: an intact entry under its key means it completed.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use brainpipe_core::{ContentHash, IoContext, Manifest};

use super::SlurmConfig;
use super::detach::Adopted;
use super::job::StageJob;
use super::shard::ShardRole;
use crate::cache::{Cache, EntryState, KeyMaterial, StageRecord, safe_name};
use crate::error::RunError;
use crate::graph::{Node, Pipeline};
use crate::plan::{forced_set, key_material};
use crate::run::{RunOptions, StageOutcome, bookkeeping, shell_quote};

/// Jobs this process submitted that have not ended: what a Ctrl-C cancels.
static SUBMITTED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// Lines of a failed job's log its error message carries.
const LOG_TAIL_LINES: usize = 5;

/// How long `squeue` may keep failing before the run gives up: a controller restarting, failing
/// over to its backup or briefly overloaded answers again within minutes.
const SLURM_PATIENCE: Duration = Duration::from_secs(300);

/// The first wait after a change; each later one doubles, up to `poll_seconds`.
const FIRST_POLL: Duration = Duration::from_millis(100);

/// How long a completed job's entry may take to appear on this node: a shared file system may
/// show a rename done on another node a little later (NFS attribute caching).
const ENTRY_GRACE: Duration = Duration::from_secs(10);

/// A job in flight.
struct Submitted {
    node: usize,
    job: String,
    key: ContentHash,
    material: KeyMaterial,
    log: PathBuf,
    state: String,
    /// Submitted by an earlier detached run, not by this one (so not ours to cancel).
    adopted: bool,
    /// For a sharded stage (`job` is then its merge job): the job array computing the shards.
    array: Option<ArrayJob>,
}

/// The job array of a sharded stage.
struct ArrayJob {
    /// The array job's id (its tasks are `<id>_<index>`).
    id: String,
    /// Its tasks.
    count: usize,
    /// The folder its shards go to.
    area: PathBuf,
    /// Its tasks' logs: `<logs>/<stage>-<id>_<index>.log`.
    logs: PathBuf,
}

/// Runs `pipeline` on Slurm (see [`super::run_on`]).
pub(crate) fn run(
    pipeline: &Pipeline,
    cache: &Cache,
    options: &RunOptions,
    config: &SlurmConfig,
) -> Result<Vec<StageOutcome>, RunError> {
    let forced = forced_set(pipeline, &options.force)?;
    cache.check_owner(&pipeline.name, &pipeline.file, false)?;
    bookkeeping(cache.check_owner(&pipeline.name, &pipeline.file, true), true)?;
    let logs = cache.root().join("slurm").join(safe_name(&pipeline.name));
    let mut done: BTreeMap<String, Manifest> = BTreeMap::new();
    let mut outcomes: Vec<StageOutcome> = Vec::new();
    let mut started: BTreeSet<usize> = BTreeSet::new();
    let mut in_flight: Vec<Submitted> = Vec::new();
    let mut error: Option<RunError> = None;
    let mut failing_since: Option<Instant> = None;
    // Polls come fast after a change (a job submitted or changing state), then slow down to
    // `config.poll`: a dependency hop then costs a fraction of the interval, an idle wait little.
    let mut interval = FIRST_POLL.min(config.poll);
    // Jobs of an earlier detached run still queued or running: waited for, not submitted again.
    let mut detached = super::detach::active_jobs(pipeline, cache);
    loop {
        // Nodes are in dependency order, so one pass also starts a chain of cached stages.
        for (index, node) in pipeline.nodes.iter().enumerate() {
            if error.is_some() || in_flight.len() >= config.max_jobs {
                break;
            }
            if started.contains(&index) || !node.upstream().iter().all(|u| done.contains_key(*u)) {
                continue;
            }
            started.insert(index);
            let force = forced.contains(&node.id);
            let adopt = detached.remove(&node.id).filter(|_| !force);
            match start(pipeline, cache, config, &logs, index, &done, force, adopt) {
                Ok(Start::Cached(outcome)) => {
                    done.insert(node.id.clone(), outcome.manifest.clone());
                    outcomes.push(*outcome);
                }
                Ok(Start::Submitted(job)) => {
                    let how = if job.adopted { "waiting for detached job" } else { "submitted" };
                    tracing::info!(stage = %node.id, key = job.key.short(), job = %job.job, "{how}");
                    in_flight.push(*job);
                    interval = FIRST_POLL.min(config.poll);
                }
                Err(e) => error = Some(e),
            }
        }
        if in_flight.is_empty() {
            break;
        }
        std::thread::sleep(interval);
        interval = (interval * 2).min(config.poll);
        // A sharded stage's merge job and its array (whose tasks squeue lists as `<id>_<k>`).
        let ids: Vec<&str> = in_flight
            .iter()
            .flat_map(|s| {
                std::iter::once(s.job.as_str()).chain(s.array.as_ref().map(|a| a.id.as_str()))
            })
            .collect();
        let states = match squeue(&ids) {
            Ok(states) => {
                failing_since = None;
                states
            }
            Err(message) => {
                let since = *failing_since.get_or_insert_with(Instant::now);
                tracing::warn!(
                    "squeue failed (for {:.0} s; giving up after {SLURM_PATIENCE:?}): {message}",
                    since.elapsed().as_secs_f64()
                );
                if since.elapsed() < SLURM_PATIENCE {
                    continue;
                }
                cancel_submitted_jobs();
                error.get_or_insert(RunError::Usage(format!(
                    "Slurm stopped answering: {message}; cancelled the jobs in flight"
                )));
                break;
            }
        };
        let mut still = Vec::new();
        for mut job in in_flight {
            let node = &pipeline.nodes[job.node];
            if let Some(array) = &job.array
                && let Some((task, state, reason)) = failed_task(&states, &array.id)
            {
                // The merge cannot run: the array's other tasks and the merge are cancelled,
                // the shards removed.
                error.get_or_insert(task_failure(node, array, &task, &state, &reason));
                cancel_jobs(&[array.id.clone(), job.job.clone()]);
                super::shard::remove_area(&array.area);
                super::shard::forget_area(&array.area);
                continue;
            }
            let state = states.get(&job.job).map(|(state, _)| state.as_str());
            if let Some(state) = state.filter(|s| *s != job.state) {
                interval = FIRST_POLL.min(config.poll);
                // A job pending for `Resources`, `Priority` or `ReqNodeNotAvail` may wait long:
                // the log line says why. (Its end is logged as `done` or the run's error.)
                if matches!(classify(state), JobState::Active) {
                    let reason = states.get(&job.job).map(|(_, r)| r.as_str()).unwrap_or("None");
                    let why = if reason == "None" { String::new() } else { format!(" ({reason})") };
                    tracing::info!(stage = %node.id, job = %job.job, "{}{why}", state.to_lowercase());
                }
                job.state = state.to_owned();
            }
            match state.map(classify) {
                Some(JobState::Active) => still.push(job),
                Some(JobState::Completed) | None => {
                    forget(&job.job);
                    if let Some(array) = &job.array {
                        forget(&array.id);
                        super::shard::forget_area(&array.area);
                    }
                    match finished(pipeline, cache, node, &job, state.is_some()) {
                        Ok(outcome) => {
                            done.insert(node.id.clone(), outcome.manifest.clone());
                            outcomes.push(outcome);
                        }
                        Err(e) => {
                            error.get_or_insert(e);
                        }
                    }
                }
                Some(JobState::Failed) => {
                    forget(&job.job);
                    let reason = states.get(&job.job).map(|(_, r)| r.as_str()).unwrap_or("");
                    error.get_or_insert(match &job.array {
                        // The merge was cancelled because a task did not complete: say which.
                        Some(array) => unlisted_task_failure(node, &job, array, &states, reason),
                        None => failure(node, &job, reason),
                    });
                    if let Some(array) = &job.array {
                        cancel_jobs(std::slice::from_ref(&array.id));
                        super::shard::remove_area(&array.area);
                        super::shard::forget_area(&array.area);
                    }
                }
            }
        }
        in_flight = still;
    }
    let computed = outcomes.iter().any(|o| !o.cached);
    bookkeeping(cache.save_index(), !computed)?;
    if let Some(error) = error {
        return Err(error);
    }
    let order: BTreeMap<&str, usize> =
        pipeline.nodes.iter().enumerate().map(|(i, n)| (n.id.as_str(), i)).collect();
    outcomes.sort_by_key(|o| order.get(o.id.as_str()).copied().unwrap_or(usize::MAX));
    Ok(outcomes)
}

enum Start {
    Cached(Box<StageOutcome>),
    Submitted(Box<Submitted>),
}

/// Reuses the stage's intact entry, or waits for the detached job `adopt` computing it, or
/// submits its job.
#[expect(clippy::too_many_arguments, reason = "the driver's state, passed down once")]
fn start(
    pipeline: &Pipeline,
    cache: &Cache,
    config: &SlurmConfig,
    logs: &Path,
    index: usize,
    done: &BTreeMap<String, Manifest>,
    force: bool,
    adopt: Option<Adopted>,
) -> Result<Start, RunError> {
    let node = &pipeline.nodes[index];
    let (key, material, upstream) = match reuse(pipeline, cache, node, done, force)? {
        Reuse::Cached(outcome) => return Ok(Start::Cached(outcome)),
        Reuse::Compute { key, material, upstream } => (key, material, upstream),
    };
    let adopted = adopt.is_some();
    let shards = match adopt {
        Some(_) => None,
        None if config.shards => {
            let manifests: BTreeMap<String, Manifest> = node
                .upstream()
                .into_iter()
                .filter_map(|u| done.get(u).map(|m| (u.to_owned(), m.clone())))
                .collect();
            super::shard::shard_count(cache, node, &manifests)?.filter(|&n| n >= 2)
        }
        None => None,
    };
    let mut array = None;
    let (job, log) = match (adopt, shards) {
        (Some(Adopted { job: id, array: detached_array }), _) => {
            let log = logs.join(format!("{}-{id}.log", safe_name(&node.id)));
            // A sharded stage's merge job: its array is polled too, so a failed task is named
            // and the doomed rest of the array cancelled (its shards are not ours to remove on
            // a Ctrl-C: the area is not tracked).
            array = detached_array.map(|(id, count)| {
                let area = super::shard::shard_area(cache, &key, &id);
                ArrayJob { id, count, area, logs: logs.to_path_buf() }
            });
            (id, log)
        }
        (None, Some(count)) => {
            let plain = StageJob {
                stage: node.id.clone(),
                key: Some(key.clone()),
                upstream,
                force,
                shard: None,
            };
            let (merge, log, id) =
                submit_sharded(pipeline, cache, config, logs, node, plain, &[], count)?;
            let area = super::shard::shard_area(cache, &key, &id);
            array = Some(ArrayJob { id, count, area, logs: logs.to_path_buf() });
            (merge, log)
        }
        (None, None) => {
            let job = StageJob {
                stage: node.id.clone(),
                key: Some(key.clone()),
                upstream,
                force,
                shard: None,
            };
            submit(pipeline, cache, config, logs, node, &job, &[])?
        }
    };
    let state = "PENDING".to_owned();
    let submitted = Submitted { node: index, job, key, material, log, state, adopted, array };
    Ok(Start::Submitted(Box::new(submitted)))
}

/// A stage whose upstream entries are all known: reused, or to compute under its key.
#[expect(clippy::large_enum_variant, reason = "one value per stage, matched at once")]
pub(super) enum Reuse {
    /// Its intact entry (plan history and `runs/` links updated).
    Cached(Box<StageOutcome>),
    /// To compute.
    Compute {
        /// Its key.
        key: ContentHash,
        /// What the key was computed from.
        material: KeyMaterial,
        /// The upstream stages' keys.
        upstream: BTreeMap<String, ContentHash>,
    },
}

/// Keys stage `node` from the upstream manifests in `done` and reuses its intact entry unless
/// `force`. A damaged entry is the job's to quarantine and recompute, as `execute` does locally.
pub(super) fn reuse(
    pipeline: &Pipeline,
    cache: &Cache,
    node: &Node,
    done: &BTreeMap<String, Manifest>,
    force: bool,
) -> Result<Reuse, RunError> {
    let upstream: BTreeMap<String, Manifest> = node
        .upstream()
        .into_iter()
        .filter_map(|u| done.get(u).map(|m| (u.to_owned(), m.clone())))
        .collect();
    let (material, _) = key_material(node, cache, &upstream)?;
    let key = material.key();
    if let (EntryState::Intact(manifest), false) = (cache.entry_state(&key), force) {
        tracing::info!(stage = %node.id, key = key.short(), "cached");
        let outcome = StageOutcome {
            id: node.id.clone(),
            cached: true,
            manifest,
            dir: cache.entry_dir(&key),
        };
        record(pipeline, cache, node, &key, material, &outcome)?;
        return Ok(Reuse::Cached(Box::new(outcome)));
    }
    let upstream =
        upstream.iter().map(|(id, m)| (id.clone(), ContentHash::from_hex(m.key.clone()))).collect();
    Ok(Reuse::Compute { key, material, upstream })
}

/// Submits `job` for `node`, after the jobs `after` end well (`afterok`; a failed one cancels
/// this one). Returns the job id and its log.
pub(super) fn submit(
    pipeline: &Pipeline,
    cache: &Cache,
    config: &SlurmConfig,
    logs: &Path,
    node: &Node,
    job: &StageJob,
    after: &[String],
) -> Result<(String, PathBuf), RunError> {
    let script = job_script(pipeline, cache, config, job, "");
    let how = Submission { after, ..Submission::default() };
    let id = submit_script(pipeline, config, logs, node, &script, &how)?;
    let log = logs.join(format!("{}-{id}.log", safe_name(&node.id)));
    Ok((id, log))
}

/// How one `sbatch` call differs from a plain stage job.
#[derive(Default)]
struct Submission<'a> {
    /// Jobs that must end well first.
    after: &'a [String],
    /// A job array of this many tasks.
    array: Option<usize>,
    /// Appended to the job name (`brainpipe:<pipeline>:<stage><suffix>`).
    name_suffix: &'a str,
    /// A merge of shards: the stage's resources, but no GPU (it computes nothing on one).
    merge: bool,
}

/// Submits the `sbatch` script `script` for `node`; returns the job id.
fn submit_script(
    pipeline: &Pipeline,
    config: &SlurmConfig,
    logs: &Path,
    node: &Node,
    script: &str,
    how: &Submission<'_>,
) -> Result<String, RunError> {
    fs::create_dir_all(logs).at(logs)?;
    // An array task's log is `<stage>-<array>_<task>.log`.
    let id_pattern = if how.array.is_some() { "%A_%a" } else { "%j" };
    let log_pattern = logs.join(format!("{}-{id_pattern}.log", safe_name(&node.id)));
    let mut args = vec![
        "--parsable".to_owned(),
        format!("--job-name=brainpipe:{}:{}{}", pipeline.name, node.id, how.name_suffix),
        format!("--output={}", log_pattern.display()),
        format!("--chdir={}", pipeline.dir.display()),
    ];
    if let Some(count) = how.array {
        args.push(format!("--array=0-{}", count.saturating_sub(1)));
    }
    if !how.after.is_empty() {
        // Without --kill-on-invalid-dep a dependent of a failed job pends forever
        // (`DependencyNeverSatisfied`) on clusters that do not set it for everyone.
        args.push(format!("--dependency=afterok:{}", how.after.join(":")));
        args.push("--kill-on-invalid-dep=yes".to_owned());
    }
    for (flag, value) in
        [("partition", &config.partition), ("account", &config.account), ("qos", &config.qos)]
    {
        if let Some(value) = value {
            args.push(format!("--{flag}={value}"));
        }
    }
    let mut resources = super::Resources::of_stage(pipeline, node, config);
    if how.merge {
        resources.gpus = None;
    }
    args.extend(resources.sbatch_args());
    args.extend(config.sbatch_args.iter().cloned());
    sbatch(&args, script).map_err(|message| RunError::Stage {
        id: node.id.clone(),
        stage: node.stage_name().to_owned(),
        exit_code: None,
        message: format!("sbatch failed: {message}"),
    })
}

/// Submits sharded stage `node` (the job `plain` would compute it whole) as a job array of
/// `count` tasks, one per shard, after the jobs `after` (`afterok`), and a merge job after the
/// array. Returns the merge job's id and log, and the array's id. A job without a key (a
/// detached run's, submitted before its upstream jobs ran) plans it when it starts.
#[expect(clippy::too_many_arguments, reason = "the driver's state, passed down once")]
pub(super) fn submit_sharded(
    pipeline: &Pipeline,
    cache: &Cache,
    config: &SlurmConfig,
    logs: &Path,
    node: &Node,
    plain: StageJob,
    after: &[String],
    count: usize,
) -> Result<(String, PathBuf, String), RunError> {
    // Each task learns its shard and the array's id from Slurm's environment.
    let tail = format!(
        "--shards {count} --shard \"$SLURM_ARRAY_TASK_ID\" --array \"$SLURM_ARRAY_JOB_ID\""
    );
    let script = job_script(pipeline, cache, config, &plain, &tail);
    let how = Submission { array: Some(count), after, ..Submission::default() };
    let array = submit_script(pipeline, config, logs, node, &script, &how)?;
    // The shards of a planned key are removed if the run is interrupted (a detached run's
    // forget them with its jobs once it returns).
    let area = plain.key.as_ref().map(|key| super::shard::shard_area(cache, key, &array));
    if let Some(area) = &area {
        super::shard::track_area(area);
    }
    let merge_job =
        StageJob { shard: Some(ShardRole::Merge { count, array: array.clone() }), ..plain };
    let script = job_script(pipeline, cache, config, &merge_job, "");
    let after = [array.clone()];
    let how = Submission { after: &after, name_suffix: ":merge", merge: true, array: None };
    let merge = match submit_script(pipeline, config, logs, node, &script, &how) {
        Ok(merge) => merge,
        Err(e) => {
            // Shards nobody would merge: cancelled, and their folder removed.
            cancel_jobs(std::slice::from_ref(&array));
            if let Some(area) = &area {
                super::shard::remove_area(area);
                super::shard::forget_area(area);
            }
            return Err(e);
        }
    };
    tracing::info!(stage = %node.id, array = %array, merge = %merge, shards = count, "submitted shards");
    let log = logs.join(format!("{}-{merge}.log", safe_name(&node.id)));
    Ok((merge, log, array))
}

/// The batch script: `brainpipe stage-job` with everything it needs to load the same pipeline
/// and compute the one stage (`tail`: further shell words, written as they are).
fn job_script(
    pipeline: &Pipeline,
    cache: &Cache,
    config: &SlurmConfig,
    job: &StageJob,
    tail: &str,
) -> String {
    let mut words = vec![
        config.program.display().to_string(),
        "stage-job".to_owned(),
        pipeline.file.display().to_string(),
        "--cache".to_owned(),
        cache.root().display().to_string(),
    ];
    for item in &config.overrides {
        words.extend(["--set".to_owned(), item.clone()]);
    }
    words.extend(job.args());
    let mut line: Vec<String> = words.iter().map(|w| shell_quote(w)).collect();
    if !tail.is_empty() {
        line.push(tail.to_owned());
    }
    format!(
        "#!/bin/sh\n# brainpipe: stage `{}` of pipeline `{}`\nexec {}\n",
        job.stage.replace('\n', " "),
        pipeline.name.replace('\n', " "),
        line.join(" ")
    )
}

/// Submits `script` with `args`; returns the job id.
fn sbatch(args: &[String], script: &str) -> Result<String, String> {
    let mut child = Command::new("sbatch")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run `sbatch` ({e}): is Slurm installed and on PATH?"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes()).map_err(|e| format!("writing the job script: {e}"))?;
    }
    let output = child.wait_with_output().map_err(|e| format!("waiting for sbatch: {e}"))?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).trim().to_owned());
    }
    // `--parsable` prints `id` or `id;cluster`.
    let text = String::from_utf8_lossy(&output.stdout);
    let id = text.trim().split(';').next().unwrap_or_default().to_owned();
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("unexpected sbatch output `{}`", text.trim()));
    }
    SUBMITTED.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone());
    Ok(id)
}

/// State and reason of each of `ids` that Slurm still lists.
pub(super) fn squeue(ids: &[&str]) -> Result<BTreeMap<String, (String, String)>, String> {
    let output = Command::new("squeue")
        .args(["--noheader", "--states=all", "--format=%i|%T|%r", "--jobs", &ids.join(",")])
        .output()
        .map_err(|e| format!("cannot run `squeue`: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        // Jobs purged after MinJobAge make squeue refuse the whole list: judge them by the cache.
        if stderr.contains("Invalid job id") {
            return Ok(BTreeMap::new());
        }
        return Err(stderr.trim().to_owned());
    }
    Ok(text
        .lines()
        .filter_map(|line| {
            let mut fields = line.trim().splitn(3, '|');
            let id = fields.next()?.to_owned();
            let state = fields.next()?.to_owned();
            Some((id, (state, fields.next().unwrap_or_default().to_owned())))
        })
        .collect())
}

pub(super) enum JobState {
    Active,
    Completed,
    Failed,
}

/// Slurm's job states (`squeue --format=%T`), as the driver needs them.
pub(super) fn classify(state: &str) -> JobState {
    match state {
        "COMPLETED" => JobState::Completed,
        "PENDING" | "CONFIGURING" | "RUNNING" | "COMPLETING" | "SUSPENDED" | "REQUEUED"
        | "REQUEUE_FED" | "REQUEUE_HOLD" | "RESIZING" | "RESV_DEL_HOLD" | "SIGNALING"
        | "STAGE_OUT" | "STOPPED" => JobState::Active,
        // FAILED, CANCELLED, TIMEOUT, NODE_FAIL, OUT_OF_MEMORY, PREEMPTED, BOOT_FAIL, DEADLINE, …
        _ => JobState::Failed,
    }
}

/// The outcome of a job that completed (`listed`) or that Slurm no longer lists: its entry must
/// be in the cache.
fn finished(
    pipeline: &Pipeline,
    cache: &Cache,
    node: &Node,
    job: &Submitted,
    listed: bool,
) -> Result<StageOutcome, RunError> {
    let deadline = Instant::now() + ENTRY_GRACE;
    let hashed_before = cache.files_hashed();
    let manifest = loop {
        // With the hashes the job recorded while writing: its outputs are not read again.
        if let Some(manifest) = cache.committed_entry(&job.key) {
            break manifest;
        }
        if Instant::now() >= deadline {
            let what = if listed { "COMPLETED" } else { "no longer listed by squeue" };
            return Err(RunError::Stage {
                id: node.id.clone(),
                stage: node.stage_name().to_owned(),
                exit_code: None,
                message: format!(
                    "Slurm job {} {what}, but no entry {} appeared in {}{}",
                    job.job,
                    job.key.short(),
                    cache.root().display(),
                    log_excerpt(&job.log)
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    tracing::info!(
        stage = %node.id,
        job = %job.job,
        seconds = format!("{:.2}", manifest.seconds()),
        rehashed = cache.files_hashed() - hashed_before,
        "done"
    );
    let outcome = StageOutcome {
        id: node.id.clone(),
        cached: false,
        manifest,
        dir: cache.entry_dir(&job.key),
    };
    record(pipeline, cache, node, &job.key, job.material.clone(), &outcome)?;
    Ok(outcome)
}

/// Plan history and `runs/` links, as a local run keeps them.
fn record(
    pipeline: &Pipeline,
    cache: &Cache,
    node: &Node,
    key: &ContentHash,
    material: KeyMaterial,
    outcome: &StageOutcome,
) -> Result<(), RunError> {
    let record = StageRecord { key: key.clone(), material };
    bookkeeping(cache.set_record(&pipeline.name, &node.id, &record), outcome.cached)?;
    bookkeeping(cache.link_run(&pipeline.name, &node.id, &outcome.manifest), outcome.cached)
}

/// The error of a job that failed: its state, exit code and the tail of its log.
fn failure(node: &Node, job: &Submitted, reason: &str) -> RunError {
    let exit = exit_code(&job.job).map(|code| format!(", exit code {code}")).unwrap_or_default();
    let reason =
        if reason.is_empty() || reason == "None" { String::new() } else { format!(" ({reason})") };
    RunError::Stage {
        id: node.id.clone(),
        stage: node.stage_name().to_owned(),
        exit_code: None,
        message: format!(
            "Slurm job {} {}{reason}{exit}{}",
            job.job,
            job.state,
            log_excerpt(&job.log)
        ),
    }
}

/// The first task of array job `array` that `squeue` lists as failed: its id
/// (`<array>_<index>`), state and reason. Tasks appear as `12_3`, pending ones together as
/// `12_[4-7]`.
fn failed_task(
    states: &BTreeMap<String, (String, String)>,
    array: &str,
) -> Option<(String, String, String)> {
    let prefix = format!("{array}_");
    states
        .iter()
        .filter(|(id, _)| id.starts_with(&prefix))
        .find(|(_, (state, _))| matches!(classify(state), JobState::Failed))
        .map(|(id, (state, reason))| (id.clone(), state.clone(), reason.clone()))
}

/// The error of a failed array task: as [`failure`], naming the task and its log.
fn task_failure(node: &Node, array: &ArrayJob, task: &str, state: &str, reason: &str) -> RunError {
    let exit = exit_code(task).map(|code| format!(", exit code {code}")).unwrap_or_default();
    let reason =
        if reason.is_empty() || reason == "None" { String::new() } else { format!(" ({reason})") };
    let log = array.logs.join(format!("{}-{task}.log", safe_name(&node.id)));
    RunError::Stage {
        id: node.id.clone(),
        stage: node.stage_name().to_owned(),
        exit_code: None,
        message: format!("Slurm job {task} (a shard) {state}{reason}{exit}{}", log_excerpt(&log)),
    }
}

/// The error of a merge job that failed while no task of its array is listed as failed: a task
/// cancelled before it started leaves no record in `squeue`, so the missing tasks are named.
fn unlisted_task_failure(
    node: &Node,
    merge: &Submitted,
    array: &ArrayJob,
    states: &BTreeMap<String, (String, String)>,
    reason: &str,
) -> RunError {
    let listed = listed_tasks(states, &array.id);
    let missing: Vec<String> = (0..array.count)
        .filter(|k| !listed.contains(k))
        .map(|k| format!("{}_{k}", array.id))
        .collect();
    let RunError::Stage { id, stage, exit_code, message } = failure(node, merge, reason) else {
        unreachable!("failure() is a stage error")
    };
    let message = if missing.is_empty() {
        message
    } else {
        format!(
            "Slurm job {} (a shard) ended before it started (cancelled while pending: Slurm no longer lists it), so merge {message}",
            missing.join(", ")
        )
    };
    RunError::Stage { id, stage, exit_code, message }
}

/// The task indices `squeue` lists for array job `array`: `12_3`, and pending ones as
/// `12_[4-6,9]` (with `%N`, the array's throttle, after the list).
pub(super) fn listed_tasks(
    states: &BTreeMap<String, (String, String)>,
    array: &str,
) -> BTreeSet<usize> {
    let prefix = format!("{array}_");
    let mut tasks = BTreeSet::new();
    for id in states.keys() {
        let Some(rest) = id.strip_prefix(&prefix) else { continue };
        let rest = rest.trim_start_matches('[');
        let rest = rest.split(['%', ']']).next().unwrap_or_default();
        for part in rest.split(',') {
            let (from, to) = part.split_once('-').unwrap_or((part, part));
            if let (Ok(from), Ok(to)) = (from.parse::<usize>(), to.parse::<usize>()) {
                tasks.extend(from..=to.min(from.saturating_add(1_000_000)));
            }
        }
    }
    tasks
}

/// `ExitCode=3:0` of `scontrol show job` as `3`, or `0 (signal 15)`.
fn exit_code(job: &str) -> Option<String> {
    let output = Command::new("scontrol").args(["show", "job", "--oneliner", job]).output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let field = text.split_whitespace().find_map(|f| f.strip_prefix("ExitCode="))?;
    let (code, signal) = field.split_once(':').unwrap_or((field, "0"));
    Some(if signal == "0" { code.to_owned() } else { format!("{code} (signal {signal})") })
}

/// `; log <path>: <last lines>` of a job's log.
fn log_excerpt(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().map(str::trim_end).filter(|l| !l.is_empty()).collect();
    let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
    if tail.is_empty() {
        format!("; log {} (empty)", log.display())
    } else {
        format!("; log {}: {}", log.display(), tail.join(" | "))
    }
}

/// The job ended: a Ctrl-C no longer needs to cancel it.
fn forget(job: &str) {
    SUBMITTED.lock().unwrap_or_else(|e| e.into_inner()).remove(job);
}

/// The jobs submitted so far are meant to outlive this process (`--detach`).
pub(super) fn forget_all() {
    SUBMITTED.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

/// How long a cancellation waits for the jobs to leave the queue.
const CANCEL_WAIT: Duration = Duration::from_secs(10);

/// Cancels (`scancel`) every job this process submitted that has not ended, waits until Slurm
/// no longer lists them as queued or running, and returns how many there were. Jobs of anyone
/// else, and this user's other jobs, are left alone.
pub(crate) fn cancel_submitted_jobs() -> usize {
    let jobs: Vec<String> =
        std::mem::take(&mut *SUBMITTED.lock().unwrap_or_else(|e| e.into_inner()))
            .into_iter()
            .collect();
    if jobs.is_empty() {
        return 0;
    }
    cancel_jobs(&jobs);
    // The shards of arrays that will not be merged now.
    super::shard::remove_tracked_areas();
    jobs.len()
}

/// Cancels `jobs` (a job array's id cancels all its tasks) and waits until Slurm no longer
/// lists them as queued or running.
fn cancel_jobs(jobs: &[String]) {
    for job in jobs {
        forget(job);
    }
    if let Err(e) = Command::new("scancel").args(jobs).status() {
        tracing::warn!("cannot run `scancel` ({e}): jobs {} may still run", jobs.join(","));
        return;
    }
    let ids: Vec<&str> = jobs.iter().map(String::as_str).collect();
    let deadline = Instant::now() + CANCEL_WAIT;
    while Instant::now() < deadline {
        match squeue(&ids) {
            Ok(states)
                if states.values().all(|(s, _)| !matches!(classify(s), JobState::Active)) =>
            {
                break;
            }
            Err(_) => break,
            Ok(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Registry;

    #[test]
    fn the_job_script_runs_the_stage_job_with_quoted_words() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("it's.yaml");
        fs::write(&file, "name: q\nstages:\n  a: { run: \"echo > {outputs.o}\", outputs: [o] }\n")
            .expect("write");
        let pipeline = Pipeline::load(&file, &Registry::new(), &[]).expect("pipeline");
        let cache = Cache::open(&dir.path().join("cache")).expect("cache");
        let config = SlurmConfig::from_spec(
            &super::super::ExecutorSpec::default(),
            PathBuf::from("/opt/bp/brainpipe"),
            vec!["a.x=1".to_owned()],
        );
        let job = StageJob {
            stage: "a".to_owned(),
            key: Some(ContentHash::from_hex("ab".repeat(32))),
            upstream: BTreeMap::new(),
            force: true,
            shard: None,
        };
        let script = job_script(&pipeline, &cache, &config, &job, "");
        let last = script.lines().last().expect("a line");
        assert!(script.starts_with("#!/bin/sh\n"), "{script}");
        assert!(last.starts_with("exec '/opt/bp/brainpipe' 'stage-job' '"), "{last}");
        assert!(last.contains(r"it'\''s.yaml'"), "{last}");
        assert!(
            last.ends_with(&format!(
                "'--set' 'a.x=1' '--stage' 'a' '--key' '{}' '--force'",
                "ab".repeat(32)
            )),
            "{last}"
        );
    }

    #[test]
    fn array_tasks_are_read_from_squeue_ids() {
        let states: BTreeMap<String, (String, String)> = [
            ("12_0", "COMPLETED"),
            ("12_3", "CANCELLED"),
            ("12_[4-6,9%2]", "PENDING"),
            ("120_1", "FAILED"),
            ("13", "PENDING"),
        ]
        .into_iter()
        .map(|(id, state)| (id.to_owned(), (state.to_owned(), "None".to_owned())))
        .collect();
        let listed: Vec<usize> = listed_tasks(&states, "12").into_iter().collect();
        assert_eq!(listed, [0, 3, 4, 5, 6, 9]);
        let failed = failed_task(&states, "12").expect("a failed task");
        assert_eq!((failed.0.as_str(), failed.1.as_str()), ("12_3", "CANCELLED"));
        assert!(failed_task(&states, "13").is_none());
        assert_eq!(failed_task(&states, "120").map(|f| f.0).as_deref(), Some("120_1"));
    }

    #[test]
    fn job_states_are_classified() {
        assert!(matches!(classify("RUNNING"), JobState::Active));
        assert!(matches!(classify("COMPLETING"), JobState::Active));
        assert!(matches!(classify("COMPLETED"), JobState::Completed));
        assert!(matches!(classify("CANCELLED"), JobState::Failed));
        assert!(matches!(classify("OUT_OF_MEMORY"), JobState::Failed));
    }
}

//! Executing a pipeline: independent stages in parallel, each computed at most once per key across
//! every process sharing the cache.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Condvar, Mutex};
use std::time::SystemTime;

use brainpipe_core::{
    ContentHash, Context, IoContext, MANIFEST_FORMAT, Manifest, OutputRecord, ShardTask, disk_size,
    hash_file, hash_tree, host_name, make_read_only, remove_tree, rfc3339_utc, unix_seconds,
};
use serde_json::Value;

use crate::cache::{Cache, EntryState, KeyMaterial, StageRecord};
use crate::error::RunError;
use crate::graph::{InputSource, Node, NodeKind, Pipeline, fill_placeholders};
use crate::plan::{forced_set, key_material};

/// How to run a pipeline.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Stages run at once (at least 1).
    pub jobs: usize,
    /// Stage ids to recompute even when cached (with everything downstream).
    pub force: Vec<String>,
    /// Show progress bars inside stages.
    pub progress: bool,
    /// Tool versions recorded in manifests (`brainpipe`, `libtorch`).
    pub tools: BTreeMap<String, String>,
    /// The Slurm job this process computes in, recorded in manifests as `notes.slurm_job_id`.
    pub slurm_job_id: Option<String>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            jobs: std::thread::available_parallelism().map(usize::from).unwrap_or(1),
            force: Vec::new(),
            progress: false,
            tools: BTreeMap::from([("brainpipe".to_owned(), env!("CARGO_PKG_VERSION").to_owned())]),
            slurm_job_id: None,
        }
    }
}

/// What happened to one stage.
#[derive(Clone, Debug)]
pub struct StageOutcome {
    /// Stage id.
    pub id: String,
    /// True when an existing entry was reused.
    pub cached: bool,
    /// The entry's manifest.
    pub manifest: Manifest,
    /// The entry directory.
    pub dir: PathBuf,
}

/// Runs `pipeline` against `cache`. On the first failure no new stage starts; running ones finish;
/// the error is returned and nothing of the failed stage is committed.
pub fn run(
    pipeline: &Pipeline,
    cache: &Cache,
    options: &RunOptions,
) -> Result<Vec<StageOutcome>, RunError> {
    let forced = forced_set(pipeline, &options.force)?;
    cache.check_owner(&pipeline.name, &pipeline.file, false)?;
    bookkeeping(cache.check_owner(&pipeline.name, &pipeline.file, true), true)?;
    let state = Mutex::new(Schedule::new(pipeline));
    let wake = Condvar::new();
    let bar = progress_bar(pipeline, options.progress);
    let workers = options.jobs.max(1).min(pipeline.nodes.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| worker(pipeline, cache, options, &forced, &state, &wake, &bar));
        }
    });
    bar.finish_and_clear();
    let state = state.into_inner().expect("workers never panic while holding the schedule");
    let computed = state.outcomes.iter().any(|o| !o.cached);
    bookkeeping(cache.save_index(), !computed)?;
    if let Some(error) = state.error {
        return Err(error);
    }
    let mut outcomes = state.outcomes;
    let order: BTreeMap<&str, usize> =
        pipeline.nodes.iter().enumerate().map(|(i, n)| (n.id.as_str(), i)).collect();
    outcomes.sort_by_key(|o| order.get(o.id.as_str()).copied().unwrap_or(usize::MAX));
    Ok(outcomes)
}

/// The run's shared state. Stages start in pipeline order among those whose upstream stages are
/// done: a min-heap of ready positions and a count of unfinished upstream stages per node, so a
/// step costs O(log n + its downstream stages), not a scan of every node (linear in stages overall).
struct Schedule {
    /// Positions (in `pipeline.nodes`) of the stages ready to start, smallest first.
    ready: BinaryHeap<Reverse<usize>>,
    /// Per node: its upstream stages not yet done.
    waiting: Vec<usize>,
    /// Per node: the positions of the stages that read it.
    downstream: Vec<Vec<usize>>,
    /// Ids of the stages started and not finished (the progress bar's message).
    running_ids: BTreeSet<String>,
    done: BTreeMap<String, Manifest>,
    outcomes: Vec<StageOutcome>,
    running: usize,
    error: Option<RunError>,
}

impl Schedule {
    /// The initial schedule of `pipeline`.
    fn new(pipeline: &Pipeline) -> Schedule {
        let index: HashMap<&str, usize> =
            pipeline.nodes.iter().enumerate().map(|(i, n)| (n.id.as_str(), i)).collect();
        let mut downstream = vec![Vec::new(); pipeline.nodes.len()];
        let mut waiting = vec![0; pipeline.nodes.len()];
        for (i, node) in pipeline.nodes.iter().enumerate() {
            for up in node.upstream() {
                if let Some(&u) = index.get(up) {
                    downstream[u].push(i);
                    waiting[i] += 1;
                }
            }
        }
        let ready = (0..waiting.len()).filter(|&i| waiting[i] == 0).map(Reverse).collect();
        Schedule {
            ready,
            waiting,
            downstream,
            running_ids: BTreeSet::new(),
            done: BTreeMap::new(),
            outcomes: Vec::new(),
            running: 0,
            error: None,
        }
    }
}

fn worker(
    pipeline: &Pipeline,
    cache: &Cache,
    options: &RunOptions,
    forced: &BTreeSet<String>,
    state: &Mutex<Schedule>,
    wake: &Condvar,
    bar: &indicatif::ProgressBar,
) {
    let mut guard = state.lock().expect("schedule lock");
    loop {
        if guard.error.is_some() {
            break;
        }
        let Some(Reverse(position)) = guard.ready.pop() else {
            if guard.running == 0 {
                break;
            }
            guard = wake.wait(guard).expect("schedule lock");
            continue;
        };
        let node = &pipeline.nodes[position];
        guard.running_ids.insert(node.id.clone());
        guard.running += 1;
        bar.set_message(running_list(&guard));
        let upstream: BTreeMap<String, Manifest> = node
            .upstream()
            .into_iter()
            .filter_map(|u| guard.done.get(u).map(|m| (u.to_owned(), m.clone())))
            .collect();
        drop(guard);
        let result = execute(pipeline, cache, options, node, &upstream, forced.contains(&node.id));
        guard = state.lock().expect("schedule lock");
        guard.running -= 1;
        guard.running_ids.remove(&node.id);
        bar.inc(1);
        match result {
            Ok(outcome) => {
                guard.done.insert(node.id.clone(), outcome.manifest.clone());
                guard.outcomes.push(outcome);
                for k in 0..guard.downstream[position].len() {
                    let next = guard.downstream[position][k];
                    guard.waiting[next] -= 1;
                    if guard.waiting[next] == 0 {
                        guard.ready.push(Reverse(next));
                    }
                }
            }
            Err(error) => {
                guard.error.get_or_insert(error);
            }
        }
        bar.set_message(running_list(&guard));
        wake.notify_all();
    }
    wake.notify_all();
}

/// Ids of the stages started but not finished.
fn running_list(schedule: &Schedule) -> String {
    let running: Vec<&str> = schedule.running_ids.iter().map(String::as_str).collect();
    running.join(", ")
}

/// One bar over the pipeline's stages (hidden unless `enabled`), naming the stages in flight.
fn progress_bar(pipeline: &Pipeline, enabled: bool) -> indicatif::ProgressBar {
    if !enabled {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(pipeline.nodes.len() as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{prefix} [{bar:24}] {pos}/{len} stages {elapsed_precise}  {wide_msg}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(pipeline.name.clone());
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

pub(crate) fn execute(
    pipeline: &Pipeline,
    cache: &Cache,
    options: &RunOptions,
    node: &Node,
    upstream: &BTreeMap<String, Manifest>,
    forced: bool,
) -> Result<StageOutcome, RunError> {
    execute_task(pipeline, cache, options, node, upstream, forced, None)
}

/// The shards a merge job builds a stage's entry from (see `executor::shard`).
pub(crate) struct MergeShards {
    /// The shard directories, shard 0 first.
    pub(crate) dirs: Vec<PathBuf>,
    /// The Slurm array job that computed them (`notes.slurm_array_job_id`).
    pub(crate) array: String,
}

/// [`execute`], computing the entry from `merge`'s shards when given (instead of running the
/// stage whole): the same lock, temporary directory, manifest and rename.
pub(crate) fn execute_task(
    pipeline: &Pipeline,
    cache: &Cache,
    options: &RunOptions,
    node: &Node,
    upstream: &BTreeMap<String, Manifest>,
    forced: bool,
    merge: Option<&MergeShards>,
) -> Result<StageOutcome, RunError> {
    let (material, unknown) = key_material(node, cache, upstream)?;
    debug_assert!(unknown.is_empty(), "every upstream stage is done before a stage starts");
    let key = material.key();
    if let EntryState::Damaged { detail, .. } = cache.entry_state(&key) {
        // Never reuse or build on changed bytes: set the entry aside and compute it again.
        let _lock = cache.lock(&key)?;
        if let EntryState::Damaged { .. } = cache.entry_state(&key) {
            let to = cache.quarantine(&key)?;
            tracing::warn!(
                stage = %node.id,
                "cache entry {} damaged ({detail}); moved to {} and recomputing",
                key.short(),
                to.display()
            );
        }
    }
    let outcome = match cache.entry(&key).filter(|_| !forced) {
        Some(manifest) => {
            tracing::info!(stage = %node.id, key = key.short(), "cached");
            StageOutcome { id: node.id.clone(), cached: true, manifest, dir: cache.entry_dir(&key) }
        }
        None => {
            let _lock = cache.lock(&key).map_err(|e| match e {
                RunError::Artifact(brainpipe_core::Error::Io { source, .. })
                    if is_read_only(&source) =>
                {
                    RunError::Usage(format!(
                        "stage `{}` must be computed, but cache {} is read-only ({source}); a read-only cache serves fully cached pipelines only",
                        node.id,
                        cache.root().display()
                    ))
                }
                other => other,
            })?;
            // Another process may have computed it while we waited for the lock.
            match cache.entry(&key).filter(|_| !forced) {
                Some(manifest) => {
                    tracing::info!(stage = %node.id, key = key.short(), "computed by another run");
                    StageOutcome {
                        id: node.id.clone(),
                        cached: true,
                        manifest,
                        dir: cache.entry_dir(&key),
                    }
                }
                None => {
                    let planned = Planned { material: &material, key: &key, forced };
                    compute(pipeline, cache, options, node, upstream, planned, merge)?
                }
            }
        }
    };
    let record = StageRecord { key: key.clone(), material };
    bookkeeping(cache.set_record(&pipeline.name, &node.id, &record), outcome.cached)?;
    bookkeeping(cache.link_run(&pipeline.name, &node.id, &outcome.manifest), outcome.cached)?;
    Ok(outcome)
}

/// What a stage to compute resolved to.
struct Planned<'a> {
    material: &'a KeyMaterial,
    key: &'a ContentHash,
    /// Recomputed on request (`--force`): an existing entry is replaced, not reused.
    forced: bool,
}

fn compute(
    pipeline: &Pipeline,
    cache: &Cache,
    options: &RunOptions,
    node: &Node,
    upstream: &BTreeMap<String, Manifest>,
    planned: Planned<'_>,
    merge: Option<&MergeShards>,
) -> Result<StageOutcome, RunError> {
    let Planned { material, key, forced } = planned;
    tracing::info!(stage = %node.id, name = node.stage_name(), key = key.short(), "running");
    let temp = TempEntry::new(cache.temp_dir(key)?);
    let inputs = input_paths(cache, node, upstream);
    check_inputs(cache, node, material, &inputs)?;
    let started = SystemTime::now();
    let fail = |message: String| RunError::Stage {
        id: node.id.clone(),
        stage: node.stage_name().to_owned(),
        exit_code: None,
        message,
    };
    let mut notes = match &node.kind {
        NodeKind::Builtin { stage } => {
            let mut ctx = Context::new(inputs.clone(), stage.outputs(), temp.0.clone())
                .with_progress(options.progress);
            let task = match merge {
                None => ShardTask::Whole,
                Some(merge) => ShardTask::Merge(merge.dirs.clone()),
            };
            stage.run_task_json(&mut ctx, &node.params, &task).map_err(|e| fail(e.to_string()))?;
            ctx.notes().clone()
        }
        NodeKind::External { .. } if merge.is_some() => {
            return Err(fail("a `run:` command does not split into shards".to_owned()));
        }
        NodeKind::External { command, outputs, .. } => {
            run_external(pipeline, node, command, outputs, &inputs, &temp.0).map_err(
                |(message, exit_code)| RunError::Stage {
                    id: node.id.clone(),
                    stage: node.stage_name().to_owned(),
                    message,
                    exit_code,
                },
            )?;
            serde_json::Map::new()
        }
    };
    if let Some(job) = &options.slurm_job_id {
        notes.insert("slurm_job_id".to_owned(), Value::from(job.as_str()));
    }
    if let Some(merge) = merge {
        notes.insert("slurm_array_job_id".to_owned(), Value::from(merge.array.as_str()));
        notes.entry("shards").or_insert_with(|| Value::from(merge.dirs.len()));
    }
    let finished = SystemTime::now();
    let mut outputs = BTreeMap::new();
    let mut output_files: Vec<(PathBuf, ContentHash)> = Vec::new();
    for (port, file) in node.outputs() {
        let path = temp.0.join(&file);
        if fs::symlink_metadata(&path).is_err() {
            return Err(fail(format!("finished without writing output `{port}` ({file})")));
        }
        let mut hashes = |file: &Path| {
            let hash = hash_file(file)?;
            if let Ok(relative) = file.strip_prefix(&temp.0) {
                output_files.push((relative.to_path_buf(), hash.clone()));
            }
            Ok(hash)
        };
        let hash = hash_tree(&path, &mut hashes)?;
        outputs.insert(port, OutputRecord { file, hash, bytes: disk_size(&path) });
    }
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        key: key.as_str().to_owned(),
        stage: node.stage_name().to_owned(),
        stage_version: node.version(),
        origin: Some(format!("{}:{}", pipeline.name, node.id)),
        params: node.params.clone(),
        inputs: node
            .inputs
            .iter()
            .map(|(port, source)| {
                let hash =
                    material.inputs.get(port).cloned().unwrap_or_else(|| ContentHash::from_hex(""));
                (port.clone(), brainpipe_core::InputRecord { source: source.describe(), hash })
            })
            .collect(),
        command: material.command.clone(),
        deps: material.deps.clone(),
        outputs,
        started: rfc3339_utc(started),
        finished: rfc3339_utc(finished),
        started_unix: unix_seconds(started),
        finished_unix: unix_seconds(finished),
        device: brainpipe_core::reported_device(&notes),
        notes,
        tools: options.tools.clone(),
        host: host_name(),
    };
    // The manifest goes in last: its presence is what marks an entry complete.
    manifest.write(&temp.0)?;
    make_read_only(&temp.0)?;
    let entry = cache.entry_dir(key);
    if !forced && let Some(theirs) = cache.entry(key) {
        // Committed meanwhile by another run that took our lock over (it judged it stale): the
        // first entry stands, ours is discarded (dropping `temp` removes it).
        tracing::warn!(stage = %node.id, key = key.short(), "computed by another run meanwhile");
        return Ok(StageOutcome {
            id: node.id.clone(),
            cached: true,
            manifest: theirs,
            dir: entry,
        });
    }
    if fs::symlink_metadata(&entry).is_ok() {
        // Forced recomputation, or a damaged entry: retire the old one (we hold its lock).
        let retired = cache.temp_dir(key)?.join("retired");
        fs::rename(&entry, &retired).at(&entry)?;
        remove_tree(retired.parent().unwrap_or(&retired))?;
    }
    fs::rename(&temp.0, &entry).at(&entry)?;
    temp.committed();
    let committed: Vec<(PathBuf, ContentHash)> =
        output_files.into_iter().map(|(relative, hash)| (entry.join(relative), hash)).collect();
    cache.remember_outputs(&committed);
    tracing::info!(stage = %node.id, seconds = format!("{:.2}", manifest.seconds()), "done");
    Ok(StageOutcome { id: node.id.clone(), cached: false, manifest, dir: entry })
}

/// A failed write of the cache's bookkeeping (state records, runs/ links, the hash index):
/// tolerated with a warning when the cache is read-only and nothing was computed (a fully
/// cached pipeline runs from a shared, read-only lab cache), an error otherwise.
pub(crate) fn bookkeeping(result: Result<(), RunError>, only_read: bool) -> Result<(), RunError> {
    match result {
        Err(RunError::Artifact(brainpipe_core::Error::Io { path, source }))
            if only_read && is_read_only(&source) =>
        {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                tracing::warn!(
                    "read-only cache ({source} at {}): reading cached entries only; plan history, runs/ links and the hash index are not updated",
                    path.display()
                );
            });
            Ok(())
        }
        other => other,
    }
}

/// Whether an I/O error says the file system or the file refuses writes.
fn is_read_only(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::ReadOnlyFilesystem | std::io::ErrorKind::PermissionDenied
    )
}

/// The inputs a stage is about to read must be the bytes its key was computed from: an upstream
/// entry changed since it was checked (or an external file changed since it was hashed) fails
/// the stage instead of computing from other bytes under the old key. So the hashes the manifest
/// records are those of what the stage read.
pub(crate) fn check_inputs(
    cache: &Cache,
    node: &Node,
    material: &KeyMaterial,
    inputs: &BTreeMap<String, PathBuf>,
) -> Result<(), RunError> {
    for (port, path) in inputs {
        let Some(expected) = material.inputs.get(port) else { continue };
        let found = cache.hash_input(path)?;
        if &found != expected {
            return Err(RunError::Stage {
                id: node.id.clone(),
                stage: node.stage_name().to_owned(),
                exit_code: None,
                message: format!(
                    "input `{port}` ({}) changed while the run was planned: it hashes to {}, the key was computed from {}; run again",
                    path.display(),
                    found.short(),
                    expected.short()
                ),
            });
        }
    }
    Ok(())
}

/// A temporary entry removed unless committed (and registered for the driver's shutdown on a
/// signal meanwhile).
pub(crate) struct TempEntry(pub(crate) PathBuf);

impl TempEntry {
    pub(crate) fn new(dir: PathBuf) -> Self {
        crate::children::track_temp(&dir);
        TempEntry(dir)
    }

    /// Renamed into the cache: nothing to remove.
    pub(crate) fn committed(self) {
        crate::children::forget_temp(&self.0);
        std::mem::forget(self);
    }
}

impl Drop for TempEntry {
    fn drop(&mut self) {
        let _ = remove_tree(&self.0);
        crate::children::forget_temp(&self.0);
    }
}

/// Absolute paths of a node's inputs: upstream entries' output files or external paths.
pub(crate) fn input_paths(
    cache: &Cache,
    node: &Node,
    upstream: &BTreeMap<String, Manifest>,
) -> BTreeMap<String, PathBuf> {
    node.inputs
        .iter()
        .filter_map(|(port, source)| {
            let path = match source {
                InputSource::File(path) => path.clone(),
                InputSource::Stage { stage, port: out } => {
                    let manifest = upstream.get(stage)?;
                    let record = manifest.outputs.get(out)?;
                    cache.entry_dir(&ContentHash::from_hex(manifest.key.clone())).join(&record.file)
                }
            };
            Some((port.clone(), path))
        })
        .collect()
}

/// Runs an external command with its placeholders filled, in the pipeline file's folder.
fn run_external(
    pipeline: &Pipeline,
    node: &Node,
    command: &str,
    outputs: &[String],
    inputs: &BTreeMap<String, PathBuf>,
    out_dir: &Path,
) -> Result<(), (String, Option<i32>)> {
    let line = fill_placeholders(command, |placeholder| {
        let quoted = |text: String| Some(shell_quote(&text));
        match placeholder.split_once('.') {
            // A list input: every path, in order, each quoted, separated by spaces.
            Some(("inputs", name)) => {
                let paths = brainpipe_core::input_list(inputs, name);
                (!paths.is_empty()).then(|| {
                    paths
                        .iter()
                        .map(|p| shell_quote(&p.display().to_string()))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
            }
            Some(("outputs", name)) => outputs
                .iter()
                .find(|o| *o == name)
                .and_then(|o| quoted(out_dir.join(o).display().to_string())),
            Some(("params", name)) => node.params.get(name).and_then(|v| {
                quoted(match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
            }),
            _ if placeholder == "out_dir" => quoted(out_dir.display().to_string()),
            _ => None,
        }
    });
    let setup = |e: String| (e, None);
    let stdout = fs::File::create(out_dir.join("stdout.log")).map_err(|e| setup(e.to_string()))?;
    let stderr_log =
        fs::File::create(out_dir.join("stderr.log")).map_err(|e| setup(e.to_string()))?;
    tracing::debug!(stage = %node.id, command = %line, "external command");
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(&line)
        .current_dir(&pipeline.dir)
        .env("BRAINPIPE_OUT_DIR", out_dir)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        // Its own process group, so that stopping the run reaches everything it started.
        .process_group(0);
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of ours.
    unsafe {
        command.pre_exec(|| {
            // A driver killed outright (SIGKILL) cannot end the group: the kernel ends `sh`,
            // the watchdog below what `sh` started.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = command.spawn().map_err(|e| setup(format!("cannot start `sh`: {e}")))?;
    let _group = crate::children::GroupGuard::new(child.id());
    // Dropped (killed) before `_group`: see crate::children.
    let _watchdog = crate::children::Watchdog::start(child.id());
    let stderr = child.stderr.take().expect("stderr was piped");
    let tee = std::thread::spawn(move || tee_stderr(stderr, stderr_log));
    let status = child.wait().map_err(|e| setup(format!("waiting for `sh`: {e}")))?;
    let (last, log_error) = tee.join().unwrap_or_default();
    if status.success() {
        return Ok(());
    }
    let mut message = format!("command exited with {status}");
    if !last.is_empty() {
        message.push_str(": ");
        message.push_str(&last.join(" | "));
    }
    if let Some(error) = log_error {
        message.push_str(&format!(" (stderr.log incomplete: {error})"));
    }
    // As a shell reports it: the status, or 128 + the signal that ended the command.
    let code = status.code().or_else(|| {
        use std::os::unix::process::ExitStatusExt;
        status.signal().map(|signal| 128 + signal)
    });
    Err((message, code))
}

/// Lines of a failed command's stderr its error message carries.
const STDERR_TAIL_LINES: usize = 3;

/// Copies a command's stderr into `log` and keeps its last lines in memory: when the disk is
/// full, the log cannot hold the reason (ENOSPC) but the error message still does. Returns the
/// last non-empty lines and the first error writing the log.
fn tee_stderr(
    mut stderr: impl std::io::Read,
    mut log: fs::File,
) -> (Vec<String>, Option<std::io::Error>) {
    use std::io::Write;
    let mut tail: std::collections::VecDeque<String> = std::collections::VecDeque::new();
    let mut partial = Vec::new();
    let mut log_error = None;
    let mut buf = [0u8; 8192];
    loop {
        let n = match stderr.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        if log_error.is_none()
            && let Err(e) = log.write_all(&buf[..n])
        {
            log_error = Some(e);
        }
        for &byte in &buf[..n] {
            if byte == b'\n' {
                let line = String::from_utf8_lossy(&partial).trim_end().to_owned();
                partial.clear();
                if !line.is_empty() {
                    if tail.len() == STDERR_TAIL_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                }
            } else if partial.len() < 4096 {
                partial.push(byte);
            }
        }
    }
    let line = String::from_utf8_lossy(&partial).trim_end().to_owned();
    if !line.is_empty() {
        if tail.len() == STDERR_TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    if log_error.is_none()
        && let Err(e) = log.flush()
    {
        log_error = Some(e);
    }
    (tail.into(), log_error)
}

/// Single-quotes `s` for `sh`.
pub(crate) fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_keeps_the_stderr_tail_in_memory() {
        // Issue 15.6: the reason a command failed on a full disk was lost with its stderr.log.
        let full = fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full");
        let stderr: &[u8] = b"one\ntwo\n\nthree\nNo space left on device";
        let (tail, error) = tee_stderr(stderr, full);
        assert_eq!(tail, ["two", "three", "No space left on device"]);
        let error = error.expect("writing /dev/full fails");
        assert_eq!(error.raw_os_error(), Some(libc_enospc()));
    }

    /// ENOSPC on Linux.
    fn libc_enospc() -> i32 {
        28
    }
}

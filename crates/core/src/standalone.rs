//! Running one stage outside any pipeline: `brainpipe stage NAME …` and the Rust library call.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::Value;

use crate::atomic::{AtomicDir, remove_tree};
use crate::hash::disk_size;
use crate::hash::hash_path;
use crate::manifest::{
    InputRecord, MANIFEST_FILE, MANIFEST_FORMAT, Manifest, OutputRecord, host_name, rfc3339_utc,
    unix_seconds,
};
use crate::stage::{Context, DynStage, StageError, split_input_key};

/// Checks that `inputs` names every required input of `stage` and nothing else.
pub fn check_inputs(
    stage: &dyn DynStage,
    inputs: &BTreeMap<String, PathBuf>,
) -> Result<(), StageError> {
    let ports = stage.inputs();
    for key in inputs.keys() {
        let (name, index) = split_input_key(key);
        let Some(port) = ports.iter().find(|p| p.name == name) else {
            let known: Vec<_> = ports.iter().map(|p| p.name).collect();
            return Err(StageError::msg(format!(
                "`{}` has no input `{name}` (inputs: {})",
                stage.name(),
                if known.is_empty() { "none".to_owned() } else { known.join(", ") }
            )));
        };
        if index.is_some() && !port.many {
            return Err(StageError::msg(format!(
                "`{}` input `{name}` takes one artifact, not a list",
                stage.name()
            )));
        }
    }
    for port in ports.iter().filter(|p| p.required) {
        if !inputs.keys().any(|key| split_input_key(key).0 == port.name) {
            return Err(StageError::msg(format!("`{}` needs input `{}`", stage.name(), port.name)));
        }
    }
    for (name, path) in inputs {
        if std::fs::symlink_metadata(path).is_err() {
            return Err(StageError::msg(format!(
                "{}: input `{name}` does not exist",
                path.display()
            )));
        }
    }
    Ok(())
}

/// Checks that every declared output exists in `dir` after a run.
pub fn check_outputs(stage: &dyn DynStage, dir: &Path) -> Result<(), StageError> {
    for port in stage.outputs() {
        if std::fs::symlink_metadata(dir.join(port.file)).is_err() {
            return Err(StageError::msg(format!(
                "`{}` finished without writing output `{}` ({})",
                stage.name(),
                port.name,
                port.file
            )));
        }
    }
    Ok(())
}

/// Runs `stage` once, outside the cache, and publishes its outputs in `out` atomically.
///
/// `params` is a JSON object (defaults fill the rest). `out` must not exist, or must be a previous
/// output directory (it has a `manifest.json`), which is replaced only after the run succeeds.
pub fn run_standalone(
    stage: &dyn DynStage,
    inputs: &BTreeMap<String, PathBuf>,
    params: &Value,
    out: &Path,
    tools: &BTreeMap<String, String>,
) -> Result<Manifest, StageError> {
    check_inputs(stage, inputs)?;
    let params = stage.canonical_params(params)?;
    if out.exists() {
        let is_previous_output = out.join(MANIFEST_FILE).is_file();
        let is_empty_dir = std::fs::read_dir(out).map(|mut d| d.next().is_none()).unwrap_or(false);
        if !is_previous_output && !is_empty_dir {
            return Err(StageError::msg(format!(
                "{}: exists and is not a brainpipe output directory; refusing to replace it",
                out.display()
            )));
        }
    }
    let mut input_records = BTreeMap::new();
    for (name, path) in inputs {
        let hash = hash_path(path)?;
        input_records
            .insert(name.clone(), InputRecord { source: path.display().to_string(), hash });
    }
    let dir = AtomicDir::new(out)?;
    let started = SystemTime::now();
    let mut ctx = Context::new(inputs.clone(), stage.outputs(), dir.path().to_path_buf())
        .with_progress(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    stage.run_json(&mut ctx, &params)?;
    check_outputs(stage, dir.path())?;
    let finished = SystemTime::now();
    let mut outputs = BTreeMap::new();
    for port in stage.outputs() {
        let path = dir.path().join(port.file);
        outputs.insert(
            port.name.to_owned(),
            OutputRecord {
                file: port.file.to_owned(),
                hash: hash_path(&path)?,
                bytes: disk_size(&path),
            },
        );
    }
    let notes = ctx.notes().clone();
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        key: String::new(),
        stage: stage.name().to_owned(),
        stage_version: stage.version(),
        origin: None,
        params,
        inputs: input_records,
        command: None,
        deps: BTreeMap::new(),
        outputs,
        started: rfc3339_utc(started),
        finished: rfc3339_utc(finished),
        started_unix: unix_seconds(started),
        finished_unix: unix_seconds(finished),
        device: crate::stage::reported_device(&notes),
        notes,
        tools: tools.clone(),
        host: host_name(),
    };
    manifest.write(dir.path())?;
    if out.exists() {
        remove_tree(out)?;
    }
    dir.commit()?;
    Ok(manifest)
}

/// Every file under `dir` except `manifest.json`, by its path relative to `dir`, with its bytes:
/// what two runs of a stage are compared by (the same files with the same bytes), e.g. a whole
/// run against the merge of its shards. Panics on an unreadable folder or file (for tests).
pub fn output_files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).expect("read folder") {
            let path = entry.expect("folder entry").path();
            if path.is_dir() {
                folders.push(path);
            } else if path.file_name().is_some_and(|n| n != "manifest.json") {
                let bytes = std::fs::read(&path).expect("read file");
                out.insert(path.strip_prefix(dir).expect("inside").to_path_buf(), bytes);
            }
        }
    }
    out
}

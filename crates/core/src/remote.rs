//! Stages that run in a worker process.
//!
//! Loading LibTorch costs about 0.3 s of CPU and 470 MB of memory at process start, whatever the
//! process then does. The `brainpipe` driver (plan, dag, status, cached reruns) therefore never links
//! it; stages that need it live in the `brainpipe-torch` worker binary. The driver learns what those
//! stages are from the worker's **catalogue** (one JSON document: names, versions, ports, params with
//! defaults and docs) and runs one by spawning `brainpipe-torch exec`, which reads and writes the
//! same artifacts an in-process stage would — a worker stage is an external command with a contract.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::stage::{ArtifactKind, Context, DynStage, ParamDoc, Port, ShardTask, StageError};

/// Version of the catalogue and exec protocol between driver and worker.
pub const WORKER_PROTOCOL: u32 = 1;

/// The file a worker writes into the output directory with the stage's notes (removed by the
/// driver after reading it).
pub const WORKER_NOTES_FILE: &str = ".worker-notes.json";

/// The file a failing worker writes its one-line error into (the driver reads it: stderr stays the
/// terminal's, so progress bars and logs show live).
pub const WORKER_ERROR_FILE: &str = ".worker-error.txt";

/// The environment variable that tells a worker how many CPU threads LibTorch may use.
pub const WORKER_THREADS_ENV: &str = "BRAINPIPE_THREADS";

/// A port as described in the catalogue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PortInfo {
    /// Port name.
    pub name: String,
    /// Output file name (empty for inputs).
    #[serde(default)]
    pub file: String,
    /// Artifact kind.
    pub kind: ArtifactKind,
    /// One line on what it is.
    pub doc: String,
    /// For inputs: whether required.
    pub required: bool,
    /// For inputs: whether it takes a list of artifacts.
    #[serde(default)]
    pub many: bool,
}

/// A param as described in the catalogue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParamInfo {
    /// Name.
    pub name: String,
    /// Rust type, e.g. `f64`, `Option<String>`.
    #[serde(rename = "type")]
    pub ty: String,
    /// Default value.
    pub default: Value,
    /// Doc comment.
    pub doc: String,
}

/// Everything the driver needs to plan a stage it cannot run itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageInfo {
    /// Dotted name.
    pub name: String,
    /// VERSION.
    pub version: u32,
    /// One line on what it does.
    pub summary: String,
    /// Inputs.
    pub inputs: Vec<PortInfo>,
    /// Outputs.
    pub outputs: Vec<PortInfo>,
    /// Params in declaration order.
    pub params: Vec<ParamInfo>,
    /// Whether it splits into shards (`brainpipe-torch shards`, `exec --shard`, `merge`).
    #[serde(default)]
    pub shardable: bool,
}

/// The worker's list of stages.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Catalogue {
    /// [`WORKER_PROTOCOL`].
    pub protocol: u32,
    /// Tool versions of the worker (`brainpipe`, `libtorch`).
    pub tools: BTreeMap<String, String>,
    /// Its stages.
    pub stages: Vec<StageInfo>,
}

impl StageInfo {
    /// Describes an in-process stage (the worker does this for each of its stages).
    pub fn of(stage: &dyn DynStage) -> Self {
        let port = |p: Port| PortInfo {
            name: p.name.to_owned(),
            file: p.file.to_owned(),
            kind: p.kind,
            doc: p.doc.to_owned(),
            required: p.required,
            many: p.many,
        };
        StageInfo {
            name: stage.name().to_owned(),
            version: stage.version(),
            summary: stage.summary().to_owned(),
            inputs: stage.inputs().into_iter().map(port).collect(),
            outputs: stage.outputs().into_iter().map(port).collect(),
            params: stage
                .param_docs()
                .into_iter()
                .map(|d| ParamInfo {
                    name: d.name.to_owned(),
                    ty: d.ty.to_owned(),
                    default: d.default,
                    doc: d.doc,
                })
                .collect(),
            shardable: stage.shardable(),
        }
    }
}

/// Turns a stage's raw params into canonical ones, or a one-line error naming the param.
pub type CanonicalFn = fn(&Value) -> Result<Value, String>;

/// A stage of the worker, as seen by the driver.
pub struct RemoteStage {
    info: StageInfo,
    // `Port` and `ParamDoc` hold `&'static str`: the catalogue lives as long as the process.
    name: &'static str,
    summary: &'static str,
    inputs: Vec<Port>,
    outputs: Vec<Port>,
    params: Vec<ParamDoc>,
    worker: PathBuf,
    threads: usize,
    /// The params' typed declaration, when the driver links one (`brainpipe-params`).
    declared: Option<CanonicalFn>,
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

impl RemoteStage {
    /// A stage run by `worker` (the `brainpipe-torch` executable).
    pub fn new(info: StageInfo, worker: &Path) -> Self {
        Self::with_threads(info, worker, 0)
    }

    /// Like [`RemoteStage::new`], telling the worker to use `threads` CPU threads (0: its
    /// default). Several workers at once must share the cores: LibTorch's thread pools spin, and
    /// two pools of all the cores each slow both down many times over.
    pub fn with_threads(info: StageInfo, worker: &Path, threads: usize) -> Self {
        let port = |p: &PortInfo| Port {
            name: leak(&p.name),
            file: leak(&p.file),
            kind: p.kind,
            doc: leak(&p.doc),
            required: p.required,
            many: p.many,
        };
        RemoteStage {
            name: leak(&info.name),
            summary: leak(&info.summary),
            inputs: info.inputs.iter().map(port).collect(),
            outputs: info.outputs.iter().map(port).collect(),
            params: info
                .params
                .iter()
                .map(|p| ParamDoc {
                    name: leak(&p.name),
                    ty: leak(&p.ty),
                    default: p.default.clone(),
                    doc: p.doc.clone(),
                })
                .collect(),
            info,
            worker: worker.to_path_buf(),
            threads,
            declared: None,
        }
    }

    /// Checks params with their typed declaration (`canonical`: see
    /// `brainpipe_core::canonical_params`), so enum values, ranges and combinations are refused
    /// at plan time, as the worker would refuse them, without starting it.
    pub fn with_declared_params(mut self, canonical: CanonicalFn) -> Self {
        self.declared = Some(canonical);
        self
    }
}

impl DynStage for RemoteStage {
    fn name(&self) -> &'static str {
        self.name
    }
    fn version(&self) -> u32 {
        self.info.version
    }
    fn summary(&self) -> &'static str {
        self.summary
    }
    fn inputs(&self) -> Vec<Port> {
        self.inputs.clone()
    }
    fn outputs(&self) -> Vec<Port> {
        self.outputs.clone()
    }
    fn param_docs(&self) -> Vec<ParamDoc> {
        self.params.clone()
    }

    /// The typed declaration's canonical params when there is one; else defaults in declaration
    /// order, overlaid with the given values (unknown keys and values of the wrong JSON type are
    /// errors here, at plan time). The worker parses the result into the typed params again (so
    /// the stage itself sees exactly what an in-process stage would).
    fn canonical_params(&self, raw: &Value) -> Result<Value, StageError> {
        if let Some(canonical) = self.declared {
            return canonical(raw)
                .map_err(|e| StageError::msg(format!("params of `{}`: {e}", self.name)));
        }
        let given = match raw {
            Value::Null => Map::new(),
            Value::Object(map) => map.clone(),
            other => {
                return Err(StageError::msg(format!(
                    "params of `{}` must be a mapping, got {other}",
                    self.name
                )));
            }
        };
        for key in given.keys() {
            if !self.info.params.iter().any(|p| p.name == *key) {
                let known: Vec<&str> = self.info.params.iter().map(|p| p.name.as_str()).collect();
                return Err(StageError::msg(format!(
                    "params of `{}`: unknown field `{key}`, expected one of {}",
                    self.name,
                    known.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
                )));
            }
        }
        let mut canonical = Map::new();
        for param in &self.info.params {
            let value = match given.get(&param.name) {
                Some(value) => normalise(&param.ty, value).ok_or_else(|| {
                    StageError::msg(format!(
                        "params of `{}`: `{}` must be {}, got {value}",
                        self.name, param.name, param.ty
                    ))
                })?,
                None => param.default.clone(),
            };
            canonical.insert(param.name.clone(), value);
        }
        Ok(Value::Object(canonical))
    }

    fn run_json(&self, ctx: &mut Context, params: &Value) -> Result<(), StageError> {
        self.run_task_json(ctx, params, &ShardTask::Whole)
    }

    fn shardable(&self) -> bool {
        self.info.shardable
    }

    /// Asks the worker: `brainpipe-torch shards NAME --params JSON --in PORT=PATH…` prints the
    /// count (it reads the inputs, so it costs a LibTorch start and the read).
    fn shards_json(&self, ctx: &Context, params: &Value) -> Result<usize, StageError> {
        let mut command = Command::new(&self.worker);
        command.arg("shards").arg(self.name).arg("--params").arg(params.to_string());
        self.input_args(&mut command, ctx);
        let output = command
            .stdin(Stdio::null())
            .output()
            .map_err(|e| StageError::msg(format!("cannot start {}: {e}", self.worker.display())))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
            let message = last.trim().strip_prefix("error: ").unwrap_or(last.trim());
            return Err(StageError::msg(if message.is_empty() {
                format!("{} shards exited with {}", self.worker.display(), output.status)
            } else {
                message.to_owned()
            }));
        }
        stdout.trim().parse().map_err(|_| {
            StageError::msg(format!(
                "{} shards {}: expected a count, got `{}`",
                self.worker.display(),
                self.name,
                stdout.trim()
            ))
        })
    }

    fn run_task_json(
        &self,
        ctx: &mut Context,
        params: &Value,
        task: &ShardTask,
    ) -> Result<(), StageError> {
        let mut command = Command::new(&self.worker);
        let verb = if matches!(task, ShardTask::Merge(_)) { "merge" } else { "exec" };
        command.arg(verb).arg(self.name).arg("--out-dir").arg(ctx.out_dir());
        command.arg("--params").arg(params.to_string());
        match task {
            ShardTask::Whole => {}
            ShardTask::Shard { index, count } => {
                command.arg("--shard").arg(format!("{index}/{count}"));
            }
            ShardTask::Merge(shards) => {
                for dir in shards {
                    command.arg("--shard-dir").arg(dir);
                }
            }
        }
        if self.threads > 0 {
            command.env(WORKER_THREADS_ENV, self.threads.to_string());
        }
        self.input_args(&mut command, ctx);
        let status = command
            .stdin(Stdio::null())
            .status()
            .map_err(|e| StageError::msg(format!("cannot start {}: {e}", self.worker.display())))?;
        if !status.success() {
            let error_path = ctx.out_dir().join(WORKER_ERROR_FILE);
            let message = std::fs::read_to_string(&error_path)
                .map(|m| m.trim().to_owned())
                .unwrap_or_else(|_| format!("{} exited with {status}", self.worker.display()));
            return Err(StageError::msg(message));
        }
        let notes_path = ctx.out_dir().join(WORKER_NOTES_FILE);
        if let Ok(bytes) = std::fs::read(&notes_path) {
            let notes: Map<String, Value> = serde_json::from_slice(&bytes).unwrap_or_default();
            for (key, value) in notes {
                ctx.note(key, value);
            }
            std::fs::remove_file(&notes_path)?;
        }
        Ok(())
    }
}

impl RemoteStage {
    /// `--in PORT=PATH` for each of `ctx`'s inputs (`port#i` for each artifact of a list).
    fn input_args(&self, command: &mut Command, ctx: &Context) {
        for port in &self.inputs {
            if port.many {
                // Every artifact of a list input, as `port#i` (a plain `port` would carry one).
                for (i, path) in ctx.input_list(port.name).into_iter().enumerate() {
                    let key = crate::stage::list_input_key(port.name, i);
                    command.arg("--in").arg(format!("{key}={}", path.display()));
                }
            } else if let Some(path) = ctx.optional_input(port.name) {
                command.arg("--in").arg(format!("{}={}", port.name, path.display()));
            }
        }
    }
}

/// `value` in the JSON shape of Rust type `ty`, or `None` if it cannot be. Integers given for
/// floats become floats, so `lr: 1` and `lr: 1.0` give the same key.
fn normalise(ty: &str, value: &Value) -> Option<Value> {
    let ty = ty.replace(' ', "");
    if let Some(inner) = ty.strip_prefix("Option<").and_then(|t| t.strip_suffix('>')) {
        return if value.is_null() { Some(Value::Null) } else { normalise(inner, value) };
    }
    match ty.as_str() {
        "f32" | "f64" => value.as_f64().map(Value::from),
        "u8" | "u16" | "u32" | "u64" | "usize" => value.as_u64().map(Value::from),
        "i8" | "i16" | "i32" | "i64" | "isize" => value.as_i64().map(Value::from),
        "bool" => value.as_bool().map(Value::from),
        "String" | "PathBuf" => value.as_str().map(Value::from),
        _ => Some(value.clone()),
    }
}

/// Runs `stage` (in-process, inside the worker) with `inputs`, writing into the existing directory
/// `out_dir` and leaving its notes in [`WORKER_NOTES_FILE`] for the driver.
pub fn exec_in_worker(
    stage: &dyn DynStage,
    inputs: BTreeMap<String, PathBuf>,
    params: &Value,
    out_dir: &Path,
    progress: bool,
) -> Result<(), StageError> {
    exec_task_in_worker(stage, inputs, params, out_dir, progress, &ShardTask::Whole)
}

/// [`exec_in_worker`] for one `task`: the whole stage, one shard, or the merge of shards.
pub fn exec_task_in_worker(
    stage: &dyn DynStage,
    inputs: BTreeMap<String, PathBuf>,
    params: &Value,
    out_dir: &Path,
    progress: bool,
    task: &ShardTask,
) -> Result<(), StageError> {
    let mut ctx =
        Context::new(inputs, stage.outputs(), out_dir.to_path_buf()).with_progress(progress);
    stage.run_task_json(&mut ctx, params, task)?;
    let notes = serde_json::to_vec(ctx.notes())?;
    std::fs::write(out_dir.join(WORKER_NOTES_FILE), notes)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stage() -> RemoteStage {
        let info = StageInfo {
            name: "models.train".into(),
            version: 3,
            summary: "s".into(),
            inputs: vec![],
            outputs: vec![],
            params: vec![
                ParamInfo {
                    name: "lr".into(),
                    ty: "f64".into(),
                    default: json!(0.001),
                    doc: String::new(),
                },
                ParamInfo {
                    name: "epochs".into(),
                    ty: "u32".into(),
                    default: json!(50),
                    doc: String::new(),
                },
                ParamInfo {
                    name: "device".into(),
                    ty: "Option<String>".into(),
                    default: Value::Null,
                    doc: String::new(),
                },
            ],
            shardable: false,
        };
        RemoteStage::new(info, Path::new("/nonexistent/brainpipe-torch"))
    }

    #[test]
    fn canonical_params_fill_defaults_in_order_and_normalise_numbers() {
        let canonical = stage().canonical_params(&json!({"epochs": 5, "lr": 1})).expect("valid");
        assert_eq!(canonical.to_string(), r#"{"lr":1.0,"epochs":5,"device":null}"#);
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_refused() {
        let err = stage().canonical_params(&json!({"epoch": 5})).expect_err("typo").to_string();
        assert!(err.contains("unknown field `epoch`"), "{err}");
        let err = stage().canonical_params(&json!({"epochs": -1})).expect_err("type").to_string();
        assert!(err.contains("`epochs` must be u32"), "{err}");
    }
}

//! What a run would do and why: `brainpipe plan`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use brainpipe_core::{ContentHash, Manifest};
use serde::Serialize;
use serde_json::Value;

use crate::cache::{Cache, EntryState, KeyMaterial, StageRecord};
use crate::error::RunError;
use crate::graph::{InputSource, Node, NodeKind, Pipeline};

/// Why a stage will run.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum Reason {
    /// Never ran in this pipeline and no cache entry matches.
    New,
    /// `--force` named it or a stage upstream of it.
    Forced,
    /// The stage's VERSION changed since the last run.
    VersionBumped {
        /// VERSION of the last run.
        old: u32,
        /// VERSION now.
        new: u32,
    },
    /// Params changed; each entry is `key: old → new`.
    ParamsChanged {
        /// The changed keys.
        changes: Vec<ParamChange>,
    },
    /// Input content changed.
    InputChanged {
        /// The input port.
        port: String,
        /// What changed (`content changed`, `upstream `scans` reruns`, `new input`…).
        detail: String,
    },
    /// An external stage's command text changed.
    CommandChanged,
    /// An external stage's declared outputs changed.
    OutputsChanged,
    /// An external stage's dependency file changed.
    DepChanged {
        /// The dependency as written.
        dep: String,
    },
    /// Nothing about the stage changed but its cache entry is gone (removed by `gc`, or a run was
    /// killed before committing it).
    EntryMissing,
    /// The cache entry exists but an output changed since it was written (edited, truncated,
    /// deleted): it will be set aside (`quarantine/`) and recomputed.
    EntryDamaged {
        /// What is wrong.
        detail: String,
    },
}

/// One changed parameter.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ParamChange {
    /// Dotted key.
    pub key: String,
    /// Value in the last run (`null` if absent).
    pub old: Value,
    /// Value now (`null` if absent).
    pub new: Value,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::New => f.write_str("new"),
            Reason::Forced => f.write_str("forced"),
            Reason::VersionBumped { old, new } => write!(f, "stage version bumped {old} → {new}"),
            Reason::ParamsChanged { changes } => {
                let parts: Vec<String> =
                    changes.iter().map(|c| format!("{} {} → {}", c.key, c.old, c.new)).collect();
                write!(f, "params changed: {}", parts.join(", "))
            }
            Reason::InputChanged { port, detail } => match brainpipe_core::split_input_key(port) {
                (list, Some(i)) => write!(f, "input changed: {list}[{i}] ({detail})"),
                _ => write!(f, "input changed: {port} ({detail})"),
            },
            Reason::CommandChanged => f.write_str("command changed"),
            Reason::OutputsChanged => f.write_str("declared outputs changed"),
            Reason::DepChanged { dep } => write!(f, "dependency changed: {dep}"),
            Reason::EntryMissing => {
                f.write_str("cache entry missing (removed, or never committed)")
            }
            Reason::EntryDamaged { detail } => write!(f, "cache entry damaged: {detail}"),
        }
    }
}

/// What will happen to one stage.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StagePlan {
    /// Stage id.
    pub id: String,
    /// Stage name.
    pub stage: String,
    /// Cache key, when every input is already known.
    pub key: Option<ContentHash>,
    /// True when the cached entry will be reused.
    pub cached: bool,
    /// Why it will run (empty when cached).
    pub reasons: Vec<Reason>,
}

/// Resolves the key material of `node` given what is known of its upstream outputs. Inputs whose
/// upstream has not run are returned in the second list as (port, upstream id).
pub(crate) fn key_material(
    node: &Node,
    cache: &Cache,
    upstream: &BTreeMap<String, Manifest>,
) -> Result<(KeyMaterial, Vec<(String, String)>), RunError> {
    let mut inputs = BTreeMap::new();
    let mut unknown = Vec::new();
    for (port, source) in &node.inputs {
        match source {
            InputSource::File(path) => {
                inputs.insert(port.clone(), cache.hash_input(path)?);
            }
            InputSource::Stage { stage, port: out } => match upstream.get(stage) {
                Some(manifest) => {
                    let record = manifest.outputs.get(out).ok_or_else(|| {
                        RunError::Usage(format!(
                            "cache entry {} of stage `{stage}` lacks output `{out}`",
                            manifest.key
                        ))
                    })?;
                    inputs.insert(port.clone(), record.hash.clone());
                }
                None => unknown.push((port.clone(), stage.clone())),
            },
        }
    }
    let (command, outputs, deps) = match &node.kind {
        NodeKind::Builtin { .. } => (None, Vec::new(), BTreeMap::new()),
        NodeKind::External { command, outputs, deps } => {
            let mut hashes = BTreeMap::new();
            for (written, path) in deps {
                hashes.insert(written.clone(), cache.hash_input(path)?);
            }
            (Some(command.clone()), outputs.clone(), hashes)
        }
    };
    let material = KeyMaterial {
        stage: node.stage_name().to_owned(),
        version: node.version(),
        params: node.params.clone(),
        inputs,
        command,
        outputs,
        deps,
    };
    Ok((material, unknown))
}

/// Explains why `material` differs from the last `record` of the stage.
pub(crate) fn reasons(
    record: Option<&StageRecord>,
    material: &KeyMaterial,
    unknown: &[(String, String)],
) -> Vec<Reason> {
    let Some(record) = record else { return vec![Reason::New] };
    let old = &record.material;
    let mut reasons = Vec::new();
    if old.version != material.version {
        reasons.push(Reason::VersionBumped { old: old.version, new: material.version });
    }
    let mut changes = Vec::new();
    diff_params("", &old.params, &material.params, &mut changes);
    if !changes.is_empty() {
        reasons.push(Reason::ParamsChanged { changes });
    }
    for (port, upstream) in unknown {
        reasons.push(Reason::InputChanged {
            port: port.clone(),
            detail: format!("upstream `{upstream}` reruns"),
        });
    }
    let ports: BTreeSet<&String> = old.inputs.keys().chain(material.inputs.keys()).collect();
    for port in ports {
        if unknown.iter().any(|(p, _)| p == port) {
            continue;
        }
        let detail = match (old.inputs.get(port), material.inputs.get(port)) {
            (Some(a), Some(b)) if a == b => continue,
            (Some(_), Some(_)) => "content changed",
            (None, Some(_)) => "new input",
            (Some(_), None) => "input removed",
            (None, None) => continue,
        };
        reasons.push(Reason::InputChanged { port: port.clone(), detail: detail.to_owned() });
    }
    if old.command != material.command {
        reasons.push(Reason::CommandChanged);
    }
    if old.outputs != material.outputs {
        reasons.push(Reason::OutputsChanged);
    }
    let deps: BTreeSet<&String> = old.deps.keys().chain(material.deps.keys()).collect();
    for dep in deps {
        if old.deps.get(dep) != material.deps.get(dep) {
            reasons.push(Reason::DepChanged { dep: dep.clone() });
        }
    }
    if reasons.is_empty() {
        reasons.push(Reason::EntryMissing);
    }
    reasons
}

/// Flattens two JSON values into dotted keys and lists those that differ.
fn diff_params(prefix: &str, old: &Value, new: &Value, out: &mut Vec<ParamChange>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                diff_params(
                    &path,
                    a.get(key).unwrap_or(&Value::Null),
                    b.get(key).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (a, b) if a != b => out.push(ParamChange {
            key: if prefix.is_empty() { "(params)".to_owned() } else { prefix.to_owned() },
            old: a.clone(),
            new: b.clone(),
        }),
        _ => {}
    }
}

/// Plans a run: for each stage in order, cached or will run, and why.
pub fn plan(
    pipeline: &Pipeline,
    cache: &Cache,
    force: &[String],
) -> Result<Vec<StagePlan>, RunError> {
    let forced = forced_set(pipeline, force)?;
    cache.check_owner(&pipeline.name, &pipeline.file, false)?;
    let mut known: BTreeMap<String, Manifest> = BTreeMap::new();
    let mut plans = Vec::new();
    for node in &pipeline.nodes {
        let (material, unknown) = key_material(node, cache, &known)?;
        let key = unknown.is_empty().then(|| material.key());
        let entry = key.as_ref().map_or(EntryState::Missing, |k| cache.entry_state(k));
        let record = cache.record(&pipeline.name, &node.id);
        let (cached, reasons) = match entry {
            EntryState::Intact(manifest) if !forced.contains(&node.id) => {
                known.insert(node.id.clone(), manifest);
                (true, Vec::new())
            }
            _ if forced.contains(&node.id) => (false, vec![Reason::Forced]),
            EntryState::Damaged { detail, .. } => (false, vec![Reason::EntryDamaged { detail }]),
            _ => (false, reasons(record.as_ref(), &material, &unknown)),
        };
        plans.push(StagePlan {
            id: node.id.clone(),
            stage: node.stage_name().to_owned(),
            key,
            cached,
            reasons,
        });
    }
    crate::run::bookkeeping(cache.save_index(), true)?;
    Ok(plans)
}

/// The stages `--force` names, and everything downstream of them.
pub(crate) fn forced_set(
    pipeline: &Pipeline,
    force: &[String],
) -> Result<BTreeSet<String>, RunError> {
    for id in force {
        if pipeline.node(id).is_none() {
            return Err(RunError::Usage(format!(
                "--force {id}: no stage `{id}` in {}",
                pipeline.file.display()
            )));
        }
    }
    Ok(pipeline.downstream_closure(force))
}

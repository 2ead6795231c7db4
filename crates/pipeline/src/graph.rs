//! From a parsed pipeline file to a checked DAG of stages in execution order.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use brainpipe_core::{ArtifactKind, DynStage, Port, split_input_key};
use serde_json::{Map, Value};

use crate::spec::{Location, PipelineSpec, SpecError, StageSpec, Step, locate, parse_located};

/// The stages a pipeline may `use`, by name.
#[derive(Clone, Default)]
pub struct Registry {
    stages: BTreeMap<&'static str, Arc<dyn DynStage>>,
    unknown_hint: Option<String>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Registry::default()
    }

    /// Adds a stage; a later stage with the same name replaces the earlier one.
    pub fn register(&mut self, stage: Arc<dyn DynStage>) -> &mut Self {
        self.stages.insert(stage.name(), stage);
        self
    }

    /// A sentence added to "unknown stage" errors, e.g. why some stages are unavailable.
    pub fn set_unknown_hint(&mut self, hint: &str) {
        self.unknown_hint = Some(hint.to_owned());
    }

    /// The stage called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn DynStage>> {
        self.stages.get(name)
    }

    /// Every stage, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn DynStage>> {
        self.stages.values()
    }
}

/// Where an input comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InputSource {
    /// Output `port` of stage `stage` in the same pipeline.
    Stage {
        /// Stage id.
        stage: String,
        /// Output port.
        port: String,
    },
    /// A file or directory (absolute, resolved against the pipeline file's folder).
    File(PathBuf),
}

impl InputSource {
    /// `stage.port` or the path.
    pub fn describe(&self) -> String {
        match self {
            InputSource::Stage { stage, port } => format!("{stage}.{port}"),
            InputSource::File(path) => path.display().to_string(),
        }
    }
}

/// What a node computes.
#[derive(Clone)]
pub enum NodeKind {
    /// A registered stage with canonical params.
    Builtin {
        /// The stage.
        stage: Arc<dyn DynStage>,
    },
    /// An external command.
    External {
        /// Command template.
        command: String,
        /// Output names (files or directories the command creates).
        outputs: Vec<String>,
        /// Dependency files hashed into the key: (as written, absolute path).
        deps: Vec<(String, PathBuf)>,
    },
}

/// One stage of a pipeline, resolved.
#[derive(Clone)]
pub struct Node {
    /// Stage id in the pipeline file.
    pub id: String,
    /// What it runs.
    pub kind: NodeKind,
    /// Params: canonical for built-in stages, as written for external ones.
    pub params: Value,
    /// Inputs by port.
    pub inputs: BTreeMap<String, InputSource>,
}

impl Node {
    /// `features.roi`, or `run` for an external command.
    pub fn stage_name(&self) -> &str {
        match &self.kind {
            NodeKind::Builtin { stage } => stage.name(),
            NodeKind::External { .. } => "run",
        }
    }

    /// Whether its stage splits into shards (see `executor::shard`; never a `run:` command).
    pub fn shardable(&self) -> bool {
        matches!(&self.kind, NodeKind::Builtin { stage } if stage.shardable())
    }

    /// The stage VERSION (0 for external commands: their command text is in the key instead).
    pub fn version(&self) -> u32 {
        match &self.kind {
            NodeKind::Builtin { stage } => stage.version(),
            NodeKind::External { .. } => 0,
        }
    }

    /// Output ports and the file each is written to.
    pub fn outputs(&self) -> Vec<(String, String)> {
        match &self.kind {
            NodeKind::Builtin { stage } => {
                stage.outputs().iter().map(|p| (p.name.to_owned(), p.file.to_owned())).collect()
            }
            NodeKind::External { outputs, .. } => {
                outputs.iter().map(|o| (o.clone(), o.clone())).collect()
            }
        }
    }

    /// The kind of output `port` (`None` for external commands: they declare none).
    pub fn output_kind(&self, port: &str) -> Option<ArtifactKind> {
        match &self.kind {
            NodeKind::Builtin { stage } => {
                stage.outputs().into_iter().find(|p| p.name == port).map(|p| p.kind)
            }
            NodeKind::External { .. } => None,
        }
    }

    /// The kind input `key` (`port` or `port#i`) takes (`None` for external commands).
    pub fn input_kind(&self, key: &str) -> Option<ArtifactKind> {
        let port = split_input_key(key).0;
        match &self.kind {
            NodeKind::Builtin { stage } => {
                stage.inputs().into_iter().find(|p| p.name == port).map(|p| p.kind)
            }
            NodeKind::External { .. } => None,
        }
    }

    /// Ids of the stages this one reads from.
    pub fn upstream(&self) -> BTreeSet<&str> {
        self.inputs
            .values()
            .filter_map(|s| match s {
                InputSource::Stage { stage, .. } => Some(stage.as_str()),
                InputSource::File(_) => None,
            })
            .collect()
    }
}

/// A checked pipeline: nodes in an order where every stage comes after those it reads from.
#[derive(Clone)]
pub struct Pipeline {
    /// Pipeline name.
    pub name: String,
    /// The pipeline file.
    pub file: PathBuf,
    /// Its folder: relative paths and external commands start here.
    pub dir: PathBuf,
    /// Nodes in execution order.
    pub nodes: Vec<Node>,
    /// The pipeline's `executor:` block, if it has one.
    pub executor: Option<crate::executor::ExecutorSpec>,
    /// The `resources:` of the stages that declare them, by stage id.
    pub resources: BTreeMap<String, crate::executor::Resources>,
    /// The text the pipeline was read from, to locate its stages on demand.
    text: Arc<str>,
}

impl Pipeline {
    /// Reads, parses and checks a pipeline file, applying `overrides` (`stage.param=value`).
    pub fn load(file: &Path, registry: &Registry, overrides: &[String]) -> Result<Self, SpecError> {
        let text = std::fs::read_to_string(file).map_err(|e| SpecError {
            file: file.to_path_buf(),
            location: None,
            message: format!("cannot read pipeline: {e}"),
        })?;
        Self::from_text(file, &text, registry, overrides)
    }

    /// Parses and checks pipeline `text` as if read from `file`.
    pub fn from_text(
        file: &Path,
        text: &str,
        registry: &Registry,
        overrides: &[String],
    ) -> Result<Self, SpecError> {
        let spec = parse_located(file, text)?;
        let file = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
        let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
        Resolver { file: &file, dir: &dir, text, registry }.resolve(spec, overrides)
    }

    /// The node with id `id`.
    pub fn node(&self, id: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// Where stage `id` is defined in the pipeline file (its mapping), or `None` if there is no
    /// such stage. Computed on demand: locating a node re-reads the whole text, so locating every
    /// stage while loading made loading quadratic in the number of stages.
    pub fn location(&self, id: &str) -> Option<Location> {
        locate(&self.text, &at(id, &[]))
    }

    /// `ids` and every stage downstream of them.
    pub fn downstream_closure(&self, ids: &[String]) -> BTreeSet<String> {
        let mut set: BTreeSet<String> = ids.iter().cloned().collect();
        for node in &self.nodes {
            if node.upstream().iter().any(|u| set.contains(*u)) {
                set.insert(node.id.clone());
            }
        }
        set
    }
}

struct Resolver<'a> {
    file: &'a Path,
    dir: &'a Path,
    text: &'a str,
    registry: &'a Registry,
}

impl Resolver<'_> {
    fn error(&self, path: &[Step<'_>], message: impl Into<String>) -> SpecError {
        // Fall back to the nearest enclosing node that exists.
        let location = (0..=path.len()).rev().find_map(|n| locate(self.text, &path[..n]));
        SpecError { file: self.file.to_path_buf(), location, message: message.into() }
    }

    fn resolve(&self, spec: PipelineSpec, overrides: &[String]) -> Result<Pipeline, SpecError> {
        if spec.stages.0.is_empty() {
            return Err(
                self.error(&[Step::Key("stages", 0)], "a pipeline needs at least one stage")
            );
        }
        let mut stages = spec.stages.0;
        self.apply_overrides(&mut stages, overrides)?;
        let ids: BTreeSet<&str> = stages.iter().map(|(id, _)| id.as_str()).collect();
        let mut nodes = Vec::new();
        for (id, stage) in &stages {
            nodes.push(self.node(id, stage, &ids)?);
        }
        self.check_references(&nodes)?;
        let nodes = self.order(nodes)?;
        let resources = stages.into_iter().filter_map(|(id, s)| Some((id, s.resources?))).collect();
        Ok(Pipeline {
            name: spec.name,
            file: self.file.to_path_buf(),
            dir: self.dir.to_path_buf(),
            nodes,
            executor: spec.executor,
            resources,
            text: Arc::from(self.text),
        })
    }

    fn apply_overrides(
        &self,
        stages: &mut [(String, StageSpec)],
        overrides: &[String],
    ) -> Result<(), SpecError> {
        let cli_error =
            |message: String| SpecError { file: PathBuf::from("--set"), location: None, message };
        for item in overrides {
            let (path, value) = item
                .split_once('=')
                .ok_or_else(|| cli_error(format!("`{item}`: expected stage.param=value")))?;
            let mut keys = path.split('.');
            let (Some(id), Some(first)) = (keys.next(), keys.next()) else {
                return Err(cli_error(format!("`{item}`: expected stage.param=value")));
            };
            let Some((_, stage)) = stages.iter_mut().find(|(s, _)| s == id) else {
                return Err(cli_error(format!(
                    "`{item}`: no stage `{id}` in {}",
                    self.file.display()
                )));
            };
            // Values are YAML scalars, so `--set a.n=3` is a number and `--set a.s=x` a string.
            let value = parse_value(value);
            let mut slot = stage.with.get_or_insert_with(|| Value::Object(Map::new()));
            for key in std::iter::once(first).chain(keys) {
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                slot = slot
                    .as_object_mut()
                    .expect("made an object above")
                    .entry(key.to_owned())
                    .or_insert(Value::Null);
            }
            *slot = value;
        }
        Ok(())
    }

    fn node(&self, id: &str, spec: &StageSpec, ids: &BTreeSet<&str>) -> Result<Node, SpecError> {
        if id.is_empty() || id.contains(['.', '/', '{', '}']) {
            return Err(self.error(
                &at(id, &[]),
                format!("stage id `{id}` may not contain `.`, `/` or braces"),
            ));
        }
        let params = spec.with.clone().unwrap_or(Value::Null);
        if !(params.is_null() || params.is_object()) {
            return Err(self.error(
                &at(id, &[Step::Key("with", 0)]),
                format!("stage `{id}`: `with` must be a mapping"),
            ));
        }
        let mut inputs = BTreeMap::new();
        for (port, reference) in &spec.inputs.0 {
            let source = self.input_source(reference, ids);
            inputs.insert(port.clone(), source);
        }
        let (kind, params) = match (&spec.uses, &spec.run) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(self.error(
                    &at(id, &[]),
                    format!("stage `{id}` needs exactly one of `uses` or `run`"),
                ));
            }
            (Some(name), None) => {
                let stage = self.registry.get(name).ok_or_else(|| {
                    let hint = self.registry.unknown_hint.as_deref();
                    let hint = hint.map(|h| format!("; {h}")).unwrap_or_default();
                    self.error(
                        &at(id, &[Step::Key("uses", 0)]),
                        format!(
                            "stage `{id}` uses unknown stage `{name}` (see `brainpipe stages`{hint})"
                        ),
                    )
                })?;
                if !spec.outputs.is_empty() || !spec.deps.is_empty() {
                    return Err(self.error(&at(id, &[]), format!("stage `{id}`: `outputs` and `deps` belong to `run:` stages; `{name}` declares its own")));
                }
                self.check_builtin_ports(id, stage.as_ref(), &inputs)?;
                let params = stage.canonical_params(&params).map_err(|e| {
                    // Point at the param the message names, when the file gives it.
                    let message = e.to_string();
                    let key = params.as_object().and_then(|given| {
                        message.split('`').skip(1).step_by(2).find(|name| given.contains_key(*name))
                    });
                    let mut path = vec![Step::Key("with", 0)];
                    path.extend(key.map(|k| Step::Key(k, 0)));
                    self.error(&at(id, &path), format!("stage `{id}`: {message}"))
                })?;
                (NodeKind::Builtin { stage: stage.clone() }, params)
            }
            (None, Some(command)) => {
                let kind = self.external(id, command, spec, &inputs, &params)?;
                (kind, params)
            }
        };
        Ok(Node { id: id.to_owned(), kind, params, inputs })
    }

    fn input_source(&self, reference: &str, ids: &BTreeSet<&str>) -> InputSource {
        if let Some((stage, port)) = reference.split_once('.')
            && ids.contains(stage)
            && !port.contains('/')
        {
            return InputSource::Stage { stage: stage.to_owned(), port: port.to_owned() };
        }
        InputSource::File(self.dir.join(reference))
    }

    fn check_builtin_ports(
        &self,
        id: &str,
        stage: &dyn DynStage,
        inputs: &BTreeMap<String, InputSource>,
    ) -> Result<(), SpecError> {
        let ports: Vec<Port> = stage.inputs();
        for key in inputs.keys() {
            let (port, index) = split_input_key(key);
            let Some(declared) = ports.iter().find(|p| p.name == port) else {
                let known: Vec<_> = ports.iter().map(|p| p.name).collect();
                return Err(self.error(
                    &at(id, &input_steps(key)),
                    format!(
                        "stage `{id}`: `{}` has no input `{port}` (inputs: {})",
                        stage.name(),
                        list_or_none(&known)
                    ),
                ));
            };
            if index.is_some() && !declared.many {
                return Err(self.error(
                    &at(id, &input_steps(port)),
                    format!(
                        "stage `{id}`: input `{port}` of `{}` takes one artifact, not a list",
                        stage.name()
                    ),
                ));
            }
        }
        for port in ports.iter().filter(|p| p.required) {
            if !inputs.keys().any(|key| split_input_key(key).0 == port.name) {
                return Err(self.error(
                    &at(id, &[]),
                    format!("stage `{id}`: `{}` needs input `{}`", stage.name(), port.name),
                ));
            }
        }
        Ok(())
    }

    fn external(
        &self,
        id: &str,
        command: &str,
        spec: &StageSpec,
        inputs: &BTreeMap<String, InputSource>,
        params: &Value,
    ) -> Result<NodeKind, SpecError> {
        let mut seen = BTreeSet::new();
        for (i, output) in spec.outputs.iter().enumerate() {
            let bad = output.is_empty()
                || Path::new(output).components().any(|c| !matches!(c, Component::Normal(_)))
                || output.contains('/')
                || output == "manifest.json"
                || output.ends_with(".log");
            if bad {
                return Err(self.error(
                    &at(id, &[Step::Key("outputs", 0), Step::Index(i)]),
                    format!("stage `{id}`: output `{output}` must be a plain name inside the stage's directory (no `/`, `..`, absolute paths, `manifest.json` or `*.log`)"),
                ));
            }
            if !seen.insert(output.as_str()) {
                return Err(self.error(
                    &at(id, &[Step::Key("outputs", 0), Step::Index(i)]),
                    format!("stage `{id}`: output `{output}` listed twice"),
                ));
            }
        }
        if spec.outputs.is_empty() {
            return Err(self.error(
                &at(id, &[Step::Key("run", 0)]),
                format!("stage `{id}`: a `run:` stage needs `outputs: [...]`"),
            ));
        }
        for placeholder in placeholders(command) {
            let known = match placeholder.split_once('.') {
                Some(("inputs", name)) => inputs.keys().any(|k| split_input_key(k).0 == name),
                Some(("outputs", name)) => seen.contains(name),
                Some(("params", name)) => params.get(name).is_some(),
                _ => placeholder == "out_dir",
            };
            if !known {
                return Err(self.error(
                    &at(id, &[Step::Key("run", 0)]),
                    format!("stage `{id}`: `{{{placeholder}}}` names no input, output or param of this stage"),
                ));
            }
        }
        let mut deps = Vec::new();
        for (i, dep) in spec.deps.iter().enumerate() {
            let path = self.dir.join(dep);
            if !path.exists() {
                return Err(self.error(
                    &at(id, &[Step::Key("deps", 0), Step::Index(i)]),
                    format!("stage `{id}`: dependency `{dep}` does not exist"),
                ));
            }
            deps.push((dep.clone(), path));
        }
        Ok(NodeKind::External { command: command.to_owned(), outputs: spec.outputs.clone(), deps })
    }

    fn check_references(&self, nodes: &[Node]) -> Result<(), SpecError> {
        let by_id: HashMap<&str, &Node> = nodes.iter().map(|n| (n.id.as_str(), n)).collect();
        for node in nodes {
            for (port, source) in &node.inputs {
                let at = at(&node.id, &input_steps(port));
                match source {
                    InputSource::Stage { stage, port: out } => {
                        let upstream = by_id.get(stage.as_str()).expect("resolved against ids");
                        let outputs = upstream.outputs();
                        if !outputs.iter().any(|(name, _)| name == out) {
                            let names: Vec<&str> =
                                outputs.iter().map(|(n, _)| n.as_str()).collect();
                            return Err(self.error(&at, format!(
                                "stage `{}` input `{port}`: stage `{stage}` has no output `{out}` (outputs: {})",
                                node.id, list_or_none(&names)
                            )));
                        }
                        if let (Some(given), Some(wanted)) =
                            (upstream.output_kind(out), node.input_kind(port))
                            && !given.feeds(&wanted)
                        {
                            return Err(self.error(&at, format!(
                                "stage `{}` input `{port}` takes a {}, but `{stage}.{out}` is a {}",
                                node.id, wanted.describe(), given.describe()
                            )));
                        }
                    }
                    InputSource::File(path) if !path.exists() => {
                        let written =
                            path.strip_prefix(self.dir).unwrap_or(path).display().to_string();
                        let hint = match written.split_once('.') {
                            Some((stage, _)) if !written.contains('/') => {
                                format!(": no stage `{stage}` and no such file")
                            }
                            _ => ": no such file".to_owned(),
                        };
                        return Err(self.error(
                            &at,
                            format!("stage `{}` input `{port}`: `{written}`{hint}", node.id),
                        ));
                    }
                    InputSource::File(_) => {}
                }
            }
        }
        Ok(())
    }

    /// Kahn's algorithm, taking ready stages in file order so the order is stable: each step
    /// takes the first stage in the file whose upstream stages are all placed (a min-heap of
    /// ready file positions, so the whole sort is O((stages + edges) log stages)).
    fn order(&self, nodes: Vec<Node>) -> Result<Vec<Node>, SpecError> {
        let count = nodes.len();
        let index: HashMap<&str, usize> =
            nodes.iter().enumerate().map(|(i, n)| (n.id.as_str(), i)).collect();
        // Per stage: how many distinct upstream stages are not placed yet, and who reads it.
        let mut waiting = vec![0usize; count];
        let mut readers: Vec<Vec<usize>> = vec![Vec::new(); count];
        for (i, node) in nodes.iter().enumerate() {
            let upstream = node.upstream();
            waiting[i] = upstream.len();
            for id in upstream {
                readers[*index.get(id).expect("resolved against ids")].push(i);
            }
        }
        let mut ready: BinaryHeap<Reverse<usize>> =
            (0..count).filter(|&i| waiting[i] == 0).map(Reverse).collect();
        let mut placed = Vec::with_capacity(count);
        while let Some(Reverse(i)) = ready.pop() {
            placed.push(i);
            for &reader in &readers[i] {
                waiting[reader] -= 1;
                if waiting[reader] == 0 {
                    ready.push(Reverse(reader));
                }
            }
        }
        if placed.len() < count {
            let remaining: Vec<&Node> =
                nodes.iter().enumerate().filter(|(i, _)| waiting[*i] > 0).map(|(_, n)| n).collect();
            return Err(self.cycle_error(&remaining));
        }
        let mut slots: Vec<Option<Node>> = nodes.into_iter().map(Some).collect();
        Ok(placed.into_iter().map(|i| slots[i].take().expect("each stage placed once")).collect())
    }

    /// The error for `remaining` (the stages that can never run, in file order): the cycle
    /// found from the first of them, located at the input that closes it.
    fn cycle_error(&self, remaining: &[&Node]) -> SpecError {
        let cycle = find_cycle(remaining);
        let first = &cycle[0];
        let second = &cycle[1 % cycle.len()];
        let node = remaining.iter().find(|n| n.id == *first).expect("cycle node");
        let port = node
            .inputs
            .iter()
            .find(|(_, s)| matches!(s, InputSource::Stage { stage, .. } if stage == second))
            .map(|(p, _)| p.as_str())
            .unwrap_or_default();
        let at = at(first, &input_steps(port));
        let mut path: Vec<&str> = cycle.iter().rev().map(String::as_str).collect();
        path.insert(0, cycle[0].as_str());
        self.error(&at, format!("cycle: {}", path.join(" → ")))
    }
}

/// The path of an input key inside a stage: `inputs.port`, or `inputs.port[i]` for `port#i`.
fn input_steps(key: &str) -> Vec<Step<'_>> {
    match split_input_key(key) {
        (port, Some(i)) => vec![Step::Key("inputs", 0), Step::Key(port, 0), Step::Index(i)],
        (port, None) => vec![Step::Key("inputs", 0), Step::Key(port, 0)],
    }
}

/// The path of stage `id`'s node, then `rest`.
fn at<'a>(id: &'a str, rest: &[Step<'a>]) -> Vec<Step<'a>> {
    let mut path = vec![Step::Key("stages", 0), Step::Key(id, 0)];
    path.extend_from_slice(rest);
    path
}

/// A cycle among `nodes` (which all have unmet dependencies), as ids where each reads the next:
/// from the first node, follow each node's first upstream (by id) among `nodes` until a node
/// repeats.
fn find_cycle(nodes: &[&Node]) -> Vec<String> {
    let by_id: HashMap<&str, &Node> = nodes.iter().map(|n| (n.id.as_str(), *n)).collect();
    let mut path: Vec<&str> = vec![nodes[0].id.as_str()];
    let mut position: HashMap<&str, usize> = HashMap::from([(path[0], 0)]);
    loop {
        let current = by_id[path.last().expect("non-empty")];
        let next = current
            .upstream()
            .into_iter()
            .find(|u| by_id.contains_key(u))
            .expect("a node with unmet dependencies reads from another such node");
        if let Some(&start) = position.get(next) {
            return path[start..].iter().map(|id| (*id).to_owned()).collect();
        }
        position.insert(next, path.len());
        path.push(next);
    }
}

/// A `--set` value read as YAML reads it: `3` a number, `true` a bool, `[500, 200]` a list,
/// `{a: 1}` a mapping, anything else a string.
pub fn parse_value(text: &str) -> Value {
    serde_yaml_ng::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// The `{…}` placeholders of a command template.
pub fn placeholders(command: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut rest = command;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { break };
        let inner = &after[..close];
        if !inner.is_empty() && inner.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '.') {
            found.push(inner);
        }
        rest = &after[close + 1..];
    }
    found
}

/// `command` with every placeholder that `value` resolves replaced, in one left-to-right pass:
/// substituted text is never scanned again, so a value that itself contains `{params.x}` stays
/// literal (re-expanding it inside its own quotes would let a param inject shell syntax).
/// Placeholders `value` does not resolve are kept as written.
pub fn fill_placeholders(command: &str, mut value: impl FnMut(&str) -> Option<String>) -> String {
    let mut line = String::with_capacity(command.len());
    let mut rest = command;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { break };
        let inner = &after[..close];
        let is_placeholder =
            !inner.is_empty() && inner.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '.');
        match value(inner).filter(|_| is_placeholder) {
            Some(text) => {
                line.push_str(&rest[..open]);
                line.push_str(&text);
                rest = &after[close + 1..];
            }
            None => {
                // Keep the brace and go on scanning right after it, so `{{x}` still finds `{x}`.
                line.push_str(&rest[..=open]);
                rest = after;
            }
        }
    }
    line.push_str(rest);
    line
}

fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() { "none".to_owned() } else { names.join(", ") }
}

//! The Stage contract: a named, versioned computation with typed params and named ports.
//!
//! A stage never chooses its output paths: the runner (the pipeline cache, `brainpipe stage`, or
//! [`run_standalone`](crate::run_standalone)) hands it a directory and it writes each output port's
//! file there. Inputs arrive as paths by port name. That is all an external command needs to honour
//! to replace a stage.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// What an artifact is, so pipelines can be checked and documented.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "schema")]
pub enum ArtifactKind {
    /// A Parquet table of the named kind (see `docs/ARTIFACTS.md`).
    Table(&'static str),
    /// A safetensors file.
    Safetensors,
    /// A NIfTI volume or a directory of them.
    Nifti,
    /// A directory of files (images, per-subject volumes…).
    Directory,
    /// A JSON document.
    Json,
    /// A self-contained HTML report.
    Html,
    /// Any file.
    File,
}

impl ArtifactKind {
    /// The kind of a port holding a table of `kind` (ports name their kind by the constants of
    /// `brainpipe-artifacts`, so a wiring can be checked: see `brainpipe plan`).
    pub const fn table(kind: crate::TableKind) -> Self {
        ArtifactKind::Table(kind.name)
    }

    /// Whether an artifact of kind `self` may feed a port of kind `input`: the same kind, or an
    /// input that takes any file or directory.
    pub fn feeds(&self, input: &ArtifactKind) -> bool {
        self == input || matches!(input, ArtifactKind::File)
    }

    /// `table predictions`, `safetensors`, … (for messages).
    pub fn describe(&self) -> String {
        match self {
            ArtifactKind::Table(name) => format!("`{name}` table"),
            ArtifactKind::Safetensors => "safetensors file".to_owned(),
            ArtifactKind::Nifti => "NIfTI".to_owned(),
            ArtifactKind::Directory => "directory".to_owned(),
            ArtifactKind::Json => "JSON document".to_owned(),
            ArtifactKind::Html => "HTML report".to_owned(),
            ArtifactKind::File => "file".to_owned(),
        }
    }
}

impl<'de> serde::Deserialize<'de> for ArtifactKind {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        /// The same shape with an owned schema name (catalogues are read once per process, so
        /// the name is leaked to give the `&'static str` the ports hold).
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "snake_case", tag = "type", content = "schema")]
        enum Owned {
            Table(String),
            Safetensors,
            Nifti,
            Directory,
            Json,
            Html,
            File,
        }
        Ok(match Owned::deserialize(de)? {
            Owned::Table(name) => ArtifactKind::Table(Box::leak(name.into_boxed_str())),
            Owned::Safetensors => ArtifactKind::Safetensors,
            Owned::Nifti => ArtifactKind::Nifti,
            Owned::Directory => ArtifactKind::Directory,
            Owned::Json => ArtifactKind::Json,
            Owned::Html => ArtifactKind::Html,
            Owned::File => ArtifactKind::File,
        })
    }
}

/// A named input or output of a stage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Port {
    /// Port name, used in pipelines as `stage_id.port`.
    pub name: &'static str,
    /// For outputs: the file or directory name written inside the output directory.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub file: &'static str,
    /// What it holds.
    pub kind: ArtifactKind,
    /// One line on what it is.
    pub doc: &'static str,
    /// For inputs: whether the stage can run without it.
    pub required: bool,
    /// For inputs: whether it takes a list of artifacts (`port: [a.x, b.x]` in a pipeline,
    /// `--in port=A --in port=B` on the command line); see [`list_input_key`].
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub many: bool,
}

/// The key under which the `index`-th artifact of list input `port` reaches a stage:
/// `port#index`. A list input given one artifact may also arrive as plain `port`.
pub fn list_input_key(port: &str, index: usize) -> String {
    format!("{port}#{index}")
}

/// The port of an input key and, for a list element (`port#i`), its index.
pub fn split_input_key(key: &str) -> (&str, Option<usize>) {
    match key.rsplit_once('#') {
        Some((port, index)) => match index.parse() {
            Ok(i) => (port, Some(i)),
            Err(_) => (key, None),
        },
        None => (key, None),
    }
}

/// The paths of list input `port` among input keys (see [`Context::input_list`]).
pub fn input_list<'a>(inputs: &'a BTreeMap<String, PathBuf>, port: &str) -> Vec<&'a Path> {
    let mut found: Vec<(usize, &Path)> = inputs
        .iter()
        .filter_map(|(key, path)| match split_input_key(key) {
            (p, Some(i)) if p == port => Some((i, path.as_path())),
            (p, None) if p == port => Some((0, path.as_path())),
            _ => None,
        })
        .collect();
    found.sort_by_key(|(i, _)| *i);
    found.into_iter().map(|(_, p)| p).collect()
}

impl Port {
    /// A required input.
    pub const fn input(name: &'static str, kind: ArtifactKind, doc: &'static str) -> Self {
        Port { name, file: "", kind, doc, required: true, many: false }
    }

    /// An output written to `file` inside the output directory.
    pub const fn output(
        name: &'static str,
        file: &'static str,
        kind: ArtifactKind,
        doc: &'static str,
    ) -> Self {
        Port { name, file, kind, doc, required: true, many: false }
    }

    /// This input, but optional.
    pub const fn optional(mut self) -> Self {
        self.required = false;
        self
    }

    /// This input, taking a list of artifacts (required: at least one).
    pub const fn many(mut self) -> Self {
        self.many = true;
        self
    }
}

/// Documentation of one parameter, for `brainpipe stages`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ParamDoc {
    /// Parameter name as written under `with:`.
    pub name: &'static str,
    /// Rust type, e.g. `u32`, `Option<String>`.
    #[serde(rename = "type")]
    pub ty: &'static str,
    /// Default value.
    pub default: Value,
    /// What it does (the field's doc comment).
    pub doc: String,
}

/// A stage's parameters: deserialised from a pipeline's `with:` (unknown keys are errors), every
/// field defaulted, and serialised back to the canonical JSON that goes into the cache key.
pub trait Params: Serialize + DeserializeOwned + Default + Send + Sync + 'static {
    /// One entry per field, in declaration order.
    fn docs() -> Vec<ParamDoc>;

    /// Checks what types cannot: ranges and combinations (`select` without `select_columns`).
    /// Runs when a pipeline is planned, before anything is computed; the message names the
    /// param and fits on one line.
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}

/// The canonical JSON of params `raw` for `P`: unknown keys and values of the wrong type or
/// outside their range are errors; every field is filled in, in declaration order.
pub fn canonical_params<P: Params>(raw: &Value) -> Result<Value, String> {
    let raw = if raw.is_null() { Value::Object(Map::new()) } else { raw.clone() };
    let params: P = match serde_json::from_value(raw.clone()) {
        Ok(params) => params,
        Err(e) => {
            // Name the param: the first one given that fails on its own.
            let culprit = raw.as_object().into_iter().flatten().find(|(key, value)| {
                let alone = Value::Object(Map::from_iter([((*key).clone(), (*value).clone())]));
                serde_json::from_value::<P>(alone).is_err()
            });
            return Err(match culprit {
                Some((key, _)) if !e.to_string().contains(&format!("`{key}`")) => {
                    format!("`{key}`: {e}")
                }
                _ => e.to_string(),
            });
        }
    };
    params.validate()?;
    serde_json::to_value(&params).map_err(|e| e.to_string())
}

/// The empty params of a stage that takes none.
#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

impl Params for NoParams {
    fn docs() -> Vec<ParamDoc> {
        Vec::new()
    }
}

/// Declares a params struct whose doc comments double as `brainpipe stages` documentation.
///
/// Every field needs a doc comment and a default; `validate = path;` after the struct names a
/// `fn(&Self) -> Result<(), String>` that [`Params::validate`] calls:
///
/// ```
/// brainpipe_core::params! {
///     /// Parameters of a stage.
///     pub struct DemoParams {
///         /// Number of subjects (Pereira et al. 2018 scanned 15).
///         pub subjects: u32 = 4,
///         /// Random seed.
///         pub seed: u64 = 7,
///     }
///     validate = check;
/// }
/// fn check(p: &DemoParams) -> Result<(), String> {
///     if p.subjects == 0 { Err("`subjects` must be at least 1".into()) } else { Ok(()) }
/// }
/// use brainpipe_core::Params;
/// let p: DemoParams = serde_json::from_str(r#"{"subjects": 2}"#).unwrap();
/// assert_eq!((p.subjects, p.seed), (2, 7));
/// assert!(serde_json::from_str::<DemoParams>(r#"{"subject": 2}"#).is_err());
/// assert!(DemoParams { subjects: 0, seed: 7 }.validate().is_err());
/// ```
#[macro_export]
macro_rules! params {
    (
        $(#[doc = $sdoc:literal])*
        $vis:vis struct $name:ident {
            $(
                $(#[doc = $fdoc:literal])+
                $(#[serde($($sattr:tt)*)])?
                $fvis:vis $field:ident : $ty:ty = $default:expr
            ),* $(,)?
        }
        $(validate = $check:path;)?
    ) => {
        $(#[doc = $sdoc])*
        #[derive(Clone, Debug, PartialEq, ::serde::Serialize, ::serde::Deserialize)]
        #[serde(deny_unknown_fields, default)]
        $vis struct $name {
            $(
                $(#[doc = $fdoc])+
                $(#[serde($($sattr)*)])?
                $fvis $field: $ty,
            )*
        }

        impl ::std::default::Default for $name {
            fn default() -> Self {
                $name { $($field: $default,)* }
            }
        }

        impl $crate::Params for $name {
            fn docs() -> ::std::vec::Vec<$crate::ParamDoc> {
                let defaults = $name::default();
                ::std::vec![$(
                    $crate::ParamDoc {
                        name: stringify!($field),
                        ty: stringify!($ty),
                        default: ::serde_json::to_value(&defaults.$field)
                            .unwrap_or(::serde_json::Value::Null),
                        doc: [$($fdoc.trim()),+].join(" "),
                    },
                )*]
            }

            $(
                fn validate(&self) -> ::std::result::Result<(), ::std::string::String> {
                    $check(self)
                }
            )?
        }
    };
}

/// The error a stage returns: any error, with its message kept for the one-line report.
pub struct StageError(Box<dyn std::error::Error + Send + Sync + 'static>);

impl StageError {
    /// An error from a message (bad params, inconsistent inputs…).
    pub fn msg(message: impl Into<String>) -> Self {
        StageError(message.into().into())
    }

    /// The underlying error.
    pub fn inner(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self.0.as_ref()
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for StageError {
    fn from(error: E) -> Self {
        StageError(Box::new(error))
    }
}

/// Lets `?` pass a `StageError` on as `Box<dyn Error>` (as in examples and `main`).
impl From<StageError> for Box<dyn std::error::Error + Send + Sync + 'static> {
    fn from(error: StageError) -> Self {
        error.0
    }
}

/// Lets `?` pass a `StageError` on as `Box<dyn Error>`.
impl From<StageError> for Box<dyn std::error::Error + 'static> {
    fn from(error: StageError) -> Self {
        error.0
    }
}

impl fmt::Display for StageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for StageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// The note under which [`Context::set_device`] records the device (notes travel from a worker
/// to the driver as they are; [`reported_device`] reads it back).
const DEVICE_NOTE: &str = "device";

/// The device that `notes` of a run report (see [`Context::set_device`]); `cpu` when none.
pub fn reported_device(notes: &Map<String, Value>) -> String {
    notes.get(DEVICE_NOTE).and_then(Value::as_str).unwrap_or("cpu").to_owned()
}

/// What a stage sees while it runs: its inputs by port, its output directory, and a notebook for
/// facts worth keeping in the manifest.
pub struct Context {
    inputs: BTreeMap<String, PathBuf>,
    outputs: Vec<Port>,
    out_dir: PathBuf,
    notes: Map<String, Value>,
    progress: bool,
}

impl Context {
    /// A context for a stage with `outputs`, reading `inputs` and writing into `out_dir`.
    pub fn new(inputs: BTreeMap<String, PathBuf>, outputs: Vec<Port>, out_dir: PathBuf) -> Self {
        Context { inputs, outputs, out_dir, notes: Map::new(), progress: false }
    }

    /// Shows progress bars (the runner turns this on when stderr is a terminal).
    pub fn with_progress(mut self, enabled: bool) -> Self {
        self.progress = enabled;
        self
    }

    /// The path given for input `port`.
    pub fn input(&self, port: &str) -> Result<&Path, StageError> {
        self.inputs
            .get(port)
            .map(PathBuf::as_path)
            .ok_or_else(|| StageError::msg(format!("missing input `{port}`")))
    }

    /// The path given for an optional input `port`, if any.
    pub fn optional_input(&self, port: &str) -> Option<&Path> {
        self.inputs.get(port).map(PathBuf::as_path)
    }

    /// Every path given for list input `port` (`port`, or `port#0`, `port#1`, … in index
    /// order); empty when none was given.
    pub fn input_list(&self, port: &str) -> Vec<&Path> {
        input_list(&self.inputs, port)
    }

    /// Where to write output `port`.
    ///
    /// # Panics
    /// If the stage declares no such output: a programming error in the stage.
    pub fn output(&self, port: &str) -> PathBuf {
        let spec = self
            .outputs
            .iter()
            .find(|p| p.name == port)
            .unwrap_or_else(|| panic!("stage writes undeclared output `{port}`"));
        self.out_dir.join(spec.file)
    }

    /// The output directory.
    pub fn out_dir(&self) -> &Path {
        &self.out_dir
    }

    /// Records a fact in the manifest's `notes` (e.g. how many constant voxels were dropped).
    pub fn note(&mut self, key: impl Into<String>, value: impl Serialize) {
        let value = serde_json::to_value(value).unwrap_or(Value::Null);
        self.notes.insert(key.into(), value);
    }

    /// Reports the device the stage computed on (`cpu`, `cuda:0`…), for the manifest's `device`.
    pub fn set_device(&mut self, device: impl Into<String>) {
        self.note(DEVICE_NOTE, device.into());
    }

    /// The facts recorded so far.
    pub fn notes(&self) -> &Map<String, Value> {
        &self.notes
    }

    /// A progress bar over `len` steps, hidden unless progress display is on.
    pub fn progress(&self, len: u64, label: &str) -> indicatif::ProgressBar {
        if !self.progress {
            return indicatif::ProgressBar::hidden();
        }
        let bar = indicatif::ProgressBar::new(len);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{prefix:>12} [{bar:30}] {pos}/{len} {msg} ({eta})",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(label.to_owned());
        bar
    }
}

/// A pipeline stage with typed params.
///
/// Implement this; the runner uses it through [`DynStage`], which every `Stage` gets for free.
pub trait Stage: Send + Sync + 'static {
    /// Its params.
    type Params: Params;
    /// Dotted name, e.g. `features.roi`.
    const NAME: &'static str;
    /// Bumped whenever the outputs change for the same inputs and params; part of the cache key.
    const VERSION: u32;
    /// One line on what it does.
    const SUMMARY: &'static str;

    /// Its input ports.
    fn inputs(&self) -> Vec<Port>;
    /// Its output ports.
    fn outputs(&self) -> Vec<Port>;
    /// Reads inputs from `ctx`, writes every output port into `ctx.out_dir()`.
    fn run(&self, ctx: &mut Context, params: &Self::Params) -> Result<(), StageError>;

    /// Whether the stage splits into independent shards ([`Stage::shards`],
    /// [`Stage::run_shard`], [`Stage::merge_shards`]), e.g. one per cross-validation fold or per
    /// subject.
    const SHARDABLE: bool = false;

    /// How many independent shards the work on `ctx`'s inputs under `params` splits into (only
    /// inputs are read; nothing is written).
    fn shards(&self, _ctx: &Context, _params: &Self::Params) -> Result<usize, StageError> {
        Err(not_shardable(Self::NAME))
    }

    /// The shard count [`Stage::shards`] will give under `params` whatever the inputs hold, when
    /// the params alone decide it (`ingest.synthetic`: its subjects); `None` when it depends on
    /// the inputs. A detached Slurm run, which submits a stage before its inputs exist, shards
    /// only stages whose count it knows.
    fn planned_shards(&self, _params: &Self::Params) -> Option<usize> {
        None
    }

    /// Computes shard `index` of `count` into `ctx.out_dir()`, a shard directory: its files are
    /// for [`Stage::merge_shards`] alone, not the stage's outputs.
    fn run_shard(
        &self,
        _ctx: &mut Context,
        _params: &Self::Params,
        _index: usize,
        _count: usize,
    ) -> Result<(), StageError> {
        Err(not_shardable(Self::NAME))
    }

    /// Writes every output port into `ctx.out_dir()` from the shard directories `shards`
    /// (shard 0 first): the bytes [`Stage::run`] writes for the same inputs and params.
    fn merge_shards(
        &self,
        _ctx: &mut Context,
        _params: &Self::Params,
        _shards: &[PathBuf],
    ) -> Result<(), StageError> {
        Err(not_shardable(Self::NAME))
    }
}

/// The error of a shard method called on a stage that does not shard.
fn not_shardable(name: &str) -> StageError {
    StageError::msg(format!("stage `{name}` does not split into shards"))
}

/// Which part of a stage's work one process computes (see [`Stage::run_shard`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShardTask {
    /// The whole stage: [`Stage::run`].
    Whole,
    /// Shard `index` of `count` into a shard directory: [`Stage::run_shard`].
    Shard {
        /// 0-based shard.
        index: usize,
        /// Shards in all.
        count: usize,
    },
    /// The stage's outputs from these shard directories, shard 0 first: [`Stage::merge_shards`].
    Merge(Vec<PathBuf>),
}

/// The object-safe face of a [`Stage`], with params as JSON.
pub trait DynStage: Send + Sync {
    /// Dotted name.
    fn name(&self) -> &'static str;
    /// VERSION.
    fn version(&self) -> u32;
    /// One line on what it does.
    fn summary(&self) -> &'static str;
    /// Input ports.
    fn inputs(&self) -> Vec<Port>;
    /// Output ports.
    fn outputs(&self) -> Vec<Port>;
    /// Params documentation.
    fn param_docs(&self) -> Vec<ParamDoc>;
    /// Parses `raw` (a JSON object; unknown keys are errors) and returns it with every default
    /// filled in, in declaration order: the form hashed into cache keys.
    fn canonical_params(&self, raw: &Value) -> Result<Value, StageError>;
    /// Runs with params given as JSON.
    fn run_json(&self, ctx: &mut Context, params: &Value) -> Result<(), StageError>;
    /// Whether the stage splits into shards ([`Stage::SHARDABLE`]).
    fn shardable(&self) -> bool {
        false
    }
    /// [`Stage::shards`] with params given as JSON.
    fn shards_json(&self, _ctx: &Context, _params: &Value) -> Result<usize, StageError> {
        Err(not_shardable(self.name()))
    }
    /// [`Stage::planned_shards`] with params given as JSON (`None` for params it refuses).
    fn planned_shards_json(&self, _params: &Value) -> Option<usize> {
        None
    }
    /// Runs `task` (the whole stage, one shard, or the merge) with params given as JSON.
    fn run_task_json(
        &self,
        ctx: &mut Context,
        params: &Value,
        task: &ShardTask,
    ) -> Result<(), StageError> {
        match task {
            ShardTask::Whole => self.run_json(ctx, params),
            _ => Err(not_shardable(self.name())),
        }
    }
}

impl<S: Stage> DynStage for S {
    fn name(&self) -> &'static str {
        S::NAME
    }
    fn version(&self) -> u32 {
        S::VERSION
    }
    fn summary(&self) -> &'static str {
        S::SUMMARY
    }
    fn inputs(&self) -> Vec<Port> {
        Stage::inputs(self)
    }
    fn outputs(&self) -> Vec<Port> {
        Stage::outputs(self)
    }
    fn param_docs(&self) -> Vec<ParamDoc> {
        S::Params::docs()
    }
    fn canonical_params(&self, raw: &Value) -> Result<Value, StageError> {
        canonical_params::<S::Params>(raw)
            .map_err(|e| StageError::msg(format!("params of `{}`: {e}", S::NAME)))
    }
    fn run_json(&self, ctx: &mut Context, params: &Value) -> Result<(), StageError> {
        self.run(ctx, &typed_params::<S>(params)?)
    }
    fn shardable(&self) -> bool {
        S::SHARDABLE
    }
    fn shards_json(&self, ctx: &Context, params: &Value) -> Result<usize, StageError> {
        self.shards(ctx, &typed_params::<S>(params)?)
    }
    fn planned_shards_json(&self, params: &Value) -> Option<usize> {
        self.planned_shards(&typed_params::<S>(params).ok()?)
    }
    fn run_task_json(
        &self,
        ctx: &mut Context,
        params: &Value,
        task: &ShardTask,
    ) -> Result<(), StageError> {
        let params = typed_params::<S>(params)?;
        match task {
            ShardTask::Whole => self.run(ctx, &params),
            ShardTask::Shard { index, count } => self.run_shard(ctx, &params, *index, *count),
            ShardTask::Merge(shards) => self.merge_shards(ctx, &params, shards),
        }
    }
}

/// `params` parsed into `S`'s typed params and validated.
fn typed_params<S: Stage>(params: &Value) -> Result<S::Params, StageError> {
    let params: S::Params = serde_json::from_value(params.clone())
        .map_err(|e| StageError::msg(format!("params of `{}`: {e}", S::NAME)))?;
    params.validate().map_err(|e| StageError::msg(format!("params of `{}`: {e}", S::NAME)))?;
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_input_keys_round_trip_and_order_numerically() {
        assert_eq!(split_input_key(&list_input_key("predictions", 12)), ("predictions", Some(12)));
        assert_eq!(split_input_key("targets"), ("targets", None));
        assert_eq!(split_input_key("odd#name"), ("odd#name", None));
        let inputs: BTreeMap<String, PathBuf> = [
            ("p#10".to_owned(), PathBuf::from("ten")),
            ("p#2".to_owned(), PathBuf::from("two")),
            ("q".to_owned(), PathBuf::from("q")),
        ]
        .into();
        assert_eq!(input_list(&inputs, "p"), vec![Path::new("two"), Path::new("ten")]);
        assert_eq!(input_list(&inputs, "q"), vec![Path::new("q")]);
        assert!(input_list(&inputs, "r").is_empty());
    }
}

//! Where stages run: in this process (`local`, the parallel scheduler of [`crate::run`]) or as
//! batch jobs on a Slurm cluster (`slurm`), chosen by `brainpipe run --executor` or the
//! pipeline's `executor:` block.
//!
//! Both executors compute a stage through the same code (a temporary directory in the cache,
//! renamed into place on success, the manifest written last), so a stage's cache key and bytes do
//! not depend on where it ran. Only the *driver* differs: under Slurm it submits each stage whose
//! inputs have landed as one `sbatch` job running `brainpipe stage-job` (see [`StageJob`]), and
//! polls `squeue` for the outcome. The cluster nodes must see the cache directory, the pipeline
//! file and the `brainpipe` executable at the same paths as the driver (a shared file system).

mod detach;
mod doctor;
mod job;
mod shard;
mod slurm;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::cache::Cache;
use crate::error::RunError;
use crate::graph::{Node, NodeKind, Pipeline};
use crate::run::{RunOptions, StageOutcome};

pub use detach::{Detached, DetachedJob, detached_jobs, submit_detached};
pub use doctor::{Partition, SlurmReport, slurm_report};
pub use job::{StageJob, run_shard_job, run_stage_job};
pub use shard::ShardRole;
pub(crate) use slurm::cancel_submitted_jobs;

/// The executors a pipeline can run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutorKind {
    /// Stages run in this process and its children, several at once.
    Local,
    /// Each stage is a Slurm batch job.
    Slurm,
}

impl fmt::Display for ExecutorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExecutorKind::Local => "local",
            ExecutorKind::Slurm => "slurm",
        })
    }
}

impl std::str::FromStr for ExecutorKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "local" => Ok(ExecutorKind::Local),
            "slurm" => Ok(ExecutorKind::Slurm),
            other => Err(format!("unknown executor `{other}` (expected `local` or `slurm`)")),
        }
    }
}

/// A pipeline file's `executor:` block.
///
/// ```yaml
/// executor:
///   kind: slurm                 # default local; `brainpipe run --executor` overrides it
///   partition: gpu
///   account: lab
///   qos: normal
///   resources: { cpus: 4, mem: 16G, time: "2:00:00" }   # for stages that name none
///   allow_gpus: true            # `device: auto` stages get a GPU (`device: cuda` ones always do)
///   sbatch_args: ["--constraint=avx2"]
///   max_jobs: 50                # jobs queued or running at once
///   poll_seconds: 2             # the longest wait between two squeue polls
///   shards: true                # job arrays: models.train per fold, ingest.* per subject
/// ```
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutorSpec {
    /// The executor used when the command line names none.
    #[serde(default)]
    pub kind: Option<ExecutorKind>,
    /// `sbatch --partition`.
    #[serde(default)]
    pub partition: Option<String>,
    /// `sbatch --account`.
    #[serde(default)]
    pub account: Option<String>,
    /// `sbatch --qos`.
    #[serde(default)]
    pub qos: Option<String>,
    /// Resources of every stage that does not name its own (field by field).
    #[serde(default)]
    pub resources: Resources,
    /// Give a GPU to stages whose `device` is `auto` (default false: they run on the CPU nodes
    /// and write the CPU's bytes). A stage whose `device` is `cuda` gets one regardless.
    #[serde(default)]
    pub allow_gpus: bool,
    /// Further `sbatch` arguments, passed as written, after brainpipe's own.
    #[serde(default)]
    pub sbatch_args: Vec<String>,
    /// Jobs queued or running at once (default [`DEFAULT_MAX_JOBS`]).
    #[serde(default)]
    pub max_jobs: Option<usize>,
    /// The longest wait between two `squeue` polls in seconds (default
    /// [`DEFAULT_POLL_SECONDS`]); after a job is submitted or changes state the driver polls
    /// sooner (0.1 s, doubling up to this).
    #[serde(default)]
    pub poll_seconds: Option<f64>,
    /// Split stages that shard (`models.train`: one shard per cross-validation fold; the
    /// `ingest.*` importers and `ingest.synthetic`: one per subject) into a Slurm job array and
    /// a merge job (default false). Not part of any cache key: the merged
    /// entry has the bytes of the unsharded stage.
    #[serde(default)]
    pub shards: bool,
}

/// What a stage's batch job asks for: `resources: { cpus: 4, mem: 16G, gpus: 1, time: "1:00:00" }`.
/// Not part of the cache key: the same stage gives the same bytes however it was provisioned.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// CPUs of the job's task (`--cpus-per-task`).
    #[serde(default)]
    pub cpus: Option<u32>,
    /// Memory (`--mem`): `16G`, `500M`, or a number of megabytes.
    #[serde(default)]
    pub mem: Option<SlurmValue>,
    /// GPUs (`--gres=gpu:N`).
    #[serde(default)]
    pub gpus: Option<u32>,
    /// Time limit (`--time`): `MM`, `HH:MM:SS`, `D-HH`, … as Slurm reads it.
    #[serde(default)]
    pub time: Option<SlurmValue>,
}

impl Resources {
    /// These resources, each missing one taken from `defaults`.
    pub fn or(&self, defaults: &Resources) -> Resources {
        Resources {
            cpus: self.cpus.or(defaults.cpus),
            mem: self.mem.clone().or_else(|| defaults.mem.clone()),
            gpus: self.gpus.or(defaults.gpus),
            time: self.time.clone().or_else(|| defaults.time.clone()),
        }
    }

    /// What `node` asks for: its own `resources`, then the executor's defaults, then, for GPUs,
    /// its `device` param: `cuda`/`cuda:N` asks for one GPU, `auto` does when `allow_gpus`.
    pub fn of_stage(pipeline: &Pipeline, node: &Node, config: &SlurmConfig) -> Resources {
        let own = pipeline.resources.get(&node.id).cloned().unwrap_or_default();
        let mut resources = own.or(&config.defaults);
        if resources.gpus.is_none() && matches!(node.kind, NodeKind::Builtin { .. }) {
            let device = node.params.get("device").and_then(serde_json::Value::as_str);
            let wants = match device.map(str::trim) {
                Some(d) => d.starts_with("cuda") || (d == "auto" && config.allow_gpus),
                None => false,
            };
            resources.gpus = wants.then_some(1);
        }
        resources
    }

    /// The `sbatch` options asking for these resources.
    pub fn sbatch_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(cpus) = self.cpus {
            args.push(format!("--cpus-per-task={cpus}"));
        }
        if let Some(mem) = &self.mem {
            args.push(format!("--mem={mem}"));
        }
        if let Some(gpus) = self.gpus.filter(|&n| n > 0) {
            args.push(format!("--gres=gpu:{gpus}"));
        }
        if let Some(time) = &self.time {
            args.push(format!("--time={time}"));
        }
        args
    }
}

/// A value passed to `sbatch` as written: YAML may give it as a number (`mem: 500`, `time: 30`)
/// or as text (`mem: 16G`, `time: "1:00:00"`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlurmValue(pub String);

impl fmt::Display for SlurmValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SlurmValue {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged, expecting = "a number or a string such as `16G` or `1:00:00`")]
        enum Written {
            Number(u64),
            Text(String),
        }
        Ok(SlurmValue(match Written::deserialize(de)? {
            Written::Number(n) => n.to_string(),
            Written::Text(text) => text,
        }))
    }
}

/// Jobs queued or running at once unless the pipeline says otherwise.
pub const DEFAULT_MAX_JOBS: usize = 100;

/// The longest wait between two `squeue` polls unless the pipeline says otherwise (polls come
/// sooner after a change): a dependency hop costs about a second of scheduling on an idle
/// cluster (docs/SLURM.md), and a job that runs for hours needs no faster answer.
pub const DEFAULT_POLL_SECONDS: f64 = 2.0;

/// How a Slurm run submits its jobs.
#[derive(Clone, Debug, PartialEq)]
pub struct SlurmConfig {
    /// The `brainpipe` executable every job runs (the driver's own, at the same path on the nodes).
    pub program: PathBuf,
    /// The `--set` overrides the pipeline was loaded with: each job loads it the same way.
    pub overrides: Vec<String>,
    /// `sbatch --partition`.
    pub partition: Option<String>,
    /// `sbatch --account`.
    pub account: Option<String>,
    /// `sbatch --qos`.
    pub qos: Option<String>,
    /// Resources of stages that name none.
    pub defaults: Resources,
    /// Whether stages whose `device` is `auto` get a GPU.
    pub allow_gpus: bool,
    /// Further `sbatch` arguments.
    pub sbatch_args: Vec<String>,
    /// Jobs queued or running at once (at least 1).
    pub max_jobs: usize,
    /// The longest wait between two `squeue` polls.
    pub poll: Duration,
    /// Whether stages that shard run as a job array and a merge job.
    pub shards: bool,
}

impl SlurmConfig {
    /// Settings from a pipeline's `executor:` block (defaults where it has none).
    pub fn from_spec(spec: &ExecutorSpec, program: PathBuf, overrides: Vec<String>) -> Self {
        let poll = spec.poll_seconds.unwrap_or(DEFAULT_POLL_SECONDS);
        SlurmConfig {
            program,
            overrides,
            partition: spec.partition.clone(),
            account: spec.account.clone(),
            qos: spec.qos.clone(),
            defaults: spec.resources.clone(),
            allow_gpus: spec.allow_gpus,
            sbatch_args: spec.sbatch_args.clone(),
            max_jobs: spec.max_jobs.unwrap_or(DEFAULT_MAX_JOBS).max(1),
            shards: spec.shards,
            poll: Duration::from_secs_f64(if poll.is_finite() {
                poll.clamp(0.05, 600.0)
            } else {
                DEFAULT_POLL_SECONDS
            }),
        }
    }
}

/// Where a pipeline's stages run.
#[derive(Clone, Debug, PartialEq)]
pub enum Executor {
    /// In this process: [`crate::run`].
    Local,
    /// As Slurm batch jobs.
    Slurm(Box<SlurmConfig>),
}

impl Executor {
    /// The executor `requested` on the command line, else the one the pipeline's `executor:`
    /// block names, else local. `program` is the `brainpipe` executable Slurm jobs run and
    /// `overrides` the `--set` values the pipeline was loaded with.
    pub fn choose(
        requested: Option<ExecutorKind>,
        pipeline: &Pipeline,
        program: PathBuf,
        overrides: &[String],
    ) -> Executor {
        let spec = pipeline.executor.clone().unwrap_or_default();
        match requested.or(spec.kind).unwrap_or(ExecutorKind::Local) {
            ExecutorKind::Local => Executor::Local,
            ExecutorKind::Slurm => Executor::Slurm(Box::new(SlurmConfig::from_spec(
                &spec,
                program,
                overrides.to_vec(),
            ))),
        }
    }
}

/// Runs `pipeline` against `cache` on `executor`: [`crate::run`] locally, or one Slurm job per
/// stage to compute. The same guarantees either way: on the first failure nothing new starts,
/// what runs finishes, and nothing of the failed stage is committed.
pub fn run_on(
    pipeline: &Pipeline,
    cache: &Cache,
    options: &RunOptions,
    executor: &Executor,
) -> Result<Vec<StageOutcome>, RunError> {
    match executor {
        Executor::Local => crate::run::run(pipeline, cache, options),
        Executor::Slurm(config) => slurm::run(pipeline, cache, options, config),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Registry;

    const PIPELINE: &str = "name: r
executor:
  kind: slurm
  partition: debug
  resources: { cpus: 2, mem: 16G, time: 30 }
  sbatch_args: [--constraint=avx2]
  max_jobs: 3
  poll_seconds: 0.5
  shards: true
stages:
  a:
    run: \"echo a > {outputs.o}\"
    outputs: [o]
    resources: { mem: 500, gpus: 1 }
  b: { run: \"cat {inputs.i} > {outputs.o}\", inputs: { i: a.o }, outputs: [o] }
";

    fn load(text: &str) -> Pipeline {
        Pipeline::from_text(std::path::Path::new("p.yaml"), text, &Registry::new(), &[])
            .expect("valid pipeline")
    }

    #[test]
    fn the_executor_block_and_stage_resources_are_read() {
        let pipeline = load(PIPELINE);
        let executor = Executor::choose(None, &pipeline, PathBuf::from("/bin/bp"), &[]);
        let Executor::Slurm(config) = executor else { panic!("the block names slurm") };
        assert_eq!(config.partition.as_deref(), Some("debug"));
        assert_eq!(config.max_jobs, 3);
        assert_eq!(config.poll, Duration::from_millis(500));
        assert!(config.shards);
        let a = pipeline.resources["a"].or(&config.defaults);
        assert_eq!(
            a.sbatch_args(),
            ["--cpus-per-task=2", "--mem=500", "--gres=gpu:1", "--time=30"]
        );
        assert!(!pipeline.resources.contains_key("b"));
        let local = Executor::choose(Some(ExecutorKind::Local), &pipeline, PathBuf::new(), &[]);
        assert_eq!(local, Executor::Local);
    }

    #[test]
    fn resources_and_shards_are_not_part_of_the_cache_key() {
        let plain = PIPELINE
            .replace("    resources: { mem: 500, gpus: 1 }\n", "")
            .replace("  shards: true\n", "");
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = Cache::open(dir.path()).expect("cache");
        let keys = |text: &str| -> Vec<_> {
            crate::plan(&load(text), &cache, &[])
                .expect("plan")
                .into_iter()
                .map(|p| p.key)
                .collect()
        };
        assert_eq!(keys(PIPELINE), keys(&plain));
    }

    #[test]
    fn a_misspelt_resource_is_refused_with_its_line() {
        let text = PIPELINE.replace("gpus: 1", "gpu: 1");
        let error =
            Pipeline::from_text(std::path::Path::new("p.yaml"), &text, &Registry::new(), &[])
                .err()
                .expect("unknown field");
        assert_eq!(error.location.map(|l| l.line), Some(14), "{error}");
        assert!(error.message.contains("unknown field `gpu`"), "{error}");
    }
}

#[cfg(test)]
mod gpu_tests {
    use std::sync::Arc;

    use brainpipe_core::{ArtifactKind, Context, Port, Stage, StageError};

    use super::*;
    use crate::graph::Registry;

    brainpipe_core::params! {
        /// Params of the test stage.
        pub struct DeviceParams {
            /// Where it would run.
            pub device: String = "auto".to_owned(),
        }
    }

    /// A stage with a `device` param, as the LibTorch stages have.
    struct Torchy;

    impl Stage for Torchy {
        type Params = DeviceParams;
        const NAME: &'static str = "test.torchy";
        const VERSION: u32 = 1;
        const SUMMARY: &'static str = "test stage";

        fn inputs(&self) -> Vec<Port> {
            Vec::new()
        }

        fn outputs(&self) -> Vec<Port> {
            vec![Port::output("o", "o.txt", ArtifactKind::File, "nothing")]
        }

        fn run(&self, _: &mut Context, _: &DeviceParams) -> Result<(), StageError> {
            Ok(())
        }
    }

    #[test]
    fn a_gpu_is_asked_for_cuda_stages_and_for_auto_ones_when_allowed() {
        let mut registry = Registry::new();
        registry.register(Arc::new(Torchy));
        let text = "name: g
stages:
  auto: { uses: test.torchy }
  cuda: { uses: test.torchy, with: { device: \"cuda:1\" } }
  cpu: { uses: test.torchy, with: { device: cpu } }
  own: { uses: test.torchy, with: { device: cuda }, resources: { gpus: 2 } }
";
        let pipeline =
            Pipeline::from_text(std::path::Path::new("g.yaml"), text, &registry, &[]).expect("ok");
        let gpus = |allow_gpus: bool| -> Vec<Option<u32>> {
            let spec = ExecutorSpec { allow_gpus, ..ExecutorSpec::default() };
            let config = SlurmConfig::from_spec(&spec, PathBuf::new(), Vec::new());
            ["auto", "cuda", "cpu", "own"]
                .iter()
                .map(|id| {
                    let node = pipeline.node(id).expect("stage");
                    Resources::of_stage(&pipeline, node, &config).gpus
                })
                .collect()
        };
        assert_eq!(gpus(false), [None, Some(1), None, Some(2)]);
        assert_eq!(gpus(true), [Some(1), Some(1), None, Some(2)]);
    }
}

//! brainpipe pipelines: a YAML file of stages becomes a checked DAG, run in parallel against a
//! content-addressed cache so a rerun recomputes only what changed — and `plan` says why.
//!
//! A stage's cache key is the blake3 hash of its name, VERSION, canonical params and the content
//! hashes of its inputs (for external `run:` stages also the command text and the content of its
//! `deps`). Because keys hash upstream *output content*, a stage whose upstream reran but produced
//! identical bytes stays cached. Entries are written into a temporary directory and renamed into
//! place only on success, read-only afterwards; a per-key lock makes concurrent runs on one cache
//! compute each stage once.
//!
//! ```
//! use brainpipe_pipeline::{Cache, Pipeline, Registry, RunOptions, plan, run};
//!
//! let dir = tempfile::tempdir()?;
//! let file = dir.path().join("hello.yaml");
//! std::fs::write(&file, "name: hello\nstages:\n  greet: { run: \"echo hi > {outputs.msg}\", outputs: [msg] }\n")?;
//! let pipeline = Pipeline::load(&file, &Registry::new(), &[])?;
//! let cache = Cache::open(&dir.path().join(".brainpipe"))?;
//! assert!(!plan(&pipeline, &cache, &[])?[0].cached);
//! let outcomes = run(&pipeline, &cache, &RunOptions::default())?;
//! assert_eq!(std::fs::read_to_string(outcomes[0].dir.join("msg"))?, "hi\n");
//! assert!(plan(&pipeline, &cache, &[])?[0].cached);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod cache;
mod children;
mod error;
mod executor;
mod gc;
mod graph;
mod lock;
mod plan;
mod run;
mod spec;
mod verify;

pub use cache::{Cache, EntryState, KeyMaterial, StageRecord};
pub use children::{Shutdown, shutdown};
pub use error::RunError;
pub use executor::{
    DEFAULT_MAX_JOBS, DEFAULT_POLL_SECONDS, Detached, DetachedJob, Executor, ExecutorKind,
    ExecutorSpec, Partition, Resources, ShardRole, SlurmConfig, SlurmReport, SlurmValue, StageJob,
    detached_jobs, run_on, run_shard_job, run_stage_job, slurm_report, submit_detached,
};
pub use gc::{GcReport, gc};
pub use graph::{
    InputSource, Node, NodeKind, Pipeline, Registry, fill_placeholders, parse_value, placeholders,
};
pub use lock::{DEFAULT_LEASE, HEARTBEAT, KeyLock};
pub use plan::{ParamChange, Reason, StagePlan, plan};
pub use run::{RunOptions, StageOutcome, run};
pub use spec::{
    Location, PipelineSpec, PortMap, SpecError, StageMap, StageSpec, Step, locate, parse,
};
pub use verify::{Damaged, VerifyReport, pipeline_keys, verify};

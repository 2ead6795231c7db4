//! One planned stage computed inside a batch job: what `brainpipe stage-job` runs on a node.

use std::collections::BTreeMap;

use brainpipe_core::{ContentHash, Manifest};

use crate::cache::Cache;
use crate::error::RunError;
use crate::graph::Pipeline;
use crate::plan::key_material;
use crate::run::{RunOptions, StageOutcome, bookkeeping, execute};

/// What the driver asks one job to compute: stage `stage` of the pipeline, whose key it planned
/// as `key` from the upstream entries `upstream` (stage id → key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageJob {
    /// Stage id.
    pub stage: String,
    /// The key the driver planned.
    pub key: ContentHash,
    /// The upstream stages' keys, by stage id.
    pub upstream: BTreeMap<String, ContentHash>,
    /// Recompute even if an entry exists (`--force`).
    pub force: bool,
}

impl StageJob {
    /// The arguments of `brainpipe stage-job FILE --cache DIR` that describe this job.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec!["--stage".to_owned(), self.stage.clone()];
        args.extend(["--key".to_owned(), self.key.as_str().to_owned()]);
        for (id, key) in &self.upstream {
            args.extend(["--upstream".to_owned(), format!("{id}={}", key.as_str())]);
        }
        if self.force {
            args.push("--force".to_owned());
        }
        args
    }
}

/// Computes `job` into `cache` through the same code as a local run (temporary directory, rename
/// on success, manifest last, per-key lock), after checking that the pipeline as this process
/// loaded it still plans the stage to the driver's key: a pipeline file or input edited after
/// submission fails the job instead of filling the cache under a key nobody asked for.
pub fn run_stage_job(
    pipeline: &Pipeline,
    cache: &Cache,
    options: &RunOptions,
    job: &StageJob,
) -> Result<StageOutcome, RunError> {
    let node = pipeline.node(&job.stage).ok_or_else(|| {
        RunError::Usage(format!("no stage `{}` in {}", job.stage, pipeline.file.display()))
    })?;
    let mut upstream: BTreeMap<String, Manifest> = BTreeMap::new();
    for id in node.upstream() {
        let key = job.upstream.get(id).ok_or_else(|| {
            RunError::Usage(format!("stage `{}`: no key given for upstream `{id}`", job.stage))
        })?;
        let manifest = cache.entry(key).ok_or_else(|| {
            RunError::Usage(format!(
                "stage `{}`: upstream `{id}` has no intact entry {} in {}",
                job.stage,
                key.short(),
                cache.root().display()
            ))
        })?;
        upstream.insert(id.to_owned(), manifest);
    }
    let (material, _) = key_material(node, cache, &upstream)?;
    let key = material.key();
    if key != job.key {
        return Err(RunError::Usage(format!(
            "stage `{}` now plans to key {}, the driver submitted {}: the pipeline or an input changed since; run again",
            job.stage,
            key.short(),
            job.key.short()
        )));
    }
    let outcome = execute(pipeline, cache, options, node, &upstream, job.force)?;
    bookkeeping(cache.save_index(), outcome.cached)?;
    Ok(outcome)
}

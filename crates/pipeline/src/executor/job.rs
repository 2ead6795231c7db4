//! One planned stage computed inside a batch job: what `brainpipe stage-job` runs on a node.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use brainpipe_core::{ContentHash, Manifest};

use super::shard::ShardRole;
use crate::cache::{Cache, KeyMaterial};
use crate::error::RunError;
use crate::graph::{Node, Pipeline};
use crate::plan::key_material;
use crate::run::{RunOptions, StageOutcome, bookkeeping, execute};

/// What the driver asks one job to compute: stage `stage` of the pipeline, whose key it planned
/// as `key` from the upstream entries `upstream` (stage id → key). A job submitted before its
/// upstream stages ran (`--detach`) has neither: it plans them from the cache when it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageJob {
    /// Stage id.
    pub stage: String,
    /// The key the driver planned, when it could.
    pub key: Option<ContentHash>,
    /// The upstream stages' keys, by stage id (empty: found by planning when the job starts).
    pub upstream: BTreeMap<String, ContentHash>,
    /// Recompute even if an entry exists (`--force`).
    pub force: bool,
    /// One shard of the stage, or the merge of its shards (`None`: the whole stage).
    pub shard: Option<ShardRole>,
}

impl StageJob {
    /// The arguments of `brainpipe stage-job FILE --cache DIR` that describe this job.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec!["--stage".to_owned(), self.stage.clone()];
        if let Some(key) = &self.key {
            args.extend(["--key".to_owned(), key.as_str().to_owned()]);
        }
        for (id, key) in &self.upstream {
            args.extend(["--upstream".to_owned(), format!("{id}={}", key.as_str())]);
        }
        if self.force {
            args.push("--force".to_owned());
        }
        match &self.shard {
            None => {}
            Some(ShardRole::Shard { index, count, array }) => args.extend([
                "--shards".to_owned(),
                count.to_string(),
                "--shard".to_owned(),
                index.to_string(),
                "--array".to_owned(),
                array.clone(),
            ]),
            Some(ShardRole::Merge { count, array }) => args.extend([
                "--shards".to_owned(),
                count.to_string(),
                "--merge".to_owned(),
                "--array".to_owned(),
                array.clone(),
            ]),
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
    let (node, upstream, key, _) = resolve(pipeline, cache, job)?;
    let outcome = match &job.shard {
        None => execute(pipeline, cache, options, node, &upstream, job.force)?,
        Some(ShardRole::Merge { count, array }) => super::shard::merge_shards(
            pipeline,
            cache,
            options,
            node,
            &upstream,
            &key,
            (*count, array),
            job.force,
        )?,
        Some(ShardRole::Shard { .. }) => {
            return Err(RunError::Usage(format!(
                "stage `{}`: a shard job makes no entry (see run_shard_job)",
                job.stage
            )));
        }
    };
    bookkeeping(cache.save_index(), outcome.cached)?;
    Ok(outcome)
}

/// Computes the one shard `job` names (a task of the stage's job array) into its shard
/// directory under `<cache>/shards/`, after the same check of the key as [`run_stage_job`];
/// returns the directory (the entry's, when the stage is already cached).
pub fn run_shard_job(
    pipeline: &Pipeline,
    cache: &Cache,
    options: &RunOptions,
    job: &StageJob,
) -> Result<PathBuf, RunError> {
    let Some(ShardRole::Shard { index, count, array }) = &job.shard else {
        return Err(RunError::Usage(format!("stage `{}`: not a shard job", job.stage)));
    };
    let (node, upstream, key, material) = resolve(pipeline, cache, job)?;
    super::shard::compute_shard(
        cache,
        options,
        node,
        &upstream,
        (&key, &material),
        (*index, *count),
        array,
        job.force,
    )
}

/// A job's stage, its upstream manifests, its key and what the key was computed from.
type Resolved<'p> = (&'p Node, BTreeMap<String, Manifest>, ContentHash, KeyMaterial);

/// The job's stage, its upstream manifests, and its key (checked against the driver's) with
/// what the key was computed from.
fn resolve<'p>(
    pipeline: &'p Pipeline,
    cache: &Cache,
    job: &StageJob,
) -> Result<Resolved<'p>, RunError> {
    let node = pipeline.node(&job.stage).ok_or_else(|| {
        RunError::Usage(format!("no stage `{}` in {}", job.stage, pipeline.file.display()))
    })?;
    let upstream = if job.key.is_some() {
        given_upstream(cache, node, job)?
    } else {
        planned_upstream(pipeline, cache, node)?
    };
    let (material, _) = key_material(node, cache, &upstream)?;
    let key = material.key();
    if let Some(submitted) = job.key.as_ref().filter(|&k| *k != key) {
        return Err(RunError::Usage(format!(
            "stage `{}` now plans to key {}, the driver submitted {}: the pipeline or an input changed since; run again",
            job.stage,
            key.short(),
            submitted.short()
        )));
    }
    Ok((node, upstream, key, material))
}

/// The upstream manifests under the keys the driver gave.
fn given_upstream(
    cache: &Cache,
    node: &Node,
    job: &StageJob,
) -> Result<BTreeMap<String, Manifest>, RunError> {
    let mut upstream = BTreeMap::new();
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
    Ok(upstream)
}

/// The upstream manifests found by planning every ancestor of `node` from the cache, as `plan`
/// does: each must have an intact entry by now (its job ended well, or it was cached).
fn planned_upstream(
    pipeline: &Pipeline,
    cache: &Cache,
    node: &Node,
) -> Result<BTreeMap<String, Manifest>, RunError> {
    let mut ancestors: BTreeSet<&str> = node.upstream();
    for candidate in pipeline.nodes.iter().rev() {
        if ancestors.contains(candidate.id.as_str()) {
            ancestors.extend(candidate.upstream());
        }
    }
    let mut known: BTreeMap<String, Manifest> = BTreeMap::new();
    for ancestor in pipeline.nodes.iter().filter(|n| ancestors.contains(n.id.as_str())) {
        let (material, _) = key_material(ancestor, cache, &known)?;
        let key = material.key();
        let manifest = cache.entry(&key).ok_or_else(|| {
            RunError::Usage(format!(
                "stage `{}`: upstream `{}` has no intact entry {} in {}: it has not run, or failed",
                node.id,
                ancestor.id,
                key.short(),
                cache.root().display()
            ))
        })?;
        known.insert(ancestor.id.clone(), manifest);
    }
    let direct = node.upstream();
    known.retain(|id, _| direct.contains(id.as_str()));
    Ok(known)
}

//! The CLI's Slurm side: `brainpipe stage-job`, the command a Slurm job runs (it computes one
//! stage the driver planned into the shared cache, through the same code as a local run, and
//! records the job id); `run --detach`; and the Slurm lines of `status` and `doctor`.

use std::collections::BTreeMap;

use anyhow::{Result, anyhow, bail};
use brainpipe_core::ContentHash;
use brainpipe_pipeline::{
    Cache, Executor, Pipeline, RunOptions, ShardRole, StageJob, detached_jobs, run_shard_job,
    run_stage_job, submit_detached,
};
use clap::Args;

use crate::{PipelineArgs, Stages, stages};

/// The arguments [`StageJob::args`] writes.
#[derive(Args)]
pub(crate) struct StageJobArgs {
    #[command(flatten)]
    target: PipelineArgs,
    /// The stage id.
    #[arg(long)]
    stage: String,
    /// The cache key the driver planned for it (absent: planned here from the cache).
    #[arg(long)]
    key: Option<String>,
    /// An upstream stage's key, as id=key; repeatable.
    #[arg(long, value_name = "ID=KEY")]
    upstream: Vec<String>,
    /// Recompute even if an entry exists.
    #[arg(long)]
    force: bool,
    /// The stage runs in this many shards (a job array's tasks and a merge job).
    #[arg(long, value_name = "N")]
    shards: Option<usize>,
    /// Compute this shard (0-based; a task of the array job `--array`).
    #[arg(long, value_name = "K", requires = "shards", conflicts_with = "merge")]
    shard: Option<usize>,
    /// Build the stage's entry from the shards of the array job `--array`.
    #[arg(long, requires = "shards")]
    merge: bool,
    /// The array job whose tasks compute the shards.
    #[arg(long, value_name = "JOB")]
    array: Option<String>,
}

pub(crate) fn cmd_stage_job(args: &StageJobArgs) -> Result<()> {
    let mut upstream = BTreeMap::new();
    for item in &args.upstream {
        let (id, key) =
            item.split_once('=').ok_or_else(|| anyhow!("--upstream {item}: expected id=key"))?;
        upstream.insert(id.to_owned(), ContentHash::from_hex(key));
    }
    let shard = match (args.shards, args.shard, args.merge, &args.array) {
        (None, None, false, None) => None,
        (Some(count), Some(index), false, Some(array)) if index < count => {
            Some(ShardRole::Shard { index, count, array: array.clone() })
        }
        (Some(count), None, true, Some(array)) => {
            Some(ShardRole::Merge { count, array: array.clone() })
        }
        _ => bail!(
            "--shards N goes with --shard K (K < N) or --merge, and with --array JOB: got --shards {:?} --shard {:?} --merge {} --array {:?}",
            args.shards,
            args.shard,
            args.merge,
            args.array
        ),
    };
    let job = StageJob {
        stage: args.stage.clone(),
        key: args.key.clone().map(ContentHash::from_hex),
        upstream,
        force: args.force,
        shard,
    };
    let cpus = job_cpus(|name| std::env::var(name).ok());
    let Stages { registry, tools } = stages(cpus);
    let (pipeline, cache) = args.target.load(&registry)?;
    let options = RunOptions {
        jobs: 1,
        tools,
        slurm_job_id: std::env::var("SLURM_JOB_ID").ok(),
        ..RunOptions::default()
    };
    if matches!(job.shard, Some(ShardRole::Shard { .. })) {
        let dir = run_shard_job(&pipeline, &cache, &options, &job)?;
        println!("{} shard {}", job.stage, dir.display());
        return Ok(());
    }
    let outcome = match run_stage_job(&pipeline, &cache, &options, &job) {
        Ok(outcome) => outcome,
        // A failed `run:` command: the job exits with the command's own status, so that
        // Slurm's ExitCode (and the driver's report of it) is the command's, not ours.
        Err(e) if e.exit_code().is_some_and(|code| (1..=255).contains(&code)) => {
            eprintln!("error: {e}");
            std::process::exit(e.exit_code().unwrap_or(1));
        }
        Err(e) => return Err(e.into()),
    };
    let state = if outcome.cached { "cached" } else { "ran" };
    println!("{} {state} {}", outcome.id, outcome.dir.display());
    Ok(())
}

/// `brainpipe doctor`'s Slurm lines: reachable or not (which is no error: Slurm is optional),
/// and the partitions `brainpipe run --executor slurm` could submit to.
/// The CPUs a stage job's LibTorch stages get as threads: what Slurm granted the task
/// (`SLURM_CPUS_PER_TASK`, set with `--cpus-per-task`), else what it allocated to the job on this
/// node (`SLURM_CPUS_ON_NODE`, one CPU by Slurm's default), else what this process may use. Not
/// what the node has: without task binding (`TaskPlugin=task/none`) a 1-CPU job sees every CPU of
/// the node, and two such jobs with a LibTorch thread per CPU each would oversubscribe it (and
/// compute with other thread counts, so other bytes, than a local run of 1 thread per stage).
fn job_cpus(var: impl Fn(&str) -> Option<String>) -> usize {
    ["SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE"]
        .iter()
        .find_map(|name| var(name).and_then(|n| n.trim().parse::<usize>().ok()).filter(|&n| n > 0))
        .unwrap_or_else(|| std::thread::available_parallelism().map(usize::from).unwrap_or(1))
}

pub(crate) fn print_slurm_report() {
    match brainpipe_pipeline::slurm_report() {
        Err(why) => println!("slurm          not reachable: {why}"),
        Ok(report) => {
            println!("slurm          {}", report.version);
            for p in &report.partitions {
                println!(
                    "  {:<12} {}{}, {} node(s) {}, {} CPUs, {} MB, gres {}",
                    p.name,
                    p.availability,
                    if p.default { " (default)" } else { "" },
                    p.nodes,
                    p.state,
                    p.cpus,
                    p.memory_mb,
                    p.gres
                );
            }
        }
    }
}

/// `brainpipe run --executor slurm --detach`: submits, prints the jobs, returns.
pub(crate) fn run_detached(
    pipeline: &Pipeline,
    cache: &Cache,
    options: &RunOptions,
    executor: &Executor,
) -> Result<()> {
    let Executor::Slurm(config) = executor else {
        bail!(
            "--detach needs the slurm executor (--executor slurm, or `executor: {{ kind: slurm }}`)"
        );
    };
    let detached = submit_detached(pipeline, cache, options, config)?;
    let width = pipeline.nodes.iter().map(|n| n.id.len()).max().unwrap_or(5);
    for outcome in &detached.cached {
        let key = &outcome.manifest.key;
        println!("{:<width$}  cached     {}", outcome.id, key.get(..12).unwrap_or(key));
    }
    for job in &detached.jobs {
        let shards = match (&job.array, job.shards) {
            (Some(array), Some(n)) => format!(" (merge of array {array}: {n} shards)"),
            _ => String::new(),
        };
        println!("{:<width$}  submitted  job {}{shards}", job.stage, job.job);
    }
    println!(
        "{} job(s) submitted; `brainpipe status {}` shows them; jobs recorded in {}",
        detached.jobs.len(),
        pipeline.file.display(),
        detached.record.display()
    );
    Ok(())
}

/// `brainpipe status`'s lines for the jobs of the last detached run, if any.
pub(crate) fn print_detached_jobs(pipeline: &Pipeline, cache: &Cache) -> Result<()> {
    let Some((submitted, jobs)) = detached_jobs(pipeline, cache)? else { return Ok(()) };
    println!("slurm jobs of the detached run submitted {submitted}:");
    let width = jobs.iter().map(|j| j.stage.len()).max().unwrap_or(5);
    for job in &jobs {
        let reason = match job.reason.as_str() {
            "" | "None" => String::new(),
            reason => format!("  ({reason})"),
        };
        println!("  {:<width$}  job {:<8} {}{reason}", job.stage, job.job, job.state);
        if let Some(array) = &job.array {
            let shards = job.shards.map(|n| format!(" of {n} shards")).unwrap_or_default();
            println!("  {:<width$}  array {array}{shards}: {}", "", job.tasks);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::job_cpus;

    #[test]
    fn a_job_uses_the_cpus_slurm_granted_it_not_the_nodes() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
        };
        assert_eq!(job_cpus(env(&[("SLURM_CPUS_PER_TASK", "4"), ("SLURM_CPUS_ON_NODE", "8")])), 4);
        assert_eq!(job_cpus(env(&[("SLURM_CPUS_ON_NODE", "1")])), 1);
        assert_eq!(job_cpus(env(&[("SLURM_CPUS_PER_TASK", "x"), ("SLURM_CPUS_ON_NODE", "2")])), 2);
        assert_eq!(job_cpus(env(&[("SLURM_CPUS_PER_TASK", "0"), ("SLURM_CPUS_ON_NODE", "3")])), 3);
        let outside = std::thread::available_parallelism().map(usize::from).unwrap_or(1);
        assert_eq!(job_cpus(env(&[])), outside);
    }
}

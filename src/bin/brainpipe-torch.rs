//! `brainpipe-torch`: the worker that runs brainpipe's LibTorch stages.
//!
//! The `brainpipe` driver never links LibTorch (it would cost every `plan` and cached rerun ~0.3 s
//! of CPU and ~470 MB just to start). It asks this worker for its catalogue of stages once per
//! worker build, and runs each of those stages with `brainpipe-torch exec`, which reads and writes
//! the same artifacts an in-process stage would. Not meant to be called by hand.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use brainpipe_core::{
    Catalogue, Context, DynStage, ShardTask, StageInfo, WORKER_ERROR_FILE, WORKER_PROTOCOL,
    WORKER_THREADS_ENV, exec_task_in_worker,
};

/// Every stage that needs LibTorch.
fn torch_stages() -> Vec<Arc<dyn DynStage>> {
    [brainpipe_clip::stages(), brainpipe_models::stages(), brainpipe_diffusion::stages()]
        .into_iter()
        .flatten()
        .collect()
}

fn tools() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("brainpipe".to_owned(), env!("CARGO_PKG_VERSION").to_owned()),
        ("libtorch".to_owned(), brainpipe_tensor::LIBTORCH_VERSION.to_owned()),
    ])
}

const USAGE: &str = "usage: brainpipe-torch catalogue | doctor
       brainpipe-torch exec NAME --out-dir DIR --params JSON [--in PORT=PATH]... [--shard K/N]
       brainpipe-torch merge NAME --out-dir DIR --params JSON [--in PORT=PATH]... --shard-dir DIR...
       brainpipe-torch shards NAME --params JSON [--in PORT=PATH]...
(run by the brainpipe driver; see `brainpipe --help`)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("catalogue") => catalogue(),
        Some("doctor") => doctor(),
        Some("exec") => exec(&args[1..], false),
        Some("merge") => exec(&args[1..], true),
        Some("shards") => shards(&args[1..]),
        Some("--version") => {
            println!(
                "brainpipe-torch {} (libtorch {})",
                env!("CARGO_PKG_VERSION"),
                brainpipe_tensor::LIBTORCH_VERSION
            );
            Ok(())
        }
        _ => Err(USAGE.to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn catalogue() -> Result<(), String> {
    let catalogue = Catalogue {
        protocol: WORKER_PROTOCOL,
        tools: tools(),
        stages: torch_stages().iter().map(|s| StageInfo::of(s.as_ref())).collect(),
    };
    println!("{}", serde_json::to_string(&catalogue).map_err(|e| e.to_string())?);
    Ok(())
}

fn doctor() -> Result<(), String> {
    let info = brainpipe_tensor::RuntimeInfo::probe();
    println!("{}", serde_json::to_string(&info).map_err(|e| e.to_string())?);
    Ok(())
}

/// Dies with the driver: a killed `brainpipe run` must not leave a worker training on.
fn die_with_parent() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes plain integers and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
}

/// The arguments of `exec`, `merge` and `shards`.
struct ExecArgs {
    stage: Arc<dyn DynStage>,
    out_dir: Option<PathBuf>,
    params: serde_json::Value,
    inputs: BTreeMap<String, PathBuf>,
    shard: Option<(usize, usize)>,
    shard_dirs: Vec<PathBuf>,
}

fn parse(args: &[String]) -> Result<ExecArgs, String> {
    let name = args.first().ok_or(USAGE)?;
    let mut parsed = ExecArgs {
        stage: torch_stages()
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| format!("brainpipe-torch has no stage `{name}`"))?,
        out_dir: None,
        params: serde_json::Value::Null,
        inputs: BTreeMap::new(),
        shard: None,
        shard_dirs: Vec::new(),
    };
    let mut rest = args[1..].iter();
    while let Some(flag) = rest.next() {
        let value = rest.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--out-dir" => parsed.out_dir = Some(PathBuf::from(value)),
            "--params" => {
                parsed.params =
                    serde_json::from_str(value).map_err(|e| format!("--params: {e}"))?;
            }
            "--in" => {
                let (port, path) = value.split_once('=').ok_or("--in expects PORT=PATH")?;
                parsed.inputs.insert(port.to_owned(), PathBuf::from(path));
            }
            "--shard" => {
                let bad = || format!("--shard expects K/N with K < N, got `{value}`");
                let (k, n) = value.split_once('/').ok_or_else(bad)?;
                let (k, n) = (k.parse().map_err(|_| bad())?, n.parse().map_err(|_| bad())?);
                if k >= n {
                    return Err(bad());
                }
                parsed.shard = Some((k, n));
            }
            "--shard-dir" => parsed.shard_dirs.push(PathBuf::from(value)),
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        }
    }
    Ok(parsed)
}

/// `shards NAME`: prints how many shards the stage's work on these inputs splits into.
fn shards(args: &[String]) -> Result<(), String> {
    die_with_parent();
    let parsed = parse(args)?;
    let ctx = Context::new(parsed.inputs, parsed.stage.outputs(), PathBuf::new());
    let count = parsed.stage.shards_json(&ctx, &parsed.params).map_err(|e| e.to_string())?;
    println!("{count}");
    Ok(())
}

/// `exec NAME` (the whole stage, or `--shard K/N`) and `merge NAME` (from `--shard-dir`s).
fn exec(args: &[String], merge: bool) -> Result<(), String> {
    die_with_parent();
    if let Some(threads) =
        std::env::var(WORKER_THREADS_ENV).ok().and_then(|t| t.parse::<i32>().ok())
    {
        brainpipe_tensor::set_cpu_threads(threads);
    }
    let parsed = parse(args)?;
    let out_dir = parsed.out_dir.ok_or("--out-dir is required")?;
    let task = match (merge, parsed.shard, parsed.shard_dirs.is_empty()) {
        (false, None, true) => ShardTask::Whole,
        (false, Some((index, count)), true) => ShardTask::Shard { index, count },
        (true, None, false) => ShardTask::Merge(parsed.shard_dirs),
        _ => return Err(format!("--shard goes with exec, --shard-dir with merge\n{USAGE}")),
    };
    let progress = std::io::stderr().is_terminal();
    exec_task_in_worker(
        parsed.stage.as_ref(),
        parsed.inputs,
        &parsed.params,
        &out_dir,
        progress,
        &task,
    )
    .map_err(|e| {
        let message = e.to_string();
        // The driver reads this file: our stderr is the user's terminal, not a pipe.
        let _ = std::fs::write(out_dir.join(WORKER_ERROR_FILE), &message);
        message
    })
}

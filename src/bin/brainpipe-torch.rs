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
    Catalogue, DynStage, StageInfo, WORKER_ERROR_FILE, WORKER_PROTOCOL, WORKER_THREADS_ENV,
    exec_in_worker,
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

const USAGE: &str = "usage: brainpipe-torch catalogue | doctor | exec NAME --out-dir DIR --params JSON [--in PORT=PATH]...
(run by the brainpipe driver; see `brainpipe --help`)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("catalogue") => catalogue(),
        Some("doctor") => doctor(),
        Some("exec") => exec(&args[1..]),
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

fn exec(args: &[String]) -> Result<(), String> {
    die_with_parent();
    if let Some(threads) =
        std::env::var(WORKER_THREADS_ENV).ok().and_then(|t| t.parse::<i32>().ok())
    {
        brainpipe_tensor::set_cpu_threads(threads);
    }
    let name = args.first().ok_or(USAGE)?;
    let mut out_dir = None;
    let mut params = serde_json::Value::Null;
    let mut inputs = BTreeMap::new();
    let mut rest = args[1..].iter();
    while let Some(flag) = rest.next() {
        let value = rest.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--out-dir" => out_dir = Some(PathBuf::from(value)),
            "--params" => {
                params = serde_json::from_str(value).map_err(|e| format!("--params: {e}"))?;
            }
            "--in" => {
                let (port, path) = value.split_once('=').ok_or("--in expects PORT=PATH")?;
                inputs.insert(port.to_owned(), PathBuf::from(path));
            }
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        }
    }
    let out_dir = out_dir.ok_or("--out-dir is required")?;
    let stages = torch_stages();
    let stage = stages
        .iter()
        .find(|s| s.name() == name)
        .ok_or_else(|| format!("brainpipe-torch has no stage `{name}`"))?;
    let progress = std::io::stderr().is_terminal();
    exec_in_worker(stage.as_ref(), inputs, &params, &out_dir, progress).map_err(|e| {
        let message = e.to_string();
        // The driver reads this file: our stderr is the user's terminal, not a pipe.
        let _ = std::fs::write(out_dir.join(WORKER_ERROR_FILE), &message);
        message
    })
}

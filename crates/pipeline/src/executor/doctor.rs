//! What `brainpipe doctor` says about Slurm: whether its commands answer, and which partitions
//! they show.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A partition as `sinfo` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    /// Name (`*` marks the default in `sinfo`; here [`Partition::default`] says so).
    pub name: String,
    /// The cluster's default partition.
    pub default: bool,
    /// `up`, `down`, `drain`, `inact`.
    pub availability: String,
    /// Nodes in the partition.
    pub nodes: String,
    /// CPUs per node.
    pub cpus: String,
    /// Memory per node, megabytes.
    pub memory_mb: String,
    /// Generic resources (GPUs: `gpu:2`), `(null)` when none.
    pub gres: String,
    /// Node states, e.g. `idle` or `mixed`.
    pub state: String,
}

/// Slurm as this process sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlurmReport {
    /// `slurm 22.05.8`.
    pub version: String,
    /// Partitions by `sinfo --summarize`-like rows, one per partition and node state.
    pub partitions: Vec<Partition>,
}

/// Asks `sinfo` for its version and the partitions it sees; `Err` says why Slurm is not
/// reachable (commands missing, controller down, `SLURM_CONF` wrong).
pub fn slurm_report() -> Result<SlurmReport, String> {
    let version = sinfo(&["--version"])?.trim().to_owned();
    let table = sinfo(&["--noheader", "--format=%P|%a|%D|%c|%m|%G|%t"])?;
    let partitions = table
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.trim().split('|').collect();
            let [name, availability, nodes, cpus, memory, gres, state] = fields[..] else {
                return None;
            };
            Some(Partition {
                name: name.trim_end_matches('*').to_owned(),
                default: name.ends_with('*'),
                availability: availability.to_owned(),
                nodes: nodes.to_owned(),
                cpus: cpus.to_owned(),
                memory_mb: memory.to_owned(),
                gres: gres.to_owned(),
                state: state.to_owned(),
            })
        })
        .collect();
    Ok(SlurmReport { version, partitions })
}

/// How long `doctor` waits for `sinfo`: with a wrong `SLURM_CONF` or a controller that is down
/// it retries for a minute.
const SINFO_TIMEOUT: Duration = Duration::from_secs(5);

fn sinfo(args: &[&str]) -> Result<String, String> {
    let mut child = Command::new("sinfo")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!("cannot run `sinfo` ({e}): Slurm's client commands are not on PATH")
        })?;
    let deadline = Instant::now() + SINFO_TIMEOUT;
    while child.try_wait().map_err(|e| format!("waiting for `sinfo`: {e}"))?.is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let output = child.wait_with_output().map_err(|e| e.to_string())?;
            let stderr = String::from_utf8_lossy(&output.stderr);
            let first = stderr.lines().next().unwrap_or("no answer");
            return Err(format!("`sinfo` did not answer within {SINFO_TIMEOUT:?}: {first}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().map_err(|e| format!("waiting for `sinfo`: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!("`sinfo` failed: {}", stderr.lines().next().unwrap_or_default()));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

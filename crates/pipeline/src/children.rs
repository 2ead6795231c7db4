//! What a run has started and must end if the driver is told to stop: the process groups of
//! external commands and the temporary directories of stages in flight.
//!
//! A job scheduler, `timeout` or a CI runner stops a run by signalling the driver's PID alone;
//! the `sh -c …` of a `run:` stage and everything it started must not outlive it, and no
//! half-written temporary directory may stay behind. Each command runs in its own process group
//! (so one `killpg` reaches its whole tree), registered here while it runs; [`shutdown`] ends
//! them all and removes the registered directories.
//!
//! A driver killed outright (SIGKILL, the OOM killer, a crash) runs no code: the kernel ends the
//! command's `sh` (PR_SET_PDEATHSIG), but not what `sh` started. For that each command gets a
//! [`Watchdog`]: a small `sh` outside the command's group that blocks reading a pipe whose only
//! writer is the driver. When the driver dies the pipe reaches end-of-file and the watchdog kills
//! the command's whole process group; when the command ends normally the driver kills the
//! watchdog first, so a reused group id is never signalled.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static GROUPS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());
static TEMPS: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// How long commands get to exit after SIGTERM before SIGKILL.
const GRACE: Duration = Duration::from_secs(2);

/// Keeps a process group registered while alive.
pub(crate) struct GroupGuard(i32);

impl GroupGuard {
    /// Registers the process group `pgid` (a command started with `process_group(0)`).
    pub(crate) fn new(pgid: u32) -> Self {
        let pgid = i32::try_from(pgid).unwrap_or(i32::MAX);
        GROUPS.lock().unwrap_or_else(|e| e.into_inner()).insert(pgid);
        GroupGuard(pgid)
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        GROUPS.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.0);
    }
}

/// The watchdog's script: wait for the driver's end of the pipe to close, then kill group `$1`.
const WATCHDOG: &str = "read _ignored; kill -KILL -\"$1\" 2>/dev/null";

/// Kills a command's process group if the driver dies without ending it (see the module docs).
pub(crate) struct Watchdog {
    child: Option<std::process::Child>,
    pipe: Option<std::io::PipeWriter>,
}

impl Watchdog {
    /// Watches the process group `pgid`. A watchdog that cannot start is logged, not fatal: the
    /// command then runs as it did before watchdogs existed.
    pub(crate) fn start(pgid: u32) -> Self {
        use std::os::unix::process::CommandExt;
        let spawned = std::io::pipe().and_then(|(reader, writer)| {
            let child = std::process::Command::new("sh")
                .arg("-c")
                .arg(WATCHDOG)
                .arg("brainpipe-watchdog")
                .arg(pgid.to_string())
                .stdin(reader)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .process_group(0)
                .spawn()?;
            Ok((child, writer))
        });
        match spawned {
            Ok((child, pipe)) => Watchdog { child: Some(child), pipe: Some(pipe) },
            Err(e) => {
                tracing::warn!(pgid, error = %e, "no watchdog for the command");
                Watchdog { child: None, pipe: None }
            }
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // The watchdog goes before the pipe closes, so it never signals a group that is gone.
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.pipe.take();
    }
}

/// Registers a temporary directory until [`forget_temp`].
pub(crate) fn track_temp(dir: &Path) {
    TEMPS.lock().unwrap_or_else(|e| e.into_inner()).insert(dir.to_path_buf());
}

/// Unregisters a temporary directory (removed or committed).
pub(crate) fn forget_temp(dir: &Path) {
    TEMPS.lock().unwrap_or_else(|e| e.into_inner()).remove(dir);
}

/// What [`shutdown`] ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Shutdown {
    /// Process groups of external commands that were still running.
    pub commands: usize,
    /// Temporary directories of unfinished stages that were removed.
    pub temp_dirs: usize,
    /// Slurm jobs this process submitted that were cancelled.
    pub jobs: usize,
}

/// Cancels the Slurm jobs this process submitted, ends every registered command's process group
/// (SIGTERM, then SIGKILL after a grace period) and removes every registered temporary directory. For the driver's signal handling; safe to
/// call from any thread, while stages still run.
pub fn shutdown() -> Shutdown {
    let jobs = crate::executor::cancel_submitted_jobs();
    let groups: Vec<i32> =
        GROUPS.lock().unwrap_or_else(|e| e.into_inner()).iter().copied().collect();
    for &pgid in &groups {
        // SAFETY: killpg takes plain integers; a group that is gone makes it return ESRCH.
        unsafe { libc::killpg(pgid, libc::SIGTERM) };
    }
    let deadline = Instant::now() + GRACE;
    // SAFETY: as above; signal 0 only asks whether any member of the group is alive.
    let alive = |pgid: i32| unsafe { libc::killpg(pgid, 0) } == 0;
    while Instant::now() < deadline && groups.iter().any(|&g| alive(g)) {
        std::thread::sleep(Duration::from_millis(20));
    }
    for &pgid in &groups {
        if alive(pgid) {
            // SAFETY: as above.
            unsafe { libc::killpg(pgid, libc::SIGKILL) };
        }
    }
    let temps: Vec<PathBuf> =
        std::mem::take(&mut *TEMPS.lock().unwrap_or_else(|e| e.into_inner())).into_iter().collect();
    let mut removed = 0;
    for dir in &temps {
        if brainpipe_core::remove_tree(dir).is_ok() {
            removed += 1;
        }
    }
    Shutdown { commands: groups.len(), temp_dirs: removed, jobs }
}

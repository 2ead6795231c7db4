//! Per-key locks that hold across the nodes of a shared file system without `flock(2)`.
//!
//! `flock` is not reliable on NFS (NFSv3 without `lockd`, mounts with `local_lock=all`), so a
//! lock is a file created with `O_CREAT | O_EXCL` (atomic on local file systems and on NFSv3+):
//! `locks/<key>.lock`, holding its owner (`host pid start-time nanos`). While a process holds it,
//! a heartbeat thread sets its mtime every [`HEARTBEAT`]; dropping the guard removes the file.
//!
//! A waiter polls. It takes over a lock whose owner is gone:
//! - on its own host, at once, when the owner's PID is not running or is a later process (its
//!   start time differs): a killed run never wedges the cache;
//! - on another host, when neither the file's content nor its mtime has changed for
//!   the lease ([`DEFAULT_LEASE`], or `BRAINPIPE_LOCK_LEASE_SECONDS`) of the waiter's own clock,
//!   so clocks need not agree across nodes.
//!
//! Taking over renames the stale file to a unique name first (only one waiter's rename can
//! succeed), checks that what it moved is the file it judged stale, and puts it back with
//! `link(2)` (which never overwrites) if it was not. The lock only avoids computing a key twice:
//! integrity never rests on it, since an entry is committed by one `rename(2)` and a run that
//! finds the entry already committed uses it and discards its own.

use std::collections::BTreeSet;
use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant, SystemTime};

use brainpipe_core::IoContext;

use crate::cache::{host_name, process_start, unix_nanos};
use crate::error::RunError;

/// How often a held lock's mtime is refreshed.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// How long another host's lock may stay unchanged (content and mtime) before it is taken over.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);
/// The longest pause between two attempts of a waiter.
const MAX_POLL: Duration = Duration::from_millis(250);

/// The lock files this process holds, refreshed by the heartbeat thread.
static HELD: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// A held per-key lock; dropping it releases the lock.
#[derive(Debug)]
pub struct KeyLock {
    path: PathBuf,
    owner: String,
}

impl Drop for KeyLock {
    fn drop(&mut self) {
        HELD.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.path);
        // Remove the file only while it is still ours (a waiter that judged us stale may have
        // taken it over: then it is no longer ours to remove).
        if fs::read_to_string(&self.path).is_ok_and(|text| text == self.owner) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Who holds a lock, as its file says.
#[derive(Debug, PartialEq)]
struct Owner {
    host: String,
    pid: u32,
    start: Option<u64>,
}

impl Owner {
    fn parse(text: &str) -> Option<Owner> {
        let mut parts = text.split_whitespace();
        let host = parts.next()?.to_owned();
        let pid = parts.next()?.parse().ok()?;
        let start = parts.next()?.parse().ok();
        Some(Owner { host, pid, start })
    }

    /// Whether this owner, on this host, is known to be gone.
    fn gone_here(&self) -> bool {
        if self.host != host_name() {
            return false;
        }
        match process_start(self.pid) {
            None => true,
            Some(start) => self.start.is_some_and(|s| s != start),
        }
    }
}

/// What a waiter last saw of a lock file, and since when it has been so.
struct Seen {
    text: String,
    mtime: Option<SystemTime>,
    since: Instant,
}

/// Blocks until this process holds the lock file `path`; a lock unchanged for `lease` on
/// another host, or held by a process gone on this one, is taken over.
pub(crate) fn acquire(path: &Path, lease: Duration) -> Result<KeyLock, RunError> {
    let pid = std::process::id();
    let nanos = unix_nanos();
    let start = process_start(pid).map_or_else(|| "-".to_owned(), |s| s.to_string());
    let owner = format!("{} {pid} {start} {nanos}\n", host_name());
    let mut seen: Option<Seen> = None;
    let mut pause = Duration::from_millis(5);
    loop {
        match fs::OpenOptions::new().write(true).create_new(true).open(path) {
            Ok(mut file) => {
                file.write_all(owner.as_bytes()).at(path)?;
                drop(file);
                start_heartbeat();
                HELD.lock().unwrap_or_else(|e| e.into_inner()).insert(path.to_path_buf());
                return Ok(KeyLock { path: path.to_path_buf(), owner });
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(brainpipe_core::Error::io(path, e).into()),
        }
        // Held. By a process gone, or unchanged past the lease?
        let Ok(text) = fs::read_to_string(path) else { continue }; // released meanwhile
        let mtime = fs::metadata(path).and_then(|m| m.modified()).ok();
        let changed = seen.as_ref().is_none_or(|s| s.text != text || s.mtime != mtime);
        if changed {
            seen = Some(Seen { text: text.clone(), mtime, since: Instant::now() });
        }
        let gone = Owner::parse(&text).is_some_and(|o| o.gone_here());
        let expired = seen.as_ref().is_some_and(|s| s.since.elapsed() >= lease);
        if gone || expired {
            if take_over(path, &text)? {
                tracing::warn!(
                    lock = %path.display(),
                    holder = text.trim(),
                    "took over a stale lock ({})",
                    if gone { "its process is gone" } else { "unchanged past its lease" }
                );
                seen = None;
            }
            continue;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(MAX_POLL);
    }
}

/// Moves the stale lock file `path` (whose content was `stale`) out of the way. Returns whether
/// it did; a file that turned out not to be the stale one is put back.
fn take_over(path: &Path, stale: &str) -> Result<bool, RunError> {
    let nanos = unix_nanos();
    let aside =
        path.with_extension(format!("stale.{}.{}.{nanos}", host_name(), std::process::id()));
    match fs::rename(path, &aside) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false), // someone else did
        Err(e) => return Err(brainpipe_core::Error::io(path, e).into()),
    }
    let moved = fs::read_to_string(&aside).unwrap_or_default();
    if moved != stale {
        // A live lock, taken between our read and our rename: back, unless a new one is there.
        let _ = fs::hard_link(&aside, path);
        let _ = fs::remove_file(&aside);
        return Ok(false);
    }
    let _ = fs::remove_file(&aside);
    Ok(true)
}

/// Starts the thread that refreshes the held locks' mtimes (once per process).
fn start_heartbeat() {
    static START: Once = Once::new();
    START.call_once(|| {
        let spawned =
            std::thread::Builder::new().name("brainpipe-lock-heartbeat".into()).spawn(|| {
                loop {
                    std::thread::sleep(HEARTBEAT);
                    let held: Vec<PathBuf> =
                        HELD.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect();
                    for path in held {
                        if let Ok(file) = fs::OpenOptions::new().write(true).open(&path) {
                            let _ = file.set_modified(SystemTime::now());
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(
                "no lock heartbeat thread ({e}): other hosts may take over after the lease"
            );
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_released_on_drop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.lock");
        let held = acquire(&path, DEFAULT_LEASE).expect("free lock");
        let text = fs::read_to_string(&path).expect("lock file");
        assert_eq!(Owner::parse(&text).expect("owner").pid, std::process::id());
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = {
            let path = path.clone();
            std::thread::spawn(move || {
                let lock = acquire(&path, DEFAULT_LEASE).expect("after release");
                tx.send(()).expect("send");
                drop(lock);
            })
        };
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err(), "held: the waiter waits");
        drop(held);
        rx.recv_timeout(Duration::from_secs(10)).expect("the waiter gets it once released");
        waiter.join().expect("waiter");
        assert!(!path.exists(), "released: no file left");
    }

    #[test]
    fn a_lock_of_a_dead_process_on_this_host_is_taken_over_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.lock");
        // A child that has exited: its PID is gone (or, if reused, has another start time).
        let mut child = std::process::Command::new("true").spawn().expect("spawn true");
        let pid = child.id();
        child.wait().expect("wait");
        fs::write(&path, format!("{} {pid} 1 0\n", host_name())).expect("stale lock");
        let started = Instant::now();
        let lock = acquire(&path, DEFAULT_LEASE).expect("taken over");
        assert!(started.elapsed() < DEFAULT_LEASE, "not after the lease");
        assert!(fs::read_to_string(&path).expect("ours").contains(&std::process::id().to_string()));
        drop(lock);
    }

    #[test]
    fn another_hosts_lock_is_kept_while_it_changes_and_taken_over_when_it_does_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.lock");
        let lease = Duration::from_millis(600);
        fs::write(&path, "node17 4242 99 0\n").expect("other host's lock");
        // Its holder's heartbeat: the mtime moves every 100 ms for 1.5 s, then stops.
        let beating = {
            let path = path.clone();
            std::thread::spawn(move || {
                for _ in 0..15 {
                    std::thread::sleep(Duration::from_millis(100));
                    if let Ok(file) = fs::OpenOptions::new().write(true).open(&path) {
                        let _ = file.set_modified(SystemTime::now());
                    }
                }
            })
        };
        let started = Instant::now();
        let lock = acquire(&path, lease).expect("taken over after the heartbeat stops");
        let waited = started.elapsed();
        beating.join().expect("heartbeat");
        assert!(waited >= Duration::from_millis(1500) + lease / 2, "kept while alive: {waited:?}");
        assert!(fs::read_to_string(&path).expect("ours").starts_with(&host_name()));
        drop(lock);
    }

    #[test]
    fn a_live_lock_taken_between_judging_and_moving_is_put_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.lock");
        fs::write(&path, "node17 1 1 fresh\n").expect("a new holder's lock");
        assert!(!take_over(&path, "node17 1 1 stale\n").expect("no error"), "not taken");
        assert_eq!(fs::read_to_string(&path).expect("still there"), "node17 1 1 fresh\n");
        let leftovers = fs::read_dir(dir.path()).expect("dir").count();
        assert_eq!(leftovers, 1, "nothing set aside");
    }

    #[test]
    fn process_start_reads_this_process() {
        assert!(process_start(std::process::id()).is_some());
        assert_eq!(process_start(u32::MAX), None);
    }
}

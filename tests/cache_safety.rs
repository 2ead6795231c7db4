//! The driver against a hostile but realistic user (issue 15): names that are not ASCII, two
//! pipelines sharing a name, a cache on a read-only file system, tampered entries.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

fn brainpipe(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_brainpipe"))
        .env_remove("BRAINPIPE_CACHE")
        .env_remove("RUST_LOG")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("brainpipe starts")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const UNICODE: &str = "name: \"ünï-çødé 🧠\"
stages:
  \"🧠\": { run: \"echo brain > {outputs.o}\", outputs: [o] }
  \"🎉\": { run: \"cat {inputs.x} > {outputs.o}; echo party >> {outputs.o}\", inputs: { x: \"🧠.o\" }, outputs: [o] }
";

#[test]
fn unicode_names_keep_their_own_folders_and_the_printed_path_exists() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("p.yaml"), UNICODE).expect("pipeline");
    let out = brainpipe(dir.path(), &["run", "p.yaml"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let printed = stdout.lines().find_map(|l| l.strip_prefix("outputs: ")).expect("outputs line");
    assert!(Path::new(printed).is_dir(), "printed runs/ path exists: {printed}");
    let brain = fs::read_to_string(Path::new(printed).join("🧠/o")).expect("🧠 link");
    let party = fs::read_to_string(Path::new(printed).join("🎉/o")).expect("🎉 link");
    assert_eq!((brain.as_str(), party.as_str()), ("brain\n", "brain\nparty\n"));
}

#[test]
fn a_second_pipeline_under_the_same_name_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("p.yaml"), UNICODE).expect("pipeline");
    fs::write(dir.path().join("q.yaml"), UNICODE.replace("party", "fiesta")).expect("other");
    fs::write(dir.path().join("r.yaml"), UNICODE).expect("same text");
    assert!(brainpipe(dir.path(), &["run", "p.yaml"]).status.success());
    for command in ["plan", "run"] {
        let out = brainpipe(dir.path(), &[command, "q.yaml", "--cache", ".brainpipe"]);
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{command}: {err}");
        assert!(err.contains("pipeline name `ünï-çødé 🧠` is already used"), "{err}");
        assert!(err.contains("p.yaml"), "names the owner: {err}");
    }
    // The same pipeline text from another path (another clone sharing the cache) is fine.
    let out = brainpipe(dir.path(), &["run", "r.yaml", "--cache", ".brainpipe"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// Whether this test process may make a private read-only bind mount (root with `unshare`).
fn can_mount() -> bool {
    Command::new("unshare")
        .args(["-m", "sh", "-c", "mount -t tmpfs none /mnt"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn a_fully_cached_pipeline_runs_from_a_read_only_cache() {
    if !can_mount() {
        // A capability of the machine, not an oracle: without root (a user's clone) there is no
        // private read-only mount to test against.
        eprintln!("skipped: needs root and unshare for a read-only bind mount");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("p.yaml"), UNICODE).expect("pipeline");
    assert!(brainpipe(dir.path(), &["run", "p.yaml"]).status.success());
    let bin = env!("CARGO_BIN_EXE_brainpipe");
    let root = dir.path().display().to_string();
    let script = format!(
        "mount --bind {root} {root} && mount -o remount,ro,bind {root} && \
         {bin} run p.yaml && {bin} status p.yaml && echo ok && \
         {bin} run p.yaml --force 🎉 2>&1; echo forced-rc=$?"
    );
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .current_dir(dir.path())
        .env_remove("BRAINPIPE_CACHE")
        .env_remove("RUST_LOG")
        .output()
        .expect("unshare");
    let (stdout, err) = (text(&out.stdout), text(&out.stderr));
    assert!(stdout.contains("ok\n"), "cached run and status work read-only: {stdout} {err}");
    assert_eq!(err.matches("read-only cache").count(), 1, "one warning: {err}");
    assert!(stdout.contains("forced-rc=1"), "a stage to compute fails: {stdout}");
    assert!(stdout.contains("must be computed, but cache"), "and says why: {stdout}");
    let forced = brainpipe(dir.path(), &["run", "p.yaml", "--force", "🎉"]);
    assert!(forced.status.success(), "writable again outside the namespace");
}

#[test]
fn the_cli_reports_tampering_and_verify_exits_non_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("p.yaml"), UNICODE).expect("pipeline");
    assert!(brainpipe(dir.path(), &["run", "p.yaml"]).status.success());
    let entries = dir.path().join(".brainpipe/entries");
    let mut brain = None;
    for entry in fs::read_dir(&entries).expect("entries").flatten() {
        let file = entry.path().join("o");
        if fs::read_to_string(&file).is_ok_and(|t| t == "brain\n") {
            brain = Some(file);
        }
    }
    let brain = brain.expect("the 🧠 entry");
    let mut perms = fs::metadata(&brain).expect("meta").permissions();
    #[expect(clippy::permissions_set_readonly_false, reason = "the test tampers on purpose")]
    perms.set_readonly(false);
    fs::set_permissions(&brain, perms).expect("writable");
    fs::write(&brain, "BRAIN\n").expect("tamper");
    let status = brainpipe(dir.path(), &["status", "p.yaml"]);
    assert!(text(&status.stdout).contains("damaged"), "{}", text(&status.stdout));
    let kept = brainpipe(dir.path(), &["verify", "p.yaml", "--keep"]);
    assert_eq!(kept.status.code(), Some(1), "{}", text(&kept.stderr));
    assert!(text(&kept.stdout).contains("1 damaged"), "{}", text(&kept.stdout));
    let rerun = brainpipe(dir.path(), &["run", "p.yaml"]);
    assert!(rerun.status.success(), "{}", text(&rerun.stderr));
    assert!(text(&rerun.stderr).contains("damaged"), "warned: {}", text(&rerun.stderr));
    assert_eq!(fs::read_to_string(&brain).expect("recomputed"), "brain\n");
    let clean = brainpipe(dir.path(), &["verify"]);
    assert!(clean.status.success(), "{}", text(&clean.stdout));
    assert!(text(&clean.stdout).contains("verified 2 entries"), "{}", text(&clean.stdout));
}

/// Whether process `pid` is gone (or a zombie nobody reaped yet).
fn gone(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

/// The PID a test command writes into `pidfile` once it has started (at most 30 s).
fn wait_for_pid(pidfile: &Path) -> u32 {
    let started = std::time::Instant::now();
    loop {
        if let Some(pid) = fs::read_to_string(pidfile).ok().and_then(|t| t.trim().parse().ok()) {
            return pid;
        }
        assert!(started.elapsed().as_secs() < 30, "the command never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_signal_to_the_driver_alone_ends_every_command_it_started() {
    // Issue 15.5: SIGINT or SIGTERM to the driver's PID left `sh -c …` and its children running.
    for (signal, code) in [(libc_signal::SIGINT, 130), (libc_signal::SIGTERM, 143)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let pidfile = dir.path().join("sleeper.pid");
        let pipeline = format!(
            "name: long\nstages:\n  nap:\n    run: \"sleep 300 & echo $! > {}; wait\"\n    outputs: [o]\n",
            pidfile.display()
        );
        fs::write(dir.path().join("p.yaml"), pipeline).expect("pipeline");
        let driver = Command::new(env!("CARGO_BIN_EXE_brainpipe"))
            .current_dir(dir.path())
            .env_remove("BRAINPIPE_CACHE")
            .args(["run", "p.yaml"])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("driver");
        let sleeper = wait_for_pid(&pidfile);
        let killed = Command::new("kill")
            .args([format!("-{signal}"), driver.id().to_string()])
            .status()
            .expect("kill");
        assert!(killed.success());
        let out = driver.wait_with_output().expect("driver exits");
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{err}");
        assert!(err.contains("ended 1 running command(s)"), "{err}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !gone(sleeper) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(
            gone(sleeper),
            "signal {signal}: the command's child {sleeper} outlived the driver"
        );
        let leftovers = fs::read_dir(dir.path().join(".brainpipe/tmp")).expect("tmp").count();
        assert_eq!(leftovers, 0, "temporary directories removed");
    }
}

#[test]
fn a_driver_killed_outright_leaves_no_command_running() {
    // Issue 15.5: SIGKILL of the driver left what a `run:` command had started (the kernel ended
    // its `sh` alone). Here `sh` runs a second `sh`, which runs `sleep`: two levels below.
    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile = dir.path().join("sleeper.pid");
    let pipeline = format!(
        "name: long\nstages:\n  nap:\n    run: \"sh -c 'sleep 300 & echo $! > {}; wait'; true\"\n    outputs: [o]\n",
        pidfile.display()
    );
    fs::write(dir.path().join("p.yaml"), pipeline).expect("pipeline");
    let mut driver = Command::new(env!("CARGO_BIN_EXE_brainpipe"))
        .current_dir(dir.path())
        .env_remove("BRAINPIPE_CACHE")
        .args(["run", "p.yaml"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("driver");
    let sleeper = wait_for_pid(&pidfile);
    driver.kill().expect("SIGKILL");
    driver.wait().expect("reaped");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !gone(sleeper) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(gone(sleeper), "the command's grandchild {sleeper} outlived a SIGKILLed driver");
}

/// Signal numbers on Linux (the test crate does not link libc).
mod libc_signal {
    pub const SIGINT: i32 = 2;
    pub const SIGTERM: i32 = 15;
}

#[test]
fn another_hosts_lock_is_waited_for_then_taken_over_after_its_lease() {
    // Issue 16: locks hold without flock (O_EXCL files with a heartbeat). A lock left by a node
    // that died keeps its key for the lease (here 1 s), then the run takes it over.
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(
        dir.path().join("l.yaml"),
        "name: l\nstages:\n  a: { run: \"echo a > {outputs.o}\", outputs: [o] }\n",
    )
    .expect("pipeline");
    let out = brainpipe(dir.path(), &["run", "l.yaml", "--cache", ".brainpipe"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let entries: Vec<_> = fs::read_dir(dir.path().join(".brainpipe/entries"))
        .expect("entries")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries.len(), 1);
    let lock = dir.path().join(format!(".brainpipe/locks/{}.lock", entries[0]));
    assert!(!lock.exists(), "a finished run leaves no lock");
    fs::write(&lock, "node17.cluster 4242 99 0\n").expect("a dead node's lock");
    let started = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_brainpipe"))
        .env_remove("BRAINPIPE_CACHE")
        .env("BRAINPIPE_LOCK_LEASE_SECONDS", "1")
        .current_dir(dir.path())
        .args(["run", "l.yaml", "--cache", ".brainpipe", "--force", "a"])
        .output()
        .expect("brainpipe starts");
    let waited = started.elapsed();
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("took over a stale lock"), "{stderr}");
    assert!(waited >= std::time::Duration::from_secs(1), "waited for the lease: {waited:?}");
    assert!(!lock.exists(), "released");
}

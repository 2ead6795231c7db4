//! `brainpipe run --executor slurm` against a real Slurm: the throwaway cluster of
//! `slurm/start.sh` (`eval "$(bash slurm/start.sh)"` before `cargo test`; `.ci/run` does it).
//! Without a reachable Slurm each test says so in one line and passes, unless `CI=1`, where a
//! missing Slurm is a failure.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One test at a time: the single test node has few CPUs, and a test that holds them with
/// sleeping jobs would leave another's jobs pending.
static CLUSTER: Mutex<()> = Mutex::new(());

/// Whether Slurm answers; under `CI=1` it must.
fn slurm_available(test: &str) -> bool {
    let answers = Command::new("sinfo")
        .args(["--noheader", "--format=%t"])
        .output()
        .is_ok_and(|o| o.status.success() && !o.stdout.is_empty());
    if !answers {
        let hint = "start one with `eval \"$(bash slurm/start.sh)\"`";
        assert!(std::env::var("CI").as_deref() != Ok("1"), "CI=1 and no Slurm answers: {hint}");
        eprintln!("{test}: skipped, no Slurm answers ({hint})");
    }
    answers
}

fn brainpipe(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_brainpipe"));
    cmd.current_dir(dir).env_remove("BRAINPIPE_CACHE").env_remove("RUST_LOG");
    cmd
}

fn run(dir: &Path, args: &[&str]) -> Output {
    brainpipe(dir).args(args).output().expect("brainpipe starts")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A pipeline name no other test run shares, so its jobs can be found by name.
fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{name}-{}-{nanos}", std::process::id())
}

/// `(job id, state)` of every job Slurm lists (any state) for stage `stage` of `pipeline`.
fn jobs(pipeline: &str, stage: &str) -> Vec<(String, String)> {
    let out = Command::new("squeue")
        .args(["--noheader", "--states=all", "--format=%i|%T"])
        .arg(format!("--name=brainpipe:{pipeline}:{stage}"))
        .output()
        .expect("squeue runs");
    text(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().split_once('|').map(|(i, s)| (i.to_owned(), s.to_owned())))
        .collect()
}

/// Waits up to `seconds` for `condition`.
fn wait_for(seconds: u64, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out after {seconds} s waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_exit(child: &mut Child, seconds: u64) -> Output {
    wait_for(seconds, "the driver to exit", || child.try_wait().expect("try_wait").is_some());
    child_output(child)
}

fn child_output(child: &mut Child) -> Output {
    use std::io::Read;
    let status = child.wait().expect("wait");
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    if let Some(mut out) = child.stdout.take() {
        out.read_to_end(&mut stdout).expect("stdout");
    }
    if let Some(mut err) = child.stderr.take() {
        err.read_to_end(&mut stderr).expect("stderr");
    }
    Output { status, stdout, stderr }
}

/// An entry's output files (logs and manifest aside) with their bytes, by path in the entry.
type Files = Vec<(PathBuf, Vec<u8>)>;

/// Every committed entry of a cache: its key and files.
fn entries(cache: &Path) -> Vec<(String, Files)> {
    let mut found = Vec::new();
    for entry in fs::read_dir(cache.join("entries")).into_iter().flatten().flatten() {
        let mut files = Files::new();
        let mut folders = vec![entry.path()];
        while let Some(folder) = folders.pop() {
            for file in fs::read_dir(&folder).expect("entry folder").flatten() {
                let path = file.path();
                let name = file.file_name().to_string_lossy().into_owned();
                if path.is_dir() {
                    folders.push(path);
                } else if name != "manifest.json" && !name.ends_with(".log") {
                    let relative = path.strip_prefix(entry.path()).expect("inside").to_path_buf();
                    files.push((relative, fs::read(&path).expect("output")));
                }
            }
        }
        files.sort();
        found.push((entry.file_name().to_string_lossy().into_owned(), files));
    }
    found.sort();
    found
}

fn manifest(cache: &Path, pipeline: &str, stage: &str) -> serde_json::Value {
    let path = cache.join("runs").join(pipeline).join(stage).join("manifest.json");
    serde_json::from_slice(&fs::read(&path).expect("manifest")).expect("manifest JSON")
}

/// What a test holds: the cluster to itself, a fresh folder and the unique name of its pipeline.
struct Setup {
    _cluster: MutexGuard<'static, ()>,
    dir: tempfile::TempDir,
    name: String,
}

/// The cluster to oneself and a folder with `p.yaml`, pipeline `<prefix>-<unique>` of `stages`
/// on Slurm; `None` (the test skips) when no Slurm answers.
fn setup(test: &str, prefix: &str, stages: &str) -> Option<Setup> {
    let cluster = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    if !slurm_available(test) {
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let name = unique(prefix);
    write_pipeline(dir.path(), &name, stages);
    Some(Setup { _cluster: cluster, dir, name })
}

/// `brainpipe ARGS` started in `dir`, its output captured.
fn spawn(dir: &Path, args: &[&str]) -> Child {
    brainpipe(dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("brainpipe starts")
}

fn write_pipeline(dir: &Path, name: &str, stages: &str) -> PathBuf {
    let file = dir.join("p.yaml");
    let text = format!(
        "name: {name}\nexecutor: {{ kind: slurm, poll_seconds: 0.2, sbatch_args: [--comment=brainpipe-tests] }}\nstages:\n{stages}"
    );
    fs::write(&file, text).expect("write pipeline");
    file
}

const DIAMOND: &str = r#"  a:
    run: "printf '%s\n' {params.word} > {outputs.o}; seq 1 1000 > {outputs.numbers}"
    with: { word: "it's" }
    outputs: [o, numbers]
  b:
    run: "cat {inputs.i} {inputs.i} > {outputs.o}"
    inputs: { i: a.o }
    outputs: [o]
    resources: { cpus: 1, mem: 100, time: 5 }
  c:
    run: "sort -r {inputs.n} > {outputs.o}"
    inputs: { n: a.numbers }
    outputs: [o]
  d:
    run: "cat {inputs.x} {inputs.y} | sha256sum > {outputs.o}"
    inputs: { x: b.o, y: c.o }
    outputs: [o]
"#;

#[test]
fn a_pipeline_on_slurm_gives_the_bytes_of_a_local_run() {
    let Some(Setup { _cluster, dir, name }) =
        setup("a_pipeline_on_slurm_gives_the_bytes_of_a_local_run", "diamond", DIAMOND)
    else {
        return;
    };
    let local = run(dir.path(), &["run", "p.yaml", "--executor", "local", "--cache", "local"]);
    assert!(local.status.success(), "{}", text(&local.stderr));
    assert!(jobs(&name, "a").is_empty(), "--executor local overrides the pipeline's block");
    // The pipeline's block names slurm.
    let slurm = run(dir.path(), &["run", "p.yaml", "--cache", "slurm"]);
    assert!(slurm.status.success(), "{}", text(&slurm.stderr));
    let (local_cache, slurm_cache) = (dir.path().join("local"), dir.path().join("slurm"));
    assert_eq!(entries(&slurm_cache), entries(&local_cache), "same keys, same bytes");
    assert_eq!(entries(&slurm_cache).len(), 4);
    // The driver checks each entry with the hashes its job recorded: it reads no output again.
    let stderr = text(&slurm.stderr);
    let done: Vec<&str> = stderr.lines().filter(|l| l.contains("rehashed=")).collect();
    assert_eq!(done.len(), 4, "a `done` line per job: {stderr}");
    assert!(done.iter().all(|l| l.contains("rehashed=0")), "{stderr}");
    for stage in ["a", "b", "c", "d"] {
        let submitted = jobs(&name, stage);
        assert_eq!(submitted.len(), 1, "one job for {stage}: {submitted:?}");
        let (id, state) = &submitted[0];
        assert_eq!(state, "COMPLETED");
        let shown = Command::new("scontrol").args(["show", "job", "--oneliner", id]).output();
        let shown = text(&shown.expect("scontrol").stdout);
        assert!(shown.contains("Comment=brainpipe-tests"), "sbatch_args: {shown}");
        if stage == "b" {
            for asked in ["TimeLimit=00:05:00", "MinMemoryNode=100M", "CPUs/Task=1"] {
                assert!(shown.contains(asked), "{asked} in {shown}");
            }
        }
        let recorded = manifest(&slurm_cache, &name, stage);
        assert_eq!(recorded["notes"]["slurm_job_id"], id.as_str(), "{recorded}");
        let log = slurm_cache.join("slurm").join(&name).join(format!("{stage}-{id}.log"));
        assert!(log.is_file(), "the job's log is in the cache: {}", log.display());
        assert!(manifest(&local_cache, &name, stage)["notes"].get("slurm_job_id").is_none());
    }
    let again = run(dir.path(), &["run", "p.yaml", "--cache", "slurm"]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(text(&again.stdout).matches(" cached ").count(), 4, "{}", text(&again.stdout));
    assert_eq!(jobs(&name, "a").len(), 1, "a cached stage submits nothing");
}

#[test]
fn a_failing_stage_fails_the_run_with_its_exit_code_and_log_tail() {
    let Some(Setup { _cluster, dir, name }) = setup(
        "a_failing_stage_fails_the_run_with_its_exit_code_and_log_tail",
        "failing",
        r#"  ok: { run: "echo ok > {outputs.o}", outputs: [o] }
  bad:
    run: "echo partial > {outputs.o}; echo boom >&2; exit 3"
    inputs: { i: ok.o }
    outputs: [o]
  after: { run: "cat {inputs.i} > {outputs.o}", inputs: { i: bad.o }, outputs: [o] }
"#,
    ) else {
        return;
    };
    let out = run(dir.path(), &["run", "p.yaml"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let (id, state) = jobs(&name, "bad").pop().expect("bad was submitted");
    assert_eq!(state, "FAILED");
    for expected in [
        "stage `bad` (run) failed".to_owned(),
        // The job exits with the command's own status (3), not brainpipe's 1.
        format!("Slurm job {id} FAILED (NonZeroExitCode), exit code 3"),
        format!("bad-{id}.log"),
        "command exited with exit status: 3: boom".to_owned(),
    ] {
        assert!(stderr.contains(&expected), "missing `{expected}` in: {stderr}");
    }
    assert!(jobs(&name, "after").is_empty(), "nothing downstream of a failure is submitted");
    let cache = dir.path().join(".brainpipe");
    assert_eq!(entries(&cache).len(), 1, "only `ok` committed");
    assert_eq!(fs::read_dir(cache.join("tmp")).expect("tmp").count(), 0, "no leftover");
}

#[test]
fn ctrl_c_cancels_every_job_the_run_submitted() {
    let Some(Setup { _cluster, dir, name }) = setup(
        "ctrl_c_cancels_every_job_the_run_submitted",
        "interrupted",
        r#"  one: { run: "echo 1 > {outputs.o}; sleep 120", outputs: [o], resources: { cpus: 1 } }
  two: { run: "echo 2 > {outputs.o}; sleep 120", outputs: [o], resources: { cpus: 1 } }
  three: { run: "cat {inputs.a} {inputs.b} > {outputs.o}", inputs: { a: one.o, b: two.o }, outputs: [o] }
"#,
    ) else {
        return;
    };
    // A job of ours that the run did not submit, which the run must leave alone.
    let bystander = Command::new("sbatch")
        .args(["--parsable", "--job-name=brainpipe-test-bystander", "--output=/dev/null"])
        .args(["--wrap", "sleep 120"])
        .output()
        .expect("sbatch");
    assert!(bystander.status.success(), "{}", text(&bystander.stderr));
    let bystander = text(&bystander.stdout).trim().to_owned();
    let mut driver = spawn(dir.path(), &["run", "p.yaml"]);
    wait_for(60, "both jobs to be submitted", || {
        jobs(&name, "one").len() == 1 && jobs(&name, "two").len() == 1
    });
    let pid = i32::try_from(driver.id()).expect("pid");
    // SAFETY: kill(2) with plain integers; the child is alive until we wait for it.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let out = wait_exit(&mut driver, 60);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("cancelled 2 Slurm job(s)"), "{stderr}");
    for stage in ["one", "two"] {
        let submitted = jobs(&name, stage);
        assert_eq!(submitted.len(), 1);
        assert_eq!(submitted[0].1, "CANCELLED", "{stage}: {submitted:?}");
    }
    assert!(jobs(&name, "three").is_empty());
    let state = Command::new("squeue")
        .args(["--noheader", "--format=%T", "--jobs", &bystander])
        .output()
        .expect("squeue");
    let state = text(&state.stdout).trim().to_owned();
    let _ = Command::new("scancel").arg(&bystander).status();
    assert!(state == "RUNNING" || state == "PENDING", "the bystander was touched: {state}");
    let cache = dir.path().join(".brainpipe");
    assert!(entries(&cache).is_empty());
    wait_for(30, "the cancelled jobs to remove their temporary directories", || {
        fs::read_dir(cache.join("tmp")).expect("tmp").count() == 0
    });
}

#[test]
fn a_job_killed_mid_write_leaves_no_complete_looking_entry() {
    // `gate` is not in the key: the same stage is killed twice, then allowed to finish.
    let Some(Setup { _cluster, dir, name }) = setup(
        "a_job_killed_mid_write_leaves_no_complete_looking_entry",
        "killed",
        r#"  write:
    run: "echo partial > {outputs.o}; while [ ! -e gate ]; do sleep 0.1; done; echo rest >> {outputs.o}"
    outputs: [o]
"#,
    ) else {
        return;
    };
    let cache = dir.path().join(".brainpipe");
    let partial_written = || {
        fs::read_dir(cache.join("tmp"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|t| fs::read_to_string(t.path().join("o")).is_ok_and(|s| s == "partial\n"))
    };
    for (attempt, signal) in [(1, None), (2, Some("KILL"))] {
        let mut driver = spawn(dir.path(), &["run", "p.yaml"]);
        wait_for(60, "the job to write its partial output", || {
            partial_written() && jobs(&name, "write").len() == attempt
        });
        let (id, _) = jobs(&name, "write").into_iter().max().expect("a job");
        let mut scancel = Command::new("scancel");
        if let Some(signal) = signal {
            scancel.arg(format!("--signal={signal}"));
        }
        assert!(scancel.arg(&id).status().expect("scancel").success());
        let out = wait_exit(&mut driver, 60);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(&format!("Slurm job {id} ")), "{stderr}");
        assert!(entries(&cache).is_empty(), "attempt {attempt}: no entry from a killed job");
        let plan = run(dir.path(), &["plan", "p.yaml"]);
        assert!(text(&plan.stdout).contains("1 to run"), "{}", text(&plan.stdout));
    }
    fs::write(dir.path().join("gate"), "").expect("gate");
    let out = run(dir.path(), &["run", "p.yaml"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let found = entries(&cache);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].1, [(PathBuf::from("o"), b"partial\nrest\n".to_vec())]);
}

/// The data stages of the words study at test size (two subjects, 6 mm), up to the targets.
macro_rules! words_data {
    () => {
        r#"  study: { uses: ingest.synthetic, with: { subjects: 2, seed: 3, resolution_mm: 6 } }
  scans:
    uses: ingest.nifti
    inputs: { bold: study.bold, mask: study.mask }
    with: { stimulus_column: trial_type, paradigm_column: paradigm }
  features: { uses: features.roi, inputs: { scans: scans.scans, atlas: study.atlas } }
  padded: { uses: features.template_pad, inputs: { features: features.features } }
  targets: { uses: clip.words, inputs: { vectors: study.stimuli, stimuli: study.stimuli } }
"#
    };
}

/// The words demo at test size (tests/cli.rs `same_pipeline_in_two_caches_writes_the_same_bytes`):
/// built-in stages and LibTorch worker stages alike.
const WORDS: &str = concat!(
    words_data!(),
    r#"  base:
    uses: models.train
    inputs: { features: padded.features, targets: targets.targets }
    with: { hidden: [32, 16], epochs: 2, threads: 1, cv: within_subject, folds: 2 }
    resources: { cpus: 1 }
  ridge:
    uses: models.ridge
    inputs: { features: padded.features, targets: targets.targets }
    with: { max_inner_folds: 1, cv: within_subject, folds: 2 }
  metrics:
    uses: eval.words
    inputs: { predictions: [ridge.predictions, base.predictions], training: [base.training], targets: targets.targets }
  report: { uses: eval.report, inputs: { metrics: metrics.metrics, study: study.study } }
"#
);

#[test]
fn the_words_demo_on_slurm_gives_the_bytes_of_a_local_run() {
    let Some(Setup { _cluster, dir, name }) =
        setup("the_words_demo_on_slurm_gives_the_bytes_of_a_local_run", "words", WORDS)
    else {
        return;
    };
    for (cache, executor) in [("local", "local"), ("slurm", "slurm")] {
        let out = run(dir.path(), &["run", "p.yaml", "--cache", cache, "--executor", executor]);
        assert!(out.status.success(), "{executor}: {}", text(&out.stderr));
    }
    let local = entries(&dir.path().join("local"));
    assert_eq!(local.len(), 9, "every stage");
    assert!(entries(&dir.path().join("slurm")) == local, "same keys, same bytes");
    assert_eq!(jobs(&name, "report").len(), 1);
}

#[test]
fn doctor_reports_slurm_and_its_partitions() {
    let _cluster = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    let reachable = run(dir.path(), &["doctor"]);
    let missing_conf = brainpipe(dir.path())
        .arg("doctor")
        .env("SLURM_CONF", dir.path().join("no-such.conf"))
        .output()
        .expect("brainpipe starts");
    let stdout = text(&missing_conf.stdout);
    assert!(stdout.contains("slurm          not reachable: `sinfo`"), "{stdout}");
    if !slurm_available("doctor_reports_slurm_and_its_partitions") {
        return;
    }
    let stdout = text(&reachable.stdout);
    let partition =
        Command::new("sinfo").args(["--noheader", "--format=%P"]).output().expect("sinfo");
    let partition = text(&partition.stdout).lines().next().unwrap_or_default().replace('*', "");
    assert!(stdout.contains("slurm          slurm"), "{stdout}");
    assert!(stdout.contains(&format!("  {partition} ")), "{partition} in: {stdout}");
}

/// Waits until Slurm lists one job for each of `stages` of `pipeline`, all ended.
fn wait_until_ended(pipeline: &str, stages: &[&str]) {
    wait_for(120, "the detached jobs to end", || {
        stages.iter().all(|stage| {
            let listed = jobs(pipeline, stage);
            listed.len() == 1
                && !["PENDING", "RUNNING", "CONFIGURING", "COMPLETING"].contains(&&*listed[0].1)
        })
    });
}

#[test]
fn detach_submits_the_whole_dag_and_a_later_run_resumes_from_it() {
    let Some(Setup { _cluster, dir, name }) =
        setup("detach_submits_the_whole_dag_and_a_later_run_resumes_from_it", "detached", DIAMOND)
    else {
        return;
    };
    let local = run(dir.path(), &["run", "p.yaml", "--executor", "local", "--cache", "local"]);
    assert!(local.status.success(), "{}", text(&local.stderr));
    let started = Instant::now();
    let out = run(dir.path(), &["run", "p.yaml", "--detach"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(started.elapsed() < Duration::from_secs(10), "returns without waiting");
    assert_eq!(text(&out.stdout).matches("  submitted  job ").count(), 4, "{}", text(&out.stdout));
    let status = run(dir.path(), &["status", "p.yaml"]);
    assert!(text(&status.stdout).contains("slurm jobs of the detached run"));
    wait_until_ended(&name, &["a", "b", "c", "d"]);
    let status = text(&run(dir.path(), &["status", "p.yaml"]).stdout);
    assert_eq!(status.matches(" cached ").count(), 4, "{status}");
    assert_eq!(status.matches(" COMPLETED").count(), 4, "{status}");
    let again = run(dir.path(), &["run", "p.yaml"]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(text(&again.stdout).matches(" cached ").count(), 4, "{}", text(&again.stdout));
    assert_eq!(jobs(&name, "d").len(), 1, "the resuming run submits nothing");
    let (local, detached) =
        (entries(&dir.path().join("local")), entries(&dir.path().join(".brainpipe")));
    assert!(local == detached, "same keys, same bytes");
}

#[test]
fn a_detached_failure_cancels_its_dependents_and_the_next_run_recomputes_them() {
    let _cluster = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    if !slurm_available(
        "a_detached_failure_cancels_its_dependents_and_the_next_run_recomputes_them",
    ) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let name = unique("detached-failure");
    // `fixed` is not in the key: the same stage fails, then succeeds.
    write_pipeline(
        dir.path(),
        &name,
        r#"  ok: { run: "echo ok > {outputs.o}", outputs: [o] }
  bad: { run: "test -e fixed || exit 3; cat {inputs.i} > {outputs.o}", inputs: { i: ok.o }, outputs: [o] }
  after: { run: "cat {inputs.i} > {outputs.o}", inputs: { i: bad.o }, outputs: [o] }
"#,
    );
    let out = run(dir.path(), &["run", "p.yaml", "--detach"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    wait_until_ended(&name, &["ok", "bad", "after"]);
    let status = text(&run(dir.path(), &["status", "p.yaml"]).stdout);
    assert!(status.contains("FAILED  (NonZeroExitCode)"), "{status}");
    assert!(status.contains("CANCELLED  (DependencyNeverSatisfied)"), "{status}");
    fs::write(dir.path().join("fixed"), "").expect("fixed");
    let out = run(dir.path(), &["run", "p.yaml"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("ok     run  cached"), "{stdout}");
    assert_eq!(stdout.matches(" ran ").count(), 2, "{stdout}");
}

#[test]
fn two_drivers_on_one_cache_compute_each_stage_once() {
    // The first stage is slow enough for both drivers to submit it.
    let stages = DIAMOND
        .replace("seq 1 1000 > {outputs.numbers}", "seq 1 1000 > {outputs.numbers}; sleep 2");
    let test = "two_drivers_on_one_cache_compute_each_stage_once";
    let Some(Setup { _cluster, dir, name }) = setup(test, "two-drivers", &stages) else {
        return;
    };
    let (mut first, mut second) =
        (spawn(dir.path(), &["run", "p.yaml"]), spawn(dir.path(), &["run", "p.yaml"]));
    let (first, second) = (wait_exit(&mut first, 120), wait_exit(&mut second, 120));
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert!(second.status.success(), "{}", text(&second.stderr));
    assert_eq!(jobs(&name, "a").len(), 2, "both drivers submitted the first stage");
    let cache = dir.path().join(".brainpipe");
    assert_eq!(entries(&cache).len(), 4);
    let logs: String = fs::read_dir(cache.join("slurm").join(&name))
        .expect("logs")
        .flatten()
        .filter(|f| f.file_name().to_string_lossy().ends_with(".log"))
        .map(|f| fs::read_to_string(f.path()).expect("log"))
        .collect();
    assert_eq!(logs.matches(" running ").count(), 4, "each stage computed once: {logs}");
    assert!(logs.contains("computed by another run"), "{logs}");
}

#[test]
fn a_run_after_detach_waits_for_the_detached_jobs_instead_of_submitting_its_own() {
    let stages = DIAMOND
        .replace("seq 1 1000 > {outputs.numbers}", "seq 1 1000 > {outputs.numbers}; sleep 3");
    let test = "a_run_after_detach_waits_for_the_detached_jobs_instead_of_submitting_its_own";
    let Some(Setup { _cluster, dir, name }) = setup(test, "adopted", &stages) else {
        return;
    };
    let out = run(dir.path(), &["run", "p.yaml", "--detach"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run(dir.path(), &["run", "p.yaml"]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("waiting for detached job"), "{stderr}");
    assert!(!stderr.contains(" submitted "), "{stderr}");
    for stage in ["a", "b", "c", "d"] {
        assert_eq!(jobs(&name, stage).len(), 1, "{stage}: the detached job only");
    }
    assert_eq!(entries(&dir.path().join(".brainpipe")).len(), 4);
}

#[test]
fn a_refused_submission_fails_the_run_with_sbatch_s_reason() {
    let stages = "  a: { run: \"echo a > {outputs.o}\", outputs: [o] }\n";
    let test = "a_refused_submission_fails_the_run_with_sbatch_s_reason";
    let Some(Setup { _cluster, dir, name }) = setup(test, "refused", stages) else {
        return;
    };
    let written = fs::read_to_string(dir.path().join("p.yaml")).expect("pipeline");
    let refused = written.replace("kind: slurm,", "kind: slurm, partition: no-such-partition,");
    fs::write(dir.path().join("p.yaml"), refused).expect("write");
    let out = run(dir.path(), &["run", "p.yaml"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("stage `a` (run) failed: sbatch failed: "), "{stderr}");
    assert!(stderr.contains("invalid partition"), "{stderr}");
    assert!(jobs(&name, "a").is_empty());
}

#[test]
fn without_slurm_commands_the_run_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_pipeline(
        dir.path(),
        "no-slurm",
        "  a: { run: \"echo a > {outputs.o}\", outputs: [o] }\n",
    );
    let out = brainpipe(dir.path())
        .args(["run", "p.yaml"])
        .env("PATH", dir.path().join("empty"))
        .output()
        .expect("brainpipe starts");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot run `sbatch`"), "{stderr}");
    assert!(stderr.contains("is Slurm installed and on PATH?"), "{stderr}");
}

/// The words study up to `models.train` (four folds: two subjects, two folds each), its folds
/// sharded on Slurm (`shards: true`); `{epochs}` and `{patience}` size the training.
const SHARDED: &str = concat!(
    words_data!(),
    r#"  base:
    uses: models.train
    inputs: { features: padded.features, targets: targets.targets }
    with: { hidden: [32, 16], epochs: {epochs}, patience: {patience}, threads: 1, cv: within_subject, folds: 2 }
    resources: { cpus: 1 }
"#
);

/// `SHARDED` training for `epochs` epochs, with `shards: true` in the executor block.
fn sharded_setup(test: &str, prefix: &str, epochs: u32) -> Option<Setup> {
    let stages =
        SHARDED.replace("{epochs}", &epochs.to_string()).replace("{patience}", &epochs.to_string());
    let setup = setup(test, prefix, &stages)?;
    let file = setup.dir.path().join("p.yaml");
    let written = fs::read_to_string(&file).expect("pipeline");
    fs::write(&file, written.replace("kind: slurm,", "kind: slurm, shards: true,")).expect("write");
    Some(setup)
}

/// Waits until the first array task of `base` runs; returns the array's job id.
fn first_fold_running(pipeline: &str) -> String {
    wait_for(300, "the first fold to run", || {
        array_tasks(pipeline, "base")
            .iter()
            .any(|(id, state)| id.ends_with("_0") && state == "RUNNING")
    });
    array_tasks(pipeline, "base")[0].0.split('_').next().expect("array id").to_owned()
}

/// After a sharded run was stopped: its merge job cancelled, every stage but `base` in `cache`,
/// no shard left.
fn assert_merge_cancelled_and_no_shards(pipeline: &str, cache: &Path) {
    let merges = jobs(pipeline, "base:merge");
    assert_eq!(merges.len(), 1, "{merges:?}");
    assert_eq!(merges[0].1, "CANCELLED", "{merges:?}");
    assert_eq!(entries(cache).len(), 5, "every stage but the sharded one");
    let shards = cache.join("shards");
    assert_eq!(fs::read_dir(&shards).map(|d| d.count()).unwrap_or(0), 0, "shards removed");
}

/// Array tasks of `stage` (`<array>_<task>`, state), by task.
fn array_tasks(pipeline: &str, stage: &str) -> Vec<(String, String)> {
    let mut tasks: Vec<_> =
        jobs(pipeline, stage).into_iter().filter(|(id, _)| id.contains('_')).collect();
    tasks.sort();
    tasks
}

#[test]
fn job_arrays_for_subjects_and_folds_merge_into_the_bytes_of_the_unsharded_stages() {
    let test = "job_arrays_for_subjects_and_folds_merge_into_the_bytes_of_the_unsharded_stages";
    let Some(Setup { _cluster, dir, name }) = sharded_setup(test, "shards", 2) else {
        return;
    };
    let local = run(dir.path(), &["run", "p.yaml", "--executor", "local", "--cache", "local"]);
    assert!(local.status.success(), "{}", text(&local.stderr));
    let slurm = run(dir.path(), &["run", "p.yaml", "--cache", "slurm"]);
    assert!(slurm.status.success(), "{}", text(&slurm.stderr));
    let stderr = text(&slurm.stderr);
    let done: Vec<&str> = stderr.lines().filter(|l| l.contains("rehashed=")).collect();
    assert_eq!(done.len(), 6, "a `done` line per stage: {stderr}");
    assert!(done.iter().all(|l| l.contains("rehashed=0")), "merged entries read back: {stderr}");
    let (local_cache, slurm_cache) = (dir.path().join("local"), dir.path().join("slurm"));
    let local_entries = entries(&local_cache);
    assert_eq!(local_entries.len(), 6, "every stage");
    assert!(entries(&slurm_cache) == local_entries, "same keys, same bytes");
    let tasks = array_tasks(&name, "base");
    assert_eq!(tasks.len(), 4, "one array task per fold: {tasks:?}");
    let array = tasks[0].0.split('_').next().expect("array id").to_owned();
    for (k, (id, state)) in tasks.iter().enumerate() {
        assert_eq!(id, &format!("{array}_{k}"));
        assert_eq!(state, "COMPLETED");
        let log = slurm_cache.join("slurm").join(&name).join(format!("base-{id}.log"));
        assert!(log.is_file(), "the task's log: {}", log.display());
    }
    let merges = jobs(&name, "base:merge");
    assert_eq!(merges.len(), 1, "{merges:?}");
    assert_eq!(merges[0].1, "COMPLETED");
    let recorded = manifest(&slurm_cache, &name, "base");
    assert_eq!(recorded["notes"]["slurm_array_job_id"], array.as_str(), "{recorded}");
    assert_eq!(recorded["notes"]["slurm_job_id"], merges[0].0.as_str(), "{recorded}");
    assert_eq!(recorded["notes"]["shards"], 4);
    let unsharded = manifest(&local_cache, &name, "base");
    for note in ["folds", "epochs", "scans", "skipped_scans", "selected_columns", "device"] {
        assert_eq!(recorded["notes"][note], unsharded["notes"][note], "{note}");
    }
    let shards = slurm_cache.join("shards");
    assert_eq!(fs::read_dir(&shards).map(|d| d.count()).unwrap_or(0), 0, "shards removed");
    assert_eq!(fs::read_dir(slurm_cache.join("tmp")).expect("tmp").count(), 0, "no leftover");
    // The ingest stages shard one per subject (two), into the notes of the unsharded stage.
    for (stage, notes) in [
        ("study", &["oracle_top1", "oracle_top5", "oracle_pairwise", "brain_voxels"][..]),
        ("scans", &["subjects"][..]),
    ] {
        let tasks = array_tasks(&name, stage);
        assert_eq!(tasks.len(), 2, "{stage}: one task per subject: {tasks:?}");
        assert!(tasks.iter().all(|(_, state)| state == "COMPLETED"), "{stage}: {tasks:?}");
        let merges = jobs(&name, &format!("{stage}:merge"));
        assert_eq!(merges.len(), 1, "{stage}: {merges:?}");
        let recorded = manifest(&slurm_cache, &name, stage);
        assert_eq!(recorded["notes"]["shards"], 2, "{stage}: {recorded}");
        let unsharded = manifest(&local_cache, &name, stage);
        for note in notes {
            assert_eq!(recorded["notes"][note], unsharded["notes"][note], "{stage}: {note}");
        }
    }
    // Stages that do not shard are one job each.
    assert_eq!(jobs(&name, "features").len(), 1);
    let again = run(dir.path(), &["run", "p.yaml", "--cache", "slurm"]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(text(&again.stdout).matches(" cached ").count(), 6, "{}", text(&again.stdout));
    assert_eq!(array_tasks(&name, "base").len(), 4, "a cached stage submits nothing");
}

#[test]
fn a_failed_shard_fails_the_run_cancels_the_merge_and_leaves_no_entry() {
    let test = "a_failed_shard_fails_the_run_cancels_the_merge_and_leaves_no_entry";
    // Long enough that the last folds still wait for the node's CPUs when one is cancelled.
    let Some(Setup { _cluster, dir, name }) = sharded_setup(test, "shardfail", 400) else {
        return;
    };
    let mut driver = spawn(dir.path(), &["run", "p.yaml"]);
    let array = first_fold_running(&name);
    let victim = format!("{array}_0");
    let cancelled = Command::new("scancel").arg(&victim).status().expect("scancel");
    assert!(cancelled.success());
    let out = wait_exit(&mut driver, 120);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for expected in
        ["stage `base` (models.train) failed", &format!("Slurm job {victim} (a shard) CANCELLED")]
    {
        assert!(stderr.contains(expected), "missing `{expected}` in: {stderr}");
    }
    for (id, state) in array_tasks(&name, "base") {
        assert!(!["PENDING", "RUNNING"].contains(&state.as_str()), "{id} still {state}");
    }
    let cache = dir.path().join(".brainpipe");
    assert_merge_cancelled_and_no_shards(&name, &cache);
}

#[test]
fn ctrl_c_cancels_the_job_array_and_its_merge_and_removes_the_shards() {
    let test = "ctrl_c_cancels_the_job_array_and_its_merge_and_removes_the_shards";
    let Some(Setup { _cluster, dir, name }) = sharded_setup(test, "shardint", 400) else {
        return;
    };
    let mut driver = spawn(dir.path(), &["run", "p.yaml"]);
    first_fold_running(&name);
    let pid = i32::try_from(driver.id()).expect("pid");
    // SAFETY: kill(2) with plain integers; the child is alive until we wait for it.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let out = wait_exit(&mut driver, 60);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    let tasks = array_tasks(&name, "base");
    assert!(!tasks.is_empty());
    for (id, state) in &tasks {
        assert_eq!(state, "CANCELLED", "{id}: {tasks:?}");
    }
    let cache = dir.path().join(".brainpipe");
    assert_merge_cancelled_and_no_shards(&name, &cache);
    wait_for(30, "the cancelled tasks to remove their temporary directories", || {
        fs::read_dir(cache.join("tmp")).expect("tmp").count() == 0
    });
}

#[test]
fn a_detached_run_shards_the_stages_whose_shard_count_it_knows() {
    let test = "a_detached_run_shards_the_stages_whose_shard_count_it_knows";
    let Some(Setup { _cluster, dir, name }) = sharded_setup(test, "detshard", 2) else {
        return;
    };
    let local = run(dir.path(), &["run", "p.yaml", "--executor", "local", "--cache", "local"]);
    assert!(local.status.success(), "{}", text(&local.stderr));
    let out = run(dir.path(), &["run", "p.yaml", "--detach"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(stdout.matches("  submitted  job ").count(), 6, "{stdout}");
    // The study's subjects come from its params: an array although nothing has run yet. The
    // other shardable stages count their shards from upstream outputs: one job each.
    assert_eq!(stdout.matches("(merge of array ").count(), 1, "{stdout}");
    assert!(
        stdout.lines().any(|l| l.starts_with("study ") && l.ends_with(": 2 shards)")),
        "{stdout}"
    );
    let stderr = text(&out.stderr);
    for stage in ["scans", "base"] {
        assert!(
            stderr.lines().any(|l| l.contains(&format!("stage={stage}"))
                && l.contains("one job, not shards: its shard count depends on upstream outputs")),
            "{stage}: {stderr}"
        );
    }
    let status = text(&run(dir.path(), &["status", "p.yaml"]).stdout);
    assert!(status.contains(" of 2 shards: "), "{status}");
    let stages = ["study:merge", "scans", "features", "padded", "targets", "base"];
    wait_until_ended(&name, &stages);
    let status = text(&run(dir.path(), &["status", "p.yaml"]).stdout);
    assert_eq!(status.matches(" COMPLETED").count(), 7, "six jobs and the array's tasks: {status}");
    assert!(status.contains("2 COMPLETED"), "{status}");
    let tasks = array_tasks(&name, "study");
    assert_eq!(tasks.len(), 2, "{tasks:?}");
    assert!(array_tasks(&name, "scans").is_empty(), "scans is one job");
    let again = run(dir.path(), &["run", "p.yaml"]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(text(&again.stdout).matches(" cached ").count(), 6, "{}", text(&again.stdout));
    let (local, detached) =
        (entries(&dir.path().join("local")), entries(&dir.path().join(".brainpipe")));
    assert!(local == detached, "same keys, same bytes");
    let cache = dir.path().join(".brainpipe");
    assert_eq!(manifest(&cache, &name, "study")["notes"]["shards"], 2);
    // With its inputs in the cache, a stage's shards are counted when it is submitted: the
    // folds of models.train become an array although the run is detached.
    let out = run(dir.path(), &["run", "p.yaml", "--detach", "--force", "base"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        stdout.lines().any(|l| l.starts_with("base ") && l.ends_with(": 4 shards)")),
        "{stdout}"
    );
    assert_eq!(stdout.matches("  submitted  job ").count(), 1, "{stdout}");
    wait_until_ended(&name, &["base:merge"]);
    assert_eq!(array_tasks(&name, "base").len(), 4);
    assert_eq!(jobs(&name, "base:merge")[0].1, "COMPLETED");
    let again = run(dir.path(), &["run", "p.yaml"]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(text(&again.stdout).matches(" cached ").count(), 6, "{}", text(&again.stdout));
    assert!(entries(&cache) == local, "same keys, same bytes");
    assert_eq!(manifest(&cache, &name, "base")["notes"]["shards"], 4);
    assert_eq!(fs::read_dir(cache.join("shards")).map(|d| d.count()).unwrap_or(0), 0, "merged");
}

#[test]
fn a_run_waiting_for_a_detached_array_names_its_failed_task_and_cancels_the_rest() {
    let test = "a_run_waiting_for_a_detached_array_names_its_failed_task_and_cancels_the_rest";
    let Some(Setup { _cluster, dir, name }) = sharded_setup(test, "detfail", 2) else {
        return;
    };
    // Every detached job held, so the test decides what runs.
    let file = dir.path().join("p.yaml");
    let written = fs::read_to_string(&file).expect("pipeline");
    let held = written.replace("--comment=brainpipe-tests]", "--comment=brainpipe-tests, --hold]");
    fs::write(&file, &held).expect("write");
    let out = run(dir.path(), &["run", "p.yaml", "--detach"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    fs::write(&file, &written).expect("not held from here on");
    let array = array_tasks(&name, "study")[0].0.split('_').next().expect("array id").to_owned();
    // A later run waits for the detached jobs (its log in a file, to see when it does).
    let log = dir.path().join("driver.log");
    let mut driver = brainpipe(dir.path())
        .args(["run", "p.yaml"])
        .stdout(Stdio::piped())
        .stderr(fs::File::create(&log).expect("log"))
        .spawn()
        .expect("brainpipe starts");
    wait_for(60, "the run to wait for the detached study", || {
        let text = fs::read_to_string(&log).unwrap_or_default();
        text.lines().any(|l| l.contains("waiting for detached job") && l.contains("stage=study"))
    });
    // The first task, released, loads the pipeline edited meanwhile: its key no longer matches
    // and it fails; the second stays held.
    fs::write(&file, written.replace("seed: 3", "seed: 4")).expect("edit");
    let victim = format!("{array}_0");
    let released = Command::new("scontrol").args(["release", &victim]).status();
    assert!(released.expect("scontrol").success());
    let out = wait_exit(&mut driver, 120);
    let stderr = fs::read_to_string(&log).expect("log");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("stage `study` (ingest.synthetic) failed"), "{stderr}");
    assert!(
        stderr.contains(&format!("Slurm job {victim} (a shard)")),
        "the task is named: {stderr}"
    );
    // The doomed rest of the array is cancelled (held, it would have waited forever).
    wait_for(30, "every task to end", || {
        array_tasks(&name, "study").iter().all(|(_, state)| state != "PENDING")
    });
    // The dependents, held too, are released: their dependency can never be satisfied now.
    let downstream = ["scans", "features", "padded", "targets", "base"];
    let mut release = Command::new("scontrol");
    release.arg("release");
    release.args(downstream.iter().flat_map(|stage| jobs(&name, stage)).map(|(id, _)| id));
    assert!(release.status().expect("scontrol").success());
    wait_for(30, "the dependents to be cancelled", || {
        ["study:merge", "scans", "features", "padded", "targets", "base"]
            .iter()
            .all(|stage| jobs(&name, stage).iter().all(|(_, state)| state == "CANCELLED"))
    });
    let cache = dir.path().join(".brainpipe");
    assert!(entries(&cache).is_empty(), "nothing committed");
    assert_eq!(fs::read_dir(cache.join("shards")).map(|d| d.count()).unwrap_or(0), 0, "no shards");
}

//! The `brainpipe` binary end to end: pipeline errors, crash safety, concurrent runs, linking.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn brainpipe() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_brainpipe"));
    cmd.env_remove("BRAINPIPE_CACHE").env_remove("RUST_LOG");
    cmd
}

fn run_in(dir: &Path, args: &[&str]) -> Output {
    brainpipe().current_dir(dir).args(args).output().expect("brainpipe starts")
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).expect("write");
    path
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Each broken pipeline gives exit ≠ 0 and one line `file:line:col: message` naming the fault.
#[test]
fn pipeline_errors_name_file_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: &[(&str, &str, usize, &str)] = &[
        (
            "unknown-key",
            "name: x\nstages:\n  a: { run: \"true\", outputs: [o], ouputs: [p] }\n",
            3,
            "unknown field `ouputs`",
        ),
        ("unknown-top-key", "name: x\nstage: {}\n", 2, "unknown field `stage`"),
        (
            "unknown-stage",
            "name: x\nstages:\n  a:\n    uses: nope.nothing\n",
            4,
            "unknown stage `nope.nothing`",
        ),
        (
            "dangling-stage",
            "name: x\nstages:\n  a:\n    run: \"cat {inputs.i} > {outputs.o}\"\n    inputs: { i: ghost.out }\n    outputs: [o]\n",
            5,
            "no stage `ghost`",
        ),
        (
            "dangling-port",
            "name: x\nstages:\n  a: { run: \"true\", outputs: [o] }\n  b:\n    run: \"cat {inputs.i} > {outputs.o}\"\n    inputs:\n      i: a.nope\n    outputs: [o]\n",
            7,
            "stage `a` has no output `nope`",
        ),
        (
            "cycle",
            "name: x\nstages:\n  a:\n    run: \"true\"\n    inputs: { i: b.o }\n    outputs: [o]\n  b:\n    run: \"true\"\n    inputs: { i: a.o }\n    outputs: [o]\n",
            5,
            "cycle: a → b → a",
        ),
        (
            "duplicate",
            "name: x\nstages:\n  a: { run: \"true\", outputs: [o] }\n  a: { run: \"false\", outputs: [o] }\n",
            4,
            "duplicate id `a`",
        ),
        (
            "escape-parent",
            "name: x\nstages:\n  a:\n    run: \"true\"\n    outputs:\n      - ok\n      - ../evil\n",
            7,
            "output `../evil` must be a plain name",
        ),
        (
            "escape-absolute",
            "name: x\nstages:\n  a: { run: \"true\", outputs: [/etc/evil] }\n",
            3,
            "output `/etc/evil` must be a plain name",
        ),
        (
            "placeholder",
            "name: x\nstages:\n  a: { run: \"cat {inputs.nope} > {outputs.o}\", outputs: [o] }\n",
            3,
            "`{inputs.nope}` names no input",
        ),
        ("syntax", "name: x\nstages:\n  a: { run: \"true\"\n  b: 1\n", 4, ""),
        (
            "uses-and-run",
            "name: x\nstages:\n  a: { uses: x.y, run: \"true\", outputs: [o] }\n",
            3,
            "exactly one of `uses` or `run`",
        ),
    ];
    for (name, text, line, needle) in cases {
        let file = write(dir.path(), &format!("{name}.yaml"), text);
        for command in ["run", "plan"] {
            let out = run_in(dir.path(), &[command, file.to_str().expect("utf-8")]);
            let err = stderr(&out);
            assert!(!out.status.success(), "{name}: {command} should fail");
            assert_eq!(err.trim_end().lines().count(), 1, "{name}: one line, got {err:?}");
            let prefix = format!("error: {}:{line}:", file.display());
            assert!(err.starts_with(&prefix), "{name}: expected {prefix:?}, got {err:?}");
            assert!(err.contains(needle), "{name}: expected {needle:?} in {err:?}");
        }
        assert!(
            !dir.path().join(".brainpipe/entries").exists()
                || fs::read_dir(dir.path().join(".brainpipe/entries"))
                    .expect("ls")
                    .next()
                    .is_none()
        );
    }
}

/// Waits until `path` exists, up to `limit`.
fn wait_for(path: &Path, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn sigkill_mid_write_commits_nothing_and_the_next_run_recomputes() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The script writes half its output, signals, then stalls while `slow` exists; `slow` is not
    // part of the key, so the rerun has the same key and must recompute rather than reuse.
    write(
        dir.path(),
        "write.sh",
        "echo first-half > \"$1\"\ntouch started\nwhile [ -e slow ]; do sleep 0.05; done\necho second-half >> \"$1\"\n",
    );
    let file = write(
        dir.path(),
        "p.yaml",
        "name: kill\nstages:\n  w: { run: \"sh write.sh {outputs.out}\", outputs: [out], deps: [write.sh] }\n",
    );
    write(dir.path(), "slow", "");
    let mut child = brainpipe()
        .current_dir(dir.path())
        .args(["run", file.to_str().expect("utf-8")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    assert!(wait_for(&dir.path().join("started"), Duration::from_secs(20)), "stage started");
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    let entries = dir.path().join(".brainpipe/entries");
    assert_eq!(fs::read_dir(&entries).expect("entries").count(), 0, "no committed entry");
    let plan = run_in(dir.path(), &["plan", "p.yaml"]);
    assert!(String::from_utf8_lossy(&plan.stdout).contains("run"), "plan says it will run");
    fs::remove_file(dir.path().join("slow")).expect("unstall");
    let out = run_in(dir.path(), &["run", "p.yaml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = fs::read_to_string(dir.path().join(".brainpipe/runs/kill/w/out")).expect("output");
    assert_eq!(text, "first-half\nsecond-half\n");
    let gc = run_in(dir.path(), &["gc", "p.yaml"]);
    assert!(String::from_utf8_lossy(&gc.stdout).contains("1 leftover temp dirs"), "{gc:?}");
}

#[test]
fn concurrent_runs_compute_a_shared_stage_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let counter = dir.path().join("count");
    let file = write(
        dir.path(),
        "p.yaml",
        &format!(
            "name: shared\nstages:\n  s: {{ run: \"echo x >> {}; sleep 1; echo done > {{outputs.o}}\", outputs: [o] }}\n  t:\n    run: \"cp {{inputs.i}} {{outputs.o}}\"\n    inputs: {{ i: s.o }}\n    outputs: [o]\n",
            counter.display()
        ),
    );
    let spawn = || {
        brainpipe()
            .current_dir(dir.path())
            .args(["run", file.to_str().expect("utf-8")])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().expect("a"), b.wait_with_output().expect("b"));
    assert!(a.status.success(), "{}", stderr(&a));
    assert!(b.status.success(), "{}", stderr(&b));
    assert_eq!(fs::read_to_string(&counter).expect("counter"), "x\n", "the shared stage ran once");
}

fn needed_libraries(binary: &str) -> String {
    let out = Command::new("readelf")
        .args(["-d", binary])
        .output()
        .expect("readelf (binutils) is installed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn worker_links_libtorch_without_as_needed_and_driver_not_at_all() {
    let worker = needed_libraries(env!("CARGO_BIN_EXE_brainpipe-torch"));
    assert!(
        worker.lines().any(|l| l.contains("NEEDED") && l.contains("[libtorch.so]")),
        "libtorch.so must be a NEEDED entry of the worker, or CUDA silently disappears:\n{worker}"
    );
    let driver = needed_libraries(env!("CARGO_BIN_EXE_brainpipe"));
    assert!(
        !driver.contains("libtorch") && !driver.contains("libc10"),
        "the driver must start without LibTorch:\n{driver}"
    );
}

#[test]
fn doctor_reports_the_runtime() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run_in(dir.path(), &["doctor"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    for field in
        ["libtorch       2.11.0", "cuda ", "cudnn", "tf32           off", "cpu threads", "cache"]
    {
        assert!(text.contains(field), "missing {field:?} in\n{text}");
    }
}

#[test]
fn stage_command_rejects_unknown_stage_and_bad_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run_in(dir.path(), &["stage", "no.such", "--out", "o"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("unknown stage `no.such`"), "{}", stderr(&out));
    assert!(!dir.path().join("o").exists(), "nothing written");
    // A port given twice becomes a list input: refused for one-artifact ports...
    let twice = ["--in", "targets=a", "--in", "targets=b", "--in", "predictions=p", "--out", "o"];
    let out = run_in(dir.path(), &[&["stage", "eval.words"][..], &twice[..]].concat());
    assert!(!out.status.success());
    assert!(stderr(&out).contains("input `targets` takes one artifact"), "{}", stderr(&out));
    // ...and numbered in command-line order for list ports.
    let list =
        ["--in", "predictions=p", "--in", "predictions=q", "--in", "targets=t", "--out", "o"];
    let out = run_in(dir.path(), &[&["stage", "eval.words"][..], &list[..]].concat());
    assert!(stderr(&out).contains("input `predictions#0` does not exist"), "{}", stderr(&out));
    assert!(!dir.path().join("o").exists(), "nothing written");
}

#[test]
fn dag_prints_text_and_dot() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "p.yaml",
        "name: g\nstages:\n  a: { run: \"true\", outputs: [o] }\n  b: { run: \"true\", inputs: { i: a.o }, outputs: [o] }\n",
    );
    let text = run_in(dir.path(), &["dag", "p.yaml"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("in:  i ← a.o"));
    let dot = run_in(dir.path(), &["dag", "p.yaml", "--dot"]);
    assert!(String::from_utf8_lossy(&dot.stdout).contains("\"a\" -> \"b\" [label=\"o → i\"]"));
}

/// A LibTorch stage runs in the worker: planned from its catalogue, executed by `brainpipe-torch
/// exec`, its notes carried into the manifest, and cached like any other stage.
#[test]
fn worker_stages_plan_run_and_cache_through_the_driver() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vectors = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    )
    .join("data/pereira180_glove6b50d.txt");
    let file = write(
        dir.path(),
        "p.yaml",
        &format!(
            "name: worker\nstages:\n  targets: {{ uses: clip.words, inputs: {{ vectors: {} }} }}\n",
            vectors.display()
        ),
    );
    let out = run_in(dir.path(), &["run", file.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let manifest =
        fs::read_to_string(dir.path().join(".brainpipe/runs/worker/targets/manifest.json"))
            .expect("manifest");
    let manifest: serde_json::Value = serde_json::from_str(&manifest).expect("json");
    assert_eq!(manifest["stage"], "clip.words");
    assert_eq!(manifest["notes"]["words"], 180, "notes come back from the worker");
    assert!(manifest["tools"]["libtorch"].as_str().is_some_and(|v| v.starts_with("2.11")));
    let plan = run_in(dir.path(), &["plan", "p.yaml"]);
    assert!(String::from_utf8_lossy(&plan.stdout).contains("1 cached, 0 to run"));

    // Params are checked against the catalogue at plan time, before any worker starts.
    let bad = write(
        dir.path(),
        "bad.yaml",
        &format!(
            "name: bad\nstages:\n  targets:\n    uses: clip.words\n    inputs: {{ vectors: {} }}\n    with: {{ no_such_param: 1 }}\n",
            vectors.display()
        ),
    );
    let out = run_in(dir.path(), &["plan", bad.to_str().expect("utf-8")]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(":6:") && stderr(&out).contains("unknown field `no_such_param`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn shipped_pipelines_load_with_every_stage_port_and_param_known() {
    // The Pereira pipeline's data are not here: stand-ins at its relative paths let it load, which
    // checks every stage name, input port (list inputs included) and param against the stages.
    let dir = tempfile::tempdir().expect("tempdir");
    let root = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    std::fs::create_dir_all(dir.path().join("pipelines")).expect("mkdir");
    std::fs::create_dir_all(dir.path().join("data/pereira")).expect("mkdir");
    std::fs::create_dir_all(dir.path().join("data/brain2word")).expect("mkdir");
    for stand_in in ["last_dim.npz", "180_concepts.mat"] {
        write(&dir.path().join("data/brain2word"), stand_in, "");
    }
    for name in ["brain2word.yaml", "brain2word-pereira.yaml"] {
        let text = std::fs::read_to_string(root.join("pipelines").join(name)).expect("pipeline");
        write(&dir.path().join("pipelines"), name, &text);
        let out = run_in(dir.path(), &["dag", &format!("pipelines/{name}")]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let dag = String::from_utf8_lossy(&out.stdout);
        assert!(dag.contains("predictions#4 ← meanreg.predictions"), "{name}: {dag}");
    }
}

#[test]
fn the_pereira_pipeline_runs_end_to_end_on_pereira_format_files() {
    // The shipped pipeline as it stands (Brain2Word's real 65,730-wide template and GloVe-300
    // vectors from ../shared), on two subjects written in both published .mat layouts; only the
    // networks are shrunk so the run takes seconds.
    let Some(python) = brainpipe_core::reference_python(
        "the_pereira_pipeline_runs_end_to_end_on_pereira_format_files",
    ) else {
        return;
    };
    let root = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let shared = root.join("../shared/data/brain2word");
    if !shared.join("last_dim.npz").exists() {
        eprintln!("skipped: {} is absent", shared.display());
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let script = root.join("crates/ingest/tests/pereira_fixture.py");
    let status =
        Command::new(python).arg(&script).arg(data.join("pereira")).status().expect("python");
    assert!(status.success(), "fixture script failed");
    fs::create_dir_all(data.join("brain2word")).expect("mkdir");
    for file in ["last_dim.npz", "sizes.npy", "180_concepts.mat"] {
        fs::copy(shared.join(file), data.join("brain2word").join(file)).expect("copy");
    }
    fs::create_dir_all(dir.path().join("pipelines")).expect("mkdir");
    let yaml = fs::read_to_string(root.join("pipelines/brain2word-pereira.yaml")).expect("yaml");
    write(&dir.path().join("pipelines"), "brain2word-pereira.yaml", &yaml);
    let mut args = vec!["run".to_owned(), "pipelines/brain2word-pereira.yaml".to_owned()];
    for net in ["base", "roi", "autoencoder", "meanreg"] {
        for set in [format!("{net}.epochs=2"), format!("{net}.hidden=[16,8]")] {
            args.extend(["--set".to_owned(), set]);
        }
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_in(dir.path(), &args);
    assert!(out.status.success(), "{}", stderr(&out));
    let runs = dir.path().join("pipelines/.brainpipe/runs/brain2word-pereira");
    let padded: serde_json::Value = serde_json::from_slice(
        &fs::read(runs.join("padded/manifest.json")).expect("padded manifest"),
    )
    .expect("json");
    assert_eq!(padded["notes"]["width"], 65_730, "Brain2Word's template width");
    let report = fs::read_to_string(runs.join("report/report.html")).expect("report");
    for model in ["ridge", "base", "roi", "autoencoder", "meanreg"] {
        assert!(report.contains(&format!("<td>{model}</td>")), "{model} in the report");
    }
}

#[test]
fn the_bold5000_pipeline_runs_end_to_end_on_bold5000_format_files() {
    // The shipped pipeline as it stands, on three subjects in the BOLD5000 2.0 layout (nibabel
    // betas, presentation lists with `rep_`, COCO captions, JPEG stimuli in COCO/Scene/ImageNet
    // folders, .npy ROI masks of different sizes per subject) and a tiny random CLIP in Hugging
    // Face layout; only the networks are shrunk so the run takes seconds.
    let Some(python) = brainpipe_core::reference_python(
        "the_bold5000_pipeline_runs_end_to_end_on_bold5000_format_files",
    ) else {
        return;
    };
    let root = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let script = root.join("crates/ingest/tests/bold5000_fixture.py");
    let status = Command::new(&python).arg(&script).arg(&data).status().expect("python");
    assert!(status.success(), "fixture script failed");
    let clip = data.join("clip-vit-base-patch32");
    fs::create_dir_all(&clip).expect("mkdir");
    for file in ["config.json", "model.safetensors"] {
        fs::copy(root.join("tests/fixtures/clip/tiny").join(file), clip.join(file)).expect("copy");
    }
    fs::create_dir_all(dir.path().join("pipelines")).expect("mkdir");
    let yaml = fs::read_to_string(root.join("pipelines/brain2clip-bold5000.yaml")).expect("yaml");
    write(&dir.path().join("pipelines"), "brain2clip-bold5000.yaml", &yaml);
    let mut args = vec!["run".to_owned(), "pipelines/brain2clip-bold5000.yaml".to_owned()];
    for net in ["base", "variation1", "variation2", "variation3"] {
        for set in [
            format!("{net}.epochs=3"),
            format!("{net}.hidden=[16,8]"),
            format!("{net}.batch_size=16"),
            format!("{net}.threads=1"),
        ] {
            args.extend(["--set".to_owned(), set]);
        }
    }
    for net in ["variation1", "variation2"] {
        args.extend(["--set".to_owned(), format!("{net}.pretrain_epochs=2")]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_in(dir.path(), &args);
    assert!(out.status.success(), "{}", stderr(&out));
    let runs = dir.path().join("pipelines/.brainpipe/runs/brain2clip-bold5000");
    // The split: the 8 images a subject saw four times are the test images, although every
    // subject saw every image; the 7 images without COCO captions have no caption target.
    let check = r#"
import sys, pyarrow.parquet as pq
runs = sys.argv[1]
s = pq.read_table(f"{runs}/scans/stimuli.parquet").to_pydict()
test = sorted(i for i, split in zip(s["image"], s["split"]) if split == "test")
assert len(s["image"]) == 51 and len(test) == 8, (len(s["image"]), test)
assert all(i.startswith("COCO/") for i in test), test
t = pq.read_table(f"{runs}/targets/targets.parquet").to_pydict()
assert len(t["stimulus"]) == 44 and all(i.startswith("COCO/") for i in t["stimulus"]), t["stimulus"]
m = pq.read_table(f"{runs}/metrics/metrics.parquet").to_pydict()
rows = {(a, b, c, d): v for a, b, c, d, v in zip(m["model"], m["subject"], m["paradigm"], m["metric"], m["value"])}
for model in ["ridge", "base", "variation1", "variation2", "variation3"]:
    for subject in ["CSI1", "CSI2", "CSI3"]:
        assert rows[(model, subject, "averaged", "trials")] == 8, (model, subject)
        assert rows[(model, subject, "single", "trials")] == 32, (model, subject)
    assert abs(rows[(model, "all", "averaged", "chance_top1")] - 1 / 8) < 1e-12, model
"#;
    let out = Command::new(&python).args(["-c", check]).arg(&runs).output().expect("python");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = fs::read_to_string(runs.join("report/report.html")).expect("report");
    for model in ["ridge", "base", "variation1", "variation2", "variation3"] {
        assert!(report.contains(&format!("<th>{model}</th>")), "{model} in the gallery");
    }
    assert!(report.contains("data:image/jpeg;base64,"), "the gallery shows the JPEG stimuli");
}

/// Every file under `dir` except manifests and logs, by path relative to `dir`, with its bytes.
fn artifact_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                if name != "manifest.json" && !name.ends_with(".log") {
                    let bytes = fs::read(&path).expect("read");
                    out.push((path.strip_prefix(dir).expect("inside").to_path_buf(), bytes));
                }
            }
        }
    }
    out.sort();
    out
}

#[test]
fn same_pipeline_in_two_caches_writes_the_same_bytes() {
    // Non-negotiable 5 across the whole chain, driver and LibTorch worker stages alike (study,
    // NIfTI ingest, features, targets, a network, ridge, metrics, the report, and the images
    // world's CLIP training, embeddings, caption choice and augmentation), written under two
    // different cache folders (paths must not leak into artifacts) with different job and thread
    // counts, and compared byte for byte; only the manifests (timings) may differ.
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "p.yaml",
        "name: twice
stages:
  study: { uses: ingest.synthetic, with: { subjects: 2, seed: 3, resolution_mm: 6 } }
  scans:
    uses: ingest.nifti
    inputs: { bold: study.bold, mask: study.mask }
    with: { stimulus_column: trial_type, paradigm_column: paradigm }
  features: { uses: features.roi, inputs: { scans: scans.scans, atlas: study.atlas } }
  padded: { uses: features.template_pad, inputs: { features: features.features } }
  targets: { uses: clip.words, inputs: { vectors: study.stimuli, stimuli: study.stimuli } }
  base:
    uses: models.train
    inputs: { features: padded.features, targets: targets.targets }
    with: { hidden: [32, 16], epochs: 2, threads: 1, cv: within_subject, folds: 2 }
  ridge:
    uses: models.ridge
    inputs: { features: padded.features, targets: targets.targets }
    with: { max_inner_folds: 1, cv: within_subject, folds: 2 }
  metrics:
    uses: eval.words
    inputs: { predictions: [ridge.predictions, base.predictions], training: [base.training], targets: targets.targets }
  report: { uses: eval.report, inputs: { metrics: metrics.metrics, study: study.study } }
  images:
    uses: ingest.synthetic
    with: { paradigm: images, subjects: 1, seed: 3, resolution_mm: 6, train_images: 40, test_images: 10 }
  clip: { uses: clip.train, inputs: { stimuli: images.stimuli, images: images.images }, with: { steps: 20, batch_size: 16, threads: 1 } }
  embed: { uses: clip.embed, inputs: { stimuli: images.stimuli, images: images.images, model: clip.model }, with: { threads: 1 } }
  captions: { uses: clip.select_captions, inputs: { embeddings: embed.embeddings, stimuli: images.stimuli } }
  augment:
    uses: clip.augment
    inputs: { stimuli: images.stimuli, images: images.images, model: clip.model }
    with: { copies: 2, threads: 1 }
",
    );
    // The two runs also differ in scheduling and parallelism: two stages at a time, one LibTorch
    // thread per worker and one rayon thread in the driver, against one stage at a time with every
    // core for LibTorch (`--jobs 1`) and rayon's default pool.
    for (cache, jobs, rayon) in [("one", "2", Some("1")), ("two", "1", None)] {
        let mut command = brainpipe();
        command.current_dir(dir.path()).args(["run", "p.yaml", "--cache", cache, "--jobs", jobs]);
        match rayon {
            Some(n) => command.env("RAYON_NUM_THREADS", n),
            None => command.env_remove("RAYON_NUM_THREADS"),
        };
        let out = command.output().expect("brainpipe starts");
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let one = artifact_files(&dir.path().join("one/entries"));
    let two = artifact_files(&dir.path().join("two/entries"));
    assert!(one.len() > 20, "every stage's files: {}", one.len());
    assert_eq!(one.len(), two.len());
    for ((a, x), (b, y)) in one.iter().zip(&two) {
        assert_eq!(a, b, "same files");
        assert!(x == y, "{} differs between the two caches", a.display());
    }
}

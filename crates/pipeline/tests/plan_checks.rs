//! `plan` refuses a pipeline whose wiring or params cannot work — kinds that differ, a misspelt
//! enum value, a number out of range, params that do not go together — for worker stages too,
//! without starting the worker, each error one line naming `file:line:col`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use brainpipe_artifacts::{FEATURES, PREDICTIONS, TARGETS};
use brainpipe_core::{
    ArtifactKind, Context, NoParams, Port, PortInfo, RemoteStage, Stage, StageError, StageInfo,
};
use brainpipe_pipeline::{Pipeline, Registry};

/// Writes a `predictions` table (as a model stage would).
struct Predicts;

impl Stage for Predicts {
    type Params = NoParams;
    const NAME: &'static str = "test.predicts";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str = "test stage";

    fn inputs(&self) -> Vec<Port> {
        Vec::new()
    }

    fn outputs(&self) -> Vec<Port> {
        let kind = ArtifactKind::table(PREDICTIONS);
        vec![Port::output("predictions", "predictions.parquet", kind, "predictions")]
    }

    fn run(&self, _: &mut Context, _: &NoParams) -> Result<(), StageError> {
        Err(StageError::msg("never run by these tests"))
    }
}

/// Writes a `features` table.
struct Features;

impl Stage for Features {
    type Params = NoParams;
    const NAME: &'static str = "test.features";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str = "test stage";

    fn inputs(&self) -> Vec<Port> {
        Vec::new()
    }

    fn outputs(&self) -> Vec<Port> {
        let kind = ArtifactKind::table(FEATURES);
        vec![Port::output("features", "features.parquet", kind, "features")]
    }

    fn run(&self, _: &mut Context, _: &NoParams) -> Result<(), StageError> {
        Err(StageError::msg("never run by these tests"))
    }
}

fn input(name: &str, kind: ArtifactKind, required: bool) -> PortInfo {
    PortInfo {
        name: name.into(),
        file: String::new(),
        kind,
        doc: String::new(),
        required,
        many: false,
    }
}

/// A worker whose every start leaves a mark.
struct Worker {
    dir: tempfile::TempDir,
}

impl Worker {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = dir.path().join("brainpipe-torch");
        let mark = dir.path().join("started");
        std::fs::write(&script, format!("#!/bin/sh\ntouch '{}'\nexit 1\n", mark.display()))
            .expect("script");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
                .expect("chmod");
        }
        Worker { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("brainpipe-torch")
    }

    fn started(&self) -> bool {
        self.dir.path().join("started").exists()
    }
}

/// `models.train` as the driver sees it: the worker's ports, params checked by their typed
/// declaration in brainpipe-params.
fn registry(worker: &Path) -> Registry {
    let info = StageInfo {
        name: "models.train".into(),
        version: 1,
        summary: String::new(),
        inputs: vec![
            input("features", ArtifactKind::table(FEATURES), true),
            input("targets", ArtifactKind::table(TARGETS), true),
        ],
        outputs: Vec::new(),
        params: Vec::new(),
        shardable: false,
    };
    let canonical = brainpipe_params::canonical("models.train").expect("declared");
    let mut registry = Registry::new();
    registry.register(Arc::new(RemoteStage::new(info, worker).with_declared_params(canonical)));
    registry.register(Arc::new(Predicts));
    registry.register(Arc::new(Features));
    registry
}

/// Plans `train_with` as `models.train`'s `with:` line (and `features_from` as its features),
/// returning the one-line error.
fn refusal(features_from: &str, train_with: &str) -> String {
    let worker = Worker::new();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("targets.parquet"), b"not read at plan time").expect("file");
    let file = dir.path().join("pipeline.yaml");
    let text = format!(
        "name: checks\nstages:\n  predict: {{ uses: test.predicts }}\n  extract: {{ uses: test.features }}\n  train:\n    uses: models.train\n    inputs:\n      features: {features_from}\n      targets: targets.parquet\n    with: {train_with}\n"
    );
    let error = match Pipeline::from_text(&file, &text, &registry(&worker.path()), &[]) {
        Ok(_) => panic!("planned:\n{text}"),
        Err(error) => error.to_string(),
    };
    assert!(!worker.started(), "planning started the worker");
    assert!(!error.contains('\n'), "one line: {error}");
    assert!(error.starts_with(&format!("{}:", file.display())), "names the file: {error}");
    error.strip_prefix(&format!("{}:", file.display())).expect("file").to_owned()
}

#[test]
fn a_wiring_whose_kinds_differ_is_refused_at_the_input() {
    let error = refusal("predict.predictions", "{}");
    assert_eq!(
        error,
        "8:17: stage `train` input `features` takes a `features` table, but `predict.predictions` is a `predictions` table"
    );
}

#[test]
fn a_misspelt_enum_value_of_a_worker_stage_is_refused() {
    let error = refusal("extract.features", "{ select: roi_stabilty, select_columns: 10 }");
    assert!(
        error.starts_with("10:21: stage `train`: params of `models.train`: `select`: unknown variant `roi_stabilty`, expected one of `none`, `roi_stability`, `voxel_stability`"),
        "{error}"
    );
}

#[test]
fn an_out_of_range_value_is_refused() {
    let error = refusal("extract.features", "{ seed: 3, dropout: 1.5 }");
    assert_eq!(
        error,
        "10:31: stage `train`: params of `models.train`: `dropout` must be in [0, 0.99], got 1.5"
    );
}

#[test]
fn params_that_do_not_go_together_are_refused() {
    let error = refusal("extract.features", "{ select: voxel_stability }");
    assert_eq!(
        error,
        "10:21: stage `train`: params of `models.train`: `select_columns` must be at least 1 when `select` is not `none`"
    );
}

#[test]
fn a_valid_pipeline_plans_without_the_worker() {
    let worker = Worker::new();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("targets.parquet"), b"x").expect("file");
    let file = dir.path().join("pipeline.yaml");
    let text = "name: ok\nstages:\n  extract: { uses: test.features }\n  train:\n    uses: models.train\n    inputs: { features: extract.features, targets: targets.parquet }\n    with: { select: roi_stability, select_columns: 5, lr: 1 }\n";
    let pipeline = Pipeline::from_text(&file, text, &registry(&worker.path()), &[]).expect("plans");
    let train = pipeline.node("train").expect("train");
    assert_eq!(train.params["lr"], serde_json::json!(1.0), "canonical: integers given for floats");
    assert_eq!(train.params["select"], serde_json::json!("roi_stability"));
    assert!(!worker.started(), "planning started the worker");
}

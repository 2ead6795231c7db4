//! A worker stage with a list input receives every artifact of the list (`--in port#i=PATH`), not
//! just one: a fake worker (a shell script) records its command line.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use brainpipe_core::{ArtifactKind, PortInfo, RemoteStage, StageInfo, run_standalone};
use serde_json::json;

fn port(name: &str, file: &str, required: bool, many: bool) -> PortInfo {
    PortInfo {
        name: name.to_owned(),
        file: file.to_owned(),
        kind: ArtifactKind::Table("predictions"),
        doc: String::new(),
        required,
        many,
    }
}

#[test]
fn every_artifact_of_a_list_input_reaches_the_worker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let worker = dir.path().join("fake-worker");
    // `exec NAME --out-dir DIR --params JSON --in ...`: write the arguments as the output.
    std::fs::write(
        &worker,
        "#!/bin/sh\nout=$4\nshift 6\nfor a in \"$@\"; do echo \"$a\"; done > \"$out/args.txt\"\n",
    )
    .expect("worker");
    std::fs::set_permissions(&worker, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let info = StageInfo {
        name: "fake.lists".to_owned(),
        version: 1,
        summary: "records its inputs".to_owned(),
        inputs: vec![port("many", "", true, true), port("one", "", false, false)],
        outputs: vec![port("args", "args.txt", true, false)],
        params: Vec::new(),
        shardable: false,
    };
    let stage = RemoteStage::new(info, &worker);
    let mut inputs = BTreeMap::new();
    for (key, name) in [("many#0", "a"), ("many#1", "b"), ("many#2", "c"), ("one", "d")] {
        let path = dir.path().join(name);
        std::fs::write(&path, name).expect("input");
        inputs.insert(key.to_owned(), path);
    }
    let out = dir.path().join("out");
    run_standalone(&stage, &inputs, &json!({}), &out, &BTreeMap::new()).expect("run");
    let args = std::fs::read_to_string(out.join("args.txt")).expect("args");
    let path = |n: &str| -> PathBuf { dir.path().join(n) };
    let want = format!(
        "--in\nmany#0={}\n--in\nmany#1={}\n--in\nmany#2={}\n--in\none={}\n",
        path("a").display(),
        path("b").display(),
        path("c").display(),
        path("d").display()
    );
    assert_eq!(args, want);
}

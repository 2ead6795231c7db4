//! The driver of a Slurm run checks each job's entry with the hashes the job recorded while
//! writing it (`index.json`), as a local run does with its own, instead of reading every output
//! again; a file changed since is still hashed and caught.

use std::fs;

use brainpipe_pipeline::{Cache, Pipeline, Registry, RunOptions, StageJob, plan, run_stage_job};

const PIPELINE: &str = "name: job
stages:
  a:
    run: \"seq 1 5000 > {outputs.numbers}; echo done > {outputs.flag}\"
    outputs: [numbers, flag]
  b: { run: \"seq 1 300 > {outputs.o}\", outputs: [o] }
";

#[test]
fn a_job_s_recorded_hashes_are_read_back_instead_of_rehashing_its_outputs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("p.yaml");
    fs::write(&file, PIPELINE).expect("pipeline");
    let pipeline = Pipeline::load(&file, &Registry::new(), &[]).expect("load");
    let root = dir.path().join("cache");
    // Each instance stands for a process: the driver, and others that opened the cache before
    // the job ran (their in-memory index lacks the job's outputs).
    let driver = Cache::open(&root).expect("driver");
    let stale = Cache::open(&root).expect("another process");
    let late = Cache::open(&root).expect("a third");
    let plans = plan(&pipeline, &driver, &[]).expect("plan");
    let keys: Vec<_> = plans.iter().map(|p| p.key.clone().expect("key")).collect();
    // Two jobs end (each saving the index) before the driver checks either.
    for (stage, key) in ["a", "b"].into_iter().zip(&keys) {
        let job = StageJob {
            stage: stage.to_owned(),
            key: Some(key.clone()),
            upstream: Default::default(),
            force: false,
            shard: None,
        };
        let job_cache = Cache::open(&root).expect("the job's");
        let outcome =
            run_stage_job(&pipeline, &job_cache, &RunOptions::default(), &job).expect("job");
        assert!(!outcome.cached);
        assert_eq!(job_cache.files_hashed(), 0, "the job hashed its outputs while writing them");
    }
    let key = keys[0].clone();
    let manifest = driver.committed_entry(&key).expect("intact entry");
    assert_eq!(manifest.key, key.as_str());
    assert!(driver.committed_entry(&keys[1]).is_some());
    assert_eq!(driver.files_hashed(), 0, "both jobs' hashes were read back");
    // Without them, checking the entry reads every output again.
    assert!(stale.entry(&key).is_some());
    assert_eq!(stale.files_hashed(), 2);
    // A file changed after the job recorded it is hashed again, and the entry is damaged.
    // (`flag` is checked first and vouched for by the index; `numbers` is changed.)
    let numbers = driver.entry_dir(&key).join("numbers");
    let mut permissions = fs::metadata(&numbers).expect("numbers").permissions();
    #[expect(clippy::permissions_set_readonly_false, reason = "a test corrupting an entry")]
    permissions.set_readonly(false);
    fs::set_permissions(&numbers, permissions).expect("writable");
    fs::write(&numbers, "gone\n").expect("change");
    assert!(late.committed_entry(&key).is_none(), "a changed output is caught");
    assert_eq!(late.files_hashed(), 1, "only the changed file is read");
}

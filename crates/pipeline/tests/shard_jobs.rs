//! The jobs of a sharded stage without Slurm: `brainpipe stage-job --shards N --shard K` (one per
//! array task) and `--merge`, through the library calls they make, against a local run.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use brainpipe_core::{ArtifactKind, ContentHash, Context, Port, Stage, StageError};
use brainpipe_pipeline::{
    Cache, Pipeline, Registry, RunOptions, ShardRole, StageJob, gc, plan, run, run_shard_job,
    run_stage_job,
};

brainpipe_core::params! {
    /// Params of the test stage.
    pub struct PartsParams {
        /// Parts (and shards).
        pub parts: u32 = 3,
    }
}

/// Writes one line per part; shards into one part each.
struct Parts;

fn line(k: usize) -> String {
    format!("part {k}: {}\n", k * k)
}

impl Stage for Parts {
    type Params = PartsParams;
    const NAME: &'static str = "test.parts";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str = "test stage that shards";
    const SHARDABLE: bool = true;

    fn inputs(&self) -> Vec<Port> {
        Vec::new()
    }

    fn outputs(&self) -> Vec<Port> {
        vec![Port::output("text", "text.txt", ArtifactKind::File, "one line per part")]
    }

    fn run(&self, ctx: &mut Context, p: &PartsParams) -> Result<(), StageError> {
        let text: String = (0..p.parts as usize).map(line).collect();
        fs::write(ctx.output("text"), text)?;
        Ok(())
    }

    fn shards(&self, _ctx: &Context, p: &PartsParams) -> Result<usize, StageError> {
        Ok(p.parts as usize)
    }

    fn run_shard(
        &self,
        ctx: &mut Context,
        p: &PartsParams,
        index: usize,
        count: usize,
    ) -> Result<(), StageError> {
        if count != p.parts as usize {
            return Err(StageError::msg(format!("{count} shards asked, {} parts", p.parts)));
        }
        ctx.note("part", index);
        fs::write(ctx.out_dir().join("part.txt"), line(index))?;
        Ok(())
    }

    fn merge_shards(
        &self,
        ctx: &mut Context,
        _p: &PartsParams,
        shards: &[PathBuf],
    ) -> Result<(), StageError> {
        let mut text = String::new();
        for dir in shards {
            text.push_str(&fs::read_to_string(dir.join("part.txt"))?);
        }
        ctx.note("merged", shards.len());
        fs::write(ctx.output("text"), text)?;
        Ok(())
    }
}

const PIPELINE: &str = "name: sharded
stages:
  parts: { uses: test.parts, with: { parts: 3 } }
  after: { run: \"cat {inputs.t} > {outputs.o}\", inputs: { t: parts.text }, outputs: [o] }
";

fn load(dir: &Path) -> Pipeline {
    let file = dir.join("p.yaml");
    fs::write(&file, PIPELINE).expect("pipeline");
    let mut registry = Registry::new();
    registry.register(Arc::new(Parts));
    Pipeline::load(&file, &registry, &[]).expect("load")
}

/// The job of shard `index` (or the merge, `None`) of array `array` for stage `parts`.
fn job(key: &ContentHash, role: ShardRole) -> StageJob {
    StageJob {
        stage: "parts".to_owned(),
        key: Some(key.clone()),
        upstream: Default::default(),
        force: false,
        shard: Some(role),
    }
}

#[test]
fn shard_jobs_and_their_merge_commit_the_bytes_of_the_whole_stage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = load(dir.path());
    let options = RunOptions { jobs: 1, ..RunOptions::default() };
    let whole = Cache::open(&dir.path().join("whole")).expect("cache");
    run(&pipeline, &whole, &options).expect("local run");
    let cache = Cache::open(&dir.path().join("sharded")).expect("cache");
    let key = plan(&pipeline, &cache, &[]).expect("plan")[0].key.clone().expect("key");
    let shard = |index: usize, array: &str| {
        let role = ShardRole::Shard { index, count: 3, array: array.to_owned() };
        run_shard_job(&pipeline, &cache, &options, &job(&key, role))
    };
    let merge = |array: &str| {
        let role = ShardRole::Merge { count: 3, array: array.to_owned() };
        run_stage_job(&pipeline, &cache, &options, &job(&key, role))
    };

    // A missing shard fails the merge, which commits nothing.
    shard(0, "41").expect("shard 0");
    let error = merge("41").expect_err("shards 1 and 2 are missing").to_string();
    assert!(error.contains("shard 1 of 3 of array job 41"), "{error}");
    assert!(cache.entry(&key).is_none(), "no entry from partial shards");
    // A count the stage does not split into is the stage's error.
    let role = ShardRole::Shard { index: 0, count: 4, array: "42".to_owned() };
    let error = run_shard_job(&pipeline, &cache, &options, &job(&key, role)).expect_err("count");
    assert!(error.to_string().contains("4 shards asked, 3 parts"), "{error}");

    for index in (0..3).rev() {
        let done = shard(index, "43").expect("shard");
        let area = cache.root().join("shards").join(key.as_str()).join("43");
        assert_eq!(done, area.join(format!("{index:04}")));
        assert_eq!(fs::read_to_string(done.join("part.txt")).expect("part"), line(index));
        assert!(done.join("shard.json").is_file(), "written last, marks it complete");
    }
    assert!(cache.entry(&key).is_none(), "shards are no entry");
    let outcome = merge("43").expect("merge");
    assert!(!outcome.cached);
    let text = |cache: &Cache| fs::read(cache.entry_dir(&key).join("text.txt")).expect("text");
    assert_eq!(text(&cache), text(&whole), "the bytes of the whole stage");
    assert_eq!(outcome.manifest.notes["slurm_array_job_id"], "43");
    assert_eq!(outcome.manifest.notes["merged"], 3);
    assert_eq!(outcome.manifest.key, key.as_str());
    let areas = cache.root().join("shards").join(key.as_str());
    assert!(!areas.join("43").exists(), "the merge removes its shards");
    assert!(areas.join("41").join("0000").exists(), "not another array's");
    // gc removes shards of a stage whose entry exists, and keeps those of one that has none.
    let unmerged = cache.root().join("shards").join("ab".repeat(32)).join("45");
    fs::create_dir_all(unmerged.join("0000")).expect("shard dir");
    let report = gc(std::slice::from_ref(&pipeline), &cache, false).expect("gc");
    assert_eq!(report.temp_dirs, [areas.join("41")]);
    assert_eq!(report.shard_areas, std::slice::from_ref(&unmerged));
    assert!(!areas.exists() && unmerged.exists());
    // Shards of a stage already cached compute nothing.
    let cached = shard(1, "44").expect("cached");
    assert_eq!(cached, cache.entry_dir(&key));
    assert!(!areas.join("44").exists());
    // The rest of the pipeline runs on the merged entry as on the whole one.
    run(&pipeline, &cache, &options).expect("downstream");
    let after = |cache: &Cache| {
        let plans = plan(&pipeline, cache, &[]).expect("plan");
        plans[1].key.clone().expect("key")
    };
    assert_eq!(after(&cache), after(&whole), "the same keys downstream");
}

#[test]
fn a_run_command_does_not_shard() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = load(dir.path());
    let options = RunOptions { jobs: 1, ..RunOptions::default() };
    let cache = Cache::open(&dir.path().join("c")).expect("cache");
    run(&pipeline, &cache, &options).expect("run");
    let plans = plan(&pipeline, &cache, &[]).expect("plan");
    let upstream = [("parts".to_owned(), plans[0].key.clone().expect("key"))].into();
    let job = StageJob {
        stage: "after".to_owned(),
        key: plans[1].key.clone(),
        upstream,
        force: true,
        shard: Some(ShardRole::Shard { index: 0, count: 2, array: "9".to_owned() }),
    };
    let error = run_shard_job(&pipeline, &cache, &options, &job).expect_err("run: command");
    assert!(error.to_string().contains("does not split into shards"), "{error}");
}

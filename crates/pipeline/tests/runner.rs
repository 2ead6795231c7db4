//! The runner and the cache through the library API, with test-only stages.

use std::fs;
use std::sync::Arc;

use brainpipe_core::{ArtifactKind, ContentHash, Context, Port, Stage, StageError};
use brainpipe_pipeline::{Cache, Pipeline, Reason, Registry, RunOptions, gc, plan, run};

brainpipe_core::params! {
    /// Params of the test stage.
    pub struct EchoParams {
        /// Text written to the output.
        pub text: String = "hello".to_owned(),
        /// Repeat count.
        pub times: u32 = 1,
    }
}

/// Writes `text × times`, followed by the content of its optional input.
struct Echo<const V: u32>;

impl<const V: u32> Stage for Echo<V> {
    type Params = EchoParams;
    const NAME: &'static str = "test.echo";
    const VERSION: u32 = V;
    const SUMMARY: &'static str = "test stage";

    fn inputs(&self) -> Vec<Port> {
        vec![Port::input("source", ArtifactKind::File, "text to append").optional()]
    }

    fn outputs(&self) -> Vec<Port> {
        vec![Port::output("text", "text.txt", ArtifactKind::File, "the text")]
    }

    fn run(&self, ctx: &mut Context, params: &EchoParams) -> Result<(), StageError> {
        let mut text = params.text.repeat(params.times as usize);
        if let Some(source) = ctx.optional_input("source") {
            text.push_str(&fs::read_to_string(source)?);
        }
        ctx.note("chars", text.len());
        fs::write(ctx.output("text"), text)?;
        Ok(())
    }
}

fn registry_v<const V: u32>() -> Registry {
    let mut registry = Registry::new();
    registry.register(Arc::new(Echo::<V>));
    registry
}

const PIPELINE: &str = "name: reasons
stages:
  first:  { uses: test.echo, with: { text: a }, inputs: { source: input.txt } }
  second: { uses: test.echo, inputs: { source: first.text } }
  script:
    run: \"sh {params.tool} {inputs.x} > {outputs.out}\"
    with: { tool: tool.sh }
    inputs: { x: second.text }
    outputs: [out]
    deps: [tool.sh]
";

struct World {
    _dir: tempfile::TempDir,
    file: std::path::PathBuf,
    cache: Cache,
}

fn world() -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("p.yaml");
    fs::write(&file, PIPELINE).expect("pipeline");
    fs::write(dir.path().join("input.txt"), "1").expect("input");
    fs::write(dir.path().join("tool.sh"), "cat \"$1\"\n").expect("tool");
    let cache = Cache::open(&dir.path().join(".brainpipe")).expect("cache");
    World { _dir: dir, file, cache }
}

fn reasons_of(pipeline: &Pipeline, cache: &Cache, force: &[String]) -> Vec<(String, Vec<Reason>)> {
    plan(pipeline, cache, force).expect("plan").into_iter().map(|p| (p.id, p.reasons)).collect()
}

fn run_all(pipeline: &Pipeline, cache: &Cache) {
    run(pipeline, cache, &RunOptions::default()).expect("run");
}

#[test]
fn plan_names_every_reason() {
    let w = world();
    let registry = registry_v::<1>();
    let pipeline = Pipeline::load(&w.file, &registry, &[]).expect("load");
    let fresh = reasons_of(&pipeline, &w.cache, &[]);
    assert!(fresh.iter().all(|(_, r)| r == &[Reason::New]), "{fresh:?}");
    run_all(&pipeline, &w.cache);
    assert!(reasons_of(&pipeline, &w.cache, &[]).iter().all(|(_, r)| r.is_empty()), "all cached");
    let out =
        fs::read_to_string(w.cache.root().join("runs/reasons/script/out")).expect("runs link");
    assert_eq!(out, "hello".to_owned() + "a1");

    // Params: which key, old → new; downstream learns its upstream reruns.
    let changed = Pipeline::load(&w.file, &registry, &["first.times=2".to_owned()]).expect("load");
    let reasons = reasons_of(&changed, &w.cache, &[]);
    match &reasons[0].1[..] {
        [Reason::ParamsChanged { changes }] => {
            assert_eq!(changes.len(), 1);
            assert_eq!(changes[0].key, "times");
            assert_eq!((changes[0].old.clone(), changes[0].new.clone()), (1.into(), 2.into()));
        }
        other => panic!("expected a params change, got {other:?}"),
    }
    assert_eq!(
        reasons[1].1,
        vec![Reason::InputChanged {
            port: "source".into(),
            detail: "upstream `first` reruns".into()
        }]
    );

    // An external input's content.
    let input = w.file.with_file_name("input.txt");
    fs::write(&input, "2").expect("rewrite");
    let reasons = reasons_of(&pipeline, &w.cache, &[]);
    assert_eq!(
        reasons[0].1,
        vec![Reason::InputChanged { port: "source".into(), detail: "content changed".into() }]
    );
    fs::write(&input, "1").expect("restore");
    assert!(
        reasons_of(&pipeline, &w.cache, &[]).iter().all(|(_, r)| r.is_empty()),
        "content, not mtime"
    );

    // A dependency of an external stage, and its command.
    fs::write(w.file.with_file_name("tool.sh"), "cat \"$1\"; echo\n").expect("tool");
    let reasons = reasons_of(&pipeline, &w.cache, &[]);
    assert_eq!(reasons[2].1, vec![Reason::DepChanged { dep: "tool.sh".into() }]);
    fs::write(w.file.with_file_name("tool.sh"), "cat \"$1\"\n").expect("tool");
    let text = PIPELINE.replace("> {outputs.out}", ">{outputs.out}");
    fs::write(&w.file, text).expect("pipeline");
    let edited = Pipeline::load(&w.file, &registry, &[]).expect("load");
    assert_eq!(reasons_of(&edited, &w.cache, &[])[2].1, vec![Reason::CommandChanged]);
    fs::write(&w.file, PIPELINE).expect("pipeline");

    // The stage's VERSION.
    let bumped = Pipeline::load(&w.file, &registry_v::<2>(), &[]).expect("load");
    let reasons = reasons_of(&bumped, &w.cache, &[]);
    assert_eq!(reasons[0].1, vec![Reason::VersionBumped { old: 1, new: 2 }]);

    // --force, and everything downstream.
    let reasons = reasons_of(&pipeline, &w.cache, &["second".to_owned()]);
    assert!(reasons[0].1.is_empty());
    assert_eq!(reasons[1].1, vec![Reason::Forced]);
    assert_eq!(reasons[2].1, vec![Reason::Forced]);

    // An entry that went away.
    let key = plan(&pipeline, &w.cache, &[]).expect("plan")[2].key.clone().expect("key");
    brainpipe_core::remove_tree(&w.cache.entry_dir(&key)).expect("remove");
    assert_eq!(reasons_of(&pipeline, &w.cache, &[])[2].1, vec![Reason::EntryMissing]);
}

#[test]
fn identical_upstream_output_keeps_downstream_cached() {
    let w = world();
    let registry = registry_v::<1>();
    let aa = Pipeline::load(&w.file, &registry, &["first.text=aa".to_owned()]).expect("load");
    run_all(&aa, &w.cache);
    // `a` twice writes the same bytes as `aa` once: `first` reruns, the rest is reused.
    let twice = Pipeline::load(
        &w.file,
        &registry,
        &["first.text=a".to_owned(), "first.times=2".to_owned()],
    )
    .expect("load");
    let outcomes = run(&twice, &w.cache, &RunOptions::default()).expect("run");
    let cached: Vec<bool> = outcomes.iter().map(|o| o.cached).collect();
    assert_eq!(cached, vec![false, true, true]);
    // Params are compared in canonical form: quoting or spelling out a default changes nothing.
    let pipeline = Pipeline::load(&w.file, &registry, &[]).expect("load");
    run_all(&pipeline, &w.cache);
    let respelled = PIPELINE.replace("text: a }", "text: \"a\", times: 1 }");
    assert_ne!(respelled, PIPELINE);
    fs::write(&w.file, respelled).expect("write");
    let pipeline = Pipeline::load(&w.file, &registry, &[]).expect("load");
    assert!(
        plan(&pipeline, &w.cache, &[]).expect("plan").iter().all(|p| p.cached),
        "canonical params"
    );
}

#[test]
fn forced_run_recomputes_and_replaces_the_entry() {
    let w = world();
    let registry = registry_v::<1>();
    let pipeline = Pipeline::load(&w.file, &registry, &[]).expect("load");
    run_all(&pipeline, &w.cache);
    let options = RunOptions { force: vec!["first".to_owned()], ..RunOptions::default() };
    let outcomes = run(&pipeline, &w.cache, &options).expect("forced run");
    assert!(outcomes.iter().all(|o| !o.cached), "first and everything downstream recomputed");
    assert!(plan(&pipeline, &w.cache, &[]).expect("plan").iter().all(|p| p.cached));
}

#[test]
fn independent_stages_overlap_in_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("p.yaml");
    fs::write(
        &file,
        "name: overlap\nstages:\n  a: { run: \"sleep 0.6; echo a > {outputs.x}\", outputs: [x] }\n  b: { run: \"sleep 0.6; echo b > {outputs.x}\", outputs: [x] }\n",
    )
    .expect("pipeline");
    let pipeline = Pipeline::load(&file, &Registry::new(), &[]).expect("load");
    let cache = Cache::open(&dir.path().join("c")).expect("cache");
    let options = RunOptions { jobs: 2, ..RunOptions::default() };
    let outcomes = run(&pipeline, &cache, &options).expect("run");
    let (a, b) = (&outcomes[0].manifest, &outcomes[1].manifest);
    assert!(
        a.started_unix < b.finished_unix && b.started_unix < a.finished_unix,
        "a [{}, {}] and b [{}, {}] should overlap",
        a.started_unix,
        a.finished_unix,
        b.started_unix,
        b.finished_unix
    );
}

#[test]
fn failing_stage_commits_nothing_and_names_the_stage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("p.yaml");
    fs::write(
        &file,
        "name: fails\nstages:\n  bad: { run: \"echo partial > {outputs.x}; echo boom >&2; exit 3\", outputs: [x] }\n  lazy: { run: \"echo > {outputs.y}\", outputs: [y] }\n",
    )
    .expect("pipeline");
    let pipeline = Pipeline::load(&file, &Registry::new(), &[]).expect("load");
    let cache = Cache::open(&dir.path().join("c")).expect("cache");
    let err = run(&pipeline, &cache, &RunOptions::default()).expect_err("fails").to_string();
    assert!(err.contains("stage `bad`") && err.contains("boom"), "{err}");
    let plans = plan(&pipeline, &cache, &[]).expect("plan");
    assert!(!plans[0].cached);
    assert_eq!(
        fs::read_dir(cache.root().join("tmp")).expect("tmp").count(),
        0,
        "temp entry removed"
    );
}

#[test]
fn missing_output_of_external_stage_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("p.yaml");
    fs::write(&file, "name: lazy\nstages:\n  s: { run: \"true\", outputs: [made] }\n")
        .expect("pipeline");
    let pipeline = Pipeline::load(&file, &Registry::new(), &[]).expect("load");
    let cache = Cache::open(&dir.path().join("c")).expect("cache");
    let err = run(&pipeline, &cache, &RunOptions::default()).expect_err("no output").to_string();
    assert!(err.contains("without writing output `made`"), "{err}");
}

#[test]
fn gc_keeps_referenced_entries_only() {
    let w = world();
    let registry = registry_v::<1>();
    let pipeline = Pipeline::load(&w.file, &registry, &[]).expect("load");
    run_all(&pipeline, &w.cache);
    let old = Pipeline::load(&w.file, &registry, &["second.times=3".to_owned()]).expect("load");
    run_all(&old, &w.cache);
    assert_eq!(w.cache.entry_keys().len(), 5, "first is shared; second and script twice");
    let dry = gc(std::slice::from_ref(&pipeline), &w.cache, true).expect("dry run");
    assert_eq!(dry.entries.len(), 2);
    assert_eq!(w.cache.entry_keys().len(), 5, "dry run removes nothing");
    let report = gc(std::slice::from_ref(&pipeline), &w.cache, false).expect("gc");
    assert_eq!(report.entries.len(), 2);
    assert!(plan(&pipeline, &w.cache, &[]).expect("plan").iter().all(|p| p.cached));
}

#[test]
fn gc_removes_dead_temp_dirs_of_this_host_and_keeps_other_hosts() {
    let w = world();
    let pipeline = Pipeline::load(&w.file, &registry_v::<1>(), &[]).expect("load");
    run_all(&pipeline, &w.cache);
    let tmp = w.cache.root().join("tmp");
    // What this host's temp dirs are named like: key.pid.nanos.host.
    let key = ContentHash::of_bytes(b"gc-temp");
    let live = w.cache.temp_dir(&key).expect("temp dir");
    let name = live.file_name().and_then(|n| n.to_str()).expect("utf-8").to_owned();
    let host = name.rsplit('.').next().expect("host part").to_owned();
    assert!(!host.is_empty() && name.split('.').count() == 4, "{name}");
    let dead_pid = 999_999_999u32; // above pid_max: no such process
    let dead_here = tmp.join(format!("{}.{dead_pid}.1.{host}", key.as_str()));
    let dead_legacy = tmp.join(format!("{}.{dead_pid}.2", key.as_str()));
    let elsewhere = tmp.join(format!("{}.{dead_pid}.3.some-other-node", key.as_str()));
    for d in [&dead_here, &dead_legacy, &elsewhere] {
        fs::create_dir_all(d).expect("mkdir");
    }
    let report = gc(std::slice::from_ref(&pipeline), &w.cache, false).expect("gc");
    assert!(live.exists(), "this process's own temp dir stays");
    assert!(!dead_here.exists() && !dead_legacy.exists(), "dead runs of this host go");
    assert!(elsewhere.exists(), "another node's run may be alive: kept");
    assert_eq!(report.other_hosts, vec![elsewhere]);
    assert_eq!(report.temp_dirs.len(), 2);
}

/// Concatenates the files of its list input `parts`, in order.
struct Cat;

impl Stage for Cat {
    type Params = brainpipe_core::NoParams;
    const NAME: &'static str = "test.cat";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str = "test stage with a list input";

    fn inputs(&self) -> Vec<Port> {
        vec![Port::input("parts", ArtifactKind::File, "texts to join").many()]
    }

    fn outputs(&self) -> Vec<Port> {
        vec![Port::output("text", "text.txt", ArtifactKind::File, "the joined text")]
    }

    fn run(&self, ctx: &mut Context, _: &Self::Params) -> Result<(), StageError> {
        let mut text = String::new();
        for part in ctx.input_list("parts") {
            text.push_str(&fs::read_to_string(part)?);
        }
        fs::write(ctx.output("text"), text)?;
        Ok(())
    }
}

#[test]
fn list_inputs_reach_builtin_and_external_stages_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("p.yaml");
    // Twelve parts: `parts#10` must come after `parts#9`, not after `parts#1`.
    let parts: Vec<String> = (0..12).map(|i| format!("e{i}.text")).collect();
    let mut text = "name: lists\nstages:\n".to_owned();
    for i in 0..12 {
        text.push_str(&format!("  e{i}: {{ uses: test.echo, with: {{ text: \"{i},\" }} }}\n"));
    }
    text.push_str(&format!(
        "  joined: {{ uses: test.cat, inputs: {{ parts: [{}] }} }}\n",
        parts.join(", ")
    ));
    text.push_str(&format!(
        "  shell:\n    run: \"cat {{inputs.parts}} > {{outputs.out}}\"\n    inputs:\n      parts: [{}]\n    outputs: [out]\n",
        parts.join(", ")
    ));
    fs::write(&file, &text).expect("pipeline");
    let mut registry = registry_v::<1>();
    registry.register(Arc::new(Cat));
    let cache = Cache::open(&dir.path().join("c")).expect("cache");
    let pipeline = Pipeline::load(&file, &registry, &[]).expect("load");
    let outcomes = run(&pipeline, &cache, &RunOptions::default()).expect("run");
    let expected: String = (0..12).map(|i| format!("{i},")).collect();
    let read = |id: &str, name: &str| {
        let o = outcomes.iter().find(|o| o.id == id).expect("outcome");
        fs::read_to_string(o.dir.join(name)).expect("output")
    };
    assert_eq!(read("joined", "text.txt"), expected);
    assert_eq!(read("shell", "out"), expected);

    // A list for an input that takes one artifact: located at the list.
    let bad = "name: bad\nstages:\n  a: { uses: test.echo }\n  b:\n    uses: test.echo\n    inputs:\n      source: [a.text, a.text]\n";
    fs::write(&file, bad).expect("pipeline");
    let err = Pipeline::load(&file, &registry, &[]).err().expect("refused").to_string();
    assert!(err.contains(":7:15:") && err.contains("takes one artifact, not a list"), "{err}");
    // An empty list leaves a required list input unfed.
    let empty = "name: empty\nstages:\n  j: { uses: test.cat, inputs: { parts: [] } }\n";
    fs::write(&file, empty).expect("pipeline");
    let err = Pipeline::load(&file, &registry, &[]).err().expect("refused").to_string();
    assert!(err.contains("needs input `parts`"), "{err}");
}

#[test]
fn a_param_holding_placeholder_text_is_not_expanded_again() {
    // Issue 15.1: with one substitution after another, `{params.k2}` inside k1's value was
    // expanded a second time inside k1's quotes, and k2's `;` reached the shell.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("p.yaml");
    let pwned = dir.path().join("pwned");
    let pipeline_text = format!(
        "name: quoting\nstages:\n  s:\n    run: \"echo {{params.k1}} {{params.k2}} > {{outputs.o}}\"\n    \
         with: {{ k1: \"{{params.k2}}\", k2: \"x; touch {}; echo\" }}\n    outputs: [o]\n",
        pwned.display()
    );
    fs::write(&file, pipeline_text).expect("pipeline");
    let pipeline = Pipeline::load(&file, &Registry::new(), &[]).expect("load");
    let cache = Cache::open(&dir.path().join("c")).expect("cache");
    run(&pipeline, &cache, &RunOptions::default()).expect("run");
    assert!(!pwned.exists(), "a param's text reached the shell unquoted");
    let out = fs::read_to_string(dir.path().join("c/runs/quoting/s/o")).expect("output");
    assert_eq!(out, format!("{{params.k2}} x; touch {}; echo\n", pwned.display()));
}

#[test]
fn placeholders_are_filled_in_one_pass() {
    use brainpipe_pipeline::fill_placeholders;
    let value = |p: &str| match p {
        "a" => Some("{b}".to_owned()),
        "b" => Some("B".to_owned()),
        _ => None,
    };
    assert_eq!(fill_placeholders("{a} {b} {c} {{b} {} {a.", value), "{b} B {c} {B {} {a.");
}

/// The file `first`'s cached output lives in.
fn first_output(w: &World, pipeline: &Pipeline) -> std::path::PathBuf {
    let key = plan(pipeline, &w.cache, &[]).expect("plan")[0].key.clone().expect("key");
    let file = w.cache.entry_dir(&key).join("text.txt");
    let mut perms = fs::metadata(&file).expect("output").permissions();
    #[expect(clippy::permissions_set_readonly_false, reason = "the test tampers on purpose")]
    perms.set_readonly(false);
    fs::set_permissions(&file, perms).expect("writable");
    file
}

#[test]
fn a_tampered_entry_is_reported_set_aside_and_recomputed() {
    // Issue 15.2: a changed, truncated or deleted cached output was reused silently.
    type Tamper = fn(&std::path::Path);
    let tampers: [(&str, Tamper); 3] = [
        ("flip", |f| {
            let mut bytes = fs::read(f).expect("read");
            bytes[0] ^= 1;
            fs::write(f, bytes).expect("write");
        }),
        ("truncate", |f| fs::write(f, b"").expect("truncate")),
        ("delete", |f| fs::remove_file(f).expect("delete")),
    ];
    for (what, tamper) in tampers {
        let w = world();
        let registry = registry_v::<1>();
        let pipeline = Pipeline::load(&w.file, &registry, &[]).expect("load");
        run_all(&pipeline, &w.cache);
        let file = first_output(&w, &pipeline);
        tamper(&file);
        let plans = plan(&pipeline, &w.cache, &[]).expect("plan");
        assert!(
            matches!(&plans[0].reasons[..], [Reason::EntryDamaged { .. }]),
            "{what}: {:?}",
            plans[0].reasons
        );
        // Forcing only the downstream stage must not compute it from the damaged bytes.
        let options = RunOptions { force: vec!["second".to_owned()], ..RunOptions::default() };
        let outcomes = run(&pipeline, &w.cache, &options).expect("run");
        assert!(!outcomes[0].cached, "{what}: the damaged stage is recomputed");
        assert_eq!(fs::read_to_string(&file).expect("restored"), "a1", "{what}");
        let second = fs::read_to_string(outcomes[1].dir.join("text.txt")).expect("second");
        assert_eq!(second, "helloa1", "{what}: downstream read the recomputed bytes");
        let quarantined = fs::read_dir(w.cache.root().join("quarantine")).expect("q").count();
        assert_eq!(quarantined, 1, "{what}: the damaged entry is kept aside");
        assert!(plan(&pipeline, &w.cache, &[]).expect("plan").iter().all(|p| p.cached));
    }
}

#[test]
fn verify_rehashes_every_entry_and_quarantines_damage() {
    let w = world();
    let registry = registry_v::<1>();
    let pipeline = Pipeline::load(&w.file, &registry, &[]).expect("load");
    run_all(&pipeline, &w.cache);
    let report = brainpipe_pipeline::verify(&w.cache, None, false, 2, &|_, _| {}).expect("verify");
    assert_eq!((report.checked, report.damaged.len()), (3, 0));
    let file = first_output(&w, &pipeline);
    let mut bytes = fs::read(&file).expect("read");
    bytes[1] ^= 0x20;
    fs::write(&file, bytes).expect("write");
    let keys = brainpipe_pipeline::pipeline_keys(std::slice::from_ref(&pipeline), &w.cache);
    let kept = brainpipe_pipeline::verify(&w.cache, Some(&keys), true, 2, &|_, _| {}).expect("v");
    assert_eq!(kept.damaged.len(), 1);
    assert!(kept.damaged[0].detail.contains("output `text` (text.txt) changed"), "{kept:?}");
    assert!(kept.damaged[0].quarantined.is_none());
    let moved = brainpipe_pipeline::verify(&w.cache, Some(&keys), false, 2, &|_, _| {}).expect("v");
    let to = moved.damaged[0].quarantined.clone().expect("quarantined");
    assert!(to.starts_with(w.cache.root().join("quarantine")), "{to:?}");
    assert_eq!(w.cache.entry_keys().len(), 2);
}

/// A pipeline of `n` external stages `s0`…`s{n-1}`, four lines each (stage `i` written at file
/// position `p` starts on line `3 + 4p`, its `inputs` on line `5 + 4p`, the reference at column
/// 18): `s{i}` reads `s{i-1}`, and with `fan_in` every tenth stage reads the ten before it. The
/// stages are written in `order`; `edit` may rewrite a stage's inputs line.
fn chain_text(
    n: usize,
    fan_in: bool,
    order: impl Iterator<Item = usize>,
    edit: impl Fn(usize, String) -> String,
) -> String {
    let mut text = format!("name: chain{n}\nstages:\n");
    for i in order {
        let inputs = match i {
            0 => "inputs: {}".to_owned(),
            _ if fan_in && i % 10 == 0 => {
                let parts: Vec<String> = (i - 10..i).map(|j| format!("s{j}.o")).collect();
                format!("inputs: {{ parts: [{}] }}", parts.join(", "))
            }
            _ => format!("inputs: {{ x: s{}.o }}", i - 1),
        };
        let run = match i {
            0 => "echo 0 > {outputs.o}",
            _ if fan_in && i % 10 == 0 => "cat {inputs.parts} > {outputs.o}",
            _ => "cat {inputs.x} > {outputs.o}",
        };
        text.push_str(&format!(
            "  s{i}:\n    run: \"{run}\"\n    {}\n    outputs: [o]\n",
            edit(i, inputs)
        ));
    }
    text
}

/// Issue 15.4: planning was quadratic in stages (and worse when the file order was not the run
/// order). A 5,000-stage chain with fan-ins, written last stage first, plans in run order.
#[test]
fn a_5000_stage_chain_written_backwards_plans_in_run_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("p.yaml");
    fs::write(&file, chain_text(5000, true, (0..5000).rev(), |_, line| line)).expect("pipeline");
    let pipeline = Pipeline::load(&file, &Registry::new(), &[]).expect("load");
    let ids: Vec<&str> = pipeline.nodes.iter().map(|n| n.id.as_str()).collect();
    let expected: Vec<String> = (0..5000).map(|i| format!("s{i}")).collect();
    assert_eq!(ids, expected);
    assert_eq!(pipeline.nodes[4990].upstream().len(), 10, "a fan-in reads ten stages");
    let cache = Cache::open(&dir.path().join("c")).expect("cache");
    let plans = plan(&pipeline, &cache, &["s4000".to_owned()]).expect("plan");
    assert_eq!(plans.len(), 5000);
    assert!(plans[0].key.is_some() && plans[1..].iter().all(|p| p.key.is_none()));
    assert_eq!(plans[3999].reasons, vec![Reason::New]);
    assert!(plans[4000..].iter().all(|p| p.reasons == vec![Reason::Forced]));
    // Stage `i` is on line 3 + 4p, where p = 4999 - i is its place in the file.
    let at = pipeline.location("s4321").expect("located");
    assert_eq!((at.line, at.column), (3 + 4 * (4999 - 4321) + 1, 5));
    assert_eq!(pipeline.location("s5000"), None);

    // Among stages ready at once, the one first in the file runs first.
    let text = "name: ties\nstages:\n  z: { run: \"cat {inputs.i} > {outputs.o}\", inputs: { i: y.o }, outputs: [o] }\n  y: { run: \"true\", outputs: [o] }\n  x: { run: \"true\", outputs: [o] }\n  w: { run: \"cat {inputs.i} > {outputs.o}\", inputs: { i: z.o }, outputs: [o] }\n";
    fs::write(&file, text).expect("pipeline");
    let pipeline = Pipeline::load(&file, &Registry::new(), &[]).expect("load");
    let ids: Vec<&str> = pipeline.nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids, ["y", "z", "x", "w"]);
}

/// Issue 15.4: a dangling reference, a cycle through every stage, a repeated id and a syntax
/// error, each deep in a large file, are reported with the same file:line:col as in a small one.
#[test]
fn errors_deep_in_a_10000_stage_file_name_their_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("p.yaml");
    let load_err = |text: String| {
        fs::write(&file, text).expect("pipeline");
        Pipeline::load(&file, &Registry::new(), &[]).err().expect("refused").to_string()
    };
    let dangling = |i: usize, line: String| {
        if i == 5001 { "inputs: { x: missing.o }".to_owned() } else { line }
    };
    let err = load_err(chain_text(10_000, true, 0..10_000, dangling));
    assert_eq!(
        err,
        format!(
            "{}:{}:18: stage `s5001` input `x`: `missing.o`: no stage `missing` and no such file",
            file.display(),
            5 + 4 * 5001
        )
    );

    let closed = |i: usize, line: String| {
        if i == 0 { "inputs: { x: s9999.o }".to_owned() } else { line }
    };
    let err = load_err(chain_text(10_000, false, 0..10_000, closed));
    let path: Vec<String> = (0..10_000).chain([0]).map(|i| format!("s{i}")).collect();
    let expected = format!("{}:5:18: cycle: {}", file.display(), path.join(" → "));
    assert!(err == expected, "{}…", &err[..err.len().min(300)]);

    let mut text = chain_text(10_000, true, 0..10_000, |_, line| line);
    text.push_str("  s17: { run: \"true\", outputs: [o] }\n");
    let err = load_err(text);
    let prefix = format!("{}:{}:8: duplicate id `s17`", file.display(), 3 + 4 * 10_000);
    assert!(err.starts_with(&prefix), "{err}");

    let mut text = chain_text(10_000, true, 0..10_000, |_, line| line);
    text.push_str("  broken: { run: \"true\", outputs: [o]\n");
    let err = load_err(text);
    let prefix =
        format!("{}:{}:1: did not find expected ',' or '}}'", file.display(), 4 + 4 * 10_000);
    assert!(err.starts_with(&prefix), "{err}");
}

//! The stages end to end on the synthetic images world of `ingest.synthetic`: train a small CLIP,
//! embed, select captions, augment; and word targets from the shipped GloVe vectors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use brainpipe_artifacts::{
    EmbeddingKind, EmbeddingRow, STIMULI, Stimulus, read_embeddings, read_stimuli, read_targets,
};
use brainpipe_clip::{
    Augment, Embed, MERGES_FILE, SPECIAL_TOKENS_FILE, TOKENIZER_CONFIG_FILE, Train, VOCAB_FILE,
};
use brainpipe_core::{Manifest, read_table, run_standalone, write_table};
use brainpipe_targets::SelectCaptions;
use serde_json::{Value, json};

/// LibTorch's random generator is process-global: training seeds it and draws from it, and loading
/// a model draws from it too (its variables are initialised before the weights are read), so tests
/// that touch LibTorch take turns, or the determinism test's two runs could see other draws between
/// their own. Take it after [`world`] (whose one-time set-up takes it itself).
static LIBTORCH: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    LIBTORCH.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn run(
    stage: &dyn brainpipe_core::DynStage,
    inputs: &[(&str, &Path)],
    params: Value,
    out: &Path,
) -> Manifest {
    let inputs: BTreeMap<String, PathBuf> =
        inputs.iter().map(|(k, v)| ((*k).to_owned(), v.to_path_buf())).collect();
    run_standalone(stage, &inputs, &params, out, &BTreeMap::new())
        .unwrap_or_else(|e| panic!("{}: {e}", stage.name()))
}

/// A study directory holding the first `n` stimuli of the world's table and their images.
fn small_study(w: &World, n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, batches) =
        read_table(&w.study.join("stimuli.parquet"), Some(STIMULI)).expect("stimuli");
    write_table(&dir.path().join("stimuli.parquet"), STIMULI, &[batches[0].slice(0, n)])
        .expect("subset");
    let images = dir.path().join("images");
    std::fs::create_dir(&images).expect("mkdir");
    for s in read_stimuli(&dir.path().join("stimuli.parquet")).expect("subset") {
        let name = s.image.expect("image");
        std::fs::copy(w.study.join(&name), dir.path().join(&name)).expect("copy");
    }
    dir
}

/// One synthetic images study and one trained model, shared by the tests of this file.
struct World {
    _dir: tempfile::TempDir,
    study: PathBuf,
    trained: PathBuf,
    train_manifest: Manifest,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let _turn = one_at_a_time();
        let dir = tempfile::tempdir().expect("tempdir");
        let study = dir.path().join("study");
        let params = json!({"paradigm": "images", "subjects": 1, "resolution_mm": 12, "rois": 20, "test_repeats": 1});
        run(&brainpipe_ingest::Synthetic, &[], params, &study);
        let trained = dir.path().join("train");
        let stimuli = study.join("stimuli.parquet");
        let images = study.join("images");
        let train_manifest = run(
            &Train,
            &[("stimuli", &stimuli), ("images", &images)],
            json!({"device": "cpu"}),
            &trained,
        );
        World { _dir: dir, study, trained, train_manifest }
    })
}

/// What the test recomputes from the written tables, independently of the stages' own scoring:
/// per image, the index of its caption with the highest cosine (f64) to the image, and the cosine.
fn closest_captions(
    rows: &[EmbeddingRow],
    values: &[f32],
    dim: usize,
) -> BTreeMap<i32, (i32, f64)> {
    let row = |i: usize| &values[i * dim..(i + 1) * dim];
    let cosine = |a: &[f32], b: &[f32]| {
        let dot = |x: &[f32], y: &[f32]| {
            x.iter().zip(y).map(|(p, q)| f64::from(*p) * f64::from(*q)).sum::<f64>()
        };
        dot(a, b) / (dot(a, a).sqrt() * dot(b, b).sqrt())
    };
    let mut best = BTreeMap::new();
    for (i, image) in rows.iter().enumerate().filter(|(_, r)| r.kind == EmbeddingKind::Image) {
        for (j, caption) in rows.iter().enumerate() {
            if caption.kind != EmbeddingKind::Caption || caption.stimulus_id != image.stimulus_id {
                continue;
            }
            let c = cosine(row(i), row(j));
            let index = caption.caption_index.expect("caption index");
            let entry = best.entry(image.stimulus_id).or_insert((index, c));
            if c > entry.1 {
                *entry = (index, c);
            }
        }
    }
    best
}

/// Recomputed best-caption accuracy and chance over the stimuli `keep` accepts: the fraction whose
/// closest caption (from [`closest_captions`]) is the generator's recorded best one.
fn recomputed_accuracy(
    closest: &BTreeMap<i32, (i32, f64)>,
    stimuli: &[Stimulus],
    keep: impl Fn(&Stimulus) -> bool,
) -> (f64, f64, usize) {
    let scored: Vec<&Stimulus> =
        stimuli.iter().filter(|s| keep(s) && s.best_caption.is_some()).collect();
    let hits = scored.iter().filter(|s| closest.get(&s.id).map(|c| c.0) == s.best_caption).count();
    let chance = scored.iter().map(|s| 1.0 / s.captions.len() as f64).sum::<f64>();
    let n = scored.len();
    (hits as f64 / n as f64, chance / n as f64, n)
}

#[test]
fn trained_small_clip_picks_the_recorded_best_caption_far_above_chance() {
    let w = world();
    let _turn = one_at_a_time();
    let notes = &w.train_manifest.notes;
    println!(
        "clip.train (defaults): notes say best-caption accuracy train {}, held-out {}, chance {}; final loss {}",
        notes["train_best_caption_accuracy"],
        notes["test_best_caption_accuracy"],
        notes["best_caption_chance"],
        notes["final_loss"]
    );

    let out = w.trained.parent().expect("dir").join("embed");
    let stimuli = w.study.join("stimuli.parquet");
    let images = w.study.join("images");
    let model = w.trained.join("model");
    let m = run(
        &Embed,
        &[("stimuli", &stimuli), ("images", &images), ("model", &model)],
        json!({"device": "cpu", "batch_size": 128}),
        &out,
    );
    assert_eq!(m.notes["device"], "cpu");
    let (rows, values, dim) = read_embeddings(&out.join("embeddings.parquet")).expect("embeddings");
    let table = read_stimuli(&stimuli).expect("stimuli");
    let n = table.len();
    assert_eq!(rows.len(), n * 6, "one image and five captions per stimulus");
    assert_eq!(values.len(), rows.len() * dim);

    // The scores, recomputed here from the embeddings table and the generator's recorded best
    // captions, not read from the stages' notes.
    let closest = closest_captions(&rows, &values, dim);
    assert_eq!(closest.len(), n, "every image has captions");
    let (held_out, chance, tested) = recomputed_accuracy(&closest, &table, |s| s.split == "test");
    let (all, _, scored) = recomputed_accuracy(&closest, &table, |_| true);
    println!(
        "recomputed from embeddings.parquet: best caption on {held_out:.3} of {tested} held-out images, {all:.3} of all {scored}, chance {chance:.3}"
    );
    assert!(tested >= 10 && scored == n, "{tested} held-out, {scored} scored of {n}");
    assert!(held_out > 2.0 * chance, "held-out accuracy {held_out} vs chance {chance}");
    assert!(all > 2.0 * chance, "accuracy {all} vs chance {chance}");
    // clip.train scored the same model on the same images: its note agrees up to one image whose
    // closest caption a different batching could flip.
    let noted = notes["test_best_caption_accuracy"].as_f64().expect("accuracy");
    assert!((noted - held_out).abs() <= 1.0 / tested as f64 + 1e-12, "{noted} vs {held_out}");
    let noted_chance = notes["best_caption_chance"].as_f64().expect("chance");
    assert!((noted_chance - chance).abs() < 1e-12, "{noted_chance} vs {chance}");

    let selected = out.parent().expect("dir").join("select");
    let m = run(
        &SelectCaptions,
        &[("embeddings", &out.join("embeddings.parquet")), ("stimuli", &stimuli)],
        json!({}),
        &selected,
    );
    assert_eq!(m.notes["best_caption_accuracy"].as_f64(), Some(all), "the stage's own score");
    let targets = read_targets(&selected.join("targets.parquet")).expect("targets").rows();
    assert_eq!(targets.len(), n);
    let caption_rows: BTreeMap<(i32, i32), usize> = rows
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.caption_index.map(|c| ((r.stimulus_id, c), i)))
        .collect();
    for t in &targets {
        let (index, cosine) = closest[&t.class];
        assert_eq!(t.caption_index, Some(index), "{}: the closest caption", t.stimulus);
        let similarity = f64::from(t.similarity.expect("similarity"));
        assert!((similarity - cosine).abs() < 1e-5, "{}: {similarity} vs {cosine}", t.stimulus);
        let row = caption_rows[&(t.class, index)];
        assert_eq!(t.target, values[row * dim..(row + 1) * dim], "the caption's embedding");
        assert_eq!(t.caption, rows[row].caption);
    }
}

#[test]
fn augment_writes_seeded_copies_linked_to_their_stimulus() {
    let w = world();
    let _turn = one_at_a_time();
    let study = small_study(w, 12);
    let stimuli = study.path().join("stimuli.parquet");
    let images = study.path().join("images");
    let model = w.trained.join("model");
    let base = study.path();
    let params = json!({"copies": 2, "device": "cpu"});
    let a = base.join("augment-a");
    let b = base.join("augment-b");
    run(
        &Augment,
        &[("stimuli", &stimuli), ("images", &images), ("model", &model)],
        params.clone(),
        &a,
    );
    run(&Augment, &[("stimuli", &stimuli), ("images", &images), ("model", &model)], params, &b);
    let (rows, _, _) = read_embeddings(&a.join("augmented.parquet")).expect("augmented");
    let n = read_stimuli(&stimuli).expect("stimuli").len();
    assert_eq!(rows.len(), 2 * n);
    let first = rows[1].image.as_deref().expect("path");
    assert_eq!(rows[1].augmentation, Some(1));
    assert_eq!(
        std::fs::read(a.join(first)).expect("a"),
        std::fs::read(b.join(first)).expect("b"),
        "same seed, same bytes"
    );
    assert_eq!(
        std::fs::read(a.join("augmented.parquet")).expect("a"),
        std::fs::read(b.join("augmented.parquet")).expect("b")
    );
}

#[test]
fn training_is_deterministic_for_a_seed() {
    let study = small_study(world(), 24);
    let _turn = one_at_a_time();
    let stimuli = study.path().join("stimuli.parquet");
    let images = study.path().join("images");
    let base = study.path();
    let params = json!({"steps": 3, "batch_size": 16, "device": "cpu", "seed": 11});
    run(&Train, &[("stimuli", &stimuli), ("images", &images)], params.clone(), &base.join("det-a"));
    run(&Train, &[("stimuli", &stimuli), ("images", &images)], params, &base.join("det-b"));
    let weights =
        |d: &str| std::fs::read(base.join(d).join("model/model.safetensors")).expect("weights");
    assert_eq!(weights("det-a"), weights("det-b"), "same seed, same bytes");
    for file in [VOCAB_FILE, MERGES_FILE, TOKENIZER_CONFIG_FILE, SPECIAL_TOKENS_FILE] {
        assert!(base.join("det-a/model").join(file).is_file(), "clip.train writes {file}");
    }
}

#[test]
fn a_corrupt_image_is_an_error_naming_it() {
    let w = world();
    let _turn = one_at_a_time();
    let dir = small_study(w, 8);
    let images = dir.path().join("images");
    std::fs::write(images.join("img-00003.png"), b"\x89PNG\r\n\x1a\ntruncated").expect("corrupt");
    let inputs: BTreeMap<String, PathBuf> = [
        ("stimuli".to_owned(), dir.path().join("stimuli.parquet")),
        ("images".to_owned(), images),
        ("model".to_owned(), w.trained.join("model")),
    ]
    .into();
    let err = run_standalone(
        &Embed,
        &inputs,
        &json!({"device": "cpu"}),
        &dir.path().join("out"),
        &BTreeMap::new(),
    )
    .expect_err("corrupt image");
    assert!(err.to_string().contains("img-00003.png: image: corrupt PNG"), "{err}");
}

/// Writes a `reconstructions/1` table as diffusion.decode does (rows: stimulus, image) with the
/// PNGs copied from the study into `images/` beside it.
fn reconstructions(w: &World, dir: &Path, rows: &[(&str, &str)]) -> PathBuf {
    use arrow::array::{ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray};
    use std::sync::Arc;
    let utf8 = |f: &dyn Fn(&(&str, &str)) -> String| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
    };
    let n = rows.len() as i32;
    let batch = RecordBatch::try_from_iter(vec![
        ("model", utf8(&|_| "truth".to_owned())),
        ("subject", utf8(&|_| "all".to_owned())),
        ("trial", Arc::new(Int32Array::from_iter_values(0..n)) as ArrayRef),
        ("stimulus", utf8(&|r| r.0.to_owned())),
        ("fold", Arc::new(Int32Array::from_iter_values((0..n).map(|_| 0))) as ArrayRef),
        ("image", utf8(&|r| r.1.to_owned())),
        ("seed", Arc::new(Int64Array::from_iter_values((0..n).map(i64::from))) as ArrayRef),
    ])
    .expect("batch");
    for (stimulus, image) in rows {
        let to = dir.join("images").join(image);
        std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
        std::fs::copy(w.study.join(stimulus), to).expect("copy");
    }
    let table = dir.join("reconstructions.parquet");
    let kind = brainpipe_core::TableKind::new("reconstructions", 1);
    write_table(&table, kind, &[batch]).expect("table");
    table
}

#[test]
fn embed_reads_diffusion_reconstructions_and_keys_rows_by_their_png() {
    let w = world();
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let study = small_study(w, 4);
    let stimuli = read_stimuli(&study.path().join("stimuli.parquet")).expect("stimuli");
    let seen: Vec<String> = stimuli.iter().map(|s| s.image.clone().expect("image")).collect();
    // Two decodes (two tables), each "reconstruction" a copy of a seen image.
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    let ta = reconstructions(
        w,
        &a,
        &[(&seen[0], "truth/all/trial-0000.png"), (&seen[1], "truth/all/trial-0001.png")],
    );
    let tb = reconstructions(w, &b, &[(&seen[2], "ridge/s1/trial-0000.png")]);
    let model = w.trained.join("model");
    let out = dir.path().join("out");
    run(
        &Embed,
        &[("reconstructions#0", &ta), ("reconstructions#1", &tb), ("model", &model)],
        json!({"device": "cpu"}),
        &out,
    );
    let (rows, values, dim) = read_embeddings(&out.join("embeddings.parquet")).expect("embeddings");
    let keys: Vec<(&str, Option<&str>)> =
        rows.iter().map(|r| (r.stimulus.as_str(), r.image.as_deref())).collect();
    assert_eq!(
        keys,
        [
            (seen[0].as_str(), Some("truth/all/trial-0000.png")),
            (seen[1].as_str(), Some("truth/all/trial-0001.png")),
            (seen[2].as_str(), Some("ridge/s1/trial-0000.png")),
        ]
    );
    assert!(rows.iter().all(|r| r.kind == EmbeddingKind::Image));
    // The same pixels embed to the same vector as the study's own image.
    let study_out = dir.path().join("study-embed");
    let images = study.path().join("images");
    let table = study.path().join("stimuli.parquet");
    run(
        &Embed,
        &[("stimuli", &table), ("images", &images), ("model", &model)],
        json!({"device": "cpu"}),
        &study_out,
    );
    let (srows, svalues, _) =
        read_embeddings(&study_out.join("embeddings.parquet")).expect("study");
    let k = srows.iter().position(|r| r.image.as_deref() == Some(seen[2].as_str())).expect("row");
    let diff = values[2 * dim..3 * dim]
        .iter()
        .zip(&svalues[k * dim..(k + 1) * dim])
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(diff < 1e-5, "a copy of a seen image embeds like it: max diff {diff}");

    // A missing PNG is named; stimuli and reconstructions together are refused.
    std::fs::remove_file(b.join("images/ridge/s1/trial-0000.png")).expect("rm");
    let inputs: BTreeMap<String, PathBuf> =
        [("reconstructions".to_owned(), tb.clone()), ("model".to_owned(), model.clone())].into();
    let err = run_standalone(
        &Embed,
        &inputs,
        &json!({"device": "cpu"}),
        &dir.path().join("x"),
        &BTreeMap::new(),
    )
    .expect_err("missing png");
    assert!(err.to_string().contains("ridge/s1/trial-0000.png"), "{err}");
    let inputs: BTreeMap<String, PathBuf> = [
        ("reconstructions".to_owned(), ta),
        ("stimuli".to_owned(), table),
        ("model".to_owned(), model),
    ]
    .into();
    let err = run_standalone(
        &Embed,
        &inputs,
        &json!({"device": "cpu"}),
        &dir.path().join("y"),
        &BTreeMap::new(),
    )
    .expect_err("both");
    assert!(err.to_string().contains("not both"), "{err}");
}

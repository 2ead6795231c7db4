//! `eval.words`: Brain2Word's scores of models' predictions against the word targets.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use brainpipe_core::{ArtifactKind, Context, Port, Stage, StageError};

use crate::error::{EvalError, Result};
use crate::metrics::{
    Rows, Similarity, chance_top_k, mean_rank, pairwise_accuracy, rank_histogram, ranks,
    similarity_matrix, top_k,
};
use brainpipe_artifacts::{
    EpochRecord, MetricRow, Predictions, Targets, read_metrics, read_predictions, read_targets,
    read_training, write_metrics,
};

/// Brain2Word reports top-1, top-5 and top-10.
pub const BRAIN2WORD_TOP_K: [u32; 3] = [1, 5, 10];

/// The paradigm label of rows that pool every paradigm, and the subject label of averages.
pub const ALL: &str = "all";

brainpipe_core::params! {
    /// Params of `eval.words`.
    pub struct WordsParams {
        /// How predictions are compared with the candidate targets for top-k and ranks: `cosine`
        /// (Brain2Word) or `pearson`. Pairwise accuracy always uses Pearson, as Brain2Word does.
        pub similarity: Similarity = Similarity::Cosine,
        /// Subtract the mean of the candidate vectors from candidates and predictions before
        /// ranking. GloVe vectors share a large common direction that otherwise dominates the
        /// cosine (a deviation: the paper does not say; `false` ranks raw vectors). Pairwise
        /// accuracy always uses the raw vectors, as Brain2Word defines it.
        pub centre: bool = true,
        /// The k of each top-k accuracy (Brain2Word: 1, 5, 10).
        pub top_k: Vec<u32> = BRAIN2WORD_TOP_K.to_vec(),
        /// Model name to report (one `predictions` table only); empty: the predictions' `model`
        /// column.
        pub model: String = String::new(),
    }
}

/// `eval.words`: predictions + targets → `metrics.parquet`.
pub struct Words;

impl Stage for Words {
    type Params = WordsParams;
    const NAME: &'static str = "eval.words";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str = "Brain2Word metrics of models' predictions: top-k, ranks, rank histogram, pairwise accuracy per held-out subject and paradigm";

    fn inputs(&self) -> Vec<Port> {
        vec![
            Port::input("predictions", ArtifactKind::table(brainpipe_artifacts::PREDICTIONS), "predictions.parquet of models.train / models.ridge / models.predict, one table per model").many(),
            Port::input("targets", ArtifactKind::table(brainpipe_artifacts::TARGETS), "targets.parquet of clip.words: the candidate vectors"),
            Port::input("training", ArtifactKind::table(brainpipe_artifacts::TRAINING), "training.parquet of the models: their curves go into the metrics for the report").optional().many(),
            Port::input("previous", ArtifactKind::table(brainpipe_artifacts::METRICS), "metrics.parquet of other eval.words runs: their rows are carried over").optional().many(),
        ]
    }

    fn outputs(&self) -> Vec<Port> {
        vec![Port::output(
            "metrics",
            "metrics.parquet",
            ArtifactKind::table(brainpipe_artifacts::METRICS),
            "model, subject, fold, paradigm, metric, index, value",
        )]
    }

    fn run(&self, ctx: &mut Context, params: &WordsParams) -> Result<(), StageError> {
        let targets = read_targets(ctx.input("targets")?)?;
        let prediction_paths: Vec<PathBuf> =
            ctx.input_list("predictions").into_iter().map(Path::to_path_buf).collect();
        if !params.model.is_empty() && prediction_paths.len() > 1 {
            return Err(StageError::msg(format!(
                "`model` names one predictions table; {} were given (their `model` columns name them)",
                prediction_paths.len()
            )));
        }
        let mut rows = Vec::new();
        for path in ctx.input_list("previous") {
            rows.extend(read_metrics(path)?);
        }
        let top: Vec<usize> = params.top_k.iter().map(|&k| k as usize).collect();
        let (mut scans, mut skipped) = (0, 0);
        let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
        for path in &prediction_paths {
            let mut predictions = read_predictions(path)?;
            if !params.model.is_empty() {
                predictions.model.iter_mut().for_each(|m| m.clone_from(&params.model));
            }
            // Two tables with the same model name would mix their rows: refuse.
            for model in predictions.model.iter().collect::<BTreeSet<_>>() {
                if let Some(first) = seen.insert(model.clone(), path.clone()) {
                    return Err(EvalError::data(
                        path,
                        format!("model `{model}` is also in {}", first.display()),
                    )
                    .into());
                }
            }
            let scored =
                score_words(&predictions, &targets, params.similarity, params.centre, &top, path)?;
            scans += scored.scans;
            skipped += scored.skipped;
            for row in scored.rows.iter().filter(|r| r.subject == ALL && r.paradigm == ALL) {
                if r_is_headline(&row.metric) {
                    ctx.note(format!("{}.{}", row.model, row.metric), row.value);
                }
            }
            rows.extend(scored.rows);
        }
        ctx.note("scans", scans);
        ctx.note("skipped_scans", skipped);
        for path in ctx.input_list("training") {
            rows.extend(curve_rows(&read_training(path)?, &params.model));
        }
        write_metrics(&ctx.output("metrics"), &rows)?;
        Ok(())
    }
}

fn r_is_headline(metric: &str) -> bool {
    matches!(metric, "top1" | "top5" | "pairwise")
}

/// The metric rows of one predictions table, and how many scans went in.
pub struct Scored {
    /// Per (model, fold, subject) × paradigm, plus averages over subjects (`subject` = `all`).
    pub rows: Vec<MetricRow>,
    /// Scans scored.
    pub scans: usize,
    /// Scans skipped because their stimulus has no target.
    pub skipped: usize,
}

/// Scores `predictions` against every target as candidates.
///
/// For each (model, fold, held-out subject): top-k, mean rank and the rank histogram over its
/// scans (per paradigm and `all`), and Brain2Word's pairwise accuracy per block — the scans of one
/// paradigm, split by repetition so each stimulus appears once per block — averaged over blocks.
/// Averages over subjects follow with `subject` = `all`, `fold` = -1.
pub fn score_words(
    predictions: &Predictions,
    targets: &Targets,
    similarity: Similarity,
    centre: bool,
    top: &[usize],
    path: &Path,
) -> Result<Scored> {
    if predictions.embedding_dim != targets.dim {
        return Err(EvalError::data(
            path,
            format!(
                "predictions have {} dimensions, the targets {}",
                predictions.embedding_dim, targets.dim
            ),
        ));
    }
    let row_of: HashMap<&str, usize> =
        targets.stimulus.iter().enumerate().map(|(i, s)| (s.as_str(), i)).collect();
    let n_cand = targets.len();
    let dim = predictions.embedding_dim;
    let mean: Vec<f32> = if centre {
        (0..dim)
            .map(|d| {
                (0..n_cand).map(|j| f64::from(targets.vectors[j * dim + d])).sum::<f64>() as f32
                    / n_cand as f32
            })
            .collect()
    } else {
        vec![0.0; dim]
    };
    let centred = |values: &[f32]| -> Vec<f32> {
        values.iter().enumerate().map(|(i, v)| v - mean[i % dim]).collect()
    };
    let candidate_values = centred(&targets.vectors);
    let candidates = Rows::new(&candidate_values, dim);
    // (model, fold, subject) → scan indices with a target.
    let mut groups: BTreeMap<(String, i32, String), Vec<(usize, usize)>> = BTreeMap::new();
    let mut skipped = 0;
    for i in 0..predictions.len() {
        match row_of.get(predictions.stimulus[i].as_str()) {
            Some(&t) => groups
                .entry((
                    predictions.model[i].clone(),
                    predictions.fold[i],
                    predictions.subject[i].clone(),
                ))
                .or_default()
                .push((i, t)),
            None => skipped += 1,
        }
    }
    if groups.is_empty() {
        return Err(EvalError::data(path, "no prediction's stimulus has a target"));
    }
    let mut rows = Vec::new();
    for ((model, fold, subject), scans) in &groups {
        let emb: Vec<f32> = centred(
            &scans
                .iter()
                .flat_map(|&(i, _)| predictions.embedding[i * dim..(i + 1) * dim].iter().copied())
                .collect::<Vec<_>>(),
        );
        let sim = similarity_matrix(Rows::new(&emb, dim), candidates, similarity);
        let truth: Vec<usize> = scans.iter().map(|&(_, t)| t).collect();
        let rank = ranks(&sim, n_cand, &truth);
        let class_rank = class_ranks(predictions, targets, scans);
        let mut push = |paradigm: &str, metric: &str, index: Option<i32>, value: f64| {
            rows.push(MetricRow {
                model: model.clone(),
                subject: subject.clone(),
                fold: *fold,
                paradigm: paradigm.to_owned(),
                metric: metric.to_owned(),
                index,
                value,
            });
        };
        let mut by_paradigm: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (k, &(i, _)) in scans.iter().enumerate() {
            by_paradigm.entry(predictions.paradigm[i].as_str()).or_default().push(k);
        }
        let mut all_blocks = Vec::new();
        let mut sections: Vec<(&str, Vec<usize>)> = by_paradigm.into_iter().collect();
        sections.push((ALL, (0..scans.len()).collect()));
        for (paradigm, members) in &sections {
            let r: Vec<usize> = members.iter().map(|&k| rank[k]).collect();
            push(paradigm, "scans", None, r.len() as f64);
            for &k in top {
                push(paradigm, &format!("top{k}"), None, top_k(&r, k));
            }
            push(paradigm, "mean_rank", None, mean_rank(&r));
            if let Some(cr) = &class_rank {
                let c: Vec<usize> = members.iter().map(|&k| cr[k]).collect();
                for &k in top {
                    push(paradigm, &format!("class_top{k}"), None, top_k(&c, k));
                }
            }
            let blocks = if *paradigm == ALL {
                std::mem::take(&mut all_blocks)
            } else {
                let b = pairwise_blocks(predictions, targets, scans, members);
                all_blocks.extend(b.iter().copied());
                b
            };
            if !blocks.is_empty() {
                push(paradigm, "pairwise", None, blocks.iter().sum::<f64>() / blocks.len() as f64);
                push(paradigm, "pairwise_blocks", None, blocks.len() as f64);
            }
            if *paradigm == ALL {
                for (r, &count) in rank_histogram(&r, n_cand).iter().enumerate() {
                    push(ALL, "rank_count", Some(r as i32 + 1), count as f64);
                }
            }
        }
    }
    let mut averages = average_over_subjects(&rows);
    for model in groups.keys().map(|(m, _, _)| m.clone()).collect::<std::collections::BTreeSet<_>>()
    {
        for &k in top {
            averages.push(MetricRow {
                model: model.clone(),
                subject: ALL.into(),
                fold: -1,
                paradigm: ALL.into(),
                metric: format!("chance_top{k}"),
                index: None,
                value: chance_top_k(k, n_cand),
            });
        }
        averages.push(MetricRow {
            model,
            subject: ALL.into(),
            fold: -1,
            paradigm: ALL.into(),
            metric: "candidates".into(),
            index: None,
            value: n_cand as f64,
        });
    }
    rows.extend(averages);
    let scans = groups.values().map(Vec::len).sum();
    Ok(Scored { rows, scans, skipped })
}

/// Ranks of the true class by the classification head's scores, when present.
fn class_ranks(p: &Predictions, targets: &Targets, scans: &[(usize, usize)]) -> Option<Vec<usize>> {
    if p.classes == 0 {
        return None;
    }
    let c = p.classes;
    let mut out = Vec::with_capacity(scans.len());
    for &(i, t) in scans {
        let class = usize::try_from(targets.class[t]).ok().filter(|&k| k < c)?;
        let row: Vec<f64> = p.scores[i * c..(i + 1) * c].iter().map(|&v| f64::from(v)).collect();
        out.push(ranks(&row, c, &[class])[0]);
    }
    Some(out)
}

/// Pairwise accuracy of each block among `members` (indices into `scans`): scans split by the
/// repetition of their stimulus (first showing, second showing…), each block holding every
/// stimulus at most once, as Brain2Word's 180-word paradigm blocks do.
fn pairwise_blocks(
    p: &Predictions,
    targets: &Targets,
    scans: &[(usize, usize)],
    members: &[usize],
) -> Vec<f64> {
    let dim = p.embedding_dim;
    let mut seen: HashMap<usize, usize> = HashMap::new();
    let mut blocks: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for &k in members {
        let t = scans[k].1;
        let repeat = seen.entry(t).or_insert(0);
        blocks.entry(*repeat).or_default().push(k);
        *repeat += 1;
    }
    blocks
        .values()
        .filter(|b| b.len() >= 2)
        .map(|b| {
            let preds: Vec<f32> = b
                .iter()
                .flat_map(|&k| {
                    p.embedding[scans[k].0 * dim..(scans[k].0 + 1) * dim].iter().copied()
                })
                .collect();
            let tgts: Vec<f32> =
                b.iter().flat_map(|&k| targets.vector(scans[k].1).iter().copied()).collect();
            pairwise_accuracy(Rows::new(&preds, dim), Rows::new(&tgts, dim))
        })
        .collect()
}

/// Means over (subject, fold) of every scalar metric, per model and paradigm; rank counts summed.
fn average_over_subjects(rows: &[MetricRow]) -> Vec<MetricRow> {
    /// (model, paradigm, metric, index) → (sum, count).
    type Key = (String, String, String, Option<i32>);
    let mut acc: BTreeMap<Key, (f64, usize)> = BTreeMap::new();
    for r in rows {
        let e = acc
            .entry((r.model.clone(), r.paradigm.clone(), r.metric.clone(), r.index))
            .or_default();
        e.0 += r.value;
        e.1 += 1;
    }
    acc.into_iter()
        .map(|((model, paradigm, metric, index), (sum, n))| {
            let summed = matches!(metric.as_str(), "rank_count" | "scans" | "pairwise_blocks");
            MetricRow {
                model,
                subject: ALL.into(),
                fold: -1,
                paradigm,
                metric,
                index,
                value: if summed { sum } else { sum / n as f64 },
            }
        })
        .collect()
}

/// The training curves as metric rows `curve.<column>` with `index` = epoch.
fn curve_rows(records: &[EpochRecord], model: &str) -> Vec<MetricRow> {
    let mut out = Vec::new();
    for r in records {
        let name = if model.is_empty() { r.model.clone() } else { model.to_owned() };
        let values = [
            ("train_loss", Some(r.train_loss)),
            ("val_loss", r.val_loss),
            ("val_top1", r.val_top1),
            ("val_top5", r.val_top5),
            ("lr", Some(r.lr)),
        ];
        for (metric, value) in values {
            if let Some(value) = value.filter(|v| v.is_finite()) {
                out.push(MetricRow {
                    model: name.clone(),
                    subject: r.held_out.clone(),
                    fold: r.fold,
                    paradigm: ALL.into(),
                    metric: format!("curve.{metric}"),
                    index: Some(r.epoch),
                    value,
                });
            }
        }
    }
    out
}

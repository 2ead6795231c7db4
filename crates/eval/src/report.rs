//! `eval.report`: one self-contained `report.html` (inline SVG, no scripts, no network) from a
//! metrics table — the results in the Brain2Word paper's shape, rank histograms, training curves
//! and per-subject scores — with the synthetic study's oracle ceiling when `study.json` is given.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use brainpipe_core::{ArtifactKind, Context, IoContext, Port, Stage, StageError};
use serde_json::Value;

use crate::error::{EvalError, Result};
use crate::words::ALL;
use brainpipe_artifacts::{MetricRow, read_metrics};

brainpipe_core::params! {
    /// Params of `eval.report`.
    pub struct ReportParams {
        /// Title of the report.
        pub title: String = "Brain2Word on brainpipe".to_owned(),
    }
}

/// `eval.report`: metrics (+ study.json) → report.html.
pub struct Report;

impl Stage for Report {
    type Params = ReportParams;
    const NAME: &'static str = "eval.report";
    const VERSION: u32 = 5;
    const SUMMARY: &'static str = "Self-contained HTML report: results table (model × top-1/5/10, pairwise, vs chance and the oracle ceiling), rank histograms, training curves, per-subject scores";

    fn inputs(&self) -> Vec<Port> {
        vec![
            Port::input(
                "metrics",
                ArtifactKind::table(brainpipe_artifacts::METRICS),
                "metrics.parquet of eval.words (every model)",
            )
            .optional(),
            Port::input(
                "study",
                ArtifactKind::Json,
                "study.json of ingest.synthetic: the oracle ceiling",
            )
            .optional(),
            Port::input(
                "image_metrics",
                ArtifactKind::table(brainpipe_artifacts::IMAGE_METRICS),
                "image_metrics.parquet of eval.images: MindEye's table and distributions",
            )
            .optional(),
            Port::input(
                "clip_metrics",
                ArtifactKind::table(brainpipe_artifacts::METRICS),
                "metrics.parquet of eval.clip: the Brain2CLIP section",
            )
            .optional(),
            Port::input(
                "clip_trials",
                ArtifactKind::table(brainpipe_artifacts::CLIP_TRIALS),
                "trials.parquet of eval.clip: the gallery",
            )
            .optional(),
            Port::input(
                "images",
                ArtifactKind::Directory,
                "the study's images directory: gallery thumbnails",
            )
            .optional(),
            Port::input(
                "reconstructions",
                ArtifactKind::table(brainpipe_artifacts::RECONSTRUCTIONS),
                "reconstructions.parquet of diffusion.decode (images/ beside it): the gallery's reconstructions",
            )
            .optional()
            .many(),
        ]
    }

    fn outputs(&self) -> Vec<Port> {
        vec![Port::output(
            "report",
            "report.html",
            ArtifactKind::Html,
            "one self-contained HTML file",
        )]
    }

    fn run(&self, ctx: &mut Context, params: &ReportParams) -> Result<(), StageError> {
        let rows = match ctx.optional_input("metrics") {
            Some(path) => read_metrics(path)?,
            None => Vec::new(),
        };
        let oracle = match ctx.optional_input("study") {
            Some(path) => Some(Oracle::read(path)?),
            None => None,
        };
        let clip = match ctx.optional_input("clip_metrics") {
            Some(path) => {
                let mut c = crate::clip_report::read(
                    path,
                    ctx.optional_input("clip_trials"),
                    ctx.optional_input("images"),
                )?;
                c.reconstructions =
                    crate::clip_report::read_reconstructions(&ctx.input_list("reconstructions"))?;
                Some(c)
            }
            None => None,
        };
        let mut html = match (&clip, ctx.optional_input("metrics")) {
            (None, None) => {
                return Err(StageError::msg("eval.report needs `metrics` or `clip_metrics`"));
            }
            (None, Some(_)) => render(&params.title, &rows, oracle.as_ref()),
            (Some(c), None) => crate::clip_report::page(&params.title, c, oracle.as_ref()),
            (Some(c), Some(_)) => render(&params.title, &rows, oracle.as_ref()).replace(
                "</body></html>\n",
                &format!("{}</body></html>\n", crate::clip_report::section(c, oracle.as_ref())),
            ),
        };
        if let Some(path) = ctx.optional_input("image_metrics") {
            let section = crate::images::images_section(&crate::images::read_image_metrics(path)?);
            html = html.replacen("</body>", &format!("{section}</body>"), 1);
        }
        let out = ctx.output("report");
        std::fs::write(&out, html).at(&out)?;
        if let Some(best) = best_model(&rows) {
            ctx.note("best_model", &best.0);
            ctx.note("best_top5", best.1);
            if let Some(o) = &oracle {
                ctx.note("best_top5_of_oracle", best.1 / o.top5);
            }
        }
        Ok(())
    }
}

/// The oracle ceiling of a synthetic study (`study.json` → `oracle`).
#[derive(Clone, Debug, PartialEq)]
pub struct Oracle {
    /// Top-1 of the oracle (fraction).
    pub top1: f64,
    /// Top-5.
    pub top5: f64,
    /// Pairwise.
    pub pairwise: f64,
    /// Chance top-1, top-5, pairwise.
    pub chance: [f64; 3],
    /// Per-subject top-1, top-5, pairwise, in the study's subject order.
    pub per_subject: Vec<(String, [f64; 3])>,
}

impl Oracle {
    /// Reads `study.json`.
    pub fn read(path: &Path) -> Result<Oracle> {
        let text = std::fs::read_to_string(path).at(path)?;
        let study: Value = serde_json::from_str(&text)
            .map_err(|e| EvalError::data(path, format!("not JSON: {e}")))?;
        let oracle = &study["oracle"];
        let num = |v: &Value, key: &str| -> Result<f64> {
            v[key]
                .as_f64()
                .ok_or_else(|| EvalError::data(path, format!("no number `oracle.{key}`")))
        };
        let chance = &oracle["chance"];
        let subjects: Vec<String> = study["subjects"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        let per_subject = oracle["per_subject"]
            .as_array()
            .map(|a| {
                a.iter()
                    .enumerate()
                    .map(|(i, s)| {
                        let name = subjects.get(i).cloned().unwrap_or_else(|| format!("#{i}"));
                        let get = |k: &str| s[k].as_f64().unwrap_or(f64::NAN);
                        (name, [get("top1"), get("top5"), get("pairwise")])
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Oracle {
            top1: num(oracle, "top1")?,
            top5: num(oracle, "top5")?,
            pairwise: num(oracle, "pairwise")?,
            chance: [num(chance, "top1")?, num(chance, "top5")?, num(chance, "pairwise")?],
            per_subject,
        })
    }
}

/// Models in order of first appearance.
fn models(rows: &[MetricRow]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in rows {
        if !out.contains(&r.model) {
            out.push(r.model.clone());
        }
    }
    out
}

/// The value of a summary metric (subject `all`, paradigm `all`).
fn summary(rows: &[MetricRow], model: &str, metric: &str) -> Option<f64> {
    rows.iter()
        .find(|r| {
            r.model == model
                && r.subject == ALL
                && r.paradigm == ALL
                && r.metric == metric
                && r.index.is_none()
        })
        .map(|r| r.value)
}

/// The model with the best top-5 and its value.
pub fn best_model(rows: &[MetricRow]) -> Option<(String, f64)> {
    models(rows)
        .into_iter()
        .filter_map(|m| summary(rows, &m, "top5").map(|v| (m, v)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

/// The Brain2Word paper's own result, with its source: leave-one-subject-out on Pereira et al.
/// 2018's data, 180 candidate words per block.
const PAPER_ROW: &str = "<tr class=\"ref\"><td>Brain2Word paper (Affolter et al. 2020, arXiv 2009.04765; Pereira et al. 2018 data, 180 words)</td><td>5.22 %</td><td>13.59 %</td><td>–</td><td>–</td><td>–</td><td></td></tr>";

/// Whether the paper's row compares like with like: real data (no synthetic study's oracle)
/// scored over Pereira's 180 candidate words.
fn paper_applies(candidates: Option<f64>, oracle: Option<&Oracle>) -> bool {
    oracle.is_none() && candidates == Some(180.0)
}

pub(crate) fn pct(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{:.2} %", 100.0 * v),
        _ => "–".to_owned(),
    }
}

pub(crate) fn esc(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

const COLOURS: [&str; 8] =
    ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];

/// The page's head, style and title.
pub(crate) fn head(title: &str) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title><style>\
         body{{font-family:system-ui,sans-serif;margin:2em;max-width:72em;color:#222}}\
         table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:.3em .7em;text-align:right}}\
         th:first-child,td:first-child{{text-align:left}}tr.ref td{{color:#666;font-style:italic}}\
         .charts{{display:flex;flex-wrap:wrap;gap:1em}}figure{{margin:0}}figcaption{{font-size:.9em;text-align:center}}\
         </style></head><body><h1>{t}</h1>",
        t = esc(title)
    );
    h
}

/// Renders the whole report.
pub fn render(title: &str, rows: &[MetricRow], oracle: Option<&Oracle>) -> String {
    let models = models(rows);
    let mut h = head(title);
    h.push_str(
        "<h2>Results</h2><p>Leave-one-subject-out unless the fold column says otherwise; \
                 means over held-out subjects. top-k: the true word among the k candidates most \
                 similar to the prediction; pairwise: Brain2Word's pairwise accuracy (Pearson) per \
                 paradigm block, averaged.</p>",
    );
    h.push_str("<table><tr><th>model</th><th>top-1</th><th>top-5</th><th>top-10</th><th>pairwise</th><th>mean rank</th><th>top-5 / oracle</th></tr>");
    for m in &models {
        let top5 = summary(rows, m, "top5");
        let frac = match (top5, oracle) {
            (Some(t), Some(o)) if o.top5 > 0.0 => format!("{:.0} %", 100.0 * t / o.top5),
            _ => "–".to_owned(),
        };
        let rank = summary(rows, m, "mean_rank").map_or("–".to_owned(), |v| format!("{v:.1}"));
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{rank}</td><td>{frac}</td></tr>",
            esc(m),
            pct(summary(rows, m, "top1")),
            pct(top5),
            pct(summary(rows, m, "top10")),
            pct(summary(rows, m, "pairwise")),
        );
    }
    let chance = |k: &str| models.iter().find_map(|m| summary(rows, m, k));
    let candidates = models.iter().find_map(|m| summary(rows, m, "candidates"));
    let _ = write!(
        h,
        "<tr class=\"ref\"><td>chance</td><td>{}</td><td>{}</td><td>{}</td><td>50.00 %</td><td>{}</td><td></td></tr>",
        pct(chance("chance_top1")),
        pct(chance("chance_top5")),
        pct(chance("chance_top10")),
        candidates.map_or("–".to_owned(), |c| format!("{:.1}", (c + 1.0) / 2.0)),
    );
    if let Some(o) = oracle {
        let _ = write!(
            h,
            "<tr class=\"ref\"><td>oracle (synthetic ceiling)</td><td>{}</td><td>{}</td><td>–</td><td>{}</td><td>–</td><td>100 %</td></tr>",
            pct(Some(o.top1)),
            pct(Some(o.top5)),
            pct(Some(o.pairwise))
        );
    }
    if paper_applies(candidates, oracle) {
        h.push_str(PAPER_ROW);
    }
    h.push_str("</table>");
    let _ = write!(
        h,
        "<details><summary>The table for a paper (LaTeX, booktabs; mean ± s.d. over held-out \
         subjects, best model in bold)</summary><pre>{}</pre></details>",
        esc(&latex_table(rows, &models, oracle))
    );
    per_paradigm(&mut h, rows, &models);
    per_subject(&mut h, rows, &models, oracle);
    h.push_str("<h2>Rank histograms</h2><p>How many test scans put their true word at each rank (all subjects).</p><div class=\"charts\">");
    for (i, m) in models.iter().enumerate() {
        let mut counts: Vec<(i32, f64)> = rows
            .iter()
            .filter(|r| &r.model == m && r.subject == ALL && r.metric == "rank_count")
            .filter_map(|r| r.index.map(|k| (k, r.value)))
            .collect();
        counts.sort_by_key(|c| c.0);
        if !counts.is_empty() {
            let _ = write!(
                h,
                "<figure>{}<figcaption>{}</figcaption></figure>",
                bar_chart(&counts, COLOURS[i % 8]),
                esc(m)
            );
        }
    }
    h.push_str("</div><h2>Training curves</h2><p>Training and validation loss per epoch; one line per fold (validation scans come from the training subjects only).</p><div class=\"charts\">");
    for m in &models {
        let mut series = Vec::new();
        for (metric, dash) in [("curve.train_loss", false), ("curve.val_loss", true)] {
            let mut by_fold: BTreeMap<i32, Vec<(f64, f64)>> = BTreeMap::new();
            for r in rows.iter().filter(|r| &r.model == m && r.metric == metric) {
                if let Some(e) = r.index {
                    by_fold.entry(r.fold).or_default().push((f64::from(e), r.value));
                }
            }
            for (fold, mut pts) in by_fold {
                pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                series.push((fold, dash, pts));
            }
        }
        if !series.is_empty() {
            let _ = write!(
                h,
                "<figure>{}<figcaption>{} (solid: train, dashed: validation; colour: fold)</figcaption></figure>",
                line_chart(&series),
                esc(m)
            );
        }
    }
    h.push_str("</div></body></html>\n");
    h
}

/// Per held-out subject, the mean over its folds of `metric` (all paradigms).
fn per_subject_values(rows: &[MetricRow], model: &str, metric: &str) -> Vec<f64> {
    let mut by_subject: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for r in rows
        .iter()
        .filter(|r| r.model == model && r.subject != ALL && r.paradigm == ALL && r.metric == metric)
    {
        by_subject.entry(r.subject.as_str()).or_default().push(r.value);
    }
    by_subject.values().map(|v| v.iter().sum::<f64>() / v.len() as f64).collect()
}

/// The results table as LaTeX (booktabs): per model mean ± sample s.d. over held-out subjects of
/// top-1, top-5, top-10 and pairwise (%), the best mean of each column in bold; chance and the
/// oracle (when known) below a rule.
pub fn latex_table(rows: &[MetricRow], models: &[String], oracle: Option<&Oracle>) -> String {
    const METRICS: [&str; 4] = ["top1", "top5", "top10", "pairwise"];
    // Model names as LaTeX text: backslashes dropped, the other special characters escaped.
    let tex = |name: &str| {
        let mut out = String::new();
        for c in name.chars().filter(|&c| c != '\\') {
            if matches!(c, '_' | '%' | '&' | '#' | '$' | '{' | '}') {
                out.push('\\');
            }
            out.push(c);
        }
        out
    };
    let best: Vec<Option<f64>> = METRICS
        .iter()
        .map(|m| models.iter().filter_map(|model| summary(rows, model, m)).reduce(f64::max))
        .collect();
    let mut t = String::from(
        "\\begin{tabular}{lrrrr}\n\\toprule\nModel & Top-1 (\\%) & Top-5 (\\%) & Top-10 (\\%) & Pairwise (\\%) \\\\\n\\midrule\n",
    );
    for model in models {
        t.push_str(&tex(model));
        for (metric, best) in METRICS.iter().zip(&best) {
            let Some(mean) = summary(rows, model, metric) else {
                t.push_str(" & --");
                continue;
            };
            let values = per_subject_values(rows, model, metric);
            let sd = if values.len() > 1 {
                let m = values.iter().sum::<f64>() / values.len() as f64;
                let var =
                    values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (values.len() - 1) as f64;
                format!(" $\\pm$ {:.2}", 100.0 * var.sqrt())
            } else {
                String::new()
            };
            let cell = format!("{:.2}{sd}", 100.0 * mean);
            if best.is_some_and(|b| (b - mean).abs() < 1e-12) {
                let _ = write!(t, " & \\textbf{{{cell}}}");
            } else {
                let _ = write!(t, " & {cell}");
            }
        }
        t.push_str(" \\\\\n");
    }
    t.push_str("\\midrule\n");
    let chance = |k: &str| models.iter().find_map(|m| summary(rows, m, k));
    let cell = |v: Option<f64>| v.map_or("--".to_owned(), |v| format!("{:.2}", 100.0 * v));
    let _ = writeln!(
        t,
        "Chance & {} & {} & {} & 50.00 \\\\",
        cell(chance("chance_top1")),
        cell(chance("chance_top5")),
        cell(chance("chance_top10"))
    );
    if let Some(o) = oracle {
        let _ = writeln!(
            t,
            "Oracle (synthetic ceiling) & {} & {} & -- & {} \\\\",
            cell(Some(o.top1)),
            cell(Some(o.top5)),
            cell(Some(o.pairwise))
        );
    }
    t.push_str("\\bottomrule\n\\end{tabular}\n");
    t
}

fn per_paradigm(h: &mut String, rows: &[MetricRow], models: &[String]) {
    let mut paradigms: Vec<String> = Vec::new();
    for r in rows.iter().filter(|r| r.subject == ALL && r.paradigm != ALL && r.metric == "top5") {
        if !paradigms.contains(&r.paradigm) {
            paradigms.push(r.paradigm.clone());
        }
    }
    if paradigms.is_empty() {
        return;
    }
    h.push_str("<h2>Per paradigm</h2><table><tr><th>model</th>");
    for p in &paradigms {
        let _ = write!(h, "<th>{0} top-1</th><th>{0} top-5</th><th>{0} pairwise</th>", esc(p));
    }
    h.push_str("</tr>");
    for m in models {
        let _ = write!(h, "<tr><td>{}</td>", esc(m));
        for p in &paradigms {
            for metric in ["top1", "top5", "pairwise"] {
                let v = rows
                    .iter()
                    .find(|r| {
                        &r.model == m && r.subject == ALL && &r.paradigm == p && r.metric == metric
                    })
                    .map(|r| r.value);
                let _ = write!(h, "<td>{}</td>", pct(v));
            }
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>");
}

fn per_subject(h: &mut String, rows: &[MetricRow], models: &[String], oracle: Option<&Oracle>) {
    let mut subjects: Vec<String> = Vec::new();
    for r in rows.iter().filter(|r| r.subject != ALL && r.paradigm == ALL && r.metric == "top5") {
        if !subjects.contains(&r.subject) {
            subjects.push(r.subject.clone());
        }
    }
    subjects.sort();
    if subjects.is_empty() {
        return;
    }
    h.push_str(
        "<h2>Per held-out subject</h2><p>top-1 / top-5 / pairwise.</p><table><tr><th>model</th>",
    );
    for s in &subjects {
        let _ = write!(h, "<th>{}</th>", esc(s));
    }
    h.push_str("</tr>");
    for m in models {
        let _ = write!(h, "<tr><td>{}</td>", esc(m));
        for s in &subjects {
            let get = |metric: &str| {
                let v: Vec<f64> = rows
                    .iter()
                    .filter(|r| {
                        &r.model == m && &r.subject == s && r.paradigm == ALL && r.metric == metric
                    })
                    .map(|r| r.value)
                    .collect();
                (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
            };
            let _ = write!(
                h,
                "<td>{} / {} / {}</td>",
                pct(get("top1")),
                pct(get("top5")),
                pct(get("pairwise"))
            );
        }
        h.push_str("</tr>");
    }
    if let Some(o) = oracle {
        h.push_str("<tr class=\"ref\"><td>oracle</td>");
        for s in &subjects {
            match o.per_subject.iter().find(|(n, _)| n == s) {
                Some((_, v)) => {
                    let _ = write!(
                        h,
                        "<td>{} / {} / {}</td>",
                        pct(Some(v[0])),
                        pct(Some(v[1])),
                        pct(Some(v[2]))
                    );
                }
                None => h.push_str("<td>–</td>"),
            }
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>");
}

const W: f64 = 360.0;
const H: f64 = 200.0;
const PAD: f64 = 36.0;

fn axes(svg: &mut String, x0: f64, x1: f64, y0: f64, y1: f64) {
    let _ = write!(
        svg,
        "<line x1=\"{PAD}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#444\"/><line x1=\"{PAD}\" y1=\"{PAD}\" x2=\"{PAD}\" y2=\"{b}\" stroke=\"#444\"/>\
         <text x=\"{PAD}\" y=\"{t}\" font-size=\"10\">{x0}</text><text x=\"{r}\" y=\"{t}\" font-size=\"10\" text-anchor=\"end\">{x1}</text>\
         <text x=\"{l}\" y=\"{b}\" font-size=\"10\" text-anchor=\"end\">{y0}</text><text x=\"{l}\" y=\"{top}\" font-size=\"10\" text-anchor=\"end\">{y1}</text>",
        b = H - PAD,
        r = W - 8.0,
        t = H - PAD + 14.0,
        l = PAD - 3.0,
        top = PAD + 4.0,
        y0 = tick(y0),
        y1 = tick(y1),
    );
}

/// An axis label: counts as integers, other values to three significant-looking places.
fn tick(v: f64) -> String {
    if v.fract() == 0.0 || v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// Bars of `(x, count)`.
pub(crate) fn bar_chart(counts: &[(i32, f64)], colour: &str) -> String {
    let max = counts.iter().map(|c| c.1).fold(0.0, f64::max).max(1.0);
    let n = counts.len().max(1) as f64;
    let bw = (W - PAD - 8.0) / n;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\">"
    );
    for (i, &(_, c)) in counts.iter().enumerate() {
        let bh = (H - 2.0 * PAD) * c / max;
        let _ = write!(
            svg,
            "<rect x=\"{:.2}\" y=\"{:.2}\" width=\"{:.2}\" height=\"{bh:.2}\" fill=\"{colour}\"/>",
            PAD + i as f64 * bw,
            H - PAD - bh,
            bw.max(0.5)
        );
    }
    let first = counts.first().map_or(0, |c| c.0);
    let last = counts.last().map_or(0, |c| c.0);
    axes(&mut svg, f64::from(first), f64::from(last), 0.0, max);
    svg.push_str("</svg>");
    svg
}

/// One line of a chart: fold (colour), dashed, `(x, y)` points.
type Series = (i32, bool, Vec<(f64, f64)>);

/// Lines of `series`.
fn line_chart(series: &[Series]) -> String {
    let pts = series.iter().flat_map(|s| s.2.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        y1 = y0 + 1.0;
    }
    let sx = |x: f64| PAD + (W - PAD - 8.0) * (x - x0) / (x1 - x0);
    let sy = |y: f64| H - PAD - (H - 2.0 * PAD) * (y - y0) / (y1 - y0);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\">"
    );
    for (fold, dashed, points) in series {
        let path: Vec<String> =
            points.iter().map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y))).collect();
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\"{} points=\"{}\"/>",
            COLOURS[fold.rem_euclid(8) as usize],
            if *dashed { " stroke-dasharray=\"4 3\"" } else { "" },
            path.join(" ")
        );
    }
    axes(&mut svg, x0, x1, y0, y1);
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Similarity;
    use crate::words::score_words;
    use brainpipe_artifacts::{Predictions, Targets};

    #[test]
    fn latex_table_has_mean_sd_bold_best_and_escaped_names() {
        let row = |model: &str, subject: &str, metric: &str, value: f64| MetricRow {
            model: model.into(),
            subject: subject.into(),
            fold: 0,
            paradigm: ALL.into(),
            metric: metric.into(),
            index: None,
            value,
        };
        let mut rows = Vec::new();
        for (model, values) in [("my_net", [0.10, 0.30]), ("ridge", [0.20, 0.20])] {
            for (s, v) in ["sub-01", "sub-02"].iter().zip(values) {
                rows.push(row(model, s, "top1", v));
            }
            rows.push(row(model, ALL, "top1", (values[0] + values[1]) / 2.0));
        }
        rows.push(row("my_net", ALL, "top5", 0.5));
        rows.push(row("ridge", ALL, "top5", 0.4));
        let models = vec!["my_net".to_owned(), "ridge".to_owned()];
        let t = latex_table(&rows, &models, None);
        // Equal means (20 %) are both best; s.d. of (10, 30) is 14.14, of (20, 20) 0.
        assert!(
            t.contains("my\\_net & \\textbf{20.00 $\\pm$ 14.14} & \\textbf{50.00} & --"),
            "{t}"
        );
        assert!(t.contains("ridge & \\textbf{20.00 $\\pm$ 0.00} & 40.00 & --"), "{t}");
        assert!(t.starts_with("\\begin{tabular}{lrrrr}") && t.ends_with("\\end{tabular}\n"));
        assert!(!t.contains("Oracle"), "no oracle without study.json");
    }

    #[test]
    fn report_is_self_contained_and_paper_shaped() {
        let targets = Targets {
            stimulus: vec!["a".into(), "b".into(), "c".into()],
            class: vec![0, 1, 2],
            vectors: vec![1.0, 0.0, 0.2, 0.0, 1.0, 0.1, 0.3, 0.3, 1.0],
            dim: 3,
            ..Targets::default()
        };
        let p = Predictions {
            model: vec!["base".into(); 3],
            subject: vec!["sub-01".into(); 3],
            trial: vec![0, 1, 2],
            stimulus: vec!["a".into(), "b".into(), "c".into()],
            paradigm: vec!["picture".into(); 3],
            fold: vec![0; 3],
            class: vec![0, 1, 2],
            embedding: vec![0.9, 0.1, 0.0, 0.2, 0.8, 0.3, 0.1, 0.2, 0.7],
            embedding_dim: 3,
            ..Predictions::default()
        };
        let mut rows =
            score_words(&p, &targets, Similarity::Cosine, false, &[1, 5], Path::new("p"))
                .expect("scores")
                .rows;
        rows.push(MetricRow {
            model: "base".into(),
            subject: "sub-01".into(),
            fold: 0,
            paradigm: ALL.into(),
            metric: "curve.train_loss".into(),
            index: Some(0),
            value: -0.1,
        });
        rows.push(MetricRow { index: Some(1), value: -0.3, ..rows[rows.len() - 1].clone() });
        let oracle = Oracle {
            top1: 0.5,
            top5: 0.8,
            pairwise: 0.99,
            chance: [0.0, 0.0, 0.5],
            per_subject: vec![],
        };
        let html = render("t", &rows, Some(&oracle));
        for needle in [
            "<table>",
            "top-5 / oracle",
            "oracle (synthetic ceiling)",
            "<svg",
            "<polyline",
            "<rect",
            "100.00 %",
        ] {
            assert!(html.contains(needle), "report lacks {needle}");
        }
        assert!(!html.contains("<script") && !html.contains("src=") && !html.contains("https://"));
        assert!(!html.contains("Brain2Word paper"), "the paper's row is for Pereira data only");
        assert!(!render("t", &rows, None).contains("Brain2Word paper"), "3 candidates");
        assert_eq!(best_model(&rows).map(|b| b.0), Some("base".to_owned()));
    }

    #[test]
    fn the_papers_row_shows_only_for_real_data_over_180_words() {
        let oracle = Oracle {
            top1: 0.5,
            top5: 0.8,
            pairwise: 0.99,
            chance: [0.0, 0.0, 0.5],
            per_subject: vec![],
        };
        assert!(paper_applies(Some(180.0), None));
        assert!(!paper_applies(Some(180.0), Some(&oracle)), "a synthetic study");
        assert!(!paper_applies(Some(50.0), None), "another candidate set");
        assert!(!paper_applies(None, None));
        assert!(PAPER_ROW.contains("arXiv 2009.04765") && PAPER_ROW.contains("5.22 %"));
    }
}

//! The report's image section, from `image_metrics.parquet`: MindEye's table (PixCorr ↑, SSIM ↑,
//! 2-way ↑ per model, chance and the `truth` model — the decoder fed the true embeddings — as the
//! ceiling) and one distribution plot per metric (inline SVG, no scripts).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::tables::ImageMetricRow;
use crate::words::ALL;

/// The model whose reconstructions come from the true embeddings: the decoder's own ceiling.
const TRUTH: &str = "truth";

const COLOURS: [&str; 8] =
    ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];

fn esc(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Column heading of a metric.
fn heading(metric: &str) -> String {
    match metric {
        "pixcorr" => "PixCorr ↑".to_owned(),
        "ssim_gaussian" => "SSIM ↑".to_owned(),
        "ssim_uniform7" => "SSIM (7×7 mean window) ↑".to_owned(),
        "2way_pixels" => "pixels 2-way ↑".to_owned(),
        m => match m.strip_prefix("2way_") {
            Some("clip") => "CLIP 2-way ↑".to_owned(),
            // MindEye's column names for the feature sets docs/IMAGES.md suggests.
            Some("alexnet2") => "AlexNet(2) 2-way ↑".to_owned(),
            Some("alexnet5") => "AlexNet(5) 2-way ↑".to_owned(),
            Some("inception") => "Inception 2-way ↑".to_owned(),
            Some(f) => format!("{} 2-way ↑", esc(f)),
            None => esc(m),
        },
    }
}

/// Metrics in the table's order: PixCorr, SSIM, SSIM (defaults), 2-way on pixels, then the others.
fn metric_order(rows: &[ImageMetricRow]) -> Vec<String> {
    const FIRST: [&str; 4] = ["pixcorr", "ssim_gaussian", "ssim_uniform7", "2way_pixels"];
    let mut present: Vec<String> = Vec::new();
    for r in rows.iter().filter(|r| r.trial >= 0) {
        if !present.contains(&r.metric) {
            present.push(r.metric.clone());
        }
    }
    let mut out: Vec<String> =
        FIRST.iter().filter(|m| present.iter().any(|p| p == *m)).map(|m| (*m).to_owned()).collect();
    let mut rest: Vec<String> = present.into_iter().filter(|m| !out.contains(m)).collect();
    rest.sort();
    out.extend(rest);
    out
}

/// The HTML section (an `<h2>` and what follows) for `rows` of `image-metrics/1`; empty when
/// there are no per-pair rows.
pub fn images_section(rows: &[ImageMetricRow]) -> String {
    let metrics = metric_order(rows);
    if metrics.is_empty() {
        return String::new();
    }
    let mut models: Vec<String> = Vec::new();
    for r in rows.iter().filter(|r| r.trial >= 0) {
        if !models.contains(&r.model) {
            models.push(r.model.clone());
        }
    }
    // The ceiling goes last, below the rule.
    models.sort_by_key(|m| m == TRUTH);
    let summary = |model: &str, metric: &str, stat: &str| {
        let name = format!("{metric}.{stat}");
        rows.iter()
            .find(|r| r.model == model && r.subject == ALL && r.trial < 0 && r.metric == name)
            .map(|r| r.value)
    };
    let mut h = String::from(
        "<h2>Image reconstructions</h2><p>MindEye's evaluation: both images resized to 425 × 425 \
         (bilinear); PixCorr: Pearson r of the RGB pixels; SSIM: scikit-image's \
         <code>structural_similarity</code> on <code>rgb2gray</code>, Gaussian window σ = 1.5 \
         (and the library's 7 × 7 defaults); 2-way: fraction of the other seen images whose \
         features correlate less with the reconstruction than its own image's. Mean ± s.d. over \
         reconstructions; <code>truth</code>: the same decoder fed the true embeddings.</p>\
         <table><tr><th>model</th>",
    );
    for m in &metrics {
        let _ = write!(h, "<th>{}</th>", heading(m));
    }
    h.push_str("<th>n</th></tr>");
    for model in &models {
        let class = if model == TRUTH { " class=\"ref\"" } else { "" };
        let _ = write!(h, "<tr{class}><td>{}</td>", esc(model));
        let mut n = None;
        for m in &metrics {
            match summary(model, m, "mean") {
                Some(mean) => {
                    let sd = summary(model, m, "sd").filter(|v| v.is_finite());
                    let two_way = m.starts_with("2way_");
                    let cell = |v: f64| {
                        if two_way { format!("{:.1} %", 100.0 * v) } else { format!("{v:.3}") }
                    };
                    let sd = sd.map_or(String::new(), |s| format!(" ± {}", cell(s)));
                    let _ = write!(h, "<td>{}{sd}</td>", cell(mean));
                    n = n.or(summary(model, m, "n"));
                }
                None => h.push_str("<td>–</td>"),
            }
        }
        let _ = write!(h, "<td>{}</td></tr>", n.map_or("–".to_owned(), |n| format!("{n:.0}")));
    }
    h.push_str("<tr class=\"ref\"><td>chance</td>");
    for m in &metrics {
        h.push_str(match m.as_str() {
            "pixcorr" => "<td>0.000</td>",
            m if m.starts_with("2way_") => "<td>50.0 %</td>",
            _ => "<td>–</td>",
        });
    }
    h.push_str("<td></td></tr></table>");
    h.push_str("<h3>Distributions over reconstructions</h3><div class=\"charts\">");
    for m in &metrics {
        let series: Vec<(usize, Vec<f64>)> = models
            .iter()
            .enumerate()
            .map(|(i, model)| {
                let v = rows
                    .iter()
                    .filter(|r| r.trial >= 0 && &r.model == model && &r.metric == m)
                    .map(|r| r.value)
                    .filter(|v| v.is_finite())
                    .collect();
                (i, v)
            })
            .filter(|(_, v): &(usize, Vec<f64>)| !v.is_empty())
            .collect();
        if series.is_empty() {
            continue;
        }
        let legend: Vec<String> = series
            .iter()
            .map(|(i, _)| {
                format!("<span style=\"color:{}\">■</span> {}", COLOURS[i % 8], esc(&models[*i]))
            })
            .collect();
        let _ = write!(
            h,
            "<figure>{}<figcaption>{} — {}</figcaption></figure>",
            histogram(&series),
            heading(m),
            legend.join(" ")
        );
    }
    h.push_str("</div>");
    h
}

const W: f64 = 360.0;
const H: f64 = 200.0;
const PAD: f64 = 36.0;
const BINS: usize = 20;

/// Frequency polygons (fraction of each model's reconstructions per bin) over a shared range.
fn histogram(series: &[(usize, Vec<f64>)]) -> String {
    let all = series.iter().flat_map(|s| s.1.iter().copied());
    let (mut lo, mut hi) = (f64::MAX, f64::MIN);
    for v in all {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if hi <= lo {
        hi = lo + 1e-9;
    }
    let mut curves: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    let mut top: f64 = 0.0;
    for (i, values) in series {
        let mut counts = vec![0.0; BINS];
        for v in values {
            let b = (((v - lo) / (hi - lo)) * BINS as f64) as usize;
            counts[b.min(BINS - 1)] += 1.0;
        }
        counts.iter_mut().for_each(|c| *c /= values.len() as f64);
        top = counts.iter().copied().fold(top, f64::max);
        curves.insert(*i, counts);
    }
    let top = top.max(1e-9);
    let sx = |b: f64| PAD + (W - PAD - 8.0) * b / BINS as f64;
    let sy = |f: f64| H - PAD - (H - 2.0 * PAD) * f / top;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\">"
    );
    for (i, counts) in &curves {
        let pts: Vec<String> = counts
            .iter()
            .enumerate()
            .flat_map(|(b, &f)| {
                [
                    format!("{:.1},{:.1}", sx(b as f64), sy(f)),
                    format!("{:.1},{:.1}", sx(b as f64 + 1.0), sy(f)),
                ]
            })
            .collect();
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\" points=\"{}\"/>",
            COLOURS[i % 8],
            pts.join(" ")
        );
    }
    let _ = write!(
        svg,
        "<line x1=\"{PAD}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#444\"/><line x1=\"{PAD}\" y1=\"{PAD}\" x2=\"{PAD}\" y2=\"{b}\" stroke=\"#444\"/>\
         <text x=\"{PAD}\" y=\"{t}\" font-size=\"10\">{lo:.3}</text><text x=\"{r}\" y=\"{t}\" font-size=\"10\" text-anchor=\"end\">{hi:.3}</text>\
         <text x=\"{l}\" y=\"{b}\" font-size=\"10\" text-anchor=\"end\">0</text><text x=\"{l}\" y=\"{tp}\" font-size=\"10\" text-anchor=\"end\">{top:.2}</text></svg>",
        b = H - PAD,
        r = W - 8.0,
        t = H - PAD + 14.0,
        l = PAD - 3.0,
        tp = PAD + 4.0,
    );
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::summarise;

    #[test]
    fn table_has_models_ceiling_chance_and_plots() {
        let mut rows = Vec::new();
        for (model, base) in [("truth", 0.8), ("ridge", 0.3)] {
            for trial in 0..4 {
                for metric in ["pixcorr", "ssim_gaussian", "2way_clip", "2way_alexnet5"] {
                    rows.push(ImageMetricRow {
                        model: model.into(),
                        subject: "sub-01".into(),
                        trial,
                        stimulus: format!("s{trial}"),
                        metric: metric.into(),
                        value: base + 0.01 * f64::from(trial),
                    });
                }
            }
        }
        let summaries = summarise(&rows);
        for s in &summaries {
            rows.push(ImageMetricRow {
                model: s.model.clone(),
                subject: s.subject.clone(),
                trial: -1,
                stimulus: String::new(),
                metric: format!("{}.mean", s.metric),
                value: s.mean,
            });
        }
        let h = images_section(&rows);
        for needle in [
            "PixCorr ↑",
            "SSIM ↑",
            "CLIP 2-way ↑",
            "AlexNet(5) 2-way ↑",
            "chance",
            "50.0 %",
            "<svg",
            "0.315",
            "81.5 %",
        ] {
            assert!(h.contains(needle), "section lacks {needle}: {h}");
        }
        // The ceiling row comes after the model's.
        assert!(h.find("<td>ridge</td>") < h.find("<td>truth</td>"));
        assert!(!h.contains("<script"));
        assert!(images_section(&[]).is_empty());
    }
}

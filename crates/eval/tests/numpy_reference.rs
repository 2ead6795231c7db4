//! top-k, mean rank and pairwise accuracy against a numpy implementation of Brain2Word's
//! definitions on the same predictions (agreement to 1e-9). Needs `BRAINPIPE_REF_PYTHON` (set by
//! `make test`): skipped with a message when unset
//! (a failure when `CI` is set), a failure when set and unusable.

use std::path::Path;
use std::process::Command;

use brainpipe_artifacts::{Predictions, Targets};
use brainpipe_eval::metrics::Similarity;
use brainpipe_eval::{ALL, score_words};

/// A deterministic stream of values in [-1, 1) (no rand dependency in this crate).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

const REFERENCE: &str = r#"
import json, sys
import numpy as np
d = json.load(open(sys.argv[1]))
T = np.array(d["targets"], dtype=np.float64)
out = {}
for key, g in d["groups"].items():
    P = np.array(g["pred"], dtype=np.float64)
    truth = np.array(g["truth"])
    para = np.array(g["paradigm"])
    if d["centre"]:
        m = T.mean(0); P = P - m; T = T - m
    sim = (P / np.linalg.norm(P, axis=1, keepdims=True)) @ (T / np.linalg.norm(T, axis=1, keepdims=True)).T
    if d["similarity"] == "pearson":
        Pc = P - P.mean(1, keepdims=True); Tc = T - T.mean(1, keepdims=True)
        sim = (Pc / np.linalg.norm(Pc, axis=1, keepdims=True)) @ (Tc / np.linalg.norm(Tc, axis=1, keepdims=True)).T
    if d["centre"]:
        P = P + m; T = T + m  # pairwise uses the raw vectors
    own = sim[np.arange(len(truth)), truth]
    rank = (sim >= own[:, None]).sum(1)
    def pairwise(idx):
        # Brain2Word: every pair of words in the block, Pearson r between prediction and target
        n = len(idx); hits = 0; pairs = 0
        for a in range(n):
            for b in range(a + 1, n):
                i, j = idx[a], idx[b]
                r = lambda x, y: np.corrcoef(P[x], T[y])[0, 1]
                hits += (r(i, truth[i]) + r(j, truth[j]) > r(i, truth[j]) + r(j, truth[i]))
                pairs += 1
        return hits / pairs
    res = {}
    blocks_all = []
    for p in sorted(set(para)) + ["all"]:
        m = np.ones(len(truth), bool) if p == "all" else para == p
        r = rank[m]
        res[p] = {"top1": float((r <= 1).mean()), "top5": float((r <= 5).mean()),
                  "top10": float((r <= 10).mean()), "mean_rank": float(r.mean())}
        if p != "all":
            b = pairwise(list(np.nonzero(m)[0])); blocks_all.append(b); res[p]["pairwise"] = float(b)
    res["all"]["pairwise"] = float(np.mean(blocks_all))
    out[key] = res
print(json.dumps(out))
"#;

#[test]
fn scores_match_numpy_reference() {
    let Some(python) = brainpipe_core::reference_python("scores_match_numpy_reference") else {
        return;
    };
    let (words, dim) = (24usize, 10usize);
    let mut rng = Lcg(42);
    let targets = Targets {
        stimulus: (0..words).map(|w| format!("w{w}")).collect(),
        class: (0..words as i32).collect(),
        vectors: (0..words * dim).map(|_| rng.next()).collect(),
        dim,
        ..Targets::default()
    };
    let mut p = Predictions { embedding_dim: dim, ..Predictions::default() };
    for subject in ["sub-01", "sub-02"] {
        for paradigm in ["picture", "sentence"] {
            for w in 0..words {
                let word = (w * 7 + 3) % words;
                p.model.push("base".into());
                p.subject.push(subject.into());
                p.trial.push(p.trial.len() as i32);
                p.stimulus.push(format!("w{word}"));
                p.paradigm.push(paradigm.into());
                p.fold.push(if subject == "sub-01" { 0 } else { 1 });
                p.class.push(word as i32);
                // A noisy copy of the target, so ranks spread over 1..24.
                for d in 0..dim {
                    p.embedding.push(0.4 * targets.vectors[word * dim + d] + rng.next());
                }
            }
        }
    }
    for (similarity, centre) in
        [(Similarity::Cosine, false), (Similarity::Pearson, false), (Similarity::Cosine, true)]
    {
        let scored = score_words(&p, &targets, similarity, centre, &[1, 5, 10], Path::new("mem"))
            .expect("scores");
        let mut groups = serde_json::Map::new();
        for (fold, subject) in [(0, "sub-01"), (1, "sub-02")] {
            let rows: Vec<usize> = (0..p.len()).filter(|&i| p.subject[i] == subject).collect();
            let pred: Vec<Vec<f32>> =
                rows.iter().map(|&i| p.embedding[i * dim..(i + 1) * dim].to_vec()).collect();
            groups.insert(
                format!("{fold}/{subject}"),
                serde_json::json!({
                    "pred": pred,
                    "truth": rows.iter().map(|&i| p.class[i]).collect::<Vec<_>>(),
                    "paradigm": rows.iter().map(|&i| p.paradigm[i].clone()).collect::<Vec<_>>(),
                }),
            );
        }
        let t: Vec<Vec<f32>> = (0..words).map(|w| targets.vector(w).to_vec()).collect();
        let input = serde_json::json!({
            "targets": t,
            "groups": groups,
            "centre": centre,
            "similarity": if similarity == Similarity::Cosine { "cosine" } else { "pearson" },
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("in.json");
        std::fs::write(&file, input.to_string()).expect("write input");
        let out = Command::new(&python)
            .args(["-c", REFERENCE])
            .arg(&file)
            .output()
            .expect("BRAINPIPE_REF_PYTHON is set but cannot be run");
        assert!(
            out.status.success(),
            "numpy reference failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let reference: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("reference prints JSON");
        let mut checked = 0;
        for (key, per_paradigm) in reference.as_object().expect("object") {
            let (fold, subject) = key.split_once('/').expect("fold/subject");
            for (paradigm, metrics) in per_paradigm.as_object().expect("object") {
                for (metric, want) in metrics.as_object().expect("object") {
                    let want = want.as_f64().expect("number");
                    let got = scored
                        .rows
                        .iter()
                        .find(|r| {
                            r.fold.to_string() == fold
                                && r.subject == subject
                                && &r.paradigm == paradigm
                                && &r.metric == metric
                        })
                        .unwrap_or_else(|| panic!("no {key} {paradigm} {metric}"))
                        .value;
                    assert!(
                        (got - want).abs() < 1e-9,
                        "{key} {paradigm} {metric}: {got} vs numpy {want}"
                    );
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 2 * 3 * 5, "every metric compared");
        let avg = scored
            .rows
            .iter()
            .find(|r| r.subject == ALL && r.paradigm == ALL && r.metric == "top5")
            .expect("average row");
        assert!(avg.value > 5.0 / 24.0, "noisy copies beat chance: {}", avg.value);
    }
}

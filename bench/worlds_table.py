#!/usr/bin/env python3
"""One table of the Brain2Word models on the synthetic worlds (bench/worlds.sh).

usage: worlds_table.py WORLD=RUN_DIR [WORLD=RUN_DIR ...]
       RUN_DIR: a pipelines/brain2word-worlds.yaml run (its metrics/ and study/ outputs).
Prints a Markdown table: per world and model, top-1 / top-5 / top-10 / pairwise (means over the
held-out subjects, eval.words' `subject: all` rows), the classification head's top-1 / top-5 when
the model was trained with the classification loss, and top-5 as a fraction of the world's oracle (study.json); then the oracle and
chance. Needs pyarrow (the pinned peers venv, $BRAINPIPE_REF_PYTHON).
"""
import json
import statistics
import sys

import pyarrow.parquet as pq


def pct(v):
    return "" if v is None else f"{100 * v:.2f} %"


def trained_with(run, model, loss):
    """Whether `model`'s training used `loss` (`classification`, `regression`), from the
    training.parquet of its stage; a model without one (ridge) counts as regression."""
    try:
        rows = pq.read_table(f"{run}/{model}/training.parquet", columns=[f"train_{loss}"]).to_pylist()
    except (FileNotFoundError, OSError):
        return loss == "regression"
    return any(r[f"train_{loss}"] is not None for r in rows)


def classification_trained(run, model):
    """Whether `model`'s training used the classification loss."""
    return trained_with(run, model, "classification")


# The paper's claims (and the head's placement), each a paired difference of top-5 over the
# held-out subjects: (label, model a, its metric, model b, its metric); pairs whose models are not
# in a run are skipped.
CLAIMS = [
    ("combined loss > regression alone: combined − base (vector rankings)", "combined", "top5", "base", "top5"),
    ("combined loss > regression alone, each model's better-placed head: combined (class) − base", "combined", "class_top5", "base", "top5"),
    ("ROI > base: roi − base", "roi", "top5", "base", "top5"),
    ("autoencoder > base: autoencoder − base", "autoencoder", "top5", "base", "top5"),
    ("mean regularisation > autoencoder: meanreg − autoencoder", "meanreg", "top5", "autoencoder", "top5"),
    ("classifier on the hidden layer − behind the embedding (class rankings, classification loss)", "classifier_hidden", "class_top5", "classifier", "class_top5"),
    ("the same, combined loss: combined_hidden − combined (class rankings)", "combined_hidden", "class_top5", "combined", "class_top5"),
    ("combined loss with the hidden-layer head (class) − base", "combined_hidden", "class_top5", "base", "top5"),
]


def per_subject(run):
    """{model: {metric: {subject: value}}} of eval.words' per-subject rows (all paradigms)."""
    per = {}
    for r in pq.read_table(f"{run}/metrics/metrics.parquet").to_pylist():
        if r["subject"] != "all" and r["paradigm"] == "all" and r["index"] is None:
            per.setdefault(r["model"], {}).setdefault(r["metric"], {})[r["subject"]] = r["value"]
    return per


def paired(a, b):
    """Mean ± s.d. (points) of a − b over the subjects both have, and how many are positive."""
    d = [100 * (a[s] - b[s]) for s in sorted(b) if s in a]
    if len(d) < 2:
        return None
    return f"{statistics.mean(d):+.2f} ± {statistics.stdev(d):.2f}", f"{sum(x > 0 for x in d)} / {len(d)}"


def main():
    print("| world | model | top-1 | top-5 | top-10 | pairwise | class top-1 | class top-5 | best top-5 / oracle |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for arg in sys.argv[1:]:
        world, run = arg.split("=", 1)
        study = json.load(open(f"{run}/study/study.json"))
        oracle = study["oracle"]
        rows = pq.read_table(f"{run}/metrics/metrics.parquet").to_pylist()
        means = {}
        for r in rows:
            if r["subject"] == "all" and r["paradigm"] == "all" and r["index"] is None:
                means.setdefault(r["model"], {})[r["metric"]] = r["value"]
        for model, m in means.items():
            if not classification_trained(run, model):
                # A regression-only network still has an (untrained) classification head.
                m.pop("class_top1", None)
                m.pop("class_top5", None)
            # The better of the model's rankings (its classification head's, when trained).
            frac = max(m["top5"], m.get("class_top5") or 0.0) / oracle["top5"]
            print(f"| {world} | {model} | {pct(m['top1'])} | {pct(m['top5'])} | {pct(m['top10'])} | "
                  f"{pct(m.get('pairwise'))} | {pct(m.get('class_top1'))} | {pct(m.get('class_top5'))} | {100 * frac:.0f} % |")
        print(f"| {world} | oracle (study.json) | {pct(oracle['top1'])} | {pct(oracle['top5'])} | | "
              f"{pct(oracle['pairwise'])} | | | 100 % |")
    print("| | chance | 0.56 % | 2.78 % | 5.56 % | 50 % | 0.56 % | 2.78 % | |")
    print()
    print("| world | network (ranking) | top-5 − ridge's top-5, points (mean ± s.d. over held-out subjects) | folds positive |")
    print("| --- | --- | --- | --- |")
    for arg in sys.argv[1:]:
        world, run = arg.split("=", 1)
        per = per_subject(run)
        ridge = per.get("ridge", {}).get("top5")
        if not ridge:
            continue
        for model, m in per.items():
            if model == "ridge":
                continue
            # An untrained head is not a ranking: the classification loss alone leaves the
            # regression head as initialised.
            rankings = [("vector", "top5")] if trained_with(run, model, "regression") else []
            if classification_trained(run, model):
                rankings.append(("class", "class_top5"))
            for label, metric in rankings:
                r = paired(m.get(metric, {}), ridge)
                if r:
                    print(f"| {world} | {model} ({label}) | {r[0]} | {r[1]} |")
    print()
    print("| world | claim | difference of top-5, points (mean ± s.d.) | folds positive |")
    print("| --- | --- | --- | --- |")
    for arg in sys.argv[1:]:
        world, run = arg.split("=", 1)
        per = per_subject(run)
        for label, a, ma, b, mb in CLAIMS:
            if a in per and b in per and (not ma.startswith("class") or classification_trained(run, a)):
                r = paired(per[a].get(ma, {}), per[b].get(mb, {}))
                if r:
                    print(f"| {world} | {label} | {r[0]} | {r[1]} |")


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Why the networks do not beat ridge on the demo study: a reproducible sweep (PyTorch + numpy).

Reads the `padded` (features.template_pad) and `targets` (clip.words) outputs of a
`pipelines/brain2word.yaml` run and scores, leave-one-subject-out with the pipeline's ranking
(cosine after centring on the mean target, ties against), on the same inputs:

  ridge     closed form on centred targets, alpha grid, with input selection none / the most
            stable single columns / whole ROIs (stability across the fold's training subjects,
            as crates/models/src/select.rs)
  base      Brain2Word's base network (2000 → 200 → embedding, LeakyReLU 0.3, BN, dropout 0.4,
            batch-negatives cosine loss, Adam amsgrad 1e-3 × 0.3 every 10 epochs, batch 180) on
            the whole-ROI selection, with variants: same-word mixup, input noise, dropout 0.2 /
            0.6, weight decay, no activations, a 5-seed ensemble
  roi       the ROI model's first layer (one dense block per ROI, ⌈size/scale⌉ outputs) with
            variants: no dropout after it, no activation, scale 1

No validation split or early stopping here (20 epochs flat), so the networks get every training
scan — a setting at least as favourable to them as the pipeline's.

usage: brain2word_sweep.py RUN_DIR [--columns 200] [--quick]
       RUN_DIR = pipelines/.brainpipe/runs/brain2word (needs numpy, pyarrow, torch: run it with
       the pinned peers venv, $BRAINPIPE_REF_PYTHON, made by `make refenv`)
"""

import argparse
import math
import sys

import numpy as np
import pyarrow.parquet as pq
import torch
from torch import nn


def load(run):
    t = pq.read_table(f"{run}/padded/features.parquet")
    x = t.column("voxels").combine_chunks().flatten().to_numpy().reshape(t.num_rows, -1)
    subject = np.array(t.column("subject").to_pylist())
    stimulus = t.column("stimulus").to_pylist()
    tg = pq.read_table(f"{run}/targets/targets.parquet")
    words = tg.column("stimulus").to_pylist()
    targets = tg.column("target").combine_chunks().flatten().to_numpy().reshape(len(words), -1)
    row = {w: i for i, w in enumerate(words)}
    word = np.array([row[s] for s in stimulus])
    rois = pq.read_table(f"{run}/padded/rois.parquet")
    first, count = rois.column("first").to_pylist(), rois.column("count").to_pylist()
    roi_of = np.zeros(x.shape[1], dtype=int)
    for r, (f, c) in enumerate(zip(first, count)):
        roi_of[f : f + c] = r
    return x.astype(np.float64), subject, word, targets.astype(np.float64), roi_of, len(first)


def top_k(pred, word, targets):
    """Top-1 and top-5 (%) by cosine after centring on the mean target; ties count against."""
    mean = targets.mean(0)
    t = targets - mean
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    p = pred - mean
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    sim = p @ t.T
    rank = (sim >= sim[np.arange(len(word)), word][:, None]).sum(1)
    return 100 * (rank <= 1).mean(), 100 * (rank <= 5).mean()


def stability(x, subject, word, train_subjects, words):
    profiles = []
    for s in train_subjects:
        m = np.stack([x[(subject == s) & (word == w)].mean(0) for w in range(words)])
        m -= m.mean(0, keepdims=True)
        m /= np.linalg.norm(m, axis=0, keepdims=True) + 1e-12
        profiles.append(m)
    pairs = [(i, j) for i in range(len(profiles)) for j in range(i + 1, len(profiles))]
    return np.mean([(profiles[i] * profiles[j]).sum(0) for i, j in pairs], axis=0)


def select(score, roi_of, n_rois, mode, keep):
    if mode == "none":
        return np.arange(len(score))
    if mode == "voxel":
        return np.sort(np.argsort(-score, kind="stable")[:keep])
    roi_score = np.array([score[roi_of == r].mean() for r in range(n_rois)])
    kept = []
    for r in np.argsort(-roi_score, kind="stable"):
        if len(kept) >= keep:
            break
        kept.extend(np.where(roi_of == r)[0])
    return np.sort(np.array(kept))


def ridge(a, y, b, alpha):
    am, ym = a.mean(0), y.mean(0)
    ac = a - am
    gram = ac @ ac.T
    coef = np.linalg.solve(gram + alpha * np.eye(len(gram)), y - ym)
    return (b - am) @ (ac.T @ coef) + ym


def regression_loss(t, p):
    t = nn.functional.normalize(t, dim=1)
    p = nn.functional.normalize(p, dim=1)
    s = t @ p.T
    n = len(t)
    return (-s.diag() + (s.sum(1) - s.diag()) / (n - 1)).mean()


def network(a, y, b, word_train, hidden=(2000, 200), dropout=0.4, epochs=20, seed=0, mix=False,
            noise=0.0, weight_decay=0.0, activation=True, roi=None):
    torch.manual_seed(seed)
    a_t = torch.tensor(a, dtype=torch.float32)
    y_t = torch.tensor(y, dtype=torch.float32)
    act = (lambda: nn.LeakyReLU(0.3)) if activation else nn.Identity
    bn = lambda n: nn.BatchNorm1d(n, momentum=0.01, eps=1e-3)  # noqa: E731 (Keras' BN)
    layers, width = [], a.shape[1]
    if roi is not None:  # (mask [units, inputs], dropout after it)
        mask, roi_dropout = roi
        first = nn.Linear(width, len(mask))
        first.weight.data *= mask
        first.weight.register_hook(lambda g: g * mask)
        layers += [first, act(), bn(len(mask)), nn.Dropout(roi_dropout)]
        width = len(mask)
        hidden = hidden[1:]
    for h in hidden:
        layers += [nn.Linear(width, h), act(), bn(h), nn.Dropout(dropout)]
        width = h
    model = nn.Sequential(*layers, nn.Linear(width, y.shape[1]))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, amsgrad=True, weight_decay=weight_decay)
    by_word = {w: torch.tensor(np.where(word_train == w)[0]) for w in np.unique(word_train)}
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(a_t))
        for start in range(0, len(perm) - 1, 180):
            i = perm[start : start + 180]
            x = a_t[i]
            if mix:  # same-word mixup: a convex blend with another scan of the same word
                j = torch.stack([by_word[int(w)][torch.randint(len(by_word[int(w)]), (1,))][0]
                                 for w in word_train[i.numpy()]])
                lam = torch.rand(len(i), 1)
                x = lam * x + (1 - lam) * a_t[j]
            if noise:
                x = x + noise * torch.randn_like(x)
            loss = regression_loss(y_t[i], model(x))
            opt.zero_grad()
            loss.backward()
            opt.step()
        if epoch % 10 == 9:
            for g in opt.param_groups:
                g["lr"] *= 0.3
    model.eval()
    with torch.no_grad():
        return model(torch.tensor(b, dtype=torch.float32)).numpy().astype(np.float64)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--columns", type=int, default=200)
    ap.add_argument("--quick", action="store_true", help="ridge, base and one ROI variant only")
    a = ap.parse_args()
    torch.set_num_threads(1)
    x, subject, word, targets, roi_of, n_rois = load(a.run)
    words = targets.shape[0]
    mean = targets.mean(0)
    folds = []
    for s in np.unique(subject):
        train, test = subject != s, subject == s
        others = [u for u in np.unique(subject) if u != s]
        folds.append((train, test, stability(x, subject, word, others, words)))

    def report(name, predict):
        scores = []
        for train, test, score in folds:
            scores.append(top_k(predict(train, test, score), word[test], targets))
        t1, t5 = np.mean(scores, axis=0)
        print(f"{name:48s} top-1 {t1:5.2f} %  top-5 {t5:5.2f} %", flush=True)

    k = a.columns
    for mode in ["none", "voxel", "roi"]:
        for alpha in [1e3, 1e4]:
            def fit(train, test, score, mode=mode, alpha=alpha):
                cols = select(score, roi_of, n_rois, mode, k)
                return ridge(x[train][:, cols], targets[word[train]], x[test][:, cols], alpha)
            report(f"ridge select={mode} alpha={alpha:g}", fit)

    def net(**kw):
        def fit(train, test, score):
            cols = select(score, roi_of, n_rois, "roi", k)
            y = targets[word[train]] - mean
            if kw.get("seeds"):
                preds = []
                for seed in range(kw["seeds"]):
                    p = network(x[train][:, cols], y, x[test][:, cols], word[train], seed=seed)
                    preds.append(p / np.linalg.norm(p, axis=1, keepdims=True))
                return np.mean(preds, axis=0) + mean
            return network(x[train][:, cols], y, x[test][:, cols], word[train], **kw) + mean
        return fit

    def roi_net(scale, roi_dropout, activation=True):
        def fit(train, test, score):
            cols = select(score, roi_of, n_rois, "roi", k)
            r = roi_of[cols]
            units = [q for q in sorted(set(r)) for _ in range(max(math.ceil((r == q).sum() / scale), 1))]
            mask = torch.tensor(np.array([[float(r[c] == q) for c in range(len(cols))] for q in units]),
                                dtype=torch.float32)
            y = targets[word[train]] - mean
            return network(x[train][:, cols], y, x[test][:, cols], word[train],
                           roi=(mask, roi_dropout), activation=activation) + mean
        return fit

    report("base (roi selection)", net())
    report("roi model scale 2", roi_net(2, 0.4))
    if a.quick:
        return
    report("base + same-word mixup", net(mix=True))
    report("base + input noise 1.0", net(noise=1.0))
    report("base dropout 0.2", net(dropout=0.2))
    report("base dropout 0.6, 30 epochs", net(dropout=0.6, epochs=30))
    report("base weight decay 0.1", net(weight_decay=0.1))
    report("base without activations (linear)", net(activation=False))
    report("base, 5-seed ensemble", net(seeds=5))
    report("roi model scale 2, no dropout after ROI layer", roi_net(2, 0.0))
    report("roi model scale 1, no dropout after ROI layer", roi_net(1, 0.0))
    report("roi model scale 1, linear", roi_net(1, 0.0, activation=False))


if __name__ == "__main__":
    sys.exit(main())

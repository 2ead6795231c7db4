#!/usr/bin/env python3
"""Why a network does or does not beat ridge on a synthetic world (issue 17; PyTorch + numpy).

Reads a `pipelines/brain2word-worlds.yaml` run (its `padded` and `targets` outputs) and scores,
leave-one-subject-out on the pipeline's folds, every decoder on the same input columns (the ~200
columns of the ROIs most stable across each fold's training subjects, as `select:
roi_stability`) with the pipeline's ranking (cosine after centring on the mean target):

  ridge       closed form on centred targets (alpha 1e3, 1e4)
  base        Brain2Word's base network (brain2word_sweep.py's), 20 and 60 epochs
  template    no learning of a map at all: the mean training pattern of each word, ranked by
              Pearson correlation with the test scan (the oracle's rule with estimated templates)
  classifier  the base network with a 180-way softmax head only (cross-entropy), ranked by logits,
              reading the 200-unit layer or (as models.train) the 50-d embedding layer; and a
              linear softmax classifier (the same without hidden layers)
  roi         the ROI model's first layer (one block per ROI, ⌈size/2⌉ units) initialised as the
              pipeline does (Glorot uniform of each block's own fan-in/fan-out, as Keras) or as
              brain2word_sweep.py did (PyTorch's default for the whole masked layer: ~10× smaller)

usage: worlds_sweep.py RUN_DIR [--columns 200] [--folds N] [--quick]
       (with $BRAINPIPE_REF_PYTHON; one thread). --folds N: only the first N held-out subjects
       (a study with many subjects); --quick: ridge, base, template and the softmax network only.
       RUN_DIR may also be a run of a pipeline with only the data stages (study … targets).
"""

import argparse
import math
import os
import sys

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from brain2word_sweep import load, regression_loss, select, stability  # noqa: E402


def ridge(a, y, b, alpha):
    """Ridge in the primal (columns ≪ scans): the same fit as brain2word_sweep.ridge's dual."""
    am, ym = a.mean(0), y.mean(0)
    ac = a - am
    coef = np.linalg.solve(ac.T @ ac + alpha * np.eye(ac.shape[1]), ac.T @ (y - ym))
    return (b - am) @ coef + ym


def ranks_top(sim, word):
    rank = (sim >= sim[np.arange(len(word)), word][:, None]).sum(1)
    return 100 * (rank <= 1).mean(), 100 * (rank <= 5).mean()


def cosine_sim(pred, targets):
    mean = targets.mean(0)
    t = targets - mean
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    p = pred - mean
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    return p @ t.T


def net(a, y, b, word_train, classes, *, head="regression", hidden=(2000, 200), dropout=0.4,
        epochs=20, roi=None, seed=0, behind_embedding=False):
    """Brain2Word's base (or ROI) network; `head` regression (vector out) or classes (logits out).
    `behind_embedding`: the classes read the embedding-width layer through LeakyReLU, BN and
    dropout, as models.train's classification head does (crates/models/src/net.rs)."""
    torch.manual_seed(seed)
    a_t, b_t = torch.tensor(a, dtype=torch.float32), torch.tensor(b, dtype=torch.float32)
    y_t, w_t = torch.tensor(y, dtype=torch.float32), torch.tensor(word_train)
    bn = lambda n: nn.BatchNorm1d(n, momentum=0.01, eps=1e-3)  # noqa: E731 (Keras' BN)
    layers, width = [], a.shape[1]
    if roi is not None:
        mask, limits = roi
        first = nn.Linear(width, len(mask))
        if limits is not None:  # Glorot uniform per block, as the pipeline and Keras
            with torch.no_grad():
                first.weight.uniform_(-1, 1)
                first.weight *= limits[:, None]
                first.bias.zero_()
        first.weight.data *= mask
        first.weight.register_hook(lambda g: g * mask)
        layers += [first, nn.LeakyReLU(0.3), bn(len(mask)), nn.Dropout(dropout)]
        width, hidden = len(mask), hidden[1:]
    for h in hidden:
        layers += [nn.Linear(width, h), nn.LeakyReLU(0.3), bn(h), nn.Dropout(dropout)]
        width = h
    if behind_embedding:
        layers += [nn.Linear(width, y.shape[1]), nn.LeakyReLU(0.3), bn(y.shape[1]), nn.Dropout(dropout)]
        width = y.shape[1]
    out = y.shape[1] if head == "regression" else classes
    model = nn.Sequential(*layers, nn.Linear(width, out))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, amsgrad=True)
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(a_t))
        for start in range(0, len(perm) - 1, 180):
            i = perm[start : start + 180]
            o = model(a_t[i])
            loss = regression_loss(y_t[i], o) if head == "regression" else nn.functional.cross_entropy(o, w_t[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
        if epoch % 10 == 9:
            for g in opt.param_groups:
                g["lr"] *= 0.3
    model.eval()
    with torch.no_grad():
        return model(b_t).numpy().astype(np.float64)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--columns", type=int, default=200)
    ap.add_argument("--folds", type=int, default=0)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    x, subject, word, targets, roi_of, n_rois = load(args.run)
    words, mean = targets.shape[0], targets.mean(0)
    folds = []
    held_out = np.unique(subject)
    for s in held_out[: args.folds] if args.folds else held_out:
        train, test = subject != s, subject == s
        others = [u for u in np.unique(subject) if u != s]
        cols = select(stability(x, subject, word, others, words), roi_of, n_rois, "roi", args.columns)
        folds.append((train, test, cols))

    def report(name, similarity):
        scores = [ranks_top(similarity(train, test, cols), word[test]) for train, test, cols in folds]
        t1, t5 = np.mean(scores, axis=0)
        print(f"{name:58s} top-1 {t1:5.2f} %  top-5 {t5:5.2f} %", flush=True)

    def vector(fit):
        return lambda train, test, cols: cosine_sim(fit(x[train][:, cols], x[test][:, cols], word[train]), targets)

    for alpha in [1e3, 1e4]:
        report(f"ridge alpha={alpha:g}", vector(lambda a, b, w, alpha=alpha: ridge(a, targets[w], b, alpha)))
    for epochs in [20] if args.quick else [20, 60]:
        report(f"base, regression, {epochs} epochs",
               vector(lambda a, b, w, e=epochs: net(a, targets[w] - mean, b, w, words, epochs=e) + mean))

    def template(train, test, cols):
        a, b = x[train][:, cols], x[test][:, cols]
        t = np.stack([a[word[train] == w].mean(0) for w in range(words)])
        t = (t - t.mean(1, keepdims=True)) / np.linalg.norm(t - t.mean(1, keepdims=True), axis=1, keepdims=True)
        b = (b - b.mean(1, keepdims=True)) / np.linalg.norm(b - b.mean(1, keepdims=True), axis=1, keepdims=True)
        return b @ t.T

    report("template (per-word mean pattern, Pearson)", template)
    report("classifier: base network, softmax head, 20 epochs",
           lambda tr, te, c: net(x[tr][:, c], targets[word[tr]], x[te][:, c], word[tr], words, head="classes"))
    if args.quick:
        return
    report("classifier behind the 50-d embedding (models.train's head), 20 epochs",
           lambda tr, te, c: net(x[tr][:, c], targets[word[tr]], x[te][:, c], word[tr], words, head="classes",
                                 behind_embedding=True))
    report("classifier: linear softmax, 20 epochs",
           lambda tr, te, c: net(x[tr][:, c], targets[word[tr]], x[te][:, c], word[tr], words, head="classes", hidden=()))

    def roi(init, epochs=20, dropout=0.4):
        def fit(train, test, cols):
            r = roi_of[cols]
            units = [q for q in sorted(set(r)) for _ in range(max(math.ceil((r == q).sum() / 2), 1))]
            mask = torch.tensor(np.array([[float(r[c] == q) for c in range(len(cols))] for q in units]),
                                dtype=torch.float32)
            limits = None
            if init == "glorot":
                size = {q: int((r == q).sum()) for q in set(r)}
                outs = {q: max(math.ceil(size[q] / 2), 1) for q in set(r)}
                limits = torch.tensor([math.sqrt(6 / (size[q] + outs[q])) for q in units], dtype=torch.float32)
            p = net(x[train][:, cols], targets[word[train]] - mean, x[test][:, cols], word[train], words,
                    roi=(mask, limits), epochs=epochs, dropout=dropout) + mean
            return cosine_sim(p, targets)
        return fit

    report("roi, Glorot per block (the pipeline's init), 20 epochs", roi("glorot"))
    report("roi, Glorot per block, 60 epochs", roi("glorot", epochs=60))
    report("roi, PyTorch default init of the masked layer, 20 epochs", roi("default"))


if __name__ == "__main__":
    sys.exit(main())

"""numpy implementation of eval.clip's definitions (docs/BRAIN2CLIP.md), written from the
definitions, not from the Rust code. Reads the same Parquet files and prints every metric row as
JSON: [[model, subject, mode, metric, index, value], ...].

usage: clip_reference.py EMBEDDINGS STIMULI SUBSET DRAWS SEED PREDICTIONS...
"""
import json
import sys

import numpy as np
import pyarrow.parquet as pq

MASK = (1 << 64) - 1


def splitmix(seed):
    state = seed
    while True:
        state = (state + 0x9E3779B97F4A7C15) & MASK
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        yield z ^ (z >> 31)


def subsets(n, m, draws, seed):
    rng = splitmix(seed)
    out = []
    for _ in range(draws):
        idx = list(range(n))
        for i in range(min(m, n)):
            j = i + next(rng) % (n - i)
            idx[i], idx[j] = idx[j], idx[i]
        out.append(idx[: min(m, n)])
    return out


def unit(a):
    a = np.asarray(a, dtype=np.float64)
    return a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)


emb_path, stim_path, subset, draws, seed = sys.argv[1:6]
subset, draws, seed = int(subset), int(draws), int(seed)
emb = pq.read_table(emb_path).to_pylist()
stim = pq.read_table(stim_path).to_pylist()
split = {s["image"]: s for s in stim if s["image"] is not None}
img_rows = [r for r in emb if r["kind"] == "image"]
names = [r["stimulus"] for r in img_rows]
I = unit(np.array([r["embedding"] for r in img_rows], dtype=np.float32))
row_of = {n: i for i, n in enumerate(names)}
for i, n in enumerate(names):  # scans name images by file name
    row_of.setdefault(n.rsplit("/", 1)[-1], i)
test = [i for i, n in enumerate(names) if n in split and split[n]["split"] == "test"]
test_set = set(test)
caps = [r for r in emb if r["kind"] == "caption" and row_of.get(r["stimulus"]) in test_set]
C = unit(np.array([r["embedding"] for r in caps], dtype=np.float32)) if caps else np.zeros((0, I.shape[1]))
cap_img = np.array([row_of[r["stimulus"]] for r in caps])
vec_ok = all(s.get("vector") is not None and len(s["vector"]) == 18 for s in stim if s["image"])

rows = []
for path in sys.argv[6:]:
    pred = pq.read_table(path).to_pylist()
    for model in sorted({r["model"] for r in pred}):
        mine = [r for r in pred if r["model"] == model and row_of.get(r["stimulus"]) in test_set]
        per_subject = {}
        pooled = []
        for r in mine:
            per_subject.setdefault(r["subject"], []).append(r)
        subj_rows = []
        for subject in sorted(per_subject):
            rs = per_subject[subject]
            folds = {r["fold"] for r in rs}
            fold = folds.pop() if len(folds) == 1 else -1
            single = [(row_of[r["stimulus"]], unit(np.array(r["embedding"], dtype=np.float32))) for r in rs]
            groups = {}
            for r in rs:
                groups.setdefault(row_of[r["stimulus"]], []).append(np.array(r["embedding"], dtype=np.float32).astype(np.float64))
            averaged = [(k, unit(np.mean(groups[k], axis=0))) for k in sorted(groups, key=lambda k: test.index(k))]
            pooled += averaged
            for mode, items in (("single", single), ("averaged", averaged)):
                P = np.array([p for _, p in items])
                truth = np.array([k for k, _ in items])
                S = P @ I.T
                own = S[np.arange(len(items)), truth]
                r_all = (S >= own[:, None]).sum(1)
                r_test = (S[:, test] >= own[:, None]).sum(1)
                cap = np.argmax(P @ C.T, axis=1)
                hit = cap_img[cap] == truth
                n = len(items)
                out = {"trials": n, "top1": np.mean(r_test <= 1), "top5": np.mean(r_test <= 5),
                       "mean_rank": np.mean(r_test), "top1_all": np.mean(r_all <= 1),
                       "top5_all": np.mean(r_all <= 5), "mean_rank_all": np.mean(r_all),
                       "caption": np.mean(hit)}
                for k, v in out.items():
                    subj_rows.append([model, subject, fold, mode, k, None, float(v)])
                for rank in sorted(set(r_test.tolist())):
                    subj_rows.append([model, subject, fold, mode, "rank_count", int(rank), float((r_test == rank).sum())])
                if mode == "averaged":
                    T = I[truth]
                    M = P @ T.T  # M[i, j] = cos(prediction i, image j)
                    d = np.diag(M)
                    off = ~np.eye(n, dtype=bool)
                    b2i = np.mean([(d[i] > M[i][off[i]]).mean() for i in range(n)])
                    i2b = np.mean([(d[i] > M[:, i][off[i]]).mean() for i in range(n)])
                    m = min(subset, n)
                    nb, ni = [], []
                    for sub in subsets(n, m, draws, seed):
                        sub = np.array(sub)
                        W = M[np.ix_(sub, sub)]
                        dd = np.diag(W)
                        o = ~np.eye(len(sub), dtype=bool)
                        nb.append(np.mean([np.all(dd[a] > W[a][o[a]]) for a in range(len(sub))]))
                        ni.append(np.mean([np.all(dd[a] > W[:, a][o[a]]) for a in range(len(sub))]))
                    for k, v in (("two_way_brain_to_image", b2i), ("two_way_image_to_brain", i2b),
                                 ("nway_brain_to_image", np.mean(nb)), ("nway_image_to_brain", np.mean(ni)),
                                 ("nway_size", m)):
                        subj_rows.append([model, subject, fold, mode, k, None, float(v)])
        rows += [[m, s, md, k, i, v] for m, s, _, md, k, i, v in subj_rows]
        keys = {}
        for m, s, f, md, k, i, v in subj_rows:
            keys.setdefault((md, k, i), []).append(v)
        for (md, k, i), vs in keys.items():
            summed = k in ("rank_count", "trials")
            rows.append([model, "all", md, k, i, float(np.sum(vs) if summed else np.sum(vs) / len(per_subject))])
        for md in ("single", "averaged"):
            rows.append([model, "all", md, "chance_top1", None, 1 / len(test)])
            rows.append([model, "all", md, "chance_top5", None, min(5 / len(test), 1.0)])
            rows.append([model, "all", md, "chance_top1_all", None, 1 / len(names)])
            rows.append([model, "all", md, "chance_caption", None, 1 / len(test)])
            if md == "averaged":
                rows.append([model, "all", md, "chance_two_way", None, 0.5])
                rows.append([model, "all", md, "chance_nway", None, 1 / min(subset, len(test))])
        if vec_ok:
            groups = [("background", ["black", "white", "gray", "beige"], slice(0, 4)),
                      ("kind", ["circle", "square", "triangle", "cross"], slice(5, 9)),
                      ("colour", ["red", "green", "blue", "yellow", "purple", "orange"], slice(9, 15))]
            V = np.array([split[n]["vector"] for n in names], dtype=np.float32)
            train = [i for i, n in enumerate(names) if split[n]["split"] == "train"]
            closest = [test[int(np.argmax(I[test] @ p))] for _, p in pooled]
            for g, (group, vals, sl) in enumerate(groups):
                block = V[:, sl]
                if g == 0:
                    present = np.zeros_like(block, dtype=bool)
                    present[np.arange(len(block)), np.argmax(block, axis=1)] = True
                else:
                    present = block > 0
                label = np.argmax(block, axis=1)
                for v, name in enumerate(vals):
                    key = f"category.{group}.{name}."
                    rows.append([model, "all", "averaged", key + "train_frequency", None, float(present[train, v].mean()) if train else 0.0])
                    rows.append([model, "all", "averaged", key + "chance", None, float(present[test, v].mean())])
                    w = [k for k, (s, _) in enumerate(pooled) if present[s, v]]
                    rows.append([model, "all", "averaged", key + "trials", None, float(len(w))])
                    if w:
                        rows.append([model, "all", "averaged", key + "accuracy", None, float(np.mean([present[closest[k], v] for k in w]))])
                        rows.append([model, "all", "averaged", key + "top1", None, float(np.mean([closest[k] == pooled[k][0] for k in w]))])
                conf = {}
                for k, (s, _) in enumerate(pooled):
                    key = (label[s], label[closest[k]])
                    conf[key] = conf.get(key, 0) + 1
                for (t, r), c in conf.items():
                    rows.append([model, "all", "averaged", f"confusion.{group}.{vals[t]}.{vals[r]}", None, float(c)])
print(json.dumps(rows))

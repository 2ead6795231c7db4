"""Oracle for models.ridge: closed-form primal ridge in numpy (float64) on the same tables.

Usage: ridge_reference.py FEATURES TARGETS RUN_DIR ALPHAS_JSON [RUN_DIR ALPHAS_JSON ...]

For each run directory (holding models.ridge's predictions.parquet and model/fold-NN.safetensors),
with the candidate alphas given as a JSON list:
- the outer folds are read from the predictions (the rows each fold predicted); the training rows
  are all the other scans;
- alpha is chosen as the stage documents it, independently: leave one training subject out over
  the training subjects, summed squared error, the smallest alpha among equal errors;
- W = (Xc'Xc + alpha I)^-1 Xc'Yc, b = mean(Y) - mean(X) W (centred, intercept unpenalised),
  solved in the primal (the stage solves the dual through an eigendecomposition);
- the fold's alpha (file metadata), weight and bias, and every predicted row, must agree.
Prints one JSON line of what was checked; exits non-zero on any disagreement.
"""
import json, struct, sys
import numpy as np
import pyarrow.parquet as pq


def vectors(table, name):
    col = table.column(name).combine_chunks()
    width = col.type.list_size
    return np.asarray(col.flatten().to_numpy(zero_copy_only=False), np.float64).reshape(-1, width)


def safetensors(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    data = raw[8 + n :]
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        assert t["dtype"] == "F32", (path, name, t["dtype"])
        lo, hi = t["data_offsets"]
        out[name] = np.frombuffer(data[lo:hi], "<f4").reshape(t["shape"]).astype(np.float64)
    return out, json.loads(header["__metadata__"]["config"])


def fit(X, Y, alpha):
    xm, ym = X.mean(0), Y.mean(0)
    Xc, Yc = X - xm, Y - ym
    W = np.linalg.solve(Xc.T @ Xc + alpha * np.eye(X.shape[1]), Xc.T @ Yc)
    return W, ym - xm @ W


def choose(X, Y, subjects, alphas):
    distinct = sorted(set(subjects))
    assert len(distinct) >= 2, "the oracle reproduces inner leave-one-subject-out only"
    errors = np.zeros(len(alphas))
    for held in distinct:
        fit_rows, held_rows = subjects != held, subjects == held
        for i, a in enumerate(alphas):
            W, b = fit(X[fit_rows], Y[fit_rows], a)
            errors[i] += ((X[held_rows] @ W + b - Y[held_rows]) ** 2).sum()
    return alphas[int(np.argmin(errors))], errors


features = pq.read_table(sys.argv[1])
targets = pq.read_table(sys.argv[2])
X = vectors(features, "voxels")
subject = np.array(features.column("subject").to_pylist())
trial = np.array(features.column("trial").to_pylist())
target_of = dict(zip(targets.column("stimulus").to_pylist(), vectors(targets, "target")))
Y = np.stack([target_of[s] for s in features.column("stimulus").to_pylist()])
row_of = {(s, t): i for i, (s, t) in enumerate(zip(subject, trial))}

report = []
args = sys.argv[3:]
for run_dir, alphas in zip(args[0::2], args[1::2]):
    alphas = json.loads(alphas)
    pred = pq.read_table(f"{run_dir}/predictions.parquet")
    P = vectors(pred, "embedding")
    folds = np.array(pred.column("fold").to_pylist())
    rows = np.array([row_of[k] for k in zip(pred.column("subject").to_pylist(), pred.column("trial").to_pylist())])
    assert sorted(rows.tolist()) == list(range(len(X))), f"{run_dir}: every scan predicted once"
    worst, chosen = 0.0, []
    for f in sorted(set(folds.tolist())):
        test = rows[folds == f]
        train = np.setdiff1d(np.arange(len(X)), test)
        alpha, errors = choose(X[train], Y[train], subject[train], alphas) if len(alphas) > 1 else (alphas[0], None)
        tensors, config = safetensors(f"{run_dir}/model/fold-{f:02d}.safetensors")
        assert config["alpha"] == alpha, f"{run_dir} fold {f}: alpha {config['alpha']}, numpy {alpha} (errors {errors})"
        chosen.append(alpha)
        W, b = fit(X[train], Y[train], alpha)
        scale = max(np.abs(W).max(), np.abs(b).max(), 1.0)
        for name, ours, want in [("weight", tensors["weight"], W.T), ("bias", tensors["bias"], b)]:
            diff = np.abs(ours - want).max() / scale
            assert diff < 1e-5, f"{run_dir} fold {f}: {name} differs by {diff} (relative)"
        want = X[test] @ W + b
        diff = np.abs(P[folds == f] - want).max() / max(np.abs(want).max(), 1.0)
        assert diff < 1e-5, f"{run_dir} fold {f}: predictions differ by {diff} (relative)"
        worst = max(worst, diff)
    report.append({"run": run_dir, "folds": len(chosen), "alphas": chosen, "rows": len(rows), "max_rel_diff": worst})
print(json.dumps(report))

"""Ridge regression decoder, leave-one-subject-out, on a words study written by ingest.synthetic.

Voxels of the atlas, z-scored per subject and paradigm; targets are the stimulus vectors z-scored
per dimension; dual-form ridge (lambda 1e4). Scores use the Brain2Word definitions: top-k over the
180 words by Pearson correlation of prediction and target vector, pairwise per paradigm block.
Prints JSON {ridge, oracle, chance}.
"""
import csv, glob, json, sys
import numpy as np, nibabel as nib, pyarrow.parquet as pq

d = sys.argv[1]
study = json.load(open(f"{d}/study.json"))
Y = np.array(pq.read_table(f"{d}/stimuli.parquet").column("vector").to_pylist(), dtype=np.float64)
Y = (Y - Y.mean(0)) / Y.std(0)
roi = np.asarray(nib.load(f"{d}/atlas.nii.gz").dataobj) > 0
X, S, P = [], [], []
for path in sorted(glob.glob(f"{d}/bold/sub-*_bold.nii.gz")):
    data = np.asarray(nib.load(path).dataobj)[roi].T.astype(np.float64)
    events = list(csv.DictReader(open(path.replace("_bold.nii.gz", "_events.tsv")), delimiter="\t"))
    s = np.array([int(e["stimulus"]) for e in events]); p = np.array([e["paradigm"] for e in events])
    for name in np.unique(p):
        m = p == name
        data[m] = (data[m] - data[m].mean(0)) / (data[m].std(0) + 1e-9)
    X.append(data); S.append(s); P.append(p)

def unit_rows(a):
    a = a - a.mean(1, keepdims=True)
    return a / np.linalg.norm(a, axis=1, keepdims=True)

top1, top5, pairwise = [], [], []
for t in range(len(X)):
    train = [i for i in range(len(X)) if i != t]
    Xtr = np.vstack([X[i] for i in train]); Ytr = np.vstack([Y[S[i]] for i in train])
    alpha = np.linalg.solve(Xtr @ Xtr.T + 1e4 * np.eye(len(Xtr)), Ytr)
    C = unit_rows(X[t] @ (Xtr.T @ alpha)) @ unit_rows(Y).T
    better = (C > C[np.arange(len(C)), S[t]][:, None]).sum(1)
    top1.append(np.mean(better < 1)); top5.append(np.mean(better < 5))
    for name in np.unique(P[t]):
        m = P[t] == name
        R = C[m][np.argsort(S[t][m])]
        dg = np.diag(R)
        hits = (dg[:, None] + dg[None, :]) > (R + R.T)
        pairwise.append(hits[np.triu_indices(len(R), 1)].mean())
o = study["oracle"]
print(json.dumps({
    "ridge": {"top1": float(np.mean(top1)), "top5": float(np.mean(top5)), "pairwise": float(np.mean(pairwise))},
    "oracle": {k: o[k] for k in ("top1", "top5", "pairwise")},
    "chance": o["chance"],
}))

"""Recomputes ingest.synthetic's oracle ceiling from the study's files alone.

Usage: oracle_from_files.py STUDY_DIR. Linear or nonlinear world (encoding.safetensors' config
says which). Reads encoding.safetensors (the true shared encoding),
stimuli.parquet, bold/sub-NN_bold.nii.gz with its events, mask.nii.gz, atlas.nii.gz and
study.json, and decodes every trial of every block as docs/SYNTHETIC.md ("The oracle") defines it:
the trial's volume at the informative voxels less its paradigm's offsets, correlated (Pearson)
with g * a * (W . x~) of every candidate of its block (x~: the stimulus vectors z-scored per
dimension); top-k = the true candidate among the k best; pairwise = Brain2Word's pairwise per
block; averaged over subjects. Candidates: the stimuli whose split is not `train` (words: all
180 per paradigm; images: the test images, one block per repetition).
Prints one JSON line {per_subject, mean, study}; exits non-zero when it disagrees with study.json
by more than one trial (top-k) or one pair (pairwise) per subject.
"""
import csv, glob, json, os, struct, sys
import numpy as np, nibabel as nib, pyarrow.parquet as pq

d = sys.argv[1]
study = json.load(open(f"{d}/study.json"))
raw = open(f"{d}/encoding.safetensors", "rb").read()
(n,) = struct.unpack("<Q", raw[:8])
header = json.loads(raw[8 : 8 + n])
assert header["__metadata__"]["brainpipe.schema"] == "synthetic-encoding/1", header["__metadata__"]
config = json.loads(header["__metadata__"]["config"])
enc = {}
for name, t in header.items():
    if name != "__metadata__":
        lo, hi = t["data_offsets"]
        dtype = {"F32": "<f4", "I64": "<i8"}[t["dtype"]]
        enc[name] = np.frombuffer(raw[8 + n + lo : 8 + n + hi], dtype).reshape(t["shape"])
grid_index, W = enc["grid_index"], enc["weights"].astype(np.float64)
amplitude, gains, offsets = enc["amplitude"], enc["gains"], enc["offsets"]
conditions = config["conditions"]
assert [p["name"] for p in study["paradigms"]] == conditions
assert np.allclose(gains, [p["gain"] for p in study["paradigms"]], rtol=1e-6)
assert len(grid_index) == study["grid"]["informative_voxels"]

# The informative voxels are brain voxels of the informative ROIs (checks the flat index order).
flat = lambda a: np.asarray(a).reshape(-1, order="F")
assert (flat(nib.load(f"{d}/mask.nii.gz").dataobj)[grid_index] == 1).all()
labels = flat(nib.load(f"{d}/atlas.nii.gz").dataobj)[grid_index]
assert set(labels.tolist()) == {r["roi"] for r in study["informative_rois"]}

stimuli = pq.read_table(f"{d}/stimuli.parquet")
vec = stimuli.column("vector").combine_chunks()
X = np.asarray(vec.flatten().to_numpy(zero_copy_only=False), np.float64).reshape(len(stimuli), -1)
sd = X.std(0)
Xz = np.where(sd > 1e-12, (X - X.mean(0)) / np.where(sd > 1e-12, sd, 1.0), 0.0).astype(np.float32)
ids = stimuli.column("id").to_pylist()
assert ids == list(range(len(ids)))
split = stimuli.column("split").to_pylist()
candidates = [s for s in ids if split[s] != "train"]
if config.get("encoding") == "nonlinear":
    # Each voxel weights its ROI's hidden units h = (cos(A x~ + b) - mean) / sd (docs/SYNTHETIC.md).
    assert config["nonlinearity"] == "cos", config
    A, b = enc["hidden_weights"].astype(np.float64), enc["hidden_bias"].astype(np.float64)
    mu, sd_h = enc["hidden_mean"].astype(np.float64), enc["hidden_sd"].astype(np.float64)
    raw = np.cos(np.einsum("rud,sd->rsu", A, Xz.astype(np.float64)) + b[:, None, :])
    # The stored moments are those of the generator's own (f32) hidden units over the stimuli.
    assert np.allclose(raw.mean(1), mu, atol=1e-4) and np.allclose(raw.std(1), sd_h, rtol=1e-3)
    hidden = (raw - mu[:, None, :]) / sd_h[:, None, :]  # rois x stimuli x units
    roi = enc["hidden_roi"]
    base = np.einsum("ku,kcu->ck", W, hidden[roi][:, candidates, :]) * amplitude
else:
    base = (W @ Xz[candidates].astype(np.float64).T).T * amplitude  # candidates x K, before the gain


def standardize(a):
    a = a - a.mean(1, keepdims=True)
    norm = np.linalg.norm(a, axis=1, keepdims=True)
    return a / np.where(norm > 0, norm, 1.0)


per_subject = []
for path in sorted(glob.glob(f"{d}/bold/sub-*_bold.nii.gz")):
    bold = np.asarray(nib.load(path).dataobj)
    volumes = bold.reshape(-1, bold.shape[3], order="F")[grid_index].T.astype(np.float64)
    events = list(csv.DictReader(open(path.replace("_bold.nii.gz", "_events.tsv")), delimiter="\t"))
    trial_of = {}
    for e in events:
        key = (e["paradigm"], int(e["repeat"]), int(e["stimulus"]))
        assert key not in trial_of, key
        trial_of[key] = int(e["trial"])
    blocks = sorted({(e["paradigm"], int(e["repeat"])) for e in events if split[int(e["stimulus"])] != "train"})
    top1 = top5 = hits = pairs = scored = 0
    for paradigm, repeat in blocks:
        c = conditions.index(paradigm)
        trials = [trial_of[(paradigm, repeat, s)] for s in candidates]
        observed = standardize(volumes[trials] - offsets[c])
        predicted = standardize(gains[c] * base)
        corr = observed @ predicted.T
        diag = np.diag(corr)
        better = (corr > diag[:, None]).sum(1)
        top1 += int((better < 1).sum())
        top5 += int((better < 5).sum())
        iu = np.triu_indices(len(trials), 1)
        hits += int((diag[iu[0]] + diag[iu[1]] > corr[iu] + corr.T[iu]).sum())
        pairs += len(iu[0])
        scored += len(trials)
    per_subject.append({"top1": top1 / scored, "top5": top5 / scored, "pairwise": hits / pairs, "trials": scored, "pairs": pairs})

theirs = study["oracle"]["per_subject"]
assert len(theirs) == len(per_subject) == study["params"]["subjects"]
for ours, rust in zip(per_subject, theirs):
    for metric, unit in [("top1", ours["trials"]), ("top5", ours["trials"]), ("pairwise", ours["pairs"])]:
        assert abs(ours[metric] - rust[metric]) <= 1.0 / unit + 1e-12, (metric, ours, rust)
mean = {m: float(np.mean([s[m] for s in per_subject])) for m in ["top1", "top5", "pairwise"]}
print(json.dumps({"per_subject": per_subject, "mean": mean, "study": {m: study["oracle"][m] for m in mean}, "chance": study["oracle"]["chance"]}))

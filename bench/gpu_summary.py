#!/usr/bin/env python3
"""Summarises bench/gpu.sh's models_step.jsonl: like-for-like ratios first, then the rest.

usage: gpu_summary.py models_step.jsonl
Rows (milliseconds per step; ours: brainpipe-tch's gpu_step, theirs: brain2word_torch.py):
  like for like — eager fp32 vs ours fp32 (fused Adam, 8 ROI groups), eager tf32 vs ours tf32,
  eager bf16 vs ours bf16, eager fp32 with torch's fused Adam vs ours fp32 (both a fused
  optimizer), the same in tf32;
  then ours with CUDA graphs, one ROI block, tch's per-variable Adam, and each against eager fp32.
Exits non-zero when a check line says "ok": false, when a figure is missing, or a line is not JSON.
Standard library only (the device venv may lack numpy).
"""
import json, sys

lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
failed = [l for l in lines if l.get("ok") is False]
for l in failed:
    print("FAILED CHECK:", json.dumps(l))
checks = [l for l in lines if "ok" in l]
for l in checks:
    if l.get("ok"):
        print("check ok:", json.dumps(l))

ours, theirs = {}, {}
for l in lines:
    if "ms_per_step" not in l:
        continue
    if l["impl"].startswith("pytorch-eager"):
        theirs.setdefault((l["model"], l["precision"], l["optimizer"]), []).append(l["ms_per_step"])
    else:
        key = (l["model"], l["precision"], l["optimizer"], l["roi_groups"], l["cuda_graph"])
        ours.setdefault(key, []).append(l["ms_per_step"])

missing = []


def get(table, key):
    if key not in table:
        missing.append(key)
        return None
    return table[key]


def fmt(values):
    return " / ".join(f"{v:.2f}" for v in values) if values else "–"


def ratio(theirs_ms, ours_ms):
    # Ours: the first (not the best) of its runs, the repeat is shown beside it.
    return f"{theirs_ms[0] / ours_ms[0]:.2f}x" if theirs_ms and ours_ms else "–"


print("\nlike for like (ms per step; ratio = PyTorch eager / ours):")
print(f"{'model':<12} {'precision':<5} {'optimizer':<13} {'eager':>16} {'ours':>16} {'ratio':>7}")
for model in ["base", "roi", "autoencoder"]:
    for precision, opt_theirs, opt_ours in [("fp32", "adam", "fused"), ("tf32", "adam", "fused"),
                                            ("bf16", "adam", "fused"), ("fp32", "fused", "fused"),
                                            ("tf32", "fused", "fused")]:
        t = get(theirs, (model, precision, opt_theirs))
        o = get(ours, (model, precision, opt_ours, 8, False))
        label = "fused both" if opt_theirs == "fused" else "foreach/fused"
        print(f"{model:<12} {precision:<5} {label:<13} {fmt(t):>16} {fmt(o):>16} {ratio(t, o):>7}")

print("\nours beyond like for like, against PyTorch eager fp32 (torch's default Adam):")
extra = [("roi", "fp32", "fused", 1, False, "one padded ROI block"),
         ("base", "fp32", "tch", 8, False, "tch's per-variable Adam"),
         ("roi", "fp32", "tch", 8, False, "tch's per-variable Adam"),
         ("autoencoder", "fp32", "tch", 8, False, "tch's per-variable Adam"),
         ("base", "fp32", "fused", 8, True, "CUDA graph"),
         ("base", "tf32", "fused", 8, True, "CUDA graph"),
         ("autoencoder", "fp32", "fused", 8, True, "CUDA graph"),
         ("autoencoder", "tf32", "fused", 8, True, "CUDA graph"),
         ("roi", "tf32", "fused", 1, True, "CUDA graph, one ROI block")]
for model, precision, opt, groups, graph, what in extra:
    o = get(ours, (model, precision, opt, groups, graph))
    t = get(theirs, (model, "fp32", "adam"))
    print(f"{model:<12} {precision:<5} {what:<28} ours {fmt(o):>14}  eager fp32 {fmt(t):>10}  {ratio(t, o):>7}")

parts = [l for l in lines if "parts" in l]
if parts:
    print("\nwhere a step goes (PARTS=1):")
    for l in parts:
        print(json.dumps(l))

if missing:
    print("\nMISSING figures:", missing)
if failed or missing or not checks:
    sys.exit(1)

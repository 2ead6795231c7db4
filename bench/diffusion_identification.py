#!/usr/bin/env python3
"""Scores diffusion.decode's reconstructions of the synthetic images world (issue 13 must-show).

    $BRAINPIPE_REF_PYTHON bench/diffusion_identification.py CLIP_MODEL_DIR STUDY_DIR DECODE_DIR [DECODE_DIR...]

CLIP_MODEL_DIR: clip.train's `model/` (Hugging Face layout, loaded with transformers);
STUDY_DIR: ingest.synthetic's output (stimuli paths resolve against it); DECODE_DIR: a
diffusion.decode output (reconstructions.parquet + images/).

Per DECODE_DIR and model: CLIP 2-way identification — for every reconstruction i and every other
decoded stimulus j, a hit when cos(CLIP(rec_i), CLIP(seen_i)) > cos(CLIP(rec_i), CLIP(seen_j)),
averaged (chance 0.5) — and SSIM against the seen image (grayscale, Gaussian σ 1.5, no sample
covariance, data range 1: the MindEye/Brain-Diffuser convention, scikit-image), mean over rows.
Prints one JSON line per model.
"""

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from PIL import Image
from skimage.metrics import structural_similarity
from transformers import CLIPImageProcessor, CLIPModel

clip_dir, study = Path(sys.argv[1]), Path(sys.argv[2])
model = CLIPModel.from_pretrained(clip_dir).eval()
processor = CLIPImageProcessor.from_pretrained(clip_dir)


def embed(images):
    with torch.no_grad():
        pixels = processor(images=images, return_tensors="pt")["pixel_values"]
        out = model.get_image_features(pixel_values=pixels)
        out = out if isinstance(out, torch.Tensor) else out.pooler_output
    return torch.nn.functional.normalize(out, dim=-1).numpy()


def gray(img):
    return np.asarray(img.convert("L"), dtype=np.float64) / 255.0


for decode in map(Path, sys.argv[3:]):
    table = pq.read_table(decode / "reconstructions.parquet").to_pylist()
    for name in sorted({r["model"] for r in table}):
        rows = [r for r in table if r["model"] == name]
        recs = [Image.open(decode / "images" / r["image"]).convert("RGB") for r in rows]
        seen = [Image.open(study / r["stimulus"]).convert("RGB") for r in rows]
        stimuli = sorted({r["stimulus"] for r in rows})
        seen_by = {s: Image.open(study / s).convert("RGB") for s in stimuli}
        e_rec = embed(recs)
        e_seen = embed([seen_by[s] for s in stimuli])
        index = {s: k for k, s in enumerate(stimuli)}
        sims = e_rec @ e_seen.T
        hits, total = 0, 0
        for i, r in enumerate(rows):
            own = sims[i, index[r["stimulus"]]]
            others = np.delete(sims[i], index[r["stimulus"]])
            hits += int((own > others).sum())
            total += len(others)
        ssim = [structural_similarity(gray(a), gray(b.resize(a.size)), gaussian_weights=True, sigma=1.5,
                                      use_sample_covariance=False, data_range=1.0) for b, a in zip(recs, seen)]
        print(json.dumps({"decode": decode.name, "model": name, "rows": len(rows),
                          "two_way_identification": hits / total, "ssim_mean": float(np.mean(ssim)),
                          "ssim_sd": float(np.std(ssim))}))

#!/usr/bin/env python
"""Regenerates crates/eval/tests/fixtures/images/: small PNGs and the values scikit-image 0.26,
numpy and torch compute on them (the oracle of tests/images_parity.rs).

Run with the peers venv:  $BRAINPIPE_REF_PYTHON crates/eval/tests/images_oracle.py

Images: crops of scikit-image's sample photographs (astronaut, coffee, chelsea, camera: public
domain / CC0 per skimage/data/README.txt), images-world-like scenes (flat shapes on a coloured
background, drawn here), a constant image, a 7x7 image, a non-square 16-bit gray PNG and an RGBA
PNG (alpha dropped as Pillow's convert("RGB")).

The pipeline is MindEye1's Reconstruction_Metrics.py in float64: torchvision's
Resize(size, BILINEAR) on tensors (= F.interpolate(mode="bilinear", align_corners=False,
antialias=...)), PixCorr = np.corrcoef of the flattened CHW tensors, SSIM =
structural_similarity(rgb2gray(rec), rgb2gray(img), gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=1.0), and the library's defaults with data_range=1.0.
The float32 pipeline MindEye actually runs is recorded too (`*_f32`), to show its distance.
"""

import json
import os

import numpy as np
import skimage
import torch
import torch.nn.functional as F
from PIL import Image
from skimage.color import rgb2gray
from skimage.metrics import structural_similarity

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "images")
os.makedirs(OUT, exist_ok=True)


def save_rgb(name, arr):
    Image.fromarray(arr.astype(np.uint8), "RGB").save(os.path.join(OUT, name), optimize=True)


def load(name):
    """PNG -> float64 HxWx3 in [0, 1], decoded by Pillow (independent of the Rust decoder)."""
    im = Image.open(os.path.join(OUT, name))
    a = np.asarray(im)
    if a.dtype == np.uint16 or im.mode.startswith("I;16"):
        a = a.astype(np.float64) / 65535.0
    else:
        a = a.astype(np.float64) / 255.0
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    return a[..., :3]


def resize(a, h, w, aa, dtype=torch.float64):
    x = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None].to(dtype)
    r = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=aa)
    return r[0].numpy()  # CHW


def sample(values):
    flat = np.asarray(values, dtype=np.float64).ravel()
    step = max(1, len(flat) // 150)
    return {"len": len(flat), "step": step, "sum": float(flat.sum()),
            "values": [float(v) for v in flat[::step]]}


def scene(h, w, background, shapes, seed):
    """An images-world-like picture: flat shapes on a flat background, a little sensor noise."""
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3)) + np.array(background, dtype=np.float64)
    yy, xx = np.mgrid[0:h, 0:w]
    for kind, colour, cx, cy, r in shapes:
        if kind == "circle":
            m = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
        elif kind == "square":
            m = (abs(xx - cx) <= r) & (abs(yy - cy) <= r)
        else:  # triangle
            m = (yy >= cy - r) & (yy <= cy + r) & (abs(xx - cx) <= (yy - (cy - r)) / 2)
        img[m] = colour
    img += rng.normal(0, 3, img.shape)
    return np.clip(np.round(img), 0, 255)


def main():
    data = os.path.join(os.path.dirname(skimage.__file__), "data")
    astro = np.asarray(Image.open(os.path.join(data, "astronaut.png")).convert("RGB"))
    coffee = np.asarray(Image.open(os.path.join(data, "coffee.png")).convert("RGB"))
    chelsea = np.asarray(Image.open(os.path.join(data, "chelsea.png")).convert("RGB"))
    camera = np.asarray(Image.open(os.path.join(data, "camera.png")))
    save_rgb("astronaut.png", astro[30:94, 180:244])        # 64x64 face
    save_rgb("coffee.png", coffee[150:214, 250:314])         # 64x64
    save_rgb("chelsea.png", chelsea[60:132, 140:220])        # 72x80 (h x w), non-square
    save_rgb("scene_a.png", scene(64, 64, (225, 205, 165),
                                  [("circle", (220, 40, 40), 20, 24, 12),
                                   ("triangle", (50, 80, 220), 44, 40, 14)], 1))
    save_rgb("scene_b.png", scene(64, 64, (225, 205, 165),
                                  [("circle", (200, 60, 50), 23, 26, 10),
                                   ("square", (60, 90, 200), 42, 42, 11)], 2))
    save_rgb("constant.png", np.full((32, 32, 3), 128))
    rng = np.random.default_rng(7)
    save_rgb("tiny7.png", rng.integers(0, 256, (7, 7, 3)))
    # 16-bit gray, non-square: camera rows spread over 16 bits with low-order detail.
    cam = camera[200:240, 220:268].astype(np.uint16) * 256 + rng.integers(0, 256, (40, 48)).astype(np.uint16)
    Image.fromarray(cam).save(os.path.join(OUT, "camera16.png"))
    rgba = np.concatenate([coffee[100:148, 100:148], rng.integers(0, 256, (48, 48, 1))], axis=-1)
    Image.fromarray(rgba.astype(np.uint8), "RGBA").save(os.path.join(OUT, "coffee_rgba.png"))

    names = ["astronaut.png", "coffee.png", "chelsea.png", "scene_a.png", "scene_b.png",
             "constant.png", "tiny7.png", "camera16.png", "coffee_rgba.png"]
    imgs = {n: load(n) for n in names}
    out = {"decoded": {n: sample(imgs[n]) for n in names}}

    # Resize: downscale and upscale, with and without antialiasing (CHW values).
    out["resize"] = []
    for name, h, w in [("chelsea.png", 31, 17), ("astronaut.png", 20, 45), ("astronaut.png", 100, 90),
                       ("tiny7.png", 425, 425), ("camera16.png", 13, 29)]:
        for aa in (True, False):
            out["resize"].append({"image": name, "height": h, "width": w, "antialias": aa,
                                  "chw": sample(resize(imgs[name], h, w, aa))})

    # rgb2gray.
    out["gray"] = {n: sample(rgb2gray(imgs[n])) for n in names}

    # SSIM on gray images at their own size (both variants), edge cases included.
    def gray(n):
        return rgb2gray(imgs[n])
    noisy = np.clip(gray("camera16.png") + np.random.default_rng(3).normal(0, 0.05, (40, 48)), 0, 1)
    ssim_cases = [
        ("astronaut.png", "coffee.png"), ("scene_a.png", "scene_b.png"),
        ("astronaut.png", "astronaut.png"), ("constant.png", "constant.png"),
    ]
    out["ssim"] = []
    for a, b in ssim_cases:
        ga, gb = gray(a), gray(b)
        out["ssim"].append({
            "a": a, "b": b,
            "gaussian": float(structural_similarity(ga, gb, gaussian_weights=True, sigma=1.5,
                                                    use_sample_covariance=False, data_range=1.0)),
            "uniform7": float(structural_similarity(ga, gb, data_range=1.0)),
        })
    out["ssim_noisy_camera"] = {
        "noisy": [float(v) for v in noisy.ravel()],
        "gaussian": float(structural_similarity(gray("camera16.png"), noisy, gaussian_weights=True,
                                                sigma=1.5, use_sample_covariance=False, data_range=1.0)),
        "uniform7": float(structural_similarity(gray("camera16.png"), noisy, data_range=1.0)),
    }
    t = gray("tiny7.png")
    t2 = np.clip(t[::-1], 0, 1)
    try:
        structural_similarity(t, t2, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                              data_range=1.0)
        tiny_gaussian = "ok"
    except ValueError as e:
        tiny_gaussian = "error: " + str(e).split(".")[0]
    out["ssim_tiny7"] = {"uniform7": float(structural_similarity(t, t2, data_range=1.0)),
                         "gaussian": tiny_gaussian}

    # The MindEye pipeline (size 425, upscaling) and a small size (downscaling), per pair.
    pairs = [("astronaut.png", "coffee.png"), ("scene_a.png", "scene_b.png"),
             ("chelsea.png", "astronaut.png"), ("constant.png", "scene_a.png"),
             ("tiny7.png", "coffee_rgba.png"), ("camera16.png", "chelsea.png"),
             ("astronaut.png", "astronaut.png")]
    out["pipeline"] = []
    for seen, rec in pairs:
        for size, aa in [(425, True), (48, True), (48, False)]:
            entry = {"seen": seen, "recon": rec, "size": size, "antialias": aa}
            for suffix, dtype in [("", torch.float64), ("_f32", torch.float32)]:
                rs, rr = resize(imgs[seen], size, size, aa, dtype), resize(imgs[rec], size, size, aa, dtype)
                with np.errstate(invalid="ignore", divide="ignore"):
                    pc = np.corrcoef(rs.reshape(-1), rr.reshape(-1))[0][1]
                gs, gr = rgb2gray(rs.transpose(1, 2, 0)), rgb2gray(rr.transpose(1, 2, 0))
                entry["pixcorr" + suffix] = None if np.isnan(pc) else float(pc)
                entry["ssim_gaussian" + suffix] = float(structural_similarity(
                    gr, gs, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0))
                entry["ssim_uniform7" + suffix] = float(structural_similarity(gr, gs, data_range=1.0))
            out["pipeline"].append(entry)

    # 2-way identification, MindEye's code, on random features with structure.
    rng = np.random.default_rng(11)
    n, dim = 12, 40
    reals = rng.normal(size=(n, dim))
    preds = 0.6 * reals + rng.normal(size=(n, dim))
    preds[3] = reals[5]  # a confusion
    r = np.corrcoef(reals, preds)[:n, n:]
    congruents = np.diag(r)
    success_cnt = np.sum(r < congruents, 0)
    out["two_way"] = {"n": n, "dim": dim, "reals": reals.ravel().tolist(), "preds": preds.ravel().tolist(),
                      "per_pred": (success_cnt / (n - 1)).tolist(),
                      "mean": float(np.mean(success_cnt) / (n - 1))}

    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(out, f, indent=0)
        f.write("\n")


if __name__ == "__main__":
    main()

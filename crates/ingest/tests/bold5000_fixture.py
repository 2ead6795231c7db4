"""Writes a small study in the BOLD5000 release 2.0 layout, with a known signal, for the
end-to-end test of pipelines/brain2clip-bold5000.yaml (tests/cli.rs).

    python bold5000_fixture.py OUT

OUT/bold5000/ then holds, as the pipeline's default paths expect:
- betas/CSI{n}_GLMbetas-TYPED-FITHRF-GLMDENOISE-RR_ses-XX.nii.gz: one 4-D float32 volume per
  session (x, y, z, trial), written by nibabel, 2 mm voxels on a 7x6x5 grid;
- Stimuli_Presentation_Lists/CSI{n}/CSI{n}_sessXX/CSI_sessXX_runYY.txt: one image per trial,
  `rep_` before a repeated presentation;
- BOLD5000_Stimuli/Scene_Stimuli/Presented_Stimuli/{COCO,ImageNet,Scene}/...: the images (JPEG);
- annotations/captions_train2014.json: COCO captions (five per COCO image; none for the others);
- rois/CSI{n}/{LHPPA,RHLOC,LHEarlyVis}.npy: boolean masks on the betas' grid, of different sizes
  per subject.

Each image has a latent vector z (8-d); its pixels are a smooth pattern drawn from z, and every
subject's voxels respond W z + noise (W shared, plus a subject deviation), so a decoder can learn.
Three subjects; 36 COCO images shown once, 8 COCO images shown four times (the test set, as
BOLD5000's repeated images), 4 Scene and 3 ImageNet images shown once (no captions).
"""

import json
import os
import sys

import nibabel as nib
import numpy as np
from PIL import Image

GRID = (7, 6, 5)
LATENT = 8
AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])
WORDS = ["red", "green", "blue", "round", "square", "bright", "dark", "striped"]


def image_pixels(z, rng):
    """A 48x48 RGB image from z: colour gradients and a blob placed by z."""
    y, x = np.mgrid[0:48, 0:48] / 47.0
    channels = []
    for c in range(3):
        base = 0.5 + 0.25 * np.tanh(z[c]) + 0.2 * np.tanh(z[3 + c]) * (x if c % 2 else y)
        blob = 0.3 * np.tanh(z[6]) * np.exp(-((x - 0.5 - 0.3 * np.tanh(z[7])) ** 2 + (y - 0.5) ** 2) / 0.05)
        channels.append(base + blob + 0.02 * rng.standard_normal((48, 48)))
    return (np.clip(np.stack(channels, -1), 0, 1) * 255).astype(np.uint8)


def captions_for(z, index):
    order = np.argsort(-np.abs(z))
    return [f"an image {k} that is {WORDS[order[k]]} and {WORDS[order[k + 1]]} number {index}"
            for k in range(5)]


def main(out):
    rng = np.random.default_rng(5000)
    root = os.path.join(out, "bold5000")
    stim_dir = os.path.join(root, "BOLD5000_Stimuli", "Scene_Stimuli", "Presented_Stimuli")
    names = ([f"COCO_train2014_{100 + i:012d}.jpg" for i in range(44)]
             + [f"scene{i}.jpg" for i in range(4)]
             + [f"n0144076{i}_1011{i}.JPEG" for i in range(3)])
    folder = lambda n: "COCO" if n.startswith("COCO") else "ImageNet" if n.startswith("n0") else "Scene"
    test = set(names[36:44])
    latent = {n: rng.standard_normal(LATENT) for n in names}
    for n in names:
        os.makedirs(os.path.join(stim_dir, folder(n)), exist_ok=True)
        Image.fromarray(image_pixels(latent[n], rng)).save(
            os.path.join(stim_dir, folder(n), n), format="JPEG", quality=95)

    coco = [n for n in names if n.startswith("COCO")]
    annotations = []
    for i, n in enumerate(coco):
        for k, text in enumerate(captions_for(latent[n], i)):
            annotations.append({"id": 1000 + 5 * i + k, "image_id": 100 + i, "caption": text})
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    with open(os.path.join(root, "annotations", "captions_train2014.json"), "w") as f:
        json.dump({"images": [{"id": 100 + i, "file_name": n} for i, n in enumerate(coco)],
                   "annotations": annotations}, f)

    voxels = int(np.prod(GRID))
    shared = rng.standard_normal((voxels, LATENT))
    for s in (1, 2, 3):
        subject = f"CSI{s}"
        # Presentations: every image once, the test images three more times (as `rep_`), spread
        # over two sessions of two runs.
        order = list(names) + [n for n in names if n in test] * 3
        rng.shuffle(order)
        seen, trials = set(), []
        for n in order:
            trials.append(("rep_" + n) if n in seen else n)
            seen.add(n)
        sessions = [trials[: len(trials) // 2], trials[len(trials) // 2:]]
        w = shared + 0.3 * rng.standard_normal((voxels, LATENT))
        os.makedirs(os.path.join(root, "betas"), exist_ok=True)
        for si, session in enumerate(sessions, start=1):
            half = len(session) // 2
            for ri, run in enumerate([session[:half], session[half:]], start=1):
                d = os.path.join(root, "Stimuli_Presentation_Lists", subject, f"{subject}_sess{si:02d}")
                os.makedirs(d, exist_ok=True)
                with open(os.path.join(d, f"CSI_sess{si:02d}_run{ri:02d}.txt"), "w") as f:
                    f.write("\n".join(run) + "\n")
            betas = np.stack([w @ latent[t.removeprefix("rep_")] + 0.5 * rng.standard_normal(voxels)
                              for t in session], -1).astype(np.float32)
            volume = betas.reshape(GRID[::-1] + (len(session),)).transpose(2, 1, 0, 3)
            nib.save(nib.Nifti1Image(np.ascontiguousarray(volume), AFFINE),
                     os.path.join(root, "betas",
                                  f"{subject}_GLMbetas-TYPED-FITHRF-GLMDENOISE-RR_ses-{si:02d}.nii.gz"))
        # ROI masks: three regions, their extent differing per subject.
        d = os.path.join(root, "rois", subject)
        os.makedirs(d, exist_ok=True)
        x = np.arange(GRID[0])[:, None, None]
        z = np.arange(GRID[2])[None, None, :]
        y = np.arange(GRID[1])[None, :, None]
        shape = np.ones(GRID, bool)
        for name, mask in [("LHPPA", (x < 3) & (z < 2 + s % 2)), ("RHLOC", (x >= 4) & (y < 3 + s % 3)),
                           ("LHEarlyVis", (z >= 3) & (y >= 2) & (x < 2 + s))]:
            np.save(os.path.join(d, f"{name}.npy"), mask & shape)


if __name__ == "__main__":
    main(sys.argv[1])

#!/usr/bin/env python3
"""transformers' CLIP image-embedding throughput, the reference for brainpipe-clip's
`clip_throughput` example: random ViT-B/32 weights (CLIPVisionModelWithProjection, default SDPA
attention), random pixels, `--batch` images per forward pass under torch.inference_mode, fp32, tf32
(float32 with torch.backends' TF32 switches on) and bf16 (the model cast with .to(torch.bfloat16)).
Prints one JSON line per precision.

    python3 bench/reference/clip_throughput.py --device cuda --batch 256 --iters 30

On the CPU run it with the pinned peers venv ($BRAINPIPE_REF_PYTHON, `make refenv`); on the device
machine bench/gpu_clip.sh runs it with the device's torch and the wheels it carries.
"""
import argparse
import json
import time

import torch
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

PRESETS = {
    "vit-b-32": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, patch_size=32, image_size=224, projection_dim=512),
    "vit-b-16": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, patch_size=16, image_size=224, projection_dim=512),
    "small": dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4, patch_size=8, image_size=32, projection_dim=64),
}


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--preset", default="vit-b-32")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--precision", default="fp32,bf16")
    args = ap.parse_args()
    config = CLIPVisionConfig(**PRESETS[args.preset])
    for precision in args.precision.split(","):
        torch.manual_seed(0)
        # tf32: float32 tensors, matmuls and convolutions on TF32 tensor cores.
        torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
        torch.backends.cudnn.allow_tf32 = precision == "tf32"
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        model = CLIPVisionModelWithProjection(config).to(args.device, dtype).eval()
        pixels = torch.randn(args.batch, 3, config.image_size, config.image_size, device=args.device, dtype=dtype)
        with torch.inference_mode():
            for _ in range(3):
                model(pixel_values=pixels).image_embeds
            sync(args.device)
            start = time.perf_counter()
            for _ in range(args.iters):
                model(pixel_values=pixels).image_embeds
            sync(args.device)
            seconds = time.perf_counter() - start
        print(json.dumps({
            "impl": f"transformers {__import__('transformers').__version__}",
            "device": args.device,
            "preset": args.preset,
            "precision": precision,
            "batch": args.batch,
            "iters": args.iters,
            "images_per_s": round(args.batch * args.iters / seconds, 1),
            "ms_per_batch": round(seconds * 1000 / args.iters, 3),
            "attn": config._attn_implementation if hasattr(config, "_attn_implementation") else "default",
        }))


if __name__ == "__main__":
    main()

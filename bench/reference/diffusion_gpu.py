#!/usr/bin/env python3
"""diffusers' side of bench/gpu_diffusion.sh: an SD 1.5-shaped UNet (cross_attention_dim 768)
and VAE with random weights, 512² images, DDIM with guidance 7.5 over one image-embedding token —
the loop of StableDiffusionImageVariationPipeline — eager, SDPA attention (diffusers' default).

    python diffusion_gpu.py --kind fp16 --batch 4 --steps 50 [--repeats 3] [--compile]

Prints one JSON line: images/s end to end and torch.cuda.max_memory_allocated.
"""

import argparse
import json
import time

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

p = argparse.ArgumentParser()
p.add_argument("--kind", default="fp16", choices=["fp32", "fp16", "bf16"])
p.add_argument("--batch", type=int, default=1)
p.add_argument("--steps", type=int, default=50)
p.add_argument("--repeats", type=int, default=3)
p.add_argument("--compile", action="store_true")
a = p.parse_args()
dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[a.kind]
dev = "cuda"
torch.manual_seed(0)
unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768).to(dev, dtype).eval()
vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                    up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, sample_size=512).to(dev, dtype).eval()
if a.compile:
    unet = torch.compile(unet)
sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                      set_alpha_to_one=False, steps_offset=1)


@torch.no_grad()
def run():
    latents = torch.randn(a.batch, 4, 64, 64, device=dev, dtype=dtype)
    cond = torch.randn(a.batch, 1, 768, device=dev, dtype=dtype)
    ctx = torch.cat([torch.zeros_like(cond), cond])
    sched.set_timesteps(a.steps)
    for t in sched.timesteps:
        out = unet(torch.cat([latents] * 2), t, encoder_hidden_states=ctx).sample
        u, c = out.chunk(2)
        latents = sched.step(u + 7.5 * (c - u), t, latents).prev_sample
    img = vae.decode(latents / 0.18215).sample
    return ((img.float() + 1) * 127.5).clamp(0, 255).to(torch.uint8).cpu()


run()
torch.cuda.synchronize()
torch.cuda.reset_peak_memory_stats()
start = time.perf_counter()
for _ in range(a.repeats):
    run()
torch.cuda.synchronize()
sec = (time.perf_counter() - start) / a.repeats
print(json.dumps({"impl": "diffusers" + ("-compile" if a.compile else ""), "kind": a.kind, "batch": a.batch,
                  "steps": a.steps, "seconds_per_batch": sec, "images_per_s": a.batch / sec,
                  "peak_mem_mib": torch.cuda.max_memory_allocated() / 2**20,
                  "torch": torch.__version__, "gpu": torch.cuda.get_device_name()}))

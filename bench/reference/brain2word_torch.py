#!/usr/bin/env python3
"""PyTorch-eager reference of the Brain2Word models for bench/gpu.sh.

Same networks and step as crates/models (examples/gpu_step.rs): 65,730 inputs (the 333 Gordon
template sizes of sizes.npy), Dense 2000 -> LeakyReLU(0.3) -> BN -> Dropout(0.4) -> Dense 200 ->
... -> Dense 300 (regression head) -> LeakyReLU -> BN -> Dropout -> Dense 180; batch 180;
torch.optim.Adam(lr=1e-3, eps=1e-7, amsgrad=True) — the settings of the original (Keras) and of
ours, not torch's defaults — in torch's default implementation (`foreach` on CUDA) or, with
--optimizer fused, `fused=True` (one fused kernel, like ours); loss = Brain2Word's batch-negatives
cosine regression + cross-entropy (+ -cos(x, x_hat) for the autoencoder). ROI: the original
layout, one nn.Linear per ROI (max(ceil(size/20), 1) outputs each), concatenated.

usage: brain2word_torch.py SIZES.npy [--steps N] [--precision fp32|tf32|bf16] [--device cuda]
                           [--optimizer adam|fused]
Prints one JSON object per model; exits non-zero if a loss is not finite. On the CPU run it with
the pinned peers venv ($BRAINPIPE_REF_PYTHON, `make refenv`); bench/gpu.sh runs it with the device
machine's torch.
"""
import argparse, ast, json, math, struct, time

import torch
from torch import nn
import torch.nn.functional as F


def load_sizes(path):
    """int64 .npy without numpy (the device venv may not have it)."""
    raw = open(path, "rb").read()
    header_len = struct.unpack("<H", raw[8:10])[0]
    header = ast.literal_eval(raw[10:10 + header_len].decode("latin1"))
    assert header["descr"] == "<i8" and not header["fortran_order"], header
    n = header["shape"][0]
    return list(struct.unpack("<%dq" % n, raw[10 + header_len:10 + header_len + 8 * n]))


def block(width):
    return [nn.LeakyReLU(0.3), nn.BatchNorm1d(width, momentum=0.01, eps=1e-3), nn.Dropout(0.4)]


class RoiLayer(nn.Module):
    """The original: one Dense per ROI on its slice of the template, outputs concatenated."""

    def __init__(self, sizes):
        super().__init__()
        self.sizes = [int(s) for s in sizes]
        self.layers = nn.ModuleList(nn.Linear(s, max(math.ceil(s / 20), 1)) for s in self.sizes)
        self.out = sum(l.out_features for l in self.layers)

    def forward(self, x):
        return torch.cat([l(part) for l, part in zip(self.layers, torch.split(x, self.sizes, 1))], 1)


class Brain2Word(nn.Module):
    def __init__(self, kind, sizes, hidden=(2000, 200), emb=300, classes=180):
        super().__init__()
        inputs = int(sum(sizes))
        if kind == "roi":
            first = RoiLayer(sizes)
            widths = [first.out] + list(hidden[1:])
        else:
            first = nn.Linear(inputs, hidden[0])
            widths = list(hidden)
        layers = [first, *block(widths[0])]
        for a, b in zip(widths, widths[1:]):
            layers += [nn.Linear(a, b), *block(b)]
        self.encoder = nn.Sequential(*layers)
        self.head = nn.Linear(widths[-1], emb)
        self.classifier = nn.Sequential(*block(emb), nn.Linear(emb, classes))
        self.decoder = None
        if kind == "autoencoder":
            chain = [emb] + widths[::-1]
            dec = []
            for a, b in zip(chain, chain[1:]):
                dec += [nn.Linear(a, b), *block(b)]
            dec.append(nn.Linear(widths[0], inputs))
            self.decoder = nn.Sequential(*dec)

    def forward(self, x):
        e = self.head(self.encoder(x))
        return e, self.classifier(e), (self.decoder(e) if self.decoder is not None else None)


def regression_loss(p, t):
    b = p.shape[0]
    cos = F.normalize(t, dim=1) @ F.normalize(p, dim=1).T
    own = cos.diagonal()
    return ((cos.sum(1) - own) / (b - 1) - own).mean()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("sizes")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--precision", default="fp32", choices=["fp32", "tf32", "bf16"])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--models", default="base,roi,autoencoder")
    ap.add_argument("--optimizer", default="adam", choices=["adam", "fused"])
    a = ap.parse_args()
    sizes = load_sizes(a.sizes)
    torch.backends.cuda.matmul.allow_tf32 = a.precision == "tf32"
    torch.backends.cudnn.allow_tf32 = a.precision == "tf32"
    dev = torch.device(a.device)
    torch.manual_seed(1)
    inputs = int(sum(sizes))
    x = torch.randn(540, inputs, device=dev)
    t = torch.randn(540, 300, device=dev)
    c = torch.randint(0, 180, (540,), device=dev)
    for kind in a.models.split(","):
        model = Brain2Word(kind, sizes).to(dev).train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7, amsgrad=True,
                               fused=True if a.optimizer == "fused" else None)
        last = []

        def run(n):
            for i in range(n):
                sl = slice((i % 3) * 180, (i % 3 + 1) * 180)
                xb = x[sl]
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.precision == "bf16"):
                    e, logits, rec = model(xb)
                    loss = regression_loss(e.float(), t[sl]) + F.cross_entropy(logits.float(), c[sl])
                    if rec is not None:
                        loss = loss - F.cosine_similarity(xb, rec.float(), dim=1).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            last[:] = [loss.detach()]
            if dev.type == "cuda":
                torch.cuda.synchronize()

        run(5)
        start = time.perf_counter()
        run(a.steps)
        ms = (time.perf_counter() - start) * 1e3 / a.steps
        final = float(last[0])
        if not math.isfinite(final):
            raise SystemExit(f"{kind} {a.precision}: the loss is {final} after {a.steps + 5} steps")
        print(json.dumps({"impl": "pytorch-eager" + ("-fused-adam" if a.optimizer == "fused" else ""),
                          "torch": torch.__version__, "model": kind, "optimizer": a.optimizer,
                          "final_loss": final,
                          "precision": a.precision, "ms_per_step": ms, "steps": a.steps,
                          "device": torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu"}),
              flush=True)


if __name__ == "__main__":
    main()

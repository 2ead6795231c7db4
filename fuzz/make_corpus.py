"""Writes the committed seed corpus of the fuzz targets (fuzz/corpus/<target>/).

usage: $BRAINPIPE_REF_PYTHON fuzz/make_corpus.py     (the peers venv: nibabel, numpy)

Valid files as nibabel and NumPy write them (NIfTI-1 and NIfTI-2, both byte orders, gzip, an
extension, .hdr/.img pairs; .npy versions 1-3), the project's own MNI mask and CLIP fixture, and
the hostile cases the readers must refuse (tests/malformed.rs, issue 15). Each seed is small: the
fuzzer mutates bytes, and a short input runs fast. Deterministic: rerunning rewrites the same bytes.
"""
import gzip
import io
import os
import shutil
import struct
import sys
import tempfile

import nibabel as nib
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")
AFFINE = np.array([[-2.0, 0, 0, 90], [0, 2.0, 0, -126], [0, 0, 2.0, -72], [0, 0, 0, 1]])
rng = np.random.default_rng(15)
seeds = {"nifti_header": {}, "nifti_stream": {}, "npy": {}, "mat": {}, "safetensors": {},
         "events_tsv": {}, "pipeline_yaml": {}, "hf_config": {}, "tokenizer": {}}


def gz(data):
    # mtime 0: the same bytes on every run.
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, compresslevel=6) as f:
        f.write(data)
    return out.getvalue()


def nifti_bytes(img, ext=".nii"):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "x" + ext)
        nib.save(img, path)
        if ext in (".nii", ".nii.gz"):
            with open(path, "rb") as f:
                return f.read()
        base = path[: -len(ext)]
        gzs = ".gz" if ext.endswith(".gz") else ""
        with open(base + ".hdr" + gzs, "rb") as h, open(base + ".img" + gzs, "rb") as i:
            return h.read(), i.read()


def single(name, data):
    """A single-file seed: raw for nifti_header, mode byte 0 for nifti_stream."""
    seeds["nifti_header"][name] = data
    seeds["nifti_stream"][name] = b"\x00" + data


def pair(name, hdr, img, by_img=False):
    seeds["nifti_stream"][name] = bytes([3 if by_img else 1]) + struct.pack("<H", len(hdr)) + hdr + img


def patched(data, at, new):
    return data[:at] + new + data[at + len(new):]


# Valid NIfTI: datatypes, byte orders, versions, scaling, gzip, an extension.
arr = rng.integers(-300, 300, (3, 2, 2, 2)).astype("i2")
img = nib.Nifti1Image(arr, AFFINE)
img.header.set_slope_inter(0.5, -3.0)
n1_i16 = nifti_bytes(img)
single("n1-le-i16-scaled.nii", n1_i16)
hdr = nib.Nifti1Header().as_byteswapped(">")
be = nib.Nifti1Image(rng.normal(size=(2, 3, 2)).astype(">f4"), AFFINE, header=hdr)
single("n1-be-f32.nii", nifti_bytes(be))
single("n1-u8.nii.gz", gz(nifti_bytes(nib.Nifti1Image(rng.integers(0, 255, (4, 3, 2)).astype("u1"), AFFINE))))
for dtype in ["i1", "u2", "i4", "u4", "i8", "u8", "f8"]:
    data = (rng.normal(0, 50, (2, 2, 2)) if dtype == "f8" else rng.integers(0, 100, (2, 2, 2))).astype(dtype)
    single(f"n1-{dtype}.nii", nifti_bytes(nib.Nifti1Image(data, AFFINE, dtype=dtype)))
q = nib.Nifti1Image(rng.normal(size=(2, 2, 3)).astype("f4"), None)
q.header.set_qform(np.array([[0, -1.5, 0, 4], [2, 0, 0, -5], [0, 0, -2.5, 6], [0, 0, 0, 1]]), 1)
q.header.set_sform(None, 0)
single("n1-qform-only.nii", nifti_bytes(q))
ext = nib.Nifti1Image(np.arange(8, dtype="i2").reshape(2, 2, 2), AFFINE)
ext.header.extensions.append(nib.nifti1.Nifti1Extension("comment", b"seed with an extension"))
single("n1-extension.nii", nifti_bytes(ext))
n2 = nib.Nifti2Image(rng.normal(size=(3, 2, 2, 2)).astype("f8"), AFFINE)
single("n2-le-f64.nii", nifti_bytes(n2))
hdr2 = nib.Nifti2Header().as_byteswapped(">")
n2be = nib.Nifti2Image(rng.integers(-9, 9, (2, 2, 2)).astype(">i4"), AFFINE, header=hdr2)
single("n2-be-i32.nii.gz", gz(nifti_bytes(n2be)))
with open(os.path.join(ROOT, "data", "mni", "MNI152_T1_3mm_brain_mask.nii.gz"), "rb") as f:
    single("mni-3mm-mask.nii.gz", f.read())

# Pairs (nifti_stream only: the in-memory reader refuses them).
h, i = nifti_bytes(nib.Nifti1Pair(arr, AFFINE), ".img")
pair("n1-pair.hdr", h, i)
pair("n1-pair-by-img", h, i, by_img=True)
h, i = nifti_bytes(nib.Nifti2Pair(arr, AFFINE), ".img")
pair("n2-pair.hdr", h, i)
pair("n1-pair-gz-img", nifti_bytes(nib.Nifti1Pair(arr, AFFINE), ".img")[0], gz(i))
pair("n1-pair-missing-img", nifti_bytes(nib.Nifti1Pair(arr, AFFINE), ".img")[0], b"")

# Hostile NIfTI (tests/malformed.rs and issue 15.3).
dims = lambda *d: b"".join(struct.pack("<h", x) for x in d)
single("bad-truncated.nii.gz", gz(n1_i16)[:-40])
single("bad-short-data.nii", n1_i16[:-10])
single("bad-offset-past-end.nii", patched(n1_i16, 108, struct.pack("<f", 100000.0)))
single("bad-offset-in-header.nii", patched(patched(n1_i16, 108, struct.pack("<f", 100.0)), 344, b"ni1\0"))
single("bad-dim0.nii", patched(n1_i16, 40, dims(8)))
single("bad-negative-dim.nii", patched(n1_i16, 44, dims(-3)))
single("bad-datatype.nii", patched(n1_i16, 70, dims(999)))
single("bad-nan-slope.nii", patched(n1_i16, 112, struct.pack("<f", float("nan"))))
single("bad-magic.nii", patched(n1_i16, 344, b"xx1\0"))
single("bad-claims-1024-pow-4.nii.gz", gz(patched(n1_i16, 40, dims(4, 1024, 1024, 1024, 1024, 1, 1, 1))))
single("bad-vast-dims.nii", patched(n1_i16, 40, dims(7, *[32767] * 7)))
single("bad-empty-volumes.nii", patched(n1_i16, 40, dims(7, 0, 2, 2, 32767, 32767, 32767, 1)))

# .npy: as NumPy writes them, then hostile headers.
def npy(array, version=None):
    out = io.BytesIO()
    if version is None:
        np.save(out, array)
    else:
        np.lib.format.write_array(out, array, version=version)
    return out.getvalue()


def raw_npy(header, data):
    """A version-1 .npy with `header` as its dict text, padded as NumPy pads."""
    text = header.encode()
    text += b" " * (-(10 + len(text) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + data


N = seeds["npy"]
N["f4-2x3.npy"] = npy(rng.normal(size=(2, 3)).astype("<f4"))
N["be-i2.npy"] = npy(np.array([-2, 300, 7], dtype=">i2"))
N["bool.npy"] = npy(np.array([True, False, True]))
N["u8-fortran.npy"] = npy(np.asfortranarray(np.arange(6, dtype="<u8").reshape(2, 3)))
N["f8-scalar.npy"] = npy(np.float64(2.5))
N["i4-empty.npy"] = npy(np.zeros((0, 3), dtype="<i4"))
N["v2.npy"] = npy(np.arange(4, dtype="<i8"), version=(2, 0))
N["v3.npy"] = npy(np.arange(3, dtype=">f8"), version=(3, 0))
N["unicode.npy"] = npy(np.array(["ab", "cde"]))
with open(os.path.join(ROOT, "tests", "fixtures", "clip", "tiny", "image_embeds.npy"), "rb") as f:
    N["clip-tiny-image-embeds.npy"] = f.read()
good = N["be-i2.npy"]
N["bad-no-magic.npy"] = b"PK\x03\x04" + good[4:]
N["bad-truncated-data.npy"] = good[:-3]
N["bad-header-len.npy"] = good[:8] + b"\xff\xff" + good[10:]
N["bad-no-byte-order.npy"] = good.replace(b"'>i2'", b"'i2' ")
N["bad-shape.npy"] = good.replace(b"(3,)", b"(x,)")
N["bad-overflowing-shape.npy"] = raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }", b"")
N["bad-zero-width.npy"] = raw_npy("{'descr': '<f0', 'fortran_order': False, 'shape': (3,), }", b"")
N["bad-huge-width.npy"] = raw_npy("{'descr': '<i18446744073709551615', 'fortran_order': False, 'shape': (2,), }", b"")
N["bad-non-ascii-descr.npy"] = raw_npy("{'descr': '\u00e9<f4', 'fortran_order': False, 'shape': (1,), }", b"\0" * 4)
N["bad-no-shape.npy"] = raw_npy("{'descr': '<f4', 'fortran_order': False}", b"\0" * 4)

# MAT v5: as scipy writes them (plain and compressed elements; Pereira's layout, BOLD5000's ROI
# masks), then hostile ones.
import json
import scipy.io

M = seeds["mat"]


def mat(variables, compress):
    out = io.BytesIO()
    scipy.io.savemat(out, variables, do_compression=compress)
    data = out.getvalue()
    # The 116-byte text header carries scipy's "Created on: <date>": a fixed one keeps the seeds'
    # bytes the same on every run.
    text = b"MATLAB 5.0 MAT-file Platform: posix, Created on: Sat Nov 28 00:00:00 2026"
    return text.ljust(116) + data[116:]


pereira = {"words": np.array(["apple ", "bird  ", "house "]), "data": rng.normal(size=(3, 4))}
M["pereira.mat"] = mat(pereira, False)
M["pereira-compressed.mat"] = mat(pereira, True)
M["roi-logical.mat"] = mat({"LHPPA": np.arange(24).reshape(2, 3, 4) % 3 == 0}, True)
M["cell-struct.mat"] = mat({"c": np.array([[1.0, "ab"]], dtype=object),
                            "s": {"a": np.int16(3), "b": np.array([[1, 2], [3, 4]], np.uint8)}}, False)
M["empty.mat"] = mat({"e": np.zeros((0, 3))}, False)
good = M["pereira.mat"]
M["bad-truncated.mat"] = good[: len(good) // 2]
M["bad-header-only.mat"] = good[:128]
M["bad-huge-element.mat"] = good[:132] + struct.pack("<I", 0xFFFFFFF0) + good[136:]
M["bad-v73.mat"] = good[:124] + b"\x00\x02IM" + good[128:]

# safetensors: as the format writes them (a JSON header sorted by key, raw little-endian data),
# the shapes brainpipe's models use, then hostile ones.
S = seeds["safetensors"]


def safetensors(tensors, metadata=None):
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, array in tensors.items():
        raw = array.tobytes()
        dtype = {"float32": "F32", "float64": "F64", "float16": "F16", "int64": "I64"}[array.dtype.name]
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    return struct.pack("<Q", len(text)) + text + data


config = {"brainpipe.schema": "brain2word-model/1", "config": json.dumps({"model": "base", "hidden": [4, 2]})}
S["model.safetensors"] = safetensors({"w": rng.normal(size=(2, 3)).astype("<f4"),
                                      "b": np.arange(3, dtype="<f8")}, config)
S["no-metadata.safetensors"] = safetensors({"x": np.zeros((0,), "<f4")})
S["f16.safetensors"] = safetensors({"h": np.ones((2, 2), "<f2")})
S["bad-header-length.safetensors"] = struct.pack("<Q", 1 << 40) + b"{}"
S["bad-not-object.safetensors"] = struct.pack("<Q", 2) + b"[]"
S["bad-offsets.safetensors"] = safetensors({"w": np.zeros(4, "<f4")}).replace(b"[0,16]", b"[8,4]")
S["bad-overflowing-shape.safetensors"] = (lambda t: struct.pack("<Q", len(t)) + t)(
    b'{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}}')
S["bad-metadata-type.safetensors"] = (lambda t: struct.pack("<Q", len(t)) + t)(b'{"__metadata__":{"k":1}}')

# BIDS events.tsv: as ingest.nifti reads them, then hostile ones.
E = seeds["events_tsv"]
E["bids.tsv"] = b"onset\tduration\ttrial_type\tparadigm\n0\t2\tapple\tsentence\n2.5\t2\tbird\tpicture\n"
E["trial-column.tsv"] = b"trial\ttrial_type\n1\timg-00001.png\n0\timg-00000.png\n"
E["crlf-unicode.tsv"] = "onset\ttrial_type\r\n0\t\u00e9l\u00e8ve \U0001f9e0\r\n".encode()
E["bad-empty.tsv"] = b""
E["bad-no-stimulus.tsv"] = b"onset\tduration\n0\t1\n"
E["bad-ragged.tsv"] = b"onset\ttrial_type\n0\n1\ta\tb\n"
E["bad-onset.tsv"] = b"onset\ttrial_type\nNaN\ta\n-inf\tb\nx\tc\n"

# Pipelines: the shipped ones (their `uses:` stages are unknown to an empty registry: errors
# with file:line:col), run-only pipelines of every shape, then hostile YAML.
P = seeds["pipeline_yaml"]
for name in sorted(os.listdir(os.path.join(ROOT, "pipelines"))):
    if name.endswith(".yaml"):
        with open(os.path.join(ROOT, "pipelines", name), "rb") as f:
            P[name] = f.read()
P["diamond.yaml"] = b"""name: diamond
stages:
  a: { run: "echo a > {outputs.o}", outputs: [o] }
  b: { run: "cat {inputs.x} > {outputs.o}", inputs: { x: a.o }, outputs: [o] }
  c: { run: "cat {inputs.x} > {outputs.o}", inputs: { x: a.o }, outputs: [o], with: { k: "{params.k}" } }
  d: { run: "cat {inputs.parts} > {outputs.o} # {params.n}", inputs: { parts: [b.o, c.o] }, outputs: [o], with: { n: 3 } }
"""
P["anchors.yaml"] = b"""name: anchors
defaults: &d { outputs: [o] }
stages:
  a: { <<: *d, run: "true" }
  b: { <<: *d, run: "true {inputs.x}", inputs: { x: a.o } }
"""
P["bad-cycle.yaml"] = b"name: c\nstages:\n  a: { run: x, inputs: { i: b.o }, outputs: [o] }\n  b: { run: x, inputs: { i: a.o }, outputs: [o] }\n"
P["bad-self.yaml"] = b"name: s\nstages:\n  a: { run: x, inputs: { i: a.o }, outputs: [o] }\n"
P["bad-laughs.yaml"] = b"a: &a [x, x]\nb: &b [*a, *a, *a]\nc: &c [*b, *b, *b]\nname: *c\n"
P["bad-nesting.yaml"] = b"name: n\nstages: " + b"[" * 200 + b"]" * 200 + b"\n"
P["bad-unclosed.yaml"] = b"name: u\nstages:\n  a: { run: \"true\", outputs: [o]\n"
P["bad-duplicate.yaml"] = b"name: d\nstages:\n  a: { run: x, outputs: [o] }\n  a: { run: y, outputs: [o] }\n"

# Hugging Face CLIP config.json: the tiny test model's (as transformers wrote it), variants, then
# hostile ones.
H = seeds["hf_config"]
with open(os.path.join(ROOT, "tests", "fixtures", "clip", "tiny", "config.json"), "rb") as f:
    tiny = f.read()
H["tiny.json"] = tiny
tiny_json = json.loads(tiny)
H["quick-gelu.json"] = json.dumps({**tiny_json, "text_config": {**tiny_json["text_config"], "hidden_act": "quick_gelu"}}).encode()
H["minimal.json"] = b'{"text_config": {}, "vision_config": {}}'
H["bad-not-object.json"] = b"[1, 2]"
H["bad-patch.json"] = json.dumps({**tiny_json, "vision_config": {**tiny_json["vision_config"], "patch_size": 7}}).encode()
H["bad-huge.json"] = json.dumps({**tiny_json, "vision_config": {**tiny_json["vision_config"], "image_size": 1 << 62, "patch_size": 1}}).encode()
H["bad-negative.json"] = json.dumps({**tiny_json, "projection_dim": -1}).encode()
H["bad-activation.json"] = json.dumps({**tiny_json, "text_config": {**tiny_json["text_config"], "hidden_act": "sw\nish"}}).encode()
H["bad-truncated.json"] = tiny[: len(tiny) // 2]

# CLIP tokenizer files: vocab.json NUL merges.txt NUL caption (the target's input), with GPT-2's
# byte characters as the vocabulary starts (256, the same with </w>), a few merges, the specials.
T = seeds["tokenizer"]


def byte_chars():
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + list(range(ord("\xae"), ord("\xff") + 1))
    chars, n = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + n)
            n += 1
    return [chars[b] for b in range(256)]


def tokenizer_seed(merges, extra=(), caption="a photo of a cat", chars="acfhopt"):
    # A few characters keep the seeds small (a fast fuzzer); bytes without a token become the
    # unknown token. One seed has every byte character, as CLIP's files do.
    chars = byte_chars() if chars is None else list(chars)
    tokens = chars + [c + "</w>" for c in chars]
    for left, right in merges:
        tokens.append(left + right)
    tokens += list(extra) + ["<|startoftext|>", "<|endoftext|>"]
    vocab = json.dumps({t: i for i, t in enumerate(tokens)}, ensure_ascii=False).encode()
    text = "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges)
    return vocab + b"\0" + text.encode() + b"\0" + caption.encode()


MERGES_FEW = [("a", "t</w>"), ("c", "at</w>"), ("p", "h"), ("ph", "o"), ("t", "o</w>"), ("pho", "to</w>"), ("o", "f</w>")]
T["few-merges"] = tokenizer_seed(MERGES_FEW)
T["all-bytes"] = tokenizer_seed(MERGES_FEW, chars=None)
T["unicode-caption"] = tokenizer_seed(MERGES_FEW, caption="  \u00c9l\u00e8ve's \U0001f9e0 <|endoftext|>photo\tof 42 cats!!")
T["no-merges"] = tokenizer_seed([], caption="<|startoftext|>" * 3 + "x" * 300)
T["no-caption"] = tokenizer_seed(MERGES_FEW).split(b"\0")[0] + b"\0" + tokenizer_seed(MERGES_FEW).split(b"\0")[1]
T["bad-vocab-only"] = tokenizer_seed(MERGES_FEW).split(b"\0")[0]
T["bad-missing-special"] = tokenizer_seed(MERGES_FEW).replace(b'"<|endoftext|>"', b'"<|end|>"')
T["bad-merge-line"] = tokenizer_seed(MERGES_FEW).replace(b"p h\n", b"p  h\n")
T["bad-merge-unknown"] = tokenizer_seed(MERGES_FEW).replace(b"ph o\n", b"ph zz\n")
T["bad-id-gap"] = b'{"a": 0, "b": 2}\0#version: 0.2\n\0a'
T["bad-id-twice"] = b'{"a": 0, "b": 0, "c": 1}\0\0'
T["bad-not-json"] = b"{\0a b\n\0"

total = 0
for target, files in seeds.items():
    d = os.path.join(CORPUS, target)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for name, data in sorted(files.items()):
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
        total += len(data)
    print(f"{target}: {len(files)} seeds")
print(f"{total} bytes in all")

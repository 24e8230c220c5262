#!/usr/bin/python3
"""Load a stride checkpoint into the PyTorch version of its zoo model and check the logits agree.

Shows that docs/checkpoint.md describes the file as it is: everything below reads the HDF5 file with h5py
alone (no stride code). For each checkpoint it
  1. builds the torch model named by the checkpoint's model spec (lenet5, cifar10_quick, resnet8, resnet20,
     mlp; the twins are in scripts/torch_models.py), with module names equal to stride's layer names, so
     /params/<layer>/<param> is state_dict()["<layer>.<param>"];
  2. writes a few random images as PGM/PPM, runs `stride predict --top K --no-resize` on them, and compares
     stride's class probabilities with torch's softmax of the same normalized pixels.

Run by hand (torch is only in Debian's python):
  /usr/bin/python3 scripts/load_checkpoint_torch.py --stride build/stride RUN_DIR/final.h5 [more.h5 ...]
Exit status 0 when every probability agrees within --tol (default 2e-4: predict prints 4 decimals).
Weights-only files (format "stride-weights", as scripts/torch_to_stride.py writes them) are read too when they
store a model_spec; without /normalization the input is pixel/255, as stride predict then takes it. So a torch ->
stride -> torch round trip is checked the same way.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_models import build  # noqa: E402  (the twins live in scripts/torch_models.py)


def load(path):
    """Reads a checkpoint with h5py into (torch model in eval mode, spec, mean, std, class names)."""
    with h5py.File(path, "r") as f:
        fmt = f.attrs.get("format", "stride-weights")  # stride reads a file without one as weights
        fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
        known = {"stride-checkpoint": (1, 2), "stride-weights": (1,)}
        if fmt not in known:
            raise SystemExit(f"{path}: format is {fmt!r}, not a stride checkpoint or weights file")
        version = int(f.attrs.get("version", known[fmt][-1]))
        if version not in known[fmt]:
            raise SystemExit(f"{path}: {fmt} version {version} is not one this script knows {known[fmt]}")
        if "model_spec" not in f.attrs:
            raise SystemExit(f"{path}: no model_spec attribute, so the model is unknown")
        spec = json.loads(f.attrs["model_spec"])
        params = {}
        f["params"].visititems(lambda name, obj: params.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
        if "normalization" in f:
            mean = f["normalization/mean"][()]
            std = f["normalization/std"][()]
        else:  # stride predict's rule for a weights-only file without one: pixel/255 (PyTorch's ToTensor)
            mean = np.zeros(spec["input"][0], np.float32)
            std = np.ones(spec["input"][0], np.float32)
        classes = [c.decode() if isinstance(c, bytes) else c for c in f.attrs.get("class_names", [])]
        where = f", epoch {int(f.attrs['epoch'])}, step {int(f.attrs['step'])}" if "epoch" in f.attrs else ""
        print(f"{path}: {fmt} version {version}, model {spec.get('name')}{where}, {len(params)} parameter datasets")
    try:
        model = build(spec)
    except ValueError as e:
        raise SystemExit(f"{path}: {e}")
    state = model.state_dict()
    loaded = {}
    for name, value in params.items():
        key = name.replace("/", ".")
        if key not in state:
            raise SystemExit(f"{path}: /params/{name} has no counterpart in the torch model")
        if tuple(state[key].shape) != value.shape:
            raise SystemExit(f"{path}: /params/{name}: torch expects {tuple(state[key].shape)}, file has {value.shape}")
        loaded[key] = torch.from_numpy(value)
    missing = [k for k in state if k not in loaded and not k.endswith("num_batches_tracked")]
    if missing:
        raise SystemExit(f"{path}: the file lacks {missing}")
    model.load_state_dict(loaded, strict=False)
    model.eval()
    return model, spec, mean, std, classes


def write_image(path, pixels):
    """pixels: uint8 (C, H, W), C = 1 (PGM) or 3 (PPM)."""
    c, h, w = pixels.shape
    with open(path, "wb") as f:
        f.write(f"P{5 if c == 1 else 6}\n{w} {h}\n255\n".encode())
        f.write(np.ascontiguousarray(pixels.transpose(1, 2, 0)).tobytes())


def stride_probabilities(binary, checkpoint, images, k):
    out = subprocess.run([binary, "predict", "--weights", checkpoint, "--top", str(k), "--no-resize", *images],
                         check=True, capture_output=True, text=True).stdout
    result, current = {}, None
    for line in out.splitlines():
        if line.endswith(":") and not line.startswith(" "):
            current = line[:-1]
            result[current] = {}
        elif line.strip():
            name, prob = line.rsplit(None, 1)
            result[current][name.strip()] = float(prob)
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--stride", default="build/stride", help="the stride binary")
    ap.add_argument("--images", type=int, default=4, help="random images per checkpoint")
    ap.add_argument("--tol", type=float, default=2e-4)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(5)
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for ckpt in args.checkpoints:
            model, spec, mean, std, classes = load(ckpt)
            c, h, w = spec["input"]
            k = 10
            names = classes if len(classes) == k else [str(i) for i in range(k)]
            paths, batch = [], []
            for i in range(args.images):
                # Smooth random images (a blurred field), more like photos than white noise.
                field = rng.integers(0, 256, size=(c, h // 4 + 1, w // 4 + 1)).astype(np.float32)
                img = np.clip(np.kron(field, np.ones((1, 4, 4)))[:, :h, :w] + rng.normal(0, 8, (c, h, w)), 0, 255)
                img = img.astype(np.uint8)
                p = os.path.join(tmp, f"img{i}.{'pgm' if c == 1 else 'ppm'}")
                write_image(p, img)
                paths.append(p)
                x = (img.astype(np.float32) / 255.0 - mean.reshape(c, 1, 1)) / std.reshape(c, 1, 1)
                batch.append(x)
            with torch.no_grad():
                probs = torch.softmax(model(torch.from_numpy(np.stack(batch))), dim=1).numpy()
            theirs = stride_probabilities(args.stride, ckpt, paths, k)
            for i, p in enumerate(paths):
                diff = max(abs(theirs[p][names[j]] - float(probs[i, j])) for j in range(k))
                worst = max(worst, diff)
                top = int(probs[i].argmax())
                print(f"  {os.path.basename(p)}: torch top class {names[top]} {probs[i, top]:.4f}, "
                      f"stride {theirs[p][names[top]]:.4f}; max |difference| {diff:.1e}")
    ok = worst <= args.tol
    print(f"{'OK' if ok else 'MISMATCH'}: largest probability difference {worst:.1e} (tolerance {args.tol:.0e})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

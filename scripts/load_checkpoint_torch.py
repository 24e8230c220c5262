#!/usr/bin/python3
"""Load a stride checkpoint into the PyTorch version of its zoo model and check the logits agree.

Shows that docs/checkpoint.md describes the file as it is: everything below reads the HDF5 file with h5py
alone (no stride code). For each checkpoint it
  1. builds the torch model named by the checkpoint's model spec (lenet5, cifar10_quick, resnet8, resnet20,
     mlp), with module names equal to stride's layer names, so /params/<layer>/<param> is
     state_dict()["<layer>.<param>"];
  2. writes a few random images as PGM/PPM, runs `stride predict --top K --no-resize` on them, and compares
     stride's class probabilities with torch's softmax of the same normalized pixels.

Run by hand (torch is only in Debian's python):
  /usr/bin/python3 scripts/load_checkpoint_torch.py --stride build/stride RUN_DIR/final.h5 [more.h5 ...]
Exit status 0 when every probability agrees within --tol (default 2e-4: predict prints 4 decimals).
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
import torch.nn as nn
import torch.nn.functional as F


class LeNet5(nn.Module):
    """Caffe's lenet_train_test.prototxt: no nonlinearity between the conv/pool stages, as Caffe has it."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, 5)
        self.pool1 = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.pool2 = nn.MaxPool2d(2, 2)
        self.ip1 = nn.Linear(50 * 4 * 4, 500)
        self.ip2 = nn.Linear(500, 10)

    def forward(self, x):
        x = self.pool2(self.conv2(self.pool1(self.conv1(x))))
        return self.ip2(F.relu(self.ip1(torch.flatten(x, 1))))


class Cifar10Quick(nn.Module):
    """Caffe's cifar10_quick_train_test.prototxt; Caffe pools in ceil mode (32 -> 16 -> 8 -> 4)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 5, padding=2)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 32, 5, padding=2)
        self.pool2 = nn.AvgPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(32, 64, 5, padding=2)
        self.pool3 = nn.AvgPool2d(3, 2, ceil_mode=True)
        self.ip1 = nn.Linear(64 * 4 * 4, 64)
        self.ip2 = nn.Linear(64, 10)

    def forward(self, x):
        x = F.relu(self.pool1(self.conv1(x)))
        x = self.pool2(F.relu(self.conv2(x)))
        x = self.pool3(F.relu(self.conv3(x)))
        return self.ip2(self.ip1(torch.flatten(x, 1)))


class ResNet(nn.Module):
    """He et al. 2016, section 4.2 (6n+2 layers). stride's names are flat ("s2b1_conv1"), so the modules are
    registered under exactly those names."""

    def __init__(self, n):
        super().__init__()
        self.n = n
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        cin = 16
        for s, width in enumerate((16, 32, 64)):
            for b in range(n):
                p = f"s{s + 1}b{b + 1}_"
                stride = 2 if s > 0 and b == 0 else 1
                setattr(self, p + "conv1", nn.Conv2d(cin, width, 3, stride=stride, padding=1, bias=False))
                setattr(self, p + "bn1", nn.BatchNorm2d(width))
                setattr(self, p + "conv2", nn.Conv2d(width, width, 3, padding=1, bias=False))
                setattr(self, p + "bn2", nn.BatchNorm2d(width))
                if stride != 1:
                    setattr(self, p + "down_conv", nn.Conv2d(cin, width, 1, stride=2, bias=False))
                    setattr(self, p + "down_bn", nn.BatchNorm2d(width))
                cin = width
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        for s in range(3):
            for b in range(self.n):
                p = f"s{s + 1}b{b + 1}_"
                m = lambda name: getattr(self, p + name)
                y = F.relu(m("bn1")(m("conv1")(x)))
                y = m("bn2")(m("conv2")(y))
                shortcut = m("down_bn")(m("down_conv")(x)) if hasattr(self, p + "down_conv") else x
                x = F.relu(y + shortcut)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class MLP(nn.Module):
    def __init__(self, features):
        super().__init__()
        self.fc1 = nn.Linear(features, 256)
        self.drop1 = nn.Dropout(0.5)
        self.fc2 = nn.Linear(256, 10)

    def forward(self, x):
        return self.fc2(self.drop1(F.relu(self.fc1(torch.flatten(x, 1)))))


def build(spec):
    name = spec.get("name")
    c, h, w = spec["input"]
    if name == "lenet5":
        return LeNet5()
    if name == "cifar10_quick":
        return Cifar10Quick()
    if name == "resnet8":
        return ResNet(1)
    if name == "resnet20":
        return ResNet(3)
    if name == "mlp":
        return MLP(c * h * w)
    raise SystemExit(f"no torch version of model {name!r} (zoo models only)")


def load(path):
    """Reads a checkpoint with h5py into (torch model in eval mode, spec, mean, std, class names)."""
    with h5py.File(path, "r") as f:
        fmt = f.attrs["format"]
        fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
        if fmt != "stride-checkpoint":
            raise SystemExit(f"{path}: format is {fmt!r}, not a stride checkpoint")
        version = int(f.attrs["version"])
        if version not in (1, 2):
            raise SystemExit(f"{path}: checkpoint version {version} is not one this script knows (1, 2)")
        spec = json.loads(f.attrs["model_spec"])
        params = {}
        f["params"].visititems(lambda name, obj: params.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
        mean = f["normalization/mean"][()]
        std = f["normalization/std"][()]
        classes = [c.decode() if isinstance(c, bytes) else c for c in f.attrs.get("class_names", [])]
        print(f"{path}: version {version}, model {spec.get('name')}, epoch {int(f.attrs['epoch'])}, "
              f"step {int(f.attrs['step'])}, {len(params)} parameter datasets")
    model = build(spec)
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

#!/usr/bin/python3
"""PyTorch 1.13 reference for `stride train`: the same models, data, input pipeline and recipe.

Run with Debian's python (the pyenv `python3` has no torch):

    /usr/bin/python3 bench/torch_reference.py --model lenet5 --data /usr/share/datasets/fashion-mnist \
        --epochs 5 --threads 2

What matches stride (so that accuracy differences point at stride, not at the recipe):
  * models: Caffe's LeNet (no ReLU after the convs) and cifar10_quick (ceil-mode pools, Caffe's layer order);
    PyTorch's default init for conv/linear (stride's `pytorch` init is the same distribution).
  * data: CIFAR-10 binary batches or IDX[.gz] files read with numpy (no torchvision: python3-torchvision is not
    installed here and nothing may be downloaded); per-channel mean/std over the training set (population std),
    x = (p/255 - mean) / std.
  * augmentation (crop-flip): torchvision RandomCrop(32, padding=4) with zero padding in pixel space, then
    RandomHorizontalFlip(0.5), re-drawn every epoch.
  * SGD(momentum 0.9, lr 0.01, weight_decay 5e-4) on every parameter, batch 64, reshuffled every epoch,
    last partial batch kept, mean cross-entropy, CosineAnnealingLR(T_max = all iterations) stepped per
    iteration.
The random streams differ from stride's (torch.Generator vs stride's counter-based RNG), so runs agree in
distribution, not bit for bit.

--steps N runs only N training iterations (after --warmup ones) and prints training images/s; this is what
bench/compare_speed.py uses.
"""
import argparse
import gzip
import math
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
from torch_models import Cifar10Quick, LeNet5  # noqa: E402


# ---------------------------------------------------------------- data

def _open(path):
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


def _find(directory, stem):
    for name in (stem, stem + ".gz"):
        p = os.path.join(directory, name)
        if os.path.exists(p):
            return p
    return None


def read_idx(path, expect_magic):
    with _open(path) as f:
        data = f.read()
    magic = struct.unpack(">I", data[:4])[0]
    if magic != expect_magic:
        raise SystemExit(f"{path}: magic 0x{magic:08x}, expected 0x{expect_magic:08x}")
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise SystemExit(f"{path}: {arr.size} bytes of data, expected {int(np.prod(dims))} for dims {dims}")
    return arr.reshape(dims)


def load_idx_dir(directory):
    out = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        ip = _find(directory, f"{prefix}-images-idx3-ubyte")
        lp = _find(directory, f"{prefix}-labels-idx1-ubyte")
        if ip is None or lp is None:
            raise SystemExit(f"{directory}: no {prefix}-images-idx3-ubyte[.gz] / {prefix}-labels-idx1-ubyte[.gz]")
        images = read_idx(ip, 0x803)
        labels = read_idx(lp, 0x801)
        out[split] = (images[:, None, :, :].copy(), labels.astype(np.int64))
    return out


def read_cifar_bin(path):
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size % 3073:
        raise SystemExit(f"{path}: size {raw.size} is not a multiple of the 3073-byte CIFAR-10 record")
    rec = raw.reshape(-1, 3073)
    return rec[:, 1:].reshape(-1, 3, 32, 32).copy(), rec[:, 0].astype(np.int64)


def load_cifar_dir(directory):
    parts = [read_cifar_bin(os.path.join(directory, f"data_batch_{i}.bin")) for i in range(1, 6)]
    train = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    test = read_cifar_bin(os.path.join(directory, "test_batch.bin"))
    return {"train": train, "test": test}


def load_data(directory):
    if os.path.exists(os.path.join(directory, "data_batch_1.bin")):
        return load_cifar_dir(directory)
    if _find(directory, "train-images-idx3-ubyte"):
        return load_idx_dir(directory)
    raise SystemExit(f"{directory}: neither CIFAR-10 binary batches nor IDX files")


def normalization(train_images):
    # Population mean/std per channel over every training pixel, as stride's compute_normalization.
    x = train_images.astype(np.float64) / 255.0
    mean = x.mean(axis=(0, 2, 3))
    std = np.sqrt(np.maximum((x * x).mean(axis=(0, 2, 3)) - mean * mean, 1e-12))
    return mean.astype(np.float32), std.astype(np.float32)


def normalize(images_u8, mean, std):
    x = torch.from_numpy(images_u8).float()
    scale = torch.from_numpy(1.0 / (255.0 * std)).view(1, -1, 1, 1)
    shift = torch.from_numpy(-mean / std).view(1, -1, 1, 1)
    return x * scale + shift


def crop_flip(batch_u8, gen):
    # torchvision RandomCrop(H, padding=4) (zero fill, pixel space) + RandomHorizontalFlip, per image.
    n, c, h, w = batch_u8.shape
    pad = 4
    padded = np.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=np.uint8)
    padded[:, :, pad:pad + h, pad:pad + w] = batch_u8
    offs = torch.randint(0, 2 * pad + 1, (n, 2), generator=gen).numpy()
    flips = (torch.rand(n, generator=gen) < 0.5).numpy()
    out = np.empty_like(batch_u8)
    for i in range(n):
        dy, dx = offs[i]
        img = padded[i, :, dy:dy + h, dx:dx + w]
        out[i] = img[:, :, ::-1] if flips[i] else img
    return out


# ---------------------------------------------------------------- models

# The twins of stride's zoo models live in scripts/torch_models.py, shared with the checkpoint and weights
# scripts (Caffe's layer order, module names equal to stride's layer names, PyTorch's default init).
MODELS = {"lenet5": LeNet5, "cifar10_quick": Cifar10Quick}


# ---------------------------------------------------------------- training

def evaluate(model, x_test, y_test, batch=500):
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(y_test), batch):
            correct += (model(x_test[i:i + batch]).argmax(1) == y_test[i:i + batch]).sum().item()
    model.train()
    return correct / len(y_test)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="lenet5", choices=sorted(MODELS))
    ap.add_argument("--data", required=True, help="CIFAR-10 binary directory or IDX directory")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--weight-decay", type=float, default=5e-4)
    ap.add_argument("--schedule", default="cosine", choices=["cosine", "constant"])
    ap.add_argument("--augment", default="auto", choices=["none", "crop-flip", "auto"],
                    help="auto = crop-flip for 3x32x32 data (as stride)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    ap.add_argument("--limit-train", type=int, default=0)
    ap.add_argument("--limit-test", type=int, default=0)
    ap.add_argument("--steps", type=int, default=0, help="benchmark: time this many iterations, no evaluation")
    ap.add_argument("--warmup", type=int, default=10, help="benchmark: untimed iterations before --steps")
    ap.add_argument("--eval-weights", metavar="FILE.h5",
                    help="cross-check: evaluate stride's final.h5 (its /params and /normalization) in torch, no training")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    gen = torch.Generator().manual_seed(a.seed)

    data = load_data(a.data)
    x_tr, y_tr = data["train"]
    x_te, y_te = data["test"]
    if a.limit_train:
        x_tr, y_tr = x_tr[:a.limit_train], y_tr[:a.limit_train]
    if a.limit_test:
        x_te, y_te = x_te[:a.limit_test], y_te[:a.limit_test]
    n = len(y_tr)
    mean, std = normalization(x_tr)
    augment = a.augment
    if augment == "auto":
        augment = "crop-flip" if x_tr.shape[1:] == (3, 32, 32) else "none"
    # Without augmentation the normalized training set is computed once (what a DataLoader over a
    # pre-normalized tensor would do); with it, each batch is cropped/flipped in uint8 then normalized.
    x_tr_norm = normalize(x_tr, mean, std) if augment == "none" else None
    x_te_norm = normalize(x_te, mean, std)
    y_tr_t = torch.from_numpy(y_tr)
    y_te_t = torch.from_numpy(y_te)

    model = MODELS[a.model]()
    if a.eval_weights:
        # Same architecture semantics check: stride's parameters and normalization, torch's forward pass.
        import h5py
        with h5py.File(a.eval_weights, "r") as f:
            state = {f"{layer}.{name}": torch.from_numpy(f[f"params/{layer}/{name}"][...])
                     for layer in f["params"] for name in f["params"][layer]}
            mean, std = f["normalization/mean"][...], f["normalization/std"][...]
        model.load_state_dict(state)
        print(f"test accuracy {evaluate(model, normalize(x_te, mean, std), y_te_t):.4f} "
              f"(torch forward with the weights of {a.eval_weights})")
        return
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=a.momentum, weight_decay=a.weight_decay)
    steps_per_epoch = (n + a.batch - 1) // a.batch
    total = steps_per_epoch * a.epochs
    if a.steps:
        total = a.warmup + a.steps
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total) if a.schedule == "cosine" else None

    print(f"torch {torch.__version__}: {a.model} ({sum(p.numel() for p in model.parameters())} params) on {a.data}: "
          f"{n} train / {len(y_te)} test images {'x'.join(map(str, x_tr.shape[1:]))}, {a.epochs} epochs of "
          f"{steps_per_epoch} steps (batch {a.batch}), sgd momentum {a.momentum} wd {a.weight_decay}, "
          f"{a.schedule}, augment {augment}, seed {a.seed}, threads {torch.get_num_threads()}", flush=True)

    def batch_at(idx):
        if x_tr_norm is not None:
            return x_tr_norm[idx], y_tr_t[idx]
        return normalize(crop_flip(x_tr[idx.numpy()], gen), mean, std), y_tr_t[idx]

    def train_step(x, y):
        out = model(x)
        loss = F.cross_entropy(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if sched:
            sched.step()
        return loss.item(), (out.argmax(1) == y).sum().item()

    model.train()
    if a.steps:
        # Benchmark mode: cycle through shuffled batches; time only the iterations after the warm-up.
        order = torch.randperm(n, generator=gen)
        s = 0
        t0 = None
        for it in range(a.warmup + a.steps):
            if it == a.warmup:
                t0 = time.perf_counter()
            first = (s * a.batch) % n
            if first + a.batch > n:
                order, first, s = torch.randperm(n, generator=gen), 0, 0
            x, y = batch_at(order[first:first + a.batch])
            train_step(x, y)
            s += 1
        dt = time.perf_counter() - t0
        print(f"train images/s {a.steps * a.batch / dt:.1f} ({a.steps} steps of {a.batch} in {dt:.2f} s)")
        return

    t_start = time.perf_counter()
    acc = 0.0
    for epoch in range(a.epochs):
        order = torch.randperm(n, generator=gen)
        t_epoch = time.perf_counter()
        loss_sum, correct = 0.0, 0
        for s in range(steps_per_epoch):
            x, y = batch_at(order[s * a.batch:(s + 1) * a.batch])
            l, c = train_step(x, y)
            loss_sum += l
            correct += c
        secs = time.perf_counter() - t_epoch
        acc = evaluate(model, x_te_norm, y_te_t)
        print(f"epoch {epoch + 1}/{a.epochs}: loss {loss_sum / steps_per_epoch:.4f} train acc {correct / n:.4f} "
              f"test acc {acc:.4f} ({secs:.1f} s, {n / secs:.0f} img/s)", flush=True)
    print(f"test accuracy {acc:.4f}")
    print(f"total seconds {time.perf_counter() - t_start:.1f}")


if __name__ == "__main__":
    sys.exit(main())

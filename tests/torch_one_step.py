#!/usr/bin/python3
"""One full-batch SGD step of `stride train --init` from PyTorch weights, against the same step in PyTorch.

For each model (lenet5, cifar10_quick, and resnet8 given as a spec file: batch norm throughout):
  1. writes a small synthetic stride HDF5 dataset (64 smooth random uint8 training images of the model's input
     size, fixed numpy seed; docs/data.md);
  2. builds the PyTorch twin (scripts/torch_models.py) with a fixed torch seed (batch-norm scale, shift and
     running statistics moved off their 1/0 defaults, so weights stride failed to load could not go unnoticed),
     torch.save()s its state_dict and converts it with scripts/torch_to_stride.py;
  3. runs `stride train --init` for exactly one step: batch 64 = the whole training set in one micro-batch (so
     batch norm sees the whole batch, as in PyTorch), plain SGD (lr 0.1, no momentum, no weight decay), constant
     schedule, no augmentation;
  4. takes stride's input normalization from RUN/final.h5 and does the same step in PyTorch (train mode,
     CrossEntropyLoss mean, torch.optim.SGD(lr=0.1));
  5. compares, per learnable parameter, stride's update (final - init) with PyTorch's: cosine > 0.9999 and
     norm ratio within 1%; batch-norm running statistics within 1e-4 (relative to the largest value); and the
     step's loss within 1e-4 relative.
The two sides differ only by float32 rounding: lenet5 and cifar10_quick agree to 1 - cosine < 1e-7. In resnet8 a
ReLU input within ~1e-6 of zero can land on the other side of the kink in one of them, which moves the earlier
layers' updates by up to 1 - cosine = 4e-5 and a norm ratio of 2e-3. With DATA_SEED and TORCH_SEED below (the
worst of 24 seed pairs tried; 19 give 1 - cosine < 1e-6) two ReLU inputs do (1.2e-6 in s2b1_relu2, -2e-7 in
s3b1_relu1): a float64 PyTorch step with those two masks flipped gives stride's update to 6e-6 relative. That
is inside the tolerances, and a real error is not: one weight array or running statistic of init.h5 scaled by
1.001 fails them.
With --precision bf16, stride trains with --precision bf16, against two PyTorch steps:
  - the emulated step (with_bf16_operands): every convolution and linear layer on bf16-rounded operands, as
    stride's bf16 defines it, run in fp64. Per parameter, stride's update may be at most 3x (+1e-3) as far from
    it as the same emulation run in fp32 is; on average stride must be less than 0.3x as far from it as
    PyTorch's fp32 step (measured: 3.6e-5 vs 4.7e-2 lenet5, 4.7e-4 vs 2.7e-2 cifar10_quick, 1.7e-2 vs 1.2e-1
    resnet8: there a bf16 rounding flipped by a different fp32 sum moves later layers, 2e-2 for the fp32
    emulation too); loss and running statistics within 1e-4.
  - torch.autocast("cpu", torch.bfloat16), which also rounds layer outputs and gradients to bf16 (stride keeps
    them fp32): per parameter, stride's update at most 3x (+1e-2) as far from autocast's as PyTorch's own fp32
    update is; loss within 1e-3.
Prints a table per model; exit status 0 only when everything agrees. Run by tests/test_torch_weights.cpp:
  /usr/bin/python3 tests/torch_one_step.py --stride build/stride [--work DIR] [--models lenet5,resnet8-spec]
"""
import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "scripts"))
from torch_models import build  # noqa: E402

LR = 0.1
DATA_SEED, TORCH_SEED = 8, 3
TRAIN, TEST = 64, 16
# (cosine minimum, norm-ratio tolerance, running-statistics tolerance, loss tolerance) per --precision.
# bf16: the updates agree with the emulated bf16 step (docstring) to fp32 sums amplified by bf16 rounding, so
# cosine and norm ratio give way to distances measured against the emulation's own in fp32.
TOLERANCES = {"fp32": (0.9999, 0.01, 1e-4, 1e-4), "bf16": (None, None, 1e-4, 1e-4)}
AUTOCAST_LOSS_TOL = 1e-3
BF16_ROUNDING_SEEN = 0.3
# case name -> zoo model; "-spec" cases hand stride and the converter a spec file instead of the zoo name.
CASES = {"lenet5": "lenet5", "cifar10_quick": "cifar10_quick", "resnet8-spec": "resnet8"}


def run(cmd, what):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as e:
        raise RuntimeError(f"{what}: cannot run {cmd[0]} ({e.strerror})")
    if r.returncode != 0:
        raise RuntimeError(f"{what} failed with exit status {r.returncode}:\n  $ {' '.join(cmd)}\n"
                           + (r.stdout + r.stderr).rstrip())
    return r.stdout


def smooth_images(rng, n, c, h, w):
    """Blurred random fields plus a little noise: more like photos than white noise, so conv outputs are smooth
    and no max-pool window ties."""
    field = rng.integers(0, 256, size=(n, c, h // 4 + 1, w // 4 + 1)).astype(np.float32)
    img = np.kron(field, np.ones((1, 1, 4, 4), dtype=np.float32))[:, :, :h, :w] + rng.normal(0, 8, (n, c, h, w))
    return np.clip(img, 0, 255).astype(np.uint8)


def write_dataset(path, shape, seed):
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        for split, n in (("train", TRAIN), ("test", TEST)):
            f.create_dataset(f"{split}/images", data=smooth_images(rng, n, *shape), chunks=(n,) + tuple(shape),
                             compression="gzip", compression_opts=4)
            f.create_dataset(f"{split}/labels", data=rng.integers(0, 10, size=n).astype(np.uint8))
        f.attrs.create("class_names", [str(i) for i in range(10)], dtype=h5py.string_dtype())
        f.attrs["source"] = "tests/torch_one_step.py synthetic images, numpy seed %d" % seed
        f.attrs["format"] = "stride-dataset"
        f.attrs["version"] = np.int32(1)


def twin(spec, seed):
    torch.manual_seed(seed)
    model = build(spec)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(0.5 + torch.rand(c, generator=g))
                m.bias.copy_(0.1 * torch.randn(c, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(c, generator=g))
                m.running_var.copy_(0.5 + torch.rand(c, generator=g))
    return model


def to_bf16(t):
    """Each value as stride's fp32 value rounded to bf16 (nearest even; framework/core/bf16.hpp, which also
    flushes denormals, which these steps do not meet), in t's own dtype."""
    return t.to(torch.float32).to(torch.bfloat16).to(t.dtype)


class Bf16OperandsConv(torch.autograd.Function):
    """A convolution as stride's --precision bf16 defines it (docs/performance.md): every product reads
    bf16-rounded operands and sums in fp32; the output and the gradients stay fp32. Forward x * W; backward
    the input gradient from W and dy, the weight gradient from x and dy, and the bias gradient as a product of
    dy with a row of ones (so from the rounded dy too), all operands rounded."""

    @staticmethod
    def forward(ctx, x, w, b, conv):
        xr, wr = to_bf16(x), to_bf16(w)
        ctx.save_for_backward(xr, wr)
        ctx.conv, ctx.has_bias = conv, b is not None
        return torch.nn.functional.conv2d(xr, wr, b, conv.stride, conv.padding, conv.dilation, conv.groups)

    @staticmethod
    def backward(ctx, dy):
        xr, wr = ctx.saved_tensors
        c, dyr = ctx.conv, to_bf16(dy)
        dx = torch.nn.grad.conv2d_input(xr.shape, wr, dyr, c.stride, c.padding, c.dilation, c.groups)
        dw = torch.nn.grad.conv2d_weight(xr, wr.shape, dyr, c.stride, c.padding, c.dilation, c.groups)
        db = dyr.sum(dim=(0, 2, 3)) if ctx.has_bias else None
        return dx, dw, db, None


class Bf16OperandsLinear(torch.autograd.Function):
    """A linear layer in stride's bf16: x W^T, dy W and dy^T x on rounded operands with fp32 sums; the bias
    gradient an fp32 sum of the unrounded dy (layers/linear.cpp)."""

    @staticmethod
    def forward(ctx, x, w, b):
        xr, wr = to_bf16(x), to_bf16(w)
        ctx.save_for_backward(xr, wr)
        ctx.has_bias = b is not None
        return torch.nn.functional.linear(xr, wr, b)

    @staticmethod
    def backward(ctx, dy):
        xr, wr = ctx.saved_tensors
        dyr = to_bf16(dy)
        return dyr @ wr, dyr.t() @ xr, dy.sum(dim=0) if ctx.has_bias else None


def with_bf16_operands(model):
    """The model with every convolution and linear layer computing as stride's bf16 does, in the model's own
    arithmetic (fp32 or fp64): an independent statement of what stride's bf16 step should be, that does not
    depend on the CPU's bf16 kernels (PyTorch's autocast convolutions lose more on an AVX2-only CPU than on
    an AVX-512 one)."""
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.forward = (lambda mod: lambda x: Bf16OperandsConv.apply(x, mod.weight, mod.bias, mod))(m)
        elif isinstance(m, torch.nn.Linear):
            m.forward = (lambda mod: lambda x: Bf16OperandsLinear.apply(x, mod.weight, mod.bias))(m)
    return model


def sgd_step(model, x, y, autocast=False):
    """One plain SGD step of the model in place, its forward under torch.autocast("cpu", torch.bfloat16) when
    asked; returns its state_dict after and the loss before the step."""
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=0)
    opt.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        logits = model(x)
    # autocast's logits are bf16: the loss in fp32, as with an fp32 model (an fp64 model keeps fp64).
    loss = torch.nn.CrossEntropyLoss()(logits.float() if autocast else logits, y)
    loss.backward()
    opt.step()
    return model.state_dict(), loss.item()


def rel_distance(a, ref):
    """|a - ref| / |ref| of two flattened updates (0 when ref is zero)."""
    n = np.linalg.norm(ref)
    return float(np.linalg.norm(a - ref) / n) if n > 0 else 0.0


def read_params(path):
    out = {}
    with h5py.File(path, "r") as f:
        f["params"].visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
        mean, std = f["normalization/mean"][()], f["normalization/std"][()]
        step = int(f.attrs["step"])
    return out, mean, std, step


def stride_loss(run_dir):
    """The training loss of the (only) epoch, from metrics.jsonl."""
    loss = None
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        for line in f:
            rec = json.loads(line)
            if rec.get("kind") == "epoch":
                loss = rec["loss"]
    return loss


def check_case(case, model_name, stride, work, precision="fp32"):
    os.makedirs(work, exist_ok=True)
    spec_text = run([stride, "summary", "--model", model_name, "--print-spec"], "stride summary --print-spec")
    spec = json.loads(spec_text)
    model_arg = model_name
    if case.endswith("-spec"):
        model_arg = os.path.join(work, model_name + ".json")
        with open(model_arg, "w") as f:
            f.write(spec_text)
    shape = spec["input"]
    data = os.path.join(work, "data.h5")
    write_dataset(data, shape, seed=DATA_SEED)

    model = twin(spec, seed=TORCH_SEED)
    init = {k: v.detach().clone() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    sd, init_h5, run_dir = (os.path.join(work, n) for n in ("sd.pt", "init.h5", "run"))
    torch.save(model.state_dict(), sd)
    print(run([sys.executable, os.path.join(REPO, "scripts", "torch_to_stride.py"), "--stride", stride,
               "--model", model_arg, sd, init_h5], "scripts/torch_to_stride.py").rstrip())
    run([stride, "train", "--model", model_arg, "--data", data, "--init", init_h5, "--batch", str(TRAIN),
         "--micro-batch", str(TRAIN),  # one micro-batch: batch norm over the whole batch, as PyTorch's step
         "--epochs", "1", "--lr", str(LR), "--momentum", "0", "--weight-decay", "0", "--schedule", "constant",
         "--augment", "none", "--threads", "1", "--no-progress", "--checkpoint-epochs", "0", "--out", run_dir,
         "--precision", precision],
        "stride train --init")
    final, mean, std, steps = read_params(os.path.join(run_dir, "final.h5"))

    # The same step in PyTorch, on stride's normalization: x = p * 1/(255 std) - mean/std, as the input pipeline.
    with h5py.File(data, "r") as f:
        pixels, labels = f["train/images"][()], f["train/labels"][()]
    scale = (1.0 / (255.0 * std)).astype(np.float32).reshape(1, -1, 1, 1)
    shift = (-mean / std).astype(np.float32).reshape(1, -1, 1, 1)
    x = torch.from_numpy(pixels.astype(np.float32) * scale + shift)
    y = torch.from_numpy(labels.astype(np.int64))
    torch.set_num_threads(1)
    model.train()
    # bf16: PyTorch's fp32 step, and the step with stride's bf16 operand rounding (with_bf16_operands) in fp64
    # (the reference) and in fp32 (how far fp32 sums alone move it: bf16 rounding amplifies them, below).
    fp32_after = None
    if precision == "bf16":
        fp32_after, _ = sgd_step(copy.deepcopy(model), x, y)
        emulated_after, emulated_loss = sgd_step(with_bf16_operands(copy.deepcopy(model).double()), x.double(), y)
        emulated32_after, _ = sgd_step(with_bf16_operands(copy.deepcopy(model)), x, y)
    after, loss_value = sgd_step(model, x, y, autocast=precision == "bf16")
    if precision == "bf16":
        # The tight comparison is with the emulated step, which computes what stride's bf16 step defines;
        # autocast's step (rounded outputs and gradients too) is compared with a bf16-sized tolerance below.
        # (Its other half, "on average closer to autocast's update than PyTorch's fp32 one", held on AVX-512
        # CPUs and failed on an AVX2-only Zen 3, 2.28e-1 against 2.26e-1 for resnet8: there autocast's
        # convolutions lose 10x more than rounding their outputs to bf16 would, so it no longer tells.)
        autocast_after, autocast_loss = after, loss_value
        after, loss_value = emulated_after, emulated_loss
    learnable = {n for n, _ in model.named_parameters()}

    COSINE_MIN, RATIO_TOL, STATE_TOL, LOSS_TOL = TOLERANCES[precision]
    failures = []
    to_emulated, fp32_to_emulated = [], []  # bf16: per learnable parameter, relative distances
    if steps != 1:
        failures.append(f"stride's final.h5 says step {steps}, expected exactly 1")
    reference = "PyTorch fp64 on bf16-rounded operands" if precision == "bf16" else "PyTorch"
    print(f"{case}: stride train --init {os.path.basename(init_h5)} ({model_arg}), one SGD step on {TRAIN} images "
          f"{'x'.join(map(str, shape))}, against {reference}")
    print(f"  {'parameter':<26} {'shape':<16} {'|d stride|':>11} {'|d torch|':>11} {'cosine':>12} {'ratio-1':>10}"
          + ("   distance: stride, fp32 sums   to autocast's: stride, PyTorch fp32" if precision == "bf16" else ""))

    def update(state, key, old):
        return (state[key].numpy().astype(np.float64) - old).ravel()

    for key in init:
        layer, _, param = key.rpartition(".")
        name = f"{layer}/{param}"
        if name not in final:
            failures.append(f"{name}: not in stride's final.h5")
            continue
        t_new = after[key].numpy().astype(np.float64)
        s_new = final[name].astype(np.float64)
        old = init[key].numpy().astype(np.float64)
        shape_s = "(" + ",".join(map(str, old.shape)) + ")"
        if key in learnable:
            ds, dt = (s_new - old).ravel(), (t_new - old).ravel()
            ns, nt = np.linalg.norm(ds), np.linalg.norm(dt)
            cos = float(ds @ dt / (ns * nt)) if ns > 0 and nt > 0 else float("nan")
            ratio = ns / nt if nt > 0 else float("nan")
            extra = ""
            if precision != "bf16":
                ok = cos > COSINE_MIN and abs(ratio - 1) < RATIO_TOL
                if not ok:
                    failures.append(f"{name}: cosine {cos:.8f} (need > {COSINE_MIN}), norm ratio {ratio:.6f} "
                                    f"(need within {RATIO_TOL:.0%} of 1) against {reference}")
            else:
                # stride's update may be at most 3x (plus 1e-3) as far from the fp64 emulation's, relative to
                # its norm, as the same emulation in fp32 is: stride's sums differ from it only in fp32
                # rounding and order, and a flipped bf16 rounding upstream moves the later layers by far more
                # than one fp32 rounding (resnet8: about 2e-2, in stride and in PyTorch's fp32 alike).
                d32, dac = update(fp32_after, key, old), update(autocast_after, key, old)
                de32 = update(emulated32_after, key, old)
                err_e, noise_e = rel_distance(ds, dt), rel_distance(de32, dt)
                ok = err_e <= 3 * noise_e + 1e-3
                if not ok:
                    failures.append(f"{name}: |stride - emulated| / |emulated| = {err_e:.2e}; the emulation in "
                                    f"fp32: {noise_e:.2e} (need <= 3x that + 1e-3)")
                to_emulated.append(err_e)
                fp32_to_emulated.append(rel_distance(d32, dt))
                extra = f"   {err_e:.1e}, {noise_e:.1e}"
                # stride's update may be at most 3x (plus 1e-2) as far from autocast's, relative to its norm, as
                # PyTorch's own fp32 update is: both are bf16 roundings of the same step, placed in different
                # layers. (An unrounded stride step, or a wrong pair index, is not.)
                err, noise = rel_distance(ds, dac), rel_distance(d32, dac)
                extra += f"       {err:.1e}, {noise:.1e}"
                if not err <= 3 * noise + 1e-2:
                    ok = False
                    failures.append(f"{name}: |stride - autocast| / |autocast| = {err:.2e}; PyTorch fp32 vs "
                                    f"autocast: {noise:.2e} (need <= 3x that + 1e-2)")
            print(f"  {name:<26} {shape_s:<16} {ns:11.4e} {nt:11.4e} {cos:12.8f} {ratio - 1:+10.1e}{extra}"
                  f"{'' if ok else '  FAIL'}")
        else:
            rel = float(np.abs(s_new - t_new).max() / np.abs(t_new).max())
            moved = float(np.abs(t_new - old).max())
            ok = rel < STATE_TOL
            print(f"  {name:<26} {shape_s:<16} state: max |stride - torch| / max |torch| {rel:.1e} "
                  f"(step moved it by {moved:.1e}){'' if ok else '  FAIL'}")
            if not ok:
                failures.append(f"{name}: running statistic differs by {rel:.2e} relative (need < {STATE_TOL})")
    if to_emulated:
        # The bf16 rounding happened, where stride's step says: its update is far closer to the emulated step's
        # than PyTorch's fp32 update is (an fp32 stride step, or one rounding another operand, is not).
        mean_s, mean_32 = float(np.mean(to_emulated)), float(np.mean(fp32_to_emulated))
        print(f"  mean distance to the emulated update: stride bf16 {mean_s:.2e}, PyTorch fp32 {mean_32:.2e}")
        if not mean_s < BF16_ROUNDING_SEEN * mean_32:
            failures.append(f"stride's bf16 update is not much closer to the emulated bf16 step ({mean_s:.2e}) than "
                            f"PyTorch's fp32 step is ({mean_32:.2e}; need < {BF16_ROUNDING_SEEN}x that)")
    s_loss = stride_loss(run_dir)
    if s_loss is None:
        failures.append("no training loss in stride's metrics.jsonl")
    else:
        rel = abs(s_loss - loss_value) / abs(loss_value)
        print(f"  loss of the step: stride {s_loss:.6f}, torch {loss_value:.6f} (relative difference {rel:.1e})")
        if rel >= LOSS_TOL:
            failures.append(f"loss: stride {s_loss}, torch {loss_value} (relative {rel:.2e}, need < {LOSS_TOL})")
        if precision == "bf16":
            rel = abs(s_loss - autocast_loss) / abs(autocast_loss)
            print(f"  autocast's loss {autocast_loss:.6f} (relative difference {rel:.1e})")
            if rel >= AUTOCAST_LOSS_TOL:
                failures.append(f"loss: stride {s_loss}, autocast {autocast_loss} (relative {rel:.2e}, need < "
                                f"{AUTOCAST_LOSS_TOL})")
    return failures


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stride", default=os.path.join(REPO, "build", "stride"), help="the stride binary")
    ap.add_argument("--work", help="keep the files here (default: a temporary directory, removed)")
    ap.add_argument("--models", default=",".join(CASES), help=f"comma-separated subset of {', '.join(CASES)}")
    ap.add_argument("--precision", default="fp32", choices=sorted(TOLERANCES),
                    help="bf16: stride train --precision bf16 against torch.autocast('cpu', torch.bfloat16)")
    args = ap.parse_args()
    cases = args.models.split(",")
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        ap.error(f"unknown --models {unknown}; known: {', '.join(CASES)}")
    failed = {}
    with tempfile.TemporaryDirectory(prefix="stride-torch-one-step-") as tmp:
        for case in cases:
            try:
                failures = check_case(case, CASES[case], args.stride, os.path.join(args.work or tmp, case),
                                      args.precision)
            except RuntimeError as e:
                failures = [str(e)]
            if failures:
                failed[case] = failures
    for case, failures in failed.items():
        print(f"FAILED {case}:\n  " + "\n  ".join(failures))
    if not failed:
        print(f"OK: {len(cases)} models ({', '.join(cases)}): stride's one-step updates equal PyTorch's"
              + (" (bf16, autocast)" if args.precision == "bf16" else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""Write a PyTorch state_dict as a stride weights-only file, for `stride train --init`, `eval` and `predict`.

Usage (torch is only in Debian's python):
  /usr/bin/python3 scripts/torch_to_stride.py --model NAME|SPEC.json STATE_DICT.pt OUT.h5
      [--stride BINARY] [--input C,H,W] [--mean m1,m2,.. --std s1,s2,..] [--classes a,b,..]

Example: a torch twin of lenet5 (scripts/torch_models.py) initialised by PyTorch, then trained by stride:
  /usr/bin/python3 -c 'import sys, torch; sys.path.insert(0, "scripts"); from torch_models import LeNet5
  torch.manual_seed(0); torch.save(LeNet5().state_dict(), "lenet5.pt")'
  /usr/bin/python3 scripts/torch_to_stride.py --model lenet5 lenet5.pt lenet5-init.h5
  build/stride train --model lenet5 --data /usr/share/datasets/fashion-mnist --init lenet5-init.h5

STATE_DICT.pt is what `torch.save(model.state_dict(), path)` writes: keys "<layer>.<param>" where <layer> is
the stride layer name, so the torch module must be registered under the names the stride model uses (the
twins in scripts/torch_models.py are). PyTorch's "num_batches_tracked" buffers are ignored: stride's batch
norm has a fixed momentum. The expected names and shapes come from `stride summary --model ... --json`
(binary: build/stride of this repository, or --stride), and are checked both ways: a key the model lacks, a
parameter the state dict lacks, or a different shape is an error naming the key and both shapes (exit 1).

OUT.h5 (docs/checkpoint.md, "Weights in and out") holds /params/<layer>/<param> float32 datasets, chunked
with the Fletcher32 checksum as stride writes them; /normalization/mean and /std when --mean/--std are
given (the input is (pixel/255 - mean)/std per channel); the root attributes format = "stride-weights",
version = 1, model_spec (the spec JSON with its "input", so eval/predict need no --model) and, with
--classes, class_names. It is written to OUT.h5.tmp and renamed, so a failure never leaves a partial OUT.h5.
Exit status 0 on success, with one summary line.
"""
import argparse
import json
import os
import subprocess
import sys

import h5py
import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FORMAT, VERSION = "stride-weights", 1
MAX_CHUNK_ELEMENTS = 1 << 26  # as stride: larger arrays are cut into slices of the first dimension


class Failure(Exception):
    """A user-facing error: printed as one 'error: ...' line, exit status 1."""


def run_stride(binary, args):
    try:
        r = subprocess.run([binary, *args], capture_output=True, text=True)
    except OSError as e:
        raise Failure(f"cannot run the stride binary {binary!r} ({e.strerror}); build it or pass --stride")
    if r.returncode != 0:
        lines = (r.stderr.strip() or r.stdout.strip()).splitlines()
        said = lines[-1].removeprefix("error: ") if lines else f"exit status {r.returncode}"
        raise Failure(f"stride {' '.join(args)} failed: {said}")
    return r.stdout


def parse_floats(text, flag):
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise Failure(f"{flag}: expected comma-separated numbers, got {text!r}")


def load_state_dict(path):
    try:
        obj = torch.load(path, map_location="cpu")
    except Exception as e:  # torch raises many kinds for a file that is not its own
        raise Failure(f"{path}: cannot load with torch.load ({type(e).__name__}: {e})")
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise Failure(f"{path}: not a state_dict (a dict of tensors, as torch.save(model.state_dict(), path) writes)")
    return {k: v for k, v in obj.items() if not k.endswith(".num_batches_tracked") and k != "num_batches_tracked"}


def shape_str(shape):
    return "(" + ", ".join(str(int(d)) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def match(path, model, expected, state):
    """The arrays to write, in network order, as [(stride name, float32 array)]. Every mismatch is listed."""
    errors, out = [], []
    known = set()
    for p in expected:
        layer, _, param = p["name"].rpartition("/")
        key = f"{layer}.{param}"
        known.add(key)
        want = tuple(p["shape"])
        if key not in state:
            errors.append(f"key '{key}' missing from the state dict: model {model} expects {p['role']} "
                          f"{p['name']} of shape {shape_str(want)}")
            continue
        t = state[key]
        if tuple(t.shape) != want:
            errors.append(f"key '{key}': model {model} expects shape {shape_str(want)}, the state dict has "
                          f"{shape_str(t.shape)}")
            continue
        if not t.is_floating_point():
            errors.append(f"key '{key}': expected floating-point values, the state dict has {t.dtype}")
            continue
        out.append((p["name"], t.detach().to(torch.float32).contiguous().numpy()))
    for key, t in state.items():
        if key not in known:
            errors.append(f"key '{key}' of shape {shape_str(t.shape)} is not a parameter of model {model}")
    if errors:
        raise Failure(f"{path}: {len(errors)} mismatch{'es' if len(errors) > 1 else ''} with model {model} "
                      "(module names must be stride's layer names; `stride summary --model ... --json` lists them):\n  "
                      + "\n  ".join(errors))
    return out


def write_array(f, name, a):
    a = np.ascontiguousarray(a, dtype="<f4")
    if a.size == 0:
        f.create_dataset(name, data=a)  # HDF5 cannot chunk an empty array; stride stores it plainly too
        return
    rows = max(1, MAX_CHUNK_ELEMENTS // max(1, a.size // a.shape[0]))
    f.create_dataset(name, data=a, chunks=(min(rows, a.shape[0]),) + a.shape[1:], fletcher32=True)


def write_weights(out, arrays, spec_text, mean, std, classes):
    tmp = out + ".tmp"
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT  # h5py 3 stores str attributes as variable-length UTF-8
            f.attrs["version"] = np.int64(VERSION)
            f.attrs["model_spec"] = spec_text
            if classes is not None:
                f.attrs.create("class_names", classes, dtype=h5py.string_dtype("utf-8"))
            for name, a in arrays:
                write_array(f, "params/" + name, a)
            if mean is not None:
                write_array(f, "normalization/mean", np.array(mean))
                write_array(f, "normalization/std", np.array(std))
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, out)
    except BaseException as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(e, OSError):
            raise Failure(f"{out}: not written ({e}); any earlier file is untouched")
        raise
    try:  # make the rename durable; a directory that cannot be opened (some file systems) is not an error
        fd = os.open(os.path.dirname(os.path.abspath(out)), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def convert(args):
    summary_args = ["summary", "--model", args.model] + (["--input", args.input] if args.input else [])
    try:
        info = json.loads(run_stride(args.stride, summary_args + ["--json"]))
    except json.JSONDecodeError as e:
        raise Failure(f"stride summary --json printed something that is not JSON ({e}); is {args.stride} too old?")
    spec_text = run_stride(args.stride, ["summary", "--model", args.model, "--print-spec"])
    spec = json.loads(spec_text)
    if args.input or "input" not in spec:
        spec["input"] = info["input"]
        spec_text = json.dumps(spec)

    mean = std = None
    if (args.mean is None) != (args.std is None):
        raise Failure("--mean and --std: give both or neither")
    if args.mean is not None:
        mean, std = parse_floats(args.mean, "--mean"), parse_floats(args.std, "--std")
        channels = info["input"][0] if len(info["input"]) == 3 else 1
        for flag, values in (("--mean", mean), ("--std", std)):
            if len(values) != channels:
                raise Failure(f"{flag}: expected {channels} values (one per input channel of {info['input']}), "
                              f"got {len(values)}")
        if any(not (s > 0) for s in std):
            raise Failure(f"--std: every value must be > 0, got {args.std}")
    classes = None
    if args.classes is not None:
        classes = [c.strip() for c in args.classes.split(",")]
        if any(not c for c in classes):
            raise Failure(f"--classes: an empty name in {args.classes!r}")

    if not os.path.exists(args.state_dict):
        raise Failure(f"{args.state_dict}: no such file")
    arrays = match(args.state_dict, info["model"], info["params"], load_state_dict(args.state_dict))
    write_weights(args.out, arrays, spec_text, mean, std, classes)
    role = {p["name"]: p["role"] for p in info["params"]}
    learnable = sum(a.size for name, a in arrays if role[name] == "learnable")
    state = sum(a.size for name, a in arrays if role[name] == "state")
    print(f"{args.out}: {FORMAT} v{VERSION}, model {info['model']} input {shape_str(info['input'])}, "
          f"{len(arrays)} parameters ({learnable} learnable values, {state} state), "
          f"normalization {'yes' if mean is not None else 'no'}, class names {len(classes) if classes else 'no'}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="stride zoo name or spec file (as for stride train)")
    ap.add_argument("state_dict", help="torch.save(model.state_dict(), path) output")
    ap.add_argument("out", help="the weights file to write (.h5)")
    ap.add_argument("--stride", default=os.path.join(REPO, "build", "stride"), help="the stride binary")
    ap.add_argument("--input", help="input shape C,H,W (or F): required when the spec has none")
    ap.add_argument("--mean", help="per-channel mean of pixel/255, comma-separated (with --std)")
    ap.add_argument("--std", help="per-channel standard deviation of pixel/255, comma-separated (with --mean)")
    ap.add_argument("--classes", help="class names, comma-separated")
    args = ap.parse_args(argv)
    try:
        convert(args)
    except Failure as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

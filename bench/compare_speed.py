#!/usr/bin/python3
"""Training speed of `stride train` vs the PyTorch reference (bench/torch_reference.py), same model/data/batch.

    /usr/bin/python3 bench/compare_speed.py --stride /tmp/build/stride [--repeats 2] [--markdown]

For every (model, batch, threads) it runs both for --warmup + --steps training iterations and measures
training images/s over the last --steps only (stride: from the `seconds` field of its metrics.jsonl step lines,
logged every --warmup steps; torch: timed around the iterations in torch_reference.py --steps). Data loading
and augmentation are included on both sides (stride overlaps batch assembly with compute; the torch reference
does it inline, as a DataLoader with num_workers=0). Reported: the best of --repeats runs of each, since on a
shared machine other load only ever makes a run slower.

torch runs with OMP_WAIT_POLICY=PASSIVE unless --omp-active: with OpenMP's default spin-waiting, 2 torch
threads on a 2-core machine that other processes also use run several times slower than 1 thread.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = {
    "lenet5": "/usr/share/datasets/fashion-mnist",
    "cifar10_quick": os.path.join(HERE, "..", "..", "shared", "data", "cifar10-sample"),
}


def stride_rate(binary, model, data, batch, threads, warmup, steps):
    with tempfile.TemporaryDirectory(prefix="stride-speed-") as out:
        cmd = [binary, "train", "--model", model, "--data", data, "--epochs", "1", "--batch", str(batch),
               "--threads", str(threads), "--limit-train", str((warmup + steps) * batch), "--limit-test", "100",
               "--log-every", str(warmup), "--no-progress", "--out", out]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stdout}{r.stderr}")
        lines = [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl"))]
    step_lines = [l for l in lines if l.get("kind") == "step"]
    # The first line closes the warm-up window; the last one closes the timed steps.
    first, last = step_lines[0], step_lines[-1]
    timed_steps = last["step"] - first["step"]
    return timed_steps * batch / (last["seconds"] - first["seconds"])


def torch_rate(model, data, batch, threads, warmup, steps, omp_active):
    env = dict(os.environ)
    if not omp_active:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    cmd = ["/usr/bin/python3", os.path.join(HERE, "torch_reference.py"), "--model", model, "--data", data,
           "--batch", str(batch), "--threads", str(threads), "--warmup", str(warmup), "--steps", str(steps)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stdout}{r.stderr}")
    for line in r.stdout.splitlines():
        if line.startswith("train images/s"):
            return float(line.split()[2])
    raise SystemExit(f"no 'train images/s' line in:\n{r.stdout}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stride", default=os.environ.get("STRIDE", "build/stride"), help="the stride binary")
    ap.add_argument("--models", default="lenet5,cifar10_quick")
    ap.add_argument("--batches", default="64,128")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--warmup", type=int, default=10, help="untimed iterations first")
    ap.add_argument("--steps", type=int, default=30, help="timed iterations")
    ap.add_argument("--repeats", type=int, default=2, help="runs per engine and configuration; the best is kept")
    ap.add_argument("--omp-active", action="store_true", help="leave torch's OpenMP spin-waiting on")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    a = ap.parse_args()

    rows = []
    for model in a.models.split(","):
        data = os.path.normpath(DATA[model])
        for batch in map(int, a.batches.split(",")):
            for threads in map(int, a.threads.split(",")):
                s = max(stride_rate(a.stride, model, data, batch, threads, a.warmup, a.steps)
                        for _ in range(a.repeats))
                t = max(torch_rate(model, data, batch, threads, a.warmup, a.steps, a.omp_active)
                        for _ in range(a.repeats))
                rows.append((model, batch, threads, s, t, s / t))
                print(f"{model:14s} batch {batch:4d} threads {threads}: stride {s:8.1f}  torch {t:8.1f}  "
                      f"ratio {s / t:5.2f}", file=sys.stderr, flush=True)

    stamp = time.strftime("%Y-%m-%d %H:%M")
    if a.markdown:
        print(f"Training images/s, best of {a.repeats}, {a.steps} timed steps after {a.warmup} warm-up, {stamp}")
        print()
        print("| model | batch | threads | stride img/s | torch img/s | stride/torch |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for m, b, th, s, t, r in rows:
            print(f"| {m} | {b} | {th} | {s:.0f} | {t:.0f} | {r:.2f} |")
    else:
        print(f"{'model':14s} {'batch':>5s} {'thr':>3s} {'stride':>9s} {'torch':>9s} {'ratio':>6s}   ({stamp})")
        for m, b, th, s, t, r in rows:
            print(f"{m:14s} {b:5d} {th:3d} {s:9.1f} {t:9.1f} {r:6.2f}")


if __name__ == "__main__":
    main()

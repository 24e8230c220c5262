#!/usr/bin/python3
"""Training speed of stride vs PyTorch on the same networks, interleaved in one run, medians of repeats.

    /usr/bin/python3 bench/compare_speed.py --stride build/stride [--repeats 3] [--markdown OUT.md]
    /usr/bin/python3 bench/compare_speed.py --stride build/stride --per-layer --models cifar10_quick --batches 128

Every cell (model, batch, threads) times training steps -- forward, cross-entropy, backward, SGD with momentum --
on random data, for stride (`stride bench --json`: TrainingStep, what `stride train` runs, with train's
default --micro-batch unless --micro-batch is given) and for PyTorch (the twins in scripts/torch_models.py,
torch.set_num_threads explicit, OMP_WAIT_POLICY=PASSIVE so idle OpenMP threads do not spin on a shared
machine). The runs alternate stride, torch, stride, torch ... cell by cell and repeat by repeat, so slow
phases of a shared machine hit both; the table gives the median images/s of each and their ratio, and names
the CPU model and stride's kernel path.

With 1 and more threads among --threads, a second table gives each engine's scaling (most threads / one).

--per-layer prints, for each (model, batch, threads), stride's per-layer table (`stride bench --per-layer`)
beside the same layers timed alone in PyTorch (forward; backward = input and weight gradients together).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, ".."))
INPUT = {"lenet5": [1, 28, 28], "cifar10_quick": [3, 32, 32], "resnet8": [3, 32, 32], "resnet20": [3, 32, 32]}


def cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


# ---- the PyTorch side, run in a child process per measurement ------------------------------------------------

def torch_child(a):
    sys.path.insert(0, os.path.join(REPO, "scripts"))
    import torch
    import torch.nn.functional as F
    from torch_models import build
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    shape = INPUT[a.model]
    model = build({"name": a.model, "input": shape})
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(a.batch, *shape)
    y = torch.arange(a.batch) % 10

    def step():
        if a.precision == "bf16":  # PyTorch's mixed precision: autocast around the forward, loss in fp32
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = model(x)
            out = out.float()
        else:
            out = model(x)
        loss = F.cross_entropy(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    if a.per_layer:
        print(json.dumps(torch_per_layer(torch, model, x, a.steps)))
        return
    for _ in range(a.warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    dt = time.perf_counter() - t0
    print(json.dumps({"img_per_s": a.steps * a.batch / dt, "torch": torch.__version__}))


def torch_per_layer(torch, model, x, steps):
    """Each leaf module alone on the input it saw in a forward of the whole model: forward and backward times
    (the fastest of `steps`), backward computing the input gradient except for the first layer."""
    inputs = {}
    hooks = []

    def keep_input(name):
        def hook(module, inp, out):  # returns None: a forward hook's result would replace the output
            inputs.setdefault(name, inp[0].detach().clone())
        return hook

    for name, mod in model.named_modules():
        if len(list(mod.children())) == 0:
            hooks.append(mod.register_forward_hook(keep_input(name)))
    model(x)
    for h in hooks:
        h.remove()
    rows = []
    first = True
    for name, mod in model.named_modules():
        if name not in inputs:
            continue
        xin = inputs[name].clone().requires_grad_(not first)
        first = False
        fwd, bwd = [], []
        for _ in range(steps + 1):
            t0 = time.perf_counter()
            out = mod(xin)
            t1 = time.perf_counter()
            if out.requires_grad:
                out.backward(torch.full_like(out, 0.01))
            t2 = time.perf_counter()
            fwd.append(t1 - t0)
            bwd.append(t2 - t1)
            mod.zero_grad(set_to_none=True)
            xin.grad = None
        rows.append({"layer": name, "forward_ms": 1e3 * min(fwd[1:]), "backward_ms": 1e3 * min(bwd[1:])})
    return rows


# ---- the parent: interleaved runs ----------------------------------------------------------------------------

def run_json(cmd, env=None):
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stdout}{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def stride_cmd(a, model, batch, threads, per_layer=False):
    cmd = [a.stride, "bench", "--model", model, "--batch", str(batch), "--threads", str(threads),
           "--steps", str(a.steps), "--warmup", str(a.warmup), "--json"]
    if a.micro_batch is not None:
        cmd += ["--micro-batch", str(a.micro_batch)]
    if a.isa:
        cmd += ["--isa", a.isa]
    cmd += ["--precision", a.precision]
    if per_layer:
        cmd.append("--per-layer")
    return cmd


def torch_cmd(a, model, batch, threads, per_layer=False):
    cmd = ["/usr/bin/python3", os.path.abspath(__file__), "--torch-child", "--models", model, "--batch", str(batch),
           "--child-threads", str(threads), "--steps", str(a.steps), "--warmup", str(a.warmup),
           "--precision", a.precision]
    if per_layer:
        cmd.append("--per-layer")
    return cmd


def torch_env():
    env = dict(os.environ)
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    return env


def per_layer_tables(a, cells):
    for model, batch, threads in cells:
        s = run_json(stride_cmd(a, model, batch, threads, per_layer=True))
        t = run_json(torch_cmd(a, model, batch, threads, per_layer=True), env=torch_env())
        torch_rows = {r["layer"].replace(".", "_"): r for r in t}
        print(f"\n### {model}, batch {batch}, {threads} thread(s): stride ({s['isa']}, {s['img_per_s']:.0f} img/s, "
              f"{s['peak_pct']:.0f}% of {s['fma_peak_gflops']:.0f} GFLOP/s) beside PyTorch, ms (fastest of {a.steps})\n")
        print("| layer | stride fwd | bwd-data | bwd-weights | fwd % peak | bwd-d % | bwd-w % | torch fwd | torch bwd |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for r in s["layers"]:
            tr = torch_rows.get(r["layer"], {})
            pct = lambda k: f"{r[k]:.0f}" if r[k] > 0 else "-"
            tf = f"{tr['forward_ms']:.3f}" if tr else "-"
            tb = f"{tr['backward_ms']:.3f}" if tr else "-"
            print(f"| {r['layer']} | {r['forward_ms']:.3f} | {r['backward_data_ms']:.3f} | "
                  f"{r['backward_weights_ms']:.3f} | {pct('forward_peak_pct')} | {pct('backward_data_peak_pct')} | "
                  f"{pct('backward_weights_peak_pct')} | {tf} | {tb} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stride", default=os.environ.get("STRIDE", os.path.join(REPO, "build", "stride")))
    ap.add_argument("--models", default="cifar10_quick,lenet5,resnet8")
    ap.add_argument("--batches", default="32,128")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per run")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved runs per engine and cell; medians kept")
    ap.add_argument("--micro-batch", type=int, default=None, help="stride's --micro-batch (default: train's)")
    ap.add_argument("--isa", default="", help="stride's --isa (default: STRIDE_ISA, else the best path)")
    ap.add_argument("--markdown", default="", help="also write the table to this file")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "both"],
                    help="bf16: stride bench --precision bf16 against PyTorch under torch.autocast('cpu', bfloat16); "
                         "both: the four engines interleaved, with stride's bf16/fp32 ratio")
    ap.add_argument("--per-layer", action="store_true", help="per-layer tables, stride beside PyTorch")
    # Internal: one PyTorch measurement.
    ap.add_argument("--torch-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--child-threads", type=int, default=1, help=argparse.SUPPRESS)
    a = ap.parse_args()

    if a.torch_child:
        a.model, a.threads = a.models, a.child_threads
        torch_child(a)
        return

    cells = [(m, b, t) for m in a.models.split(",") for b in map(int, a.batches.split(","))
             for t in map(int, a.threads.split(","))]
    if a.per_layer:
        per_layer_tables(a, cells)
        return
    if a.precision == "both":
        both_precisions(a, cells)
        return

    stride_rates = {c: [] for c in cells}
    torch_rates = {c: [] for c in cells}
    isa = "?"
    torch_version = "?"
    micro = None
    for rep in range(a.repeats):
        for cell in cells:
            model, batch, threads = cell
            s = run_json(stride_cmd(a, model, batch, threads))
            isa, micro = s["isa"], s["micro_batch"]
            t = run_json(torch_cmd(a, model, batch, threads), env=torch_env())
            torch_version = t["torch"]
            stride_rates[cell].append(s["img_per_s"])
            torch_rates[cell].append(t["img_per_s"])
            print(f"repeat {rep + 1}/{a.repeats} {model:14s} batch {batch:4d} threads {threads}: "
                  f"stride {s['img_per_s']:8.1f} ({s['peak_pct']:.0f}% of peak)  torch {t['img_per_s']:8.1f}",
                  file=sys.stderr, flush=True)

    commit = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "?"
    lines = [f"Training images/s on {cpu_model()} ({os.cpu_count()} cores), stride {commit} on its **{isa}** kernel "
             f"path (micro-batch {micro or 'whole batch'}) vs PyTorch {torch_version}; random data, SGD momentum; "
             f"median of {a.repeats} interleaved runs of {a.steps} steps after {a.warmup} warm-up, "
             f"{time.strftime('%Y-%m-%d %H:%M')}.",
             "",
             "| model | batch | threads | stride img/s | PyTorch img/s | stride/PyTorch |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for cell in cells:
        model, batch, threads = cell
        s, t = statistics.median(stride_rates[cell]), statistics.median(torch_rates[cell])
        lines.append(f"| {model} | {batch} | {threads} | {s:.0f} | {t:.0f} | {s / t:.2f} |")
    # Thread scaling: the median rate at the most threads over the median at one, per engine.
    counts = sorted(set(map(int, a.threads.split(","))))
    if len(counts) > 1 and counts[0] == 1:
        most = counts[-1]
        lines += ["", f"Scaling from 1 to {most} threads (ratio of the medians above):", "",
                  f"| model | batch | stride {most} / 1 threads | PyTorch {most} / 1 threads |", "| --- | ---: | ---: | ---: |"]
        for model in a.models.split(","):
            for batch in map(int, a.batches.split(",")):
                one, many = (model, batch, 1), (model, batch, most)
                sx = statistics.median(stride_rates[many]) / statistics.median(stride_rates[one])
                tx = statistics.median(torch_rates[many]) / statistics.median(torch_rates[one])
                lines.append(f"| {model} | {batch} | {sx:.2f} | {tx:.2f} |")
    text = "\n".join(lines)
    print(text)
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write(text + "\n")


def both_precisions(a, cells):
    """stride fp32, PyTorch fp32, stride bf16, PyTorch autocast bf16, interleaved cell by cell and repeat by
    repeat; medians and the ratios the bf16 work is judged by."""
    engines = [("stride", "fp32"), ("torch", "fp32"), ("stride", "bf16"), ("torch", "bf16")]
    rates = {(c, e): [] for c in cells for e in engines}
    peak = {c: [] for c in cells}
    isa, torch_version = "?", "?"
    for rep in range(a.repeats):
        for cell in cells:
            model, batch, threads = cell
            for engine, precision in engines:
                b = argparse.Namespace(**vars(a))
                b.precision = precision
                if engine == "stride":
                    r = run_json(stride_cmd(b, model, batch, threads))
                    isa = r["isa"]
                    if precision == "bf16":
                        peak[cell].append(r["peak_pct"])
                else:
                    r = run_json(torch_cmd(b, model, batch, threads), env=torch_env())
                    torch_version = r["torch"]
                rates[(cell, (engine, precision))].append(r["img_per_s"])
                print(f"repeat {rep + 1}/{a.repeats} {model:14s} batch {batch:4d} threads {threads}: {engine} "
                      f"{precision} {r['img_per_s']:8.1f}", file=sys.stderr, flush=True)
    commit = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "?"
    lines = [f"Training images/s on {cpu_model()} ({os.cpu_count()} cores), stride {commit} ({isa} path) vs PyTorch "
             f"{torch_version} (bf16: torch.autocast('cpu', torch.bfloat16)); median of {a.repeats} interleaved runs "
             f"of {a.steps} steps after {a.warmup} warm-up, {time.strftime('%Y-%m-%d %H:%M')}.",
             "",
             "| model | batch | threads | stride fp32 | stride bf16 | PyTorch fp32 | PyTorch bf16 | stride bf16 / fp32 | "
             "stride bf16 / PyTorch bf16 | stride bf16 / PyTorch fp32 | stride bf16, % of bf16 peak |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for cell in cells:
        model, batch, threads = cell
        m = {e: statistics.median(rates[(cell, e)]) for e in engines}
        sf, sb, tf, tb = m[("stride", "fp32")], m[("stride", "bf16")], m[("torch", "fp32")], m[("torch", "bf16")]
        lines.append(f"| {model} | {batch} | {threads} | {sf:.0f} | {sb:.0f} | {tf:.0f} | {tb:.0f} | **{sb / sf:.2f}** | "
                     f"**{sb / tb:.2f}** | {sb / tf:.2f} | {statistics.median(peak[cell]):.0f}% |")
    text = "\n".join(lines)
    print(text)
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""scripts/thread_scaling.py on two synthetic traces whose comparison is worked out by hand below.

1 thread, three steps scaled by 1.0, 1.2 and 1.1: conv forward in two micro-batches of 40 us each (80 per step),
the optimizer 20 us, the step 100 us (times the scale). Fastest: 0.100 / 0.080 / 0.020 ms; median (scale 1.1):
0.110 / 0.088 / 0.022 ms.
2 threads, two steps scaled by 1.0 and 1.5: conv forward 2 x 20 us (a perfect split), the optimizer 15 us
(a poor one), the step 55 us; a nested scope inside conv forward that must not count twice. Fastest: 0.055 /
0.040 / 0.015 ms; median (the mean of two, scale 1.25): 0.06875 / 0.050 / 0.01875 ms.
Speedups (fastest): step 100 / 55 = 1.8182x, conv forward 2x, optimizer 20 / 15 = 1.3333x; (median): 1.6x,
1.76x, 1.1733x. Lost against a perfect split of the 1-thread time: step 55 - 50 = 5 us, conv forward 40 - 40
= 0, optimizer 15 - 10 = 5 us. Order: the whole step, then the optimizer (5 us), then conv forward (0).
With --pool, a second 2-thread trace of one step scaled by 0.9 joins the first: the step's fastest becomes
0.0495 ms and its median (scales 0.9, 1.0, 1.5) 0.055 ms. A 1-thread bf16 trace (scale 0.5) stays apart from
the fp32 one under --pool: its whole step 0.050 ms, 2x the fp32 step. A trace of another batch size is refused.
"""
import json
import os
import subprocess
import sys
import tempfile

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts", "thread_scaling.py")
RUN = {"format": "stride-trace", "version": 1, "model": "synthetic", "batch": 4, "micro_batch": 2,
       "precision": "fp32", "cpu": "none"}


def scope(layer, phase, parent, micro_batch, start, end):
    return {"layer": layer, "phase": phase, "parent": parent, "micro_batch": micro_batch, "start_us": start,
            "end_us": end}


def one_thread_step(s):
    return {"duration_us": 100 * s, "loops": [], "scopes": [
        scope("conv", "forward", -1, 0, 0, 40 * s),
        scope("conv", "forward", -1, 1, 40 * s, 80 * s),
        scope("step", "optimizer", -1, -1, 80 * s, 100 * s)]}


def two_thread_step(s):
    return {"duration_us": 55 * s, "loops": [], "scopes": [
        scope("conv", "forward", -1, 0, 0, 20 * s),
        scope("inner", "part", 0, 0, 5 * s, 15 * s),
        scope("conv", "forward", -1, 1, 20 * s, 40 * s),
        scope("step", "optimizer", -1, -1, 40 * s, 55 * s)]}


def close(a, b):
    return abs(a - b) < 1e-9 * max(1.0, abs(b))


def main():
    failures = []

    def check(what, got, want):
        if got is None or not close(got, want):
            failures.append("%s: got %r, expected %r" % (what, got, want))

    with tempfile.TemporaryDirectory() as tmp:
        one, two, other = (os.path.join(tmp, n) for n in ("one.json", "two.json", "other.json"))
        with open(one, "w") as f:
            json.dump(dict(RUN, threads=1, steps=[one_thread_step(s) for s in (1.0, 1.2, 1.1)]), f)
        with open(two, "w") as f:
            json.dump(dict(RUN, threads=2, steps=[two_thread_step(s) for s in (1.0, 1.5)]), f)
        with open(other, "w") as f:
            json.dump(dict(RUN, threads=2, batch=8, steps=[two_thread_step(1.0)]), f)

        out = subprocess.run([sys.executable, SCRIPT, one, two, "--json"], check=True, capture_output=True,
                             text=True).stdout
        r = json.loads(out)
        order = [(row["layer"], row["phase"]) for row in r["rows"]]
        if order != [("step", "(whole step)"), ("step", "optimizer"), ("conv", "forward")]:
            failures.append("rows %r, expected the whole step, the optimizer, conv forward" % order)
        else:
            want = {  # fastest, median (1 thread); fastest, median, speedups, lost (2 threads)
                "(whole step)": (0.100, 0.110, 0.055, 0.06875, 100 / 55, 0.110 / 0.06875, 0.005),
                "optimizer": (0.020, 0.022, 0.015, 0.01875, 20 / 15, 0.022 / 0.01875, 0.005),
                "forward": (0.080, 0.088, 0.040, 0.050, 2.0, 0.088 / 0.050, 0.0),
            }
            for row in r["rows"]:
                w = want[row["phase"]]
                a, b = row["traces"]
                what = "%s %s" % (row["layer"], row["phase"])
                check(what + ", 1 thread fastest", a["fastest_ms"], w[0])
                check(what + ", 1 thread median", a["median_ms"], w[1])
                check(what + ", 2 threads fastest", b["fastest_ms"], w[2])
                check(what + ", 2 threads median", b["median_ms"], w[3])
                check(what + ", speedup of the fastest", b["speedup_fastest"], w[4])
                check(what + ", speedup of the median", b["speedup_median"], w[5])
                check(what + ", lost", b["lost_ms"], w[6])
        for flag in ([], ["--markdown"]):
            p = subprocess.run([sys.executable, SCRIPT, one, two, *flag], capture_output=True, text=True)
            if p.returncode != 0 or "optimizer" not in p.stdout or "1.82x" not in p.stdout:
                failures.append("%s output: exit %d, %r" % (flag or "text", p.returncode, p.stdout + p.stderr))

        two_b = os.path.join(tmp, "two_b.json")
        with open(two_b, "w") as f:
            json.dump(dict(RUN, threads=2, steps=[two_thread_step(0.9)]), f)
        out = subprocess.run([sys.executable, SCRIPT, one, two, two_b, "--pool", "--json"], check=True,
                             capture_output=True, text=True).stdout
        r = json.loads(out)
        if len(r["traces"]) != 2 or r["traces"][1]["steps"] != 3:
            failures.append("--pool: traces %r, expected 1 thread and 2 threads with 3 steps" % r["traces"])
        else:
            whole = r["rows"][0]["traces"][1]
            check("--pool, 2 threads fastest", whole["fastest_ms"], 0.0495)
            check("--pool, 2 threads median", whole["median_ms"], 0.055)

        bf16 = os.path.join(tmp, "bf16.json")
        with open(bf16, "w") as f:
            json.dump(dict(RUN, threads=1, precision="bf16", steps=[one_thread_step(0.5)]), f)
        out = subprocess.run([sys.executable, SCRIPT, one, bf16, two, "--pool", "--json"], check=True,
                             capture_output=True, text=True).stdout
        r = json.loads(out)
        kinds = [(t["threads"], t["precision"]) for t in r["traces"]]
        if kinds != [(1, "fp32"), (1, "bf16"), (2, "fp32")]:
            failures.append("--pool with a bf16 trace: %r, expected 1 fp32, 1 bf16, 2 fp32" % kinds)
        else:
            whole = r["rows"][0]["traces"][1]
            check("bf16 whole step", whole["fastest_ms"], 0.050)
            check("bf16 speedup", whole["speedup_fastest"], 2.0)

        for flags in ([], ["--pool"]):
            p = subprocess.run([sys.executable, SCRIPT, one, other, *flags], capture_output=True, text=True)
            if p.returncode == 0 or "batch 8" not in p.stderr:
                failures.append("traces of different batches %s: exit %d, stderr %r" % (flags, p.returncode, p.stderr))

    for f in failures:
        print("FAIL:", f)
    print("%d checks failed" % len(failures) if failures else "all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""scripts/manycore_projection.py on a synthetic trace whose projection is worked out by hand below.

One step of 110 us, in this order:
  0-10    serial: the loss ("step", "loss"), micro-batch 0
  10-70   parallel_chunks, 3 fixed chunks of 10, 20 and 30 us ("conv", "backward"), micro-batch 0
  70-110  parallel_for over n = 8 indices, grain 2, 40 us in one call ("relu", "forward"), micro-batch 1
and a second recorded step, slower everywhere, that the projection must ignore (it keeps the fastest).

By hand:
  1 worker:  10 + 60 + 40 = 110 us.
  2 workers: chunks 10 -> w0, 20 -> w1, 30 -> w0 (free first, at 10): 40 us. parallel_for: blocks of 2 indices
             (8 -> 4 + 4 -> 2 + 2 + 2 + 2), 10 us each, two per worker: 20 us. Step 10 + 40 + 20 = 70 us:
             110 / 70 = 1.5714x.
  4 workers: chunks 30 us, blocks 10 us: 10 + 30 + 10 = 50 us: 2.2x. Lost against a perfect 1/4 split:
             loss 10 - 2.5 = 7.5, conv backward 30 - 15 = 15, relu 10 - 10 = 0: conv backward limits, with its
             3 pieces.
  4 workers, 5 us loop overhead: 10 + 35 + 15 = 60 us: 1.8333x.
  2 cores as ranks x threads, 2 micro-batches, 125,000 gradients (1 MB of int64) at 2 ms per MB:
             1 x 2: 70 us, 110 / 70 = 1.5714x; 2 x 1: micro-batch 0 only, 10 + 60 = 70 us, + 2000 us of
             allreduce = 2070 us: 0.05314x.
"""
import json
import os
import subprocess
import sys
import tempfile

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts", "manycore_projection.py")


def step(scale):
    s = scale
    return {
        "duration_us": 110 * s,
        "scopes": [
            {"layer": "step", "phase": "loss", "parent": -1, "micro_batch": 0, "start_us": 0, "end_us": 10 * s},
            {"layer": "conv", "phase": "backward", "parent": -1, "micro_batch": 0, "start_us": 10 * s, "end_us": 70 * s},
            {"layer": "relu", "phase": "forward", "parent": -1, "micro_batch": 1, "start_us": 70 * s, "end_us": 110 * s},
        ],
        "loops": [
            {"scope": 1, "kind": "chunks", "n": 5, "grain": 2, "start_us": 10 * s, "end_us": 70 * s, "tasks": [
                {"chunk": 0, "begin": 0, "end": 2, "start_us": 10 * s, "duration_us": 10 * s},
                {"chunk": 1, "begin": 2, "end": 4, "start_us": 20 * s, "duration_us": 20 * s},
                {"chunk": 2, "begin": 4, "end": 5, "start_us": 40 * s, "duration_us": 30 * s}]},
            {"scope": 2, "kind": "blocks", "n": 8, "grain": 2, "start_us": 70 * s, "end_us": 110 * s, "tasks": [
                {"chunk": 0, "begin": 0, "end": 8, "start_us": 70 * s, "duration_us": 40 * s}]},
        ],
    }


def run(path, *flags):
    out = subprocess.run([sys.executable, SCRIPT, path, "--json", "--workers", "2,4", *flags],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)[0]


def close(a, b):
    return abs(a - b) < 1e-9 * max(1.0, abs(b))


def main():
    trace = {"format": "stride-trace", "version": 1, "model": "synthetic", "batch": 4, "micro_batch": 2,
             "micro_batches": 2, "learnable": 125000, "cpu": "none", "steps": [step(1.0), step(1.5)]}
    failures = []

    def check(what, got, want):
        if not close(got, want):
            failures.append("%s: got %r, expected %r" % (what, got, want))

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "trace.json")
        with open(path, "w") as f:
            json.dump(trace, f)
        r = run(path, "--node-cores", "2", "--allreduce-ms-per-mb", "2")
        rows = {row["workers"]: row for row in r["rows"]}
        check("1-worker step ms", r["one_thread_ms"], 0.110)
        check("2 workers", rows[2]["speedup"], 110 / 70)
        check("4 workers", rows[4]["speedup"], 110 / 50)
        check("4 workers, efficiency", rows[4]["efficiency"], 110 / 50 / 4)
        lim = rows[4]["limiter"]
        if (lim["layer"], lim["phase"], lim["why"]) != ("conv", "backward", "3 pieces"):
            failures.append("4 workers: limiter %r, expected conv backward (3 pieces)" % lim)
        splits = {(s["ranks"], s["threads"]): s["speedup"] for s in r["splits"]}
        if sorted(splits) != [(1, 2), (2, 1)]:
            failures.append("splits %r, expected 1 x 2 and 2 x 1" % sorted(splits))
        else:
            check("1 rank x 2 threads", splits[(1, 2)], 110 / 70)
            check("2 ranks x 1 thread", splits[(2, 1)], 110 / 2070)
        r = run(path, "--loop-overhead-us", "5")
        check("4 workers, 5 us overhead", {row["workers"]: row for row in r["rows"]}[4]["speedup"], 110 / 60)

        bad = os.path.join(tmp, "bad.json")
        with open(bad, "w") as f:
            json.dump({"format": "something else"}, f)
        p = subprocess.run([sys.executable, SCRIPT, bad], capture_output=True, text=True)
        if p.returncode == 0 or "not a stride trace" not in p.stderr:
            failures.append("a file that is not a trace: exit %d, stderr %r" % (p.returncode, p.stderr))

        # A trace taken at 2 threads has scopes but no loops: nothing to replay.
        two = os.path.join(tmp, "two.json")
        with open(two, "w") as f:
            json.dump(dict(trace, threads=2, steps=[dict(step(0.5), loops=[])]), f)
        p = subprocess.run([sys.executable, SCRIPT, two], capture_output=True, text=True)
        if p.returncode == 0 or "recorded at 2 threads" not in p.stderr:
            failures.append("a 2-thread trace: exit %d, stderr %r" % (p.returncode, p.stderr))

    for f in failures:
        print("FAIL:", f)
    print("%d checks failed" % len(failures) if failures else "all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

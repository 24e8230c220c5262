#!/usr/bin/env python3
"""Compares `stride bench --trace` files of one run taken at different thread counts, scope by scope.

    stride bench --model lenet5 --batch 128 --steps 20 --trace t1.json              # 1 thread
    stride bench --model lenet5 --batch 128 --steps 20 --threads 2 --trace t2.json  # scopes only
    scripts/thread_scaling.py t1.json t2.json [--markdown | --json]

A scope is a layer's forward or backward, or the step's own work (zero_grad, input, loss, gradient_sum,
statistics, finite_check, optimizer): the outermost scopes of a step, each summed over the step's micro-batches.
For the whole step and every scope it prints, per trace, the fastest and the median of the recorded steps; for
each trace after the first, the speedup over the first (fastest against fastest, and median against median)
and the time the scope loses against a perfect split of the first trace's time (fastest - first fastest x
first threads / threads), scopes that lose the most first.

The fastest is the steady figure on a shared machine (other load only ever slows a step), the median what a
typical step costs. Scope times are wall time on the recording thread, so at more than one thread a scope
includes the waiting at the end of its loops (imbalance, fork/join) and the memory traffic the threads share:
what a one-thread trace and scripts/manycore_projection.py cannot show. The traces must be of the same model,
batch and micro-batch. Two traces at the same thread count compare two binaries or two precisions (fp32 against
bf16: which scopes bf16 speeds up; "lost" is then simply how much slower), or with --pool are taken together
(traces at the same thread count and precision: runs alternated a few times, the usual way on a noisy machine).
"""

import argparse
import json
import os
import statistics
import sys

SAME = ("model", "batch", "micro_batch")


def load(path):
    with open(path) as f:
        trace = json.load(f)
    if trace.get("format") != "stride-trace" or not trace.get("steps"):
        sys.exit("%s: not a stride trace with steps (format %r)" % (path, trace.get("format")))
    steps, scopes = [], {}
    for i, st in enumerate(trace["steps"]):
        steps.append(st["duration_us"])
        for s in st["scopes"]:
            if s["parent"] == -1:
                per_step = scopes.setdefault((s["layer"], s["phase"]), {})
                per_step[i] = per_step.get(i, 0.0) + s["end_us"] - s["start_us"]
    n = len(steps)
    # A scope missing from a step took no time in it (a phase that step did not run).
    times = {key: [per_step.get(i, 0.0) for i in range(n)] for key, per_step in scopes.items()}
    return {"path": path, "run": trace, "threads": int(trace.get("threads", 1)),
            "precision": trace.get("precision", "fp32"), "step": steps, "scopes": times}


def pool(traces):
    """Traces at one thread count and precision as one: their steps together (each scope 0 in steps that
    lack it)."""
    out = []
    for t in traces:
        same = next((o for o in out if (o["threads"], o["precision"]) == (t["threads"], t["precision"])), None)
        if same is None:
            out.append(dict(t, scopes=dict(t["scopes"])))
            continue
        n0, n1 = len(same["step"]), len(t["step"])
        for key in set(same["scopes"]) | set(t["scopes"]):
            same["scopes"][key] = same["scopes"].get(key, [0.0] * n0) + t["scopes"].get(key, [0.0] * n1)
        same["step"] = same["step"] + t["step"]
        same["path"] += "+" + os.path.basename(t["path"])
    return out


def summary(values_us):
    return {"fastest_ms": min(values_us) / 1e3, "median_ms": statistics.median(values_us) / 1e3}


def check_same_run(traces):
    first = traces[0]
    for t in traces[1:]:
        for key in SAME:
            if t["run"].get(key) != first["run"].get(key):
                sys.exit("%s: %s %r, but %s has %r: compare traces of one run" %
                         (t["path"], key, t["run"].get(key), first["path"], first["run"].get(key)))


def compare(traces):
    first = traces[0]
    keys = [("step", "(whole step)")] + sorted({k for t in traces for k in t["scopes"]})
    rows = []
    for key in keys:
        row = {"layer": key[0], "phase": key[1], "traces": []}
        for t in traces:
            values = t["step"] if key == ("step", "(whole step)") else t["scopes"].get(key, [0.0])
            row["traces"].append(dict(summary(values), threads=t["threads"], precision=t["precision"]))
        base = row["traces"][0]
        for cell in row["traces"][1:]:
            cell["speedup_fastest"] = base["fastest_ms"] / cell["fastest_ms"] if cell["fastest_ms"] > 0 else None
            cell["speedup_median"] = base["median_ms"] / cell["median_ms"] if cell["median_ms"] > 0 else None
            cell["lost_ms"] = cell["fastest_ms"] - base["fastest_ms"] * base["threads"] / cell["threads"]
        rows.append(row)
    # The whole step first, then the scopes that lose the most in the last trace.
    if len(traces) > 1:
        rows[1:] = sorted(rows[1:], key=lambda r: -r["traces"][-1]["lost_ms"])
    run = first["run"]
    return {"model": run.get("model"), "batch": run.get("batch"), "micro_batch": run.get("micro_batch"),
            "cpu": run.get("cpu"),
            "traces": [{"path": t["path"], "threads": t["threads"], "precision": t["precision"],
                        "steps": len(t["step"])} for t in traces],
            "rows": rows}


def speedup(x):
    return "-" if x is None else "%.2fx" % x


def label(t):
    return "%d thread%s %s" % (t["threads"], "" if t["threads"] == 1 else "s", t["precision"])


def print_text(r):
    print("%s batch %s (micro-batch %s) on %s; fastest / median of each trace's steps, ms" %
          (r["model"], r["batch"], r["micro_batch"], r["cpu"]))
    head = "%-28s" % "scope"
    for t in r["traces"]:
        head += " | %-24s" % ("%s (%s)" % (label(t), os.path.basename(t["path"])))[:24]
    print(head)
    for row in r["rows"]:
        line = "%-28s" % ("%s %s" % (row["layer"], row["phase"]))
        for i, c in enumerate(row["traces"]):
            cell = "%7.3f %7.3f" % (c["fastest_ms"], c["median_ms"])
            if i > 0:
                cell += " %s %s lost %.3f" % (speedup(c["speedup_fastest"]), speedup(c["speedup_median"]),
                                              c["lost_ms"])
            line += " | " + cell
        print(line)


def print_markdown(r):
    print("%s, batch %s (micro-batch %s), %s: fastest (median) of each trace's steps" %
          (r["model"], r["batch"], r["micro_batch"], r["cpu"]))
    print()
    head = "| scope |" + "".join(" %s ms |" % label(t) for t in r["traces"])
    head += "".join(" speedup | lost ms |" for _ in r["traces"][1:])
    print(head)
    print("| --- |" + " ---: |" * (len(r["traces"]) + 2 * (len(r["traces"]) - 1)))
    for row in r["rows"]:
        line = "| %s %s |" % (row["layer"], row["phase"])
        line += "".join(" %.3f (%.3f) |" % (c["fastest_ms"], c["median_ms"]) for c in row["traces"])
        line += "".join(" %s (%s) | %.3f |" % (speedup(c["speedup_fastest"]), speedup(c["speedup_median"]),
                                               c["lost_ms"]) for c in row["traces"][1:])
        print(line)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("traces", nargs="+", help="files written by stride bench --trace; the first is the reference")
    ap.add_argument("--markdown", action="store_true", help="print a table for docs/performance.md")
    ap.add_argument("--json", action="store_true", help="print the comparison as JSON")
    ap.add_argument("--pool", action="store_true",
                    help="count traces at the same thread count and precision as one (runs alternated on a "
                    "noisy machine)")
    args = ap.parse_args(argv)
    traces = [load(p) for p in args.traces]
    check_same_run(traces)
    r = compare(pool(traces) if args.pool else traces)
    if args.json:
        print(json.dumps(r, indent=1))
    elif args.markdown:
        print_markdown(r)
    else:
        print_text(r)


if __name__ == "__main__":
    main(sys.argv[1:])

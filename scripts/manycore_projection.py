#!/usr/bin/env python3
"""Projects a training step onto 4-128 cores from a one-thread trace (`stride bench --trace FILE`).

The trace holds every parallel loop of each recorded step (its kind, index count, grain and each body call's
start and duration) and the scopes (layer and phase: forward, backward, loss, optimizer, ...) that own the
loops and the serial time between them. This replays it:

  * serial time (everything outside a loop, and each loop's own bookkeeping) stays serial;
  * a parallel_chunks loop keeps its fixed chunks, with their measured times;
  * a parallel_for loop is split the finest way TBB's blocked_range can split it (halves, until a block is no
    longer than the grain), each block costing its share of the measured time by index count;
  * the pieces of a loop go, in index order, each to the worker that is free first (greedy list scheduling),
    and the loop ends when its last piece does (plus --loop-overhead-us of fork/join cost when it runs on
    more than one worker).

Each item takes the fastest of the recorded steps (other load on a shared machine only ever slows a run).
What it leaves out: memory bandwidth, shared caches (L3, and L2 on SMT siblings), NUMA, SMT, frequency
changes with the number of busy cores, and TBB's real splitting (auto_partitioner splits less finely unless
work is stolen). So it is an upper bound of what the scheduler's chunking allows, not a prediction of a
machine's speed.

With --node-cores C it also splits C cores into ranks x threads: R ranks (mpirun -np R) each run 1/R of the
step's micro-batches on C/R threads, plus once-per-step work (exact sum, optimizer) on every rank, plus the
exact allreduce of the gradients (--allreduce-ms-per-mb, by default the shared-memory figure of
docs/cluster.md: 1.0 ms for cifar10_quick's 1.16 MB).

    stride bench --model cifar10_quick --batch 128 --steps 10 --trace c128.json
    scripts/manycore_projection.py c128.json [more traces] [--markdown] [--node-cores 64]
"""

import argparse
import json
import sys

DEFAULT_WORKERS = [1, 2, 4, 8, 16, 32, 64, 128]


def leaves(n, grain):
    """Block sizes of blocked_range(0, n, grain) split in halves while a block is longer than the grain."""
    out = []
    stack = [n]
    while stack:
        size = stack.pop()
        if size > grain:  # blocked_range splits at begin + size / 2
            stack.append(size - size // 2)
            stack.append(size // 2)
        else:
            out.append(size)
    return out


def makespan(durations, workers):
    """Greedy list scheduling in order: each piece to the worker free first."""
    if workers <= 1 or len(durations) <= 1:
        return sum(durations)
    free = [0.0] * min(workers, len(durations))
    for d in durations:
        i = min(range(len(free)), key=lambda w: free[w])
        free[i] += d
    return max(free)


class Item:
    """One part of a step: a loop's pieces, or serial time, owned by (layer, phase) of micro-batch mb."""

    __slots__ = ("key", "mb", "pieces", "serial")

    def __init__(self, key, mb, pieces, serial):
        self.key, self.mb, self.pieces, self.serial = key, mb, pieces, serial

    def time(self, workers, overhead):
        if not self.pieces:
            return self.serial
        t = makespan(self.pieces, workers)
        if workers > 1 and len(self.pieces) > 1:
            t += overhead
        return t + self.serial


def step_items(step):
    """A step as Items in time order: each loop, and each stretch of serial time between events."""
    scopes = step["scopes"]
    events = []  # (time, order, kind, index); closes sort before opens at one instant
    for i, s in enumerate(scopes):
        events.append((s["start_us"], 1, "open", i))
        events.append((s["end_us"], 0, "close", i))
    for i, l in enumerate(step["loops"]):
        events.append((l["start_us"], 2, "loop", i))
    events.append((step["duration_us"], 3, "end", -1))
    events.sort(key=lambda e: (e[0], e[1]))

    def owner(scope):
        if scope < 0:
            return ("step", "other"), -1
        s = scopes[scope]
        return (s["layer"], s["phase"]), s["micro_batch"]

    items, stack, t = [], [], 0.0
    for time, _, kind, index in events:
        if kind == "loop":
            l = step["loops"][index]
            if time > t:
                key, mb = owner(stack[-1] if stack else -1)
                items.append(Item(key, mb, None, time - t))
            busy = sum(task["duration_us"] for task in l["tasks"])
            if l["kind"] == "chunks":
                pieces = [task["duration_us"] for task in l["tasks"]]
            else:
                sizes = leaves(l["n"], max(1, l["grain"]))
                pieces = [busy * size / l["n"] for size in sizes]
            key, mb = owner(l["scope"])
            items.append(Item(key, mb, pieces, max(0.0, l["end_us"] - l["start_us"] - busy)))
            t = max(t, l["end_us"])
            continue
        if time > t:
            key, mb = owner(stack[-1] if stack else -1)
            items.append(Item(key, mb, None, time - t))
            t = time
        if kind == "open":
            stack.append(index)
        elif kind == "close" and stack and stack[-1] == index:
            stack.pop()
    return items


def fastest(steps):
    """Per item, the fastest of the steps (all steps must have the same items); else the median step."""
    runs = [step_items(s) for s in steps]
    shape = [(i.key, i.mb, len(i.pieces) if i.pieces else 0) for i in runs[0]]
    if all([(i.key, i.mb, len(i.pieces) if i.pieces else 0) for i in r] == shape for r in runs[1:]):
        out = []
        for k, first in enumerate(runs[0]):
            if first.pieces:
                pieces = [min(r[k].pieces[p] for r in runs) for p in range(len(first.pieces))]
            else:
                pieces = None
            out.append(Item(first.key, first.mb, pieces, min(r[k].serial for r in runs)))
        return out
    order = sorted(range(len(steps)), key=lambda i: steps[i]["duration_us"])
    return runs[order[len(order) // 2]]


def step_time(items, workers, overhead, micro_batches=None):
    """Projected step time; micro_batches: keep only those micro-batches (and once-per-step work)."""
    return sum(i.time(workers, overhead) for i in items if micro_batches is None or i.mb < micro_batches)


def limiter(items, workers, overhead):
    """The (layer, phase) that loses the most time against a perfect 1/P split, and why."""
    lost, serial, widest, narrowest = {}, {}, {}, {}
    for i in items:
        t1 = i.time(1, 0)
        tp = i.time(workers, overhead)
        lost[i.key] = lost.get(i.key, 0.0) + tp - t1 / workers
        serial[i.key] = serial.get(i.key, 0.0) + (i.serial if i.pieces else tp)
        if i.pieces:
            narrowest[i.key] = min(narrowest.get(i.key, len(i.pieces)), len(i.pieces))
            widest[i.key] = max(widest.get(i.key, 0), len(i.pieces))
    key = max(lost, key=lambda k: lost[k])
    total = step_time(items, workers, overhead)
    share = lost[key] / total if total > 0 else 0.0
    layer, phase = key
    if key not in narrowest or serial[key] > 0.5 * lost[key]:
        why = "serial"
    elif narrowest[key] == widest[key]:
        why = "%d pieces" % narrowest[key]
    else:
        why = "%d-%d pieces" % (narrowest[key], widest[key])
    return {"layer": layer, "phase": phase, "why": why, "lost_share": share}


def project(trace, workers, overhead, node_cores, allreduce_ms_per_mb):
    items = fastest(trace["steps"])
    t1 = step_time(items, 1, overhead)
    rows = []
    for p in workers:
        tp = step_time(items, p, overhead)
        rows.append({"workers": p, "step_ms": tp / 1e3, "speedup": t1 / tp, "efficiency": t1 / tp / p,
                     "limiter": limiter(items, p, overhead)})
    splits = []
    m = trace.get("micro_batches", 1)
    mb_bytes = trace.get("learnable", 0) * 8 / 1e6  # the exact sum's int64 per gradient
    if node_cores:
        for ranks in range(1, node_cores + 1):
            if node_cores % ranks or m % ranks:
                continue
            threads = node_cores // ranks
            t = step_time(items, threads, overhead, micro_batches=m // ranks)
            if ranks > 1:
                t += allreduce_ms_per_mb * mb_bytes * 1e3
            splits.append({"ranks": ranks, "threads": threads, "step_ms": t / 1e3, "speedup": t1 / t})
    return {"model": trace.get("model", "?"), "batch": trace.get("batch", 0),
            "micro_batch": trace.get("micro_batch", 0), "cpu": trace.get("cpu", "?"),
            "one_thread_ms": t1 / 1e3, "rows": rows, "splits": splits}


def print_text(results):
    for r in results:
        print("%s batch %d (micro-batch %d), 1 thread %.2f ms/step on %s" %
              (r["model"], r["batch"], r["micro_batch"], r["one_thread_ms"], r["cpu"]))
        for row in r["rows"]:
            lim = row["limiter"]
            print("  %4d workers: %6.2fx (%3.0f%%)  limited by %s %s (%s, %.0f%% of the step lost)" %
                  (row["workers"], row["speedup"], 100 * row["efficiency"], lim["layer"], lim["phase"], lim["why"],
                   100 * lim["lost_share"]))
        for s in r["splits"]:
            print("  %3d ranks x %3d threads: %6.2fx" % (s["ranks"], s["threads"], s["speedup"]))


def print_markdown(results, workers, node_cores):
    shown = [p for p in workers if p > 1]
    print("| model | batch | 1-thread ms | " + " | ".join("%d" % p for p in shown) + " | limits at 16 |")
    print("| --- | ---: | ---: | " + " | ".join("---:" for _ in shown) + " | --- |")
    for r in results:
        cells = ["%.1fx (%.0f%%)" % (row["speedup"], 100 * row["efficiency"]) for row in r["rows"] if row["workers"] > 1]
        at16 = [row for row in r["rows"] if row["workers"] == 16]
        lim = at16[0]["limiter"] if at16 else r["rows"][-1]["limiter"]
        print("| %s | %d | %.1f | %s | %s %s (%s) |" % (r["model"], r["batch"], r["one_thread_ms"], " | ".join(cells),
                                                      lim["layer"], lim["phase"], lim["why"]))
    if node_cores:
        print()
        cols = sorted({(s["ranks"], s["threads"]) for r in results for s in r["splits"]})
        print("| model | batch | " + " | ".join("%d x %d" % c for c in cols) + " | best |")
        print("| --- | ---: | " + " | ".join("---:" for _ in cols) + " | --- |")
        for r in results:
            by = {(s["ranks"], s["threads"]): s["speedup"] for s in r["splits"]}
            best = max(r["splits"], key=lambda s: s["speedup"])
            print("| %s | %d | %s | %d x %d |" % (r["model"], r["batch"],
                                                  " | ".join("%.1fx" % by[c] if c in by else "-" for c in cols),
                                                  best["ranks"], best["threads"]))


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("traces", nargs="+", help="files written by stride bench --trace")
    ap.add_argument("--workers", default=",".join(str(w) for w in DEFAULT_WORKERS),
                    help="worker counts to project (comma-separated)")
    ap.add_argument("--loop-overhead-us", type=float, default=0.0,
                    help="fork/join cost added to every loop that runs on more than one worker")
    ap.add_argument("--node-cores", type=int, default=0, help="also split this many cores into ranks x threads")
    ap.add_argument("--allreduce-ms-per-mb", type=float, default=1.0 / 1.16,
                    help="exact allreduce cost per MB of int64 gradients (docs/cluster.md, shared memory)")
    ap.add_argument("--markdown", action="store_true", help="print tables for docs/performance.md")
    ap.add_argument("--json", action="store_true", help="print the projection as JSON")
    args = ap.parse_args(argv)
    workers = sorted({int(w) for w in args.workers.split(",")} | {1})
    results = []
    for path in args.traces:
        with open(path) as f:
            trace = json.load(f)
        if trace.get("format") != "stride-trace" or not trace.get("steps"):
            sys.exit("%s: not a stride trace with steps (format %r)" % (path, trace.get("format")))
        if trace.get("threads", 1) != 1:
            sys.exit("%s: recorded at %s threads, which keeps the scopes but not the loops; the projection needs "
                     "a 1-thread trace (stride bench --trace FILE without --threads, or --threads 1; "
                     "scripts/thread_scaling.py compares the two)" % (path, trace.get("threads")))
        results.append(project(trace, workers, args.loop_overhead_us, args.node_cores, args.allreduce_ms_per_mb))
    results.sort(key=lambda r: (r["model"], r["batch"]))
    if args.json:
        print(json.dumps(results, indent=1))
    elif args.markdown:
        print_markdown(results, workers, args.node_cores)
    else:
        print_text(results)


if __name__ == "__main__":
    main(sys.argv[1:])

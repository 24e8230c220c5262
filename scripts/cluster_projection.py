#!/usr/bin/env python3
"""Alpha-beta projection of data-parallel stride training (docs/cluster.md, "Scaling to many nodes").

One step on N nodes, each computing B samples (weak scaling: global batch N*B), gradients in k buckets of
S_j bytes of int64 (the buckets ExactSum cuts at --bucket-mb, in backward order):

    T_ring(S)  = 2 (N-1) alpha + 2 (N-1)/N * S / beta               ring allreduce of S bytes
    T_bucket_j = T_ring(S_j) + 2 (N-1) alpha                        + the exponents' MPI_MAX (a few bytes),
                                                                    a ring too

stride runs its allreduces as OpenMPI's ring (cluster/allreduce_algorithm.hpp), so this is the algorithm that
runs, not a bound; its latency, 4 (N-1) alpha per bucket, dominates from some hundred nodes on.
    T_comm     = sum_j T_bucket_j
    T_exposed  = T_comm                                             without overlap
               = T_bucket_last + max(0, sum_{j<last} T_bucket_j - h T_compute)
                                                                    with overlap: every bucket but the last
                                                                    (the first layers, finished last) can go
                                                                    during the backward of the node's last
                                                                    micro-batch, a share h of the step
    T_step     = T_compute + T_exposed,   efficiency = T_compute / T_step

T_compute is measured (stride train here: 1 process x 2 threads, B = 128). alpha and beta: the testbed rows
come from bench/network_model.json (scripts/network_model.py, measured on namespace hosts); the 25 and 100 Gb/s
rows are literature constants.

Strong scaling (--strong): a fixed global batch G over N nodes, each computing G/N samples (micro-batches of
16, so N <= G/16): T_compute(N) = T_compute(1) / N, efficiency = T_step(1) / (N T_step(N)).

Usage:
    scripts/cluster_projection.py --stride build/stride --model cifar10_quick --compute-ms 180 --markdown
    scripts/cluster_projection.py --stride build/stride --model resnet20 --compute-ms 620 --strong 1024 --markdown
"""
import argparse
import json
import math
import os
import subprocess


def buckets_of(stride, model, bucket_mb, segment=1 << 20):
    """Element counts of the exact sum's buckets, as framework/exact_sum.cpp cuts them."""
    spec = json.loads(subprocess.check_output([stride, "summary", "--model", model, "--json"]))
    sizes = [math.prod(p["shape"]) for p in spec["params"] if p["role"] == "learnable"]
    segments = []
    for n in sizes:
        segments += [min(segment, n - b) for b in range(0, n, segment)]
    limit = max(1, int(bucket_mb * (1 << 20) / 8))
    buckets, filled = [], 0
    for n in reversed(segments):
        if filled and filled + n > limit:
            buckets.append(filled)
            filled = 0
        filled += n
    buckets.append(filled)
    return sum(sizes), buckets


def t_bucket(n, size_bytes, alpha, beta):
    if n == 1:
        return 0.0
    return 4 * (n - 1) * alpha + 2 * (n - 1) / n * size_bytes / beta


LITERATURE = [  # name, alpha (s), beta (bytes/s): 90% of the line rate
    ("25 Gb/s (literature)", 20e-6, 0.9 * 25e9 / 8),
    ("100 Gb/s (literature)", 3e-6, 0.9 * 100e9 / 8),
]


def networks(model_json):
    """The measured testbed networks of bench/network_model.json, then the literature ones."""
    rows = []
    if model_json and os.path.exists(model_json):
        with open(model_json) as f:
            fits = json.load(f)["fits"]
        names = {"none": "veth (measured)", "1gbit": "1 Gbit/s tbf (measured)", "100mbit": "100 Mbit/s tbf (measured)"}
        for key, name in names.items():
            if key in fits:
                rows.append((name, fits[key]["alpha_us"] * 1e-6, fits[key]["beta_MB_per_s"] * 1e6))
    return rows + LITERATURE


def step_times(n, buckets, alpha, beta, t_c, hidden):
    """(T_comm, step without overlap, step with overlap) in seconds."""
    times = [t_bucket(n, 8 * b, alpha, beta) for b in buckets]
    comm = sum(times)
    return comm, t_c + comm, t_c + times[-1] + max(0.0, sum(times[:-1]) - hidden * t_c)


def strong(a, buckets, nets):
    """Strong scaling at a fixed global batch: compute per node shrinks as 1/N, communication does not."""
    per_sample = a.compute_ms / 1e3 / a.compute_batch
    t1 = per_sample * a.strong
    nodes = [n for n in (int(x) for x in a.strong_nodes.split(",")) if n <= a.strong // 16]
    print(f"\nstrong scaling, global batch {a.strong} (micro-batch 16: at most {a.strong // 16} nodes), "
          f"T_compute(1) = {1e3 * t1:.0f} ms; step ms with overlap (efficiency T(1) / (N T(N)))\n")
    if a.markdown:
        print("| nodes | T_compute ms | " + " | ".join(name for name, _, _ in nets) + " |")
        print("| ---: | ---: |" + " ---: |" * len(nets))
    crossed = {name: None for name, _, _ in nets}
    for n in nodes:
        t_c = t1 / n
        # What can hide the exchange: the backward (2/3) of the node's last of its G/(16 N) micro-batches.
        hidden = 2 / 3 / math.ceil(a.strong / 16 / n)
        cells = []
        for name, alpha, beta in nets:
            comm, _, overlapped = step_times(n, buckets, alpha, beta, t_c, hidden)
            if crossed[name] is None and comm > t_c:
                crossed[name] = n
            cells.append("%.1f (%.0f%%)" % (1e3 * overlapped, 100 * t1 / (n * overlapped)))
        if a.markdown:
            print(f"| {n} | {1e3 * t_c:.1f} | " + " | ".join(cells) + " |")
        else:
            print(f"{n:4d} {1e3 * t_c:9.1f}  " + "  ".join(f"{c:>16s}" for c in cells))
    if a.markdown:
        print("| comm > compute from | | " + " | ".join(
            f"{crossed[name]} nodes" if crossed[name] else "-" for name, _, _ in nets) + " |")
    else:
        print("communication exceeds compute from: " + ", ".join(
            f"{name}: {crossed[name] or '-'}" for name, _, _ in nets))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stride", default="build/stride")
    p.add_argument("--model", required=True)
    p.add_argument("--compute-ms", type=float, required=True, help="measured compute time per step on one node")
    p.add_argument("--bucket-mb", type=float, default=1.0)
    p.add_argument("--hidden", type=float, default=1 / 12,
                   help="share of the step that can hide communication: the last micro-batch's backward "
                        "(2/3 of 1 of 8 micro-batches)")
    p.add_argument("--nodes", default="8,16,32,64,128,256,512,1024")
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--network-model", default="bench/network_model.json",
                   help="measured alpha and beta (scripts/network_model.py); missing: literature rows only")
    p.add_argument("--compute-batch", type=int, default=128, help="the batch --compute-ms was measured at")
    p.add_argument("--strong", type=int, default=0, help="a fixed global batch: strong scaling instead")
    p.add_argument("--strong-nodes", default="1,2,4,8,16,32,64")
    a = p.parse_args()
    nets = networks(a.network_model)
    params, buckets = buckets_of(a.stride, a.model, a.bucket_mb)
    if a.strong:
        print(f"{a.model}: {params} parameters, buckets of {', '.join(str(b) for b in buckets)} elements, "
              f"T_compute {a.compute_ms:.0f} ms per {a.compute_batch} samples, h = {a.hidden:.3f}")
        strong(a, buckets, nets)
        return
    t_c = a.compute_ms / 1e3
    print(f"{a.model}: {params} parameters = {8 * params / 1e6:.3f} MB of int64, buckets of "
          f"{', '.join(str(b) for b in buckets)} elements, T_compute {a.compute_ms:.0f} ms, h = {a.hidden:.3f}")
    if a.markdown:
        print()
        print("| nodes | network | T_comm ms | step ms, no overlap | efficiency | step ms, overlap | efficiency |")
        print("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for n in [int(x) for x in a.nodes.split(",")]:
        for name, alpha, beta in nets:
            comm, plain, overlapped = step_times(n, buckets, alpha, beta, t_c, a.hidden)
            if a.markdown:
                print("| %d | %s | %.2f | %.1f | %.1f%% | %.1f | %.1f%% |" % (
                    n, name, 1e3 * comm, 1e3 * plain, 100 * t_c / plain, 1e3 * overlapped, 100 * t_c / overlapped))
            else:
                print("%5d  %-9s comm %8.2f ms  step %8.1f ms (%5.1f%%)  overlapped %8.1f ms (%5.1f%%)" % (
                    n, name, 1e3 * comm, 1e3 * plain, 100 * t_c / plain, 1e3 * overlapped, 100 * t_c / overlapped))


if __name__ == "__main__":
    main()

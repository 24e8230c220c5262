#!/usr/bin/env python3
"""Alpha-beta projection of data-parallel stride training (docs/cluster.md, "Scaling to many nodes").

One step on N nodes, each computing B samples (weak scaling: global batch N*B), gradients in k buckets of
S_j bytes of int64 (the buckets ExactSum cuts at --bucket-mb, in backward order):

    T_ring(S)  = 2 (N-1) alpha + 2 (N-1)/N * S / beta               ring allreduce of S bytes
    T_bucket_j = T_ring(S_j) + ceil(log2 N) alpha                   + the exponents' MPI_MAX (a few bytes)
    T_comm     = sum_j T_bucket_j
    T_exposed  = T_comm                                             without overlap
               = T_bucket_last + max(0, sum_{j<last} T_bucket_j - h T_compute)
                                                                    with overlap: every bucket but the last
                                                                    (the first layers, finished last) can go
                                                                    during the backward of the node's last
                                                                    micro-batch, a share h of the step
    T_step     = T_compute + T_exposed,   efficiency = T_compute / T_step

T_compute is measured (stride train here: 1 process x 2 threads, B = 128). Usage:
    scripts/cluster_projection.py --stride build/stride --model cifar10_quick --compute-ms 160 --markdown
"""
import argparse
import json
import math
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
    return 2 * (n - 1) * alpha + 2 * (n - 1) / n * size_bytes / beta + math.ceil(math.log2(n)) * alpha


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
    a = p.parse_args()
    networks = [  # name, alpha (s), beta (bytes/s): 90% of the line rate
        ("25 Gb/s", 20e-6, 0.9 * 25e9 / 8),
        ("100 Gb/s", 3e-6, 0.9 * 100e9 / 8),
    ]
    params, buckets = buckets_of(a.stride, a.model, a.bucket_mb)
    t_c = a.compute_ms / 1e3
    print(f"{a.model}: {params} parameters = {8 * params / 1e6:.3f} MB of int64, buckets of "
          f"{', '.join(str(b) for b in buckets)} elements, T_compute {a.compute_ms:.0f} ms, h = {a.hidden:.3f}")
    if a.markdown:
        print()
        print("| nodes | network | T_comm ms | step ms, no overlap | efficiency | step ms, overlap | efficiency |")
        print("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for n in [int(x) for x in a.nodes.split(",")]:
        for name, alpha, beta in networks:
            times = [t_bucket(n, 8 * b, alpha, beta) for b in buckets]
            comm = sum(times)
            plain = t_c + comm
            overlapped = t_c + times[-1] + max(0.0, sum(times[:-1]) - a.hidden * t_c)
            if a.markdown:
                print("| %d | %s | %.2f | %.1f | %.1f%% | %.1f | %.1f%% |" % (
                    n, name, 1e3 * comm, 1e3 * plain, 100 * t_c / plain, 1e3 * overlapped, 100 * t_c / overlapped))
            else:
                print("%5d  %-9s comm %8.2f ms  step %8.1f ms (%5.1f%%)  overlapped %8.1f ms (%5.1f%%)" % (
                    n, name, 1e3 * comm, 1e3 * plain, 100 * t_c / plain, 1e3 * overlapped, 100 * t_c / overlapped))


if __name__ == "__main__":
    main()

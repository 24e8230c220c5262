#!/usr/bin/env python3
"""Measures the network model's alpha and beta on the testbed (docs/cluster.md, "The network model, measured").

For each link rate (uncapped veth, 1 Gbit/s, 100 Mbit/s with tc tbf) and 2, 3 and 4 namespace hosts
(cluster/testbed/testbed, one process per host, OpenMPI over TCP), runs `stride bench --comm --json` for a
few message sizes and fits, per rate, the cost of the exchange as stride runs it: OpenMPI's ring
(cluster/allreduce_algorithm.hpp), twice per bucket (the exponents' MPI_MAX, a few bytes, then the int64
MPI_SUM of S bytes), each 2 (N-1) steps of S/N bytes:

    T(N, S) = 4 (N-1) alpha + 2 (N-1)/N * S / beta

A time is the slowest process's (what a step waits for), the fastest of the bench's repeats. alpha and beta
are fitted on the 2-host points: the link's constants, when each process has a core (3 and 4 processes share
this machine's 2 cores; docs/cluster.md says what that costs). The fit minimizes relative error, so small and
large messages count alike. Also measures training steps per second on 1, 2 and 3 hosts at a fixed global
batch (--steps). Writes bench/network_model.json. Run as root from the repository:

    python3 scripts/network_model.py --stride build/stride            # about 5 minutes here
    python3 scripts/network_model.py --merge run1.json run2.json ...  # several runs: the fastest of them per
                                                                      # point is fitted, their spread kept
"""
import argparse
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time

TESTBED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cluster", "testbed", "testbed")
RATES = ["none", "1gbit", "100mbit"]
RATE_BITS = {"1gbit": 1e9, "100mbit": 1e8}


def ring_terms(n, size_bytes):
    """(latency count, bytes over the bandwidth) of one exact allreduce on n processes: two rings (the
    exponents' MPI_MAX, a few bytes, and the int64 MPI_SUM) of 2 (n-1) steps each."""
    return 4 * (n - 1), 2 * (n - 1) / n * size_bytes


def predict(n, size_bytes, alpha, beta):
    if n == 1:
        return 0.0
    a, b = ring_terms(n, size_bytes)
    return a * alpha + b / beta


def fit(points):
    """alpha (s) and beta (bytes/s) minimizing the relative error over points of (n, bytes, seconds)."""
    rows = []
    for n, size, t in points:
        a, b = ring_terms(n, size)
        rows.append((a / t, b / t))  # each row: a/t * alpha + b/t * (1/beta) ~ 1
    saa = sum(r[0] * r[0] for r in rows)
    sab = sum(r[0] * r[1] for r in rows)
    sbb = sum(r[1] * r[1] for r in rows)
    sa = sum(r[0] for r in rows)
    sb = sum(r[1] for r in rows)
    det = saa * sbb - sab * sab
    alpha = (sa * sbb - sb * sab) / det
    inv_beta = (saa * sb - sab * sa) / det
    if alpha < 0:  # latency lost in the noise: bandwidth alone
        alpha, inv_beta = 0.0, sb / sbb
    if inv_beta <= 0:
        inv_beta, alpha = 1e-12, sa / saa
    return alpha, 1 / inv_beta


class Testbed:
    def __init__(self, hosts):
        out = subprocess.run([TESTBED, "up", str(hosts)], check=True, capture_output=True, text=True,
                             env=dict(os.environ, TESTBED_OWNER=str(os.getpid()))).stdout
        self.env = dict(os.environ)
        for line in out.splitlines():
            if line.startswith("export ") and "=" in line:
                k, v = line[7:].split("=", 1)
                self.env[k] = v.strip('"')
        self.hosts = hosts

    def rate(self, rate):
        subprocess.run([TESTBED, "rate", rate], check=True, env=self.env)

    def mpirun(self, n, args, attempts=3):
        """stdout of `testbed mpirun -np n --map-by node stride ...`; relaunches a start-up that died."""
        for _ in range(attempts):
            r = subprocess.run([TESTBED, "mpirun", "-np", str(n), "--map-by", "node"] + args, env=self.env,
                               capture_output=True, text=True)
            if r.returncode == 0:
                return r.stdout
            print("  launch failed, retrying:", r.stderr.strip().splitlines()[-1:] or r.stdout[-200:], file=sys.stderr)
        raise RuntimeError(f"mpirun failed {attempts} times: {r.stdout}\n{r.stderr}")

    def close(self):
        subprocess.run([TESTBED, "down", self.env["TESTBED"]], check=False)


def bench_comm(bed, stride, n, elements, repeats):
    out = bed.mpirun(n, [stride, "bench", "--comm", "--json", "--elements", str(elements), "--steps", str(repeats)])
    return json.loads([line for line in out.splitlines() if line.startswith("{")][-1])


def train_steps_per_s(bed, stride, n, data, batch, limit, threads):
    with tempfile.TemporaryDirectory() as run:
        bed.mpirun(n, [stride, "train", "--model", "cifar10_quick", "--data", data, "--epochs", "1", "--batch",
                       str(batch), "--limit-train", str(limit), "--limit-test", "100", "--threads", str(threads),
                       "--progress", "none", "--checkpoint-epochs", "0", "--out", run])
        with open(os.path.join(run, "metrics.jsonl")) as f:
            epoch = [json.loads(line) for line in f if '"epoch"' in line][-1]
        return epoch["img_per_s"] / batch


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stride", default="build/stride")
    p.add_argument("--hosts", default="2,3,4")
    p.add_argument("--elements", default="2048,32768,145578,272474",
                   help="message sizes in int64 elements (145578: cifar10_quick's gradient, 272474: resnet20's)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--data", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared",
                                                  "data", "cifar10-sample"))
    p.add_argument("--steps", action="store_true", help="also measure training steps/s on 1, 2 and 3 hosts")
    p.add_argument("--out", default="bench/network_model.json")
    p.add_argument("--refit", action="store_true", help="fit the points already in --out again, measure nothing")
    p.add_argument("--merge", nargs="+", metavar="JSON",
                   help="combine the points of several runs (their fastest per point; the spread kept), measure nothing")
    a = p.parse_args()
    stride = os.path.abspath(a.stride)
    sizes = [int(x) for x in a.elements.split(",")]
    points = []
    previous = {}
    if a.refit:
        with open(a.out) as f:
            previous = json.load(f)
        points = previous["points"]
    if a.merge:
        runs = []
        for path in a.merge:
            with open(path) as f:
                runs.append(json.load(f))
        previous = dict(runs[-1])
        previous.pop("train", None)
        for r in runs:  # a run that measured training (--steps) keeps it
            if "train" in r:
                previous["train"] = r["train"]
        by_key = {}
        for r in runs:
            for q in r["points"]:
                by_key.setdefault((q["rate"], q["hosts"], q["elements"]), []).append(q)
        for (rate, hosts, elements), qs in by_key.items():
            mins = sorted(q["exact_min_ms"] for q in qs)
            points.append({"rate": rate, "hosts": hosts, "elements": elements, "bytes": 8 * elements,
                           "exact_ms": min(q["exact_ms"] for q in qs), "exact_min_ms": mins[0],
                           "runs_exact_min_ms": mins})
        previous["runs"] = len(runs)
    for n in ([] if a.refit or a.merge else [int(x) for x in a.hosts.split(",")]):
        bed = Testbed(n)
        try:
            for rate in RATES:
                bed.rate(rate)
                for e in sizes:
                    r = bench_comm(bed, stride, n, e, a.repeats)
                    points.append({"rate": rate, "hosts": n, "elements": e, "bytes": 8 * e,
                                   "exact_ms": r["exact_ms"], "exact_min_ms": r["exact_min_ms"]})
                    print(f"{rate:8s} {n} hosts {e:7d} elements: {r['exact_ms']:8.2f} ms", flush=True)
        finally:
            bed.close()
    fits = {}
    for rate in RATES:
        # The fastest repeat: what the link allows, the least disturbed by other jobs on this machine.
        pts = [(q["hosts"], q["bytes"], q["exact_min_ms"] / 1e3) for q in points if q["rate"] == rate and q["hosts"] == 2]
        alpha, beta = fit(pts)
        fits[rate] = {"alpha_us": alpha * 1e6, "beta_MB_per_s": beta / 1e6,
                      "beta_share_of_rate": beta * 8 / RATE_BITS[rate] if rate in RATE_BITS else None}
        for q in points:
            if q["rate"] == rate:
                q["predicted_ms"] = 1e3 * predict(q["hosts"], q["bytes"], alpha, beta)
                q["deviation"] = q["exact_min_ms"] / q["predicted_ms"] - 1
    result = {"what": "exact allreduce (exponent MPI_MAX + int64 MPI_SUM) across testbed hosts, one process per "
                      "host, OpenMPI over TCP, ring (cluster/allreduce_algorithm.hpp); stride bench --comm --json, the "
                      "slowest process per repeat; exact_min_ms (the fastest repeat) is fitted and compared",
              "cpu": platform.processor() or platform.machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "model": "T(N,S) = 4(N-1) alpha + 2(N-1)/N S / beta (two rings), fitted on the 2-host points",
              "fits": fits, "points": points}
    if a.refit or a.merge:
        for key in ("cpu", "date", "train", "runs"):
            if key in previous:
                result[key] = previous[key]
    if a.steps:
        bed = Testbed(3)
        try:
            steps = []
            for n in (1, 2, 3):
                s = train_steps_per_s(bed, stride, n, os.path.abspath(a.data), 256, 4096, 1)
                steps.append({"hosts": n, "batch": 256, "samples": 4096, "threads_per_host": 1, "steps_per_s": s})
                print(f"train: {n} hosts: {s:.2f} steps/s", flush=True)
            result["train"] = steps
        finally:
            bed.close()
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    for rate, f_ in fits.items():
        print(f"{rate}: alpha {f_['alpha_us']:.1f} us, beta {f_['beta_MB_per_s']:.1f} MB/s")
    print("wrote", a.out)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Measures the network model's alpha and beta on the testbed (docs/cluster.md, "The network model, measured").

For each link rate (uncapped veth, 1 Gbit/s, 100 Mbit/s with tc tbf) and 2, 3 and 4 namespace hosts
(cluster/testbed/testbed, one process per host, OpenMPI over TCP), runs `stride bench --comm --json` for a
few message sizes and fits, per rate, the cost of the exchange as stride runs it: OpenMPI's ring
(cluster/allreduce_algorithm.hpp), twice per bucket (the exponents' MPI_MAX, a few bytes, then the int64
MPI_SUM of S bytes), each 2 (N-1) steps of S/N bytes:

    T(N, S) = 4 (N-1) alpha + 2 (N-1)/N * S / beta

A time is the slowest process's (what a step waits for), the fastest of the bench's repeats. The constants
come from the 2-host points, where each process has a core of this 2-core machine:
- alpha (and the uncapped veth's beta) from the uncapped link: alpha is the hosts' software (TCP stack,
  wake-ups), which a tbf cap does not change (this kernel has no netem to add latency);
- a capped link's beta from the messages whose bytes per link are at least 4 of tbf's buckets: the bucket
  passes at line rate after an idle moment, so a capped link's time lies between
      T_full_bucket = 4 (N-1) alpha + max(0, L - B) / beta + min(L, B) / beta_veth   and   T(N, S)
  (L = 2 (N-1)/N S bytes per link, B = the testbed's bucket), and a point is compared with that range.
Where the processes outnumber the cores (3 and 4 hosts here) every ring step waits for a process to be woken
on a shared core: those points are predicted with alpha and the veth's beta measured on 2 hosts pinned to one
core (`--bind-to core`: OpenMPI binds each host's process to its first core, the same core here). Fits
minimize relative error, so small and large messages count alike. Also measures training steps per second on
1, 2 and 3 hosts at a fixed global batch (--steps). Writes bench/network_model.json. Run as root from the
repository:

    python3 scripts/network_model.py --stride build/stride            # about 2 minutes here
    python3 scripts/network_model.py --mca btl_tcp_eager_limit 4194304 --out eager.json
                                                                      # OpenMPI parameters for every launch
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
SHARED = "none_one_core"  # the fit of 2 hosts pinned to one core: processes sharing cores


def tbf_bucket(rate):
    """The bucket the testbed gives a capped link (cluster/testbed/testbed, cap): 1 ms of the rate, >= 16 KB."""
    return max(int(RATE_BITS[rate] / 8 / 1000), 16384) if rate in RATE_BITS else 0


def per_link_bytes(n, size_bytes):
    return 2 * (n - 1) / n * size_bytes


def ring_terms(n, size_bytes):
    """(latency count, bytes over the bandwidth) of one exact allreduce on n processes: two rings (the
    exponents' MPI_MAX, a few bytes, and the int64 MPI_SUM) of 2 (n-1) steps each."""
    return 4 * (n - 1), 2 * (n - 1) / n * size_bytes


def predict(n, size_bytes, alpha, beta):
    if n == 1:
        return 0.0
    a, b = ring_terms(n, size_bytes)
    return a * alpha + b / beta


def fit_beta(points, alpha):
    """beta (bytes/s) minimizing the relative error over points of (n, bytes, seconds), alpha given."""
    rows = [(a * alpha / t, b / t) for a, b, t in ((*ring_terms(n, size), t) for n, size, t in points)]
    return sum(r[1] * r[1] for r in rows) / sum(r[1] * (1 - r[0]) for r in rows)


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
    def __init__(self, hosts, mca):
        out = subprocess.run([TESTBED, "up", str(hosts)], check=True, capture_output=True, text=True,
                             env=dict(os.environ, TESTBED_OWNER=str(os.getpid()))).stdout
        self.env = dict(os.environ)
        for line in out.splitlines():
            if line.startswith("export ") and "=" in line:
                k, v = line[7:].split("=", 1)
                self.env[k] = v.strip('"')
        self.hosts = hosts
        self.mca = [arg for key, value in mca for arg in ("--mca", key, value)]

    def rate(self, rate):
        subprocess.run([TESTBED, "rate", rate], check=True, env=self.env)

    def mpirun(self, n, args, attempts=3):
        """stdout of `testbed mpirun -np n --map-by node stride ...`; relaunches a start-up that died."""
        for _ in range(attempts):
            r = subprocess.run([TESTBED, "mpirun", "-np", str(n), "--map-by", "node"] + self.mca + args, env=self.env,
                               capture_output=True, text=True)
            if r.returncode == 0:
                return r.stdout
            print("  launch failed, retrying:", r.stderr.strip().splitlines()[-1:] or r.stdout[-200:], file=sys.stderr)
        raise RuntimeError(f"mpirun failed {attempts} times: {r.stdout}\n{r.stderr}")

    def close(self):
        subprocess.run([TESTBED, "down", self.env["TESTBED"]], check=False)


def bench_comm(bed, stride, n, elements, repeats, extra=()):
    out = bed.mpirun(n, list(extra) + [stride, "bench", "--comm", "--json", "--elements", str(elements), "--steps",
                                       str(repeats)])
    return json.loads([line for line in out.splitlines() if line.startswith("{")][-1])


def train_steps_per_s(bed, stride, n, data, batch, limit, threads):
    with tempfile.TemporaryDirectory() as run:
        bed.mpirun(n, [stride, "train", "--model", "cifar10_quick", "--data", data, "--epochs", "1", "--batch",
                       str(batch), "--limit-train", str(limit), "--limit-test", "100", "--threads", str(threads),
                       "--progress", "none", "--checkpoint-epochs", "0", "--out", run])
        with open(os.path.join(run, "metrics.jsonl")) as f:
            epoch = [json.loads(line) for line in f if '"epoch"' in line][-1]
        return epoch["img_per_s"] / batch


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def deviation(t, low, high):
    """How far a time lies outside the model's range [low, high], relative to the nearer end (0 inside)."""
    return t / high - 1 if t > high else min(0.0, t / low - 1)


def fmt_ms(t):
    return f"{t:.3g}" if t < 10 else f"{t:.1f}" if t < 100 else f"{t:.0f}"


def markdown(points):
    """docs/cluster.md's table: per link and hosts, each size's fastest-slowest run / model (deviations)."""
    sizes = sorted({q["elements"] for q in points})
    names = {"none": "veth, uncapped", "1gbit": "1 Gbit/s", "100mbit": "100 Mbit/s"}
    print("| link | hosts | " + " | ".join(f"{e:,} el. ({8 * e / 1e6:.2g} MB)" for e in sizes) + " |")
    print("| --- | ---: |" + " ---: |" * len(sizes))
    rows = sorted({(RATES.index(q["rate"]), q["hosts"], q.get("cores", "own")) for q in points})
    for r, n, cores in rows:
        cells = []
        for e in sizes:
            q = next(q for q in points if (RATES.index(q["rate"]), q["hosts"], q.get("cores", "own"), q["elements"]) ==
                     (r, n, cores, e))
            runs = q.get("runs_exact_min_ms", [q["exact_min_ms"]])
            low, high = q["predicted_low_ms"], q["predicted_ms"]
            model = fmt_ms(high) if high - low < 0.005 * high else f"{fmt_ms(low)}-{fmt_ms(high)}"
            devs = [100 * deviation(t, low, high) for t in (runs[0], runs[-1])]
            cells.append(f"{fmt_ms(runs[0])}-{fmt_ms(runs[-1])} / {model} ({devs[0]:+.0f}%..{devs[1]:+.0f}%)")
        label = f"{n}, one core" if cores == "one" else f"{n}{' *' if q['shared_cores'] else ''}"
        print(f"| {names[RATES[r]]} | {label} | " + " | ".join(cells) + " |")


def fit_all(points):
    """The model's constants from the 2-host points (see the module's comment)."""
    # The fastest repeat: what the link allows, the least disturbed by other jobs on this machine.
    def two_hosts(rate, cores="own"):
        return [q for q in points if q["rate"] == rate and q["hosts"] == 2 and q.get("cores", "own") == cores]

    def triples(qs):
        return [(q["hosts"], q["bytes"], q["exact_min_ms"] / 1e3) for q in qs]

    fits = {}
    for key, cores in (("none", "own"), (SHARED, "one")):
        pts = triples(two_hosts("none", cores))
        if pts:
            alpha, beta = fit(pts)
            fits[key] = {"alpha_us": alpha * 1e6, "beta_MB_per_s": beta / 1e6}
    if SHARED not in fits:  # a run from before the pinned points: no correction for shared cores
        fits[SHARED] = dict(fits["none"])
    alpha = fits["none"]["alpha_us"] * 1e-6
    for rate in RATES[1:]:
        bucket = tbf_bucket(rate)
        pts = triples(q for q in two_hosts(rate) if per_link_bytes(2, q["bytes"]) >= 4 * bucket)
        beta = fit_beta(pts, alpha)
        fits[rate] = {"alpha_us": alpha * 1e6, "beta_MB_per_s": beta / 1e6, "beta_share_of_rate": beta * 8 / RATE_BITS[rate],
                      "bucket_bytes": bucket}
    return fits


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
    p.add_argument("--mca", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                   help="an OpenMPI parameter for every launch (repeatable), e.g. --mca btl_tcp_eager_limit 4194304")
    p.add_argument("--out", default="bench/network_model.json")
    p.add_argument("--markdown", action="store_true", help="also print docs/cluster.md's table of the points")
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
                by_key.setdefault((q["rate"], q["hosts"], q["elements"], q.get("cores", "own")), []).append(q)
        for (rate, hosts, elements, cores), qs in by_key.items():
            mins = sorted(q["exact_min_ms"] for q in qs)
            points.append({"rate": rate, "hosts": hosts, "cores": cores, "elements": elements, "bytes": 8 * elements,
                           "exact_ms": min(q["exact_ms"] for q in qs), "exact_min_ms": mins[0],
                           "runs_exact_min_ms": mins})
        previous["runs"] = len(runs)
    for n in ([] if a.refit or a.merge else [int(x) for x in a.hosts.split(",")]):
        bed = Testbed(n, a.mca)
        try:
            for rate in RATES:
                bed.rate(rate)
                for e in sizes:
                    for cores in ("own", "one") if n == 2 and rate == "none" else ("own",):
                        extra = ["--bind-to", "core"] if cores == "one" else []
                        # Uncapped, a repeat takes milliseconds and the CPU alone sets its time: more repeats
                        # give the fastest one a better chance of a moment without other jobs.
                        repeats = a.repeats * (8 if rate == "none" else 1)
                        r = bench_comm(bed, stride, n, e, repeats, extra)
                        points.append({"rate": rate, "hosts": n, "cores": cores, "elements": e, "bytes": 8 * e,
                                       "exact_ms": r["exact_ms"], "exact_min_ms": r["exact_min_ms"]})
                        print(f"{rate:8s} {n} hosts ({cores} cores) {e:7d} elements: {r['exact_min_ms']:8.2f} ms",
                              flush=True)
        finally:
            bed.close()
    fits = fit_all(points)
    cores = os.cpu_count()
    for q in points:
        shared = q["hosts"] > cores or q.get("cores") == "one"
        veth = fits[SHARED if shared else "none"]
        alpha, beta_veth = veth["alpha_us"] * 1e-6, veth["beta_MB_per_s"] * 1e6
        beta = fits[q["rate"]]["beta_MB_per_s"] * 1e6 if q["rate"] != "none" else beta_veth
        high = predict(q["hosts"], q["bytes"], alpha, beta)
        link, bucket = per_link_bytes(q["hosts"], q["bytes"]), tbf_bucket(q["rate"])
        low = high - min(link, bucket) * (1 / beta - 1 / beta_veth)
        q["shared_cores"] = shared
        q["predicted_ms"], q["predicted_low_ms"] = 1e3 * high, 1e3 * low
        q["deviation"] = deviation(q["exact_min_ms"], q["predicted_low_ms"], q["predicted_ms"])
    result = {"what": "exact allreduce (exponent MPI_MAX + int64 MPI_SUM) across testbed hosts, one process per "
                      "host, OpenMPI over TCP, ring (cluster/allreduce_algorithm.hpp); stride bench --comm --json, the "
                      "slowest process per repeat; exact_min_ms (the fastest repeat) is fitted and compared",
              "cpu": cpu_name(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "model": "T(N,S) = 4(N-1) alpha + 2(N-1)/N S / beta (two rings); alpha and the veth's beta fitted on "
                       "the uncapped 2-host points, a capped link's beta on its 2-host points with at least 4 tbf "
                       "buckets per link; predicted_low_ms: the bucket full at the start; points where processes "
                       "outnumber cores use the constants of 2 hosts pinned to one core (" + SHARED + ")",
              "mca": dict(a.mca), "fits": fits, "points": points}
    if a.refit or a.merge:
        for key in ("cpu", "date", "train", "runs", "mca"):
            if key in previous:
                result[key] = previous[key]
    if a.steps:
        bed = Testbed(3, a.mca)
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
    for q in points:
        print(f"{q['rate']:8s} {q['hosts']} hosts{' (one core)' if q.get('cores') == 'one' else ''} {q['elements']:7d}: "
              f"{q['exact_min_ms']:8.3f} ms, model {q['predicted_low_ms']:8.3f}-{q['predicted_ms']:8.3f} "
              f"({100 * q['deviation']:+.0f}%)")
    print("wrote", a.out)
    if a.markdown:
        markdown(points)


if __name__ == "__main__":
    main()

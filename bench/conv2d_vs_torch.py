#!/usr/bin/python3
"""Forward+backward time of cifar10_quick's convolutions (conv2: N=100, 32->32, 16x16, 5x5 pad 2) in
PyTorch, next to stride's Conv2d on the same shapes (the skipped doctest case 'conv2d: benchmark*').
Both report the fastest of 20 iterations: the machines are shared, and the minimum is the least disturbed.

Usage: /usr/bin/python3 bench/conv2d_vs_torch.py [path/to/stride_tests]
"""
import subprocess
import sys
import time

import torch

SHAPES = [("conv1", (100, 3, 32, 32), 32), ("conv2", (100, 32, 16, 16), 32), ("conv3", (100, 32, 8, 8), 64)]

for name, shape, k in SHAPES:
    for threads in (1, 2):
        torch.set_num_threads(threads)
        conv = torch.nn.Conv2d(shape[1], k, 5, padding=2)
        x = torch.randn(*shape, requires_grad=True)
        dy = torch.randn(shape[0], k, shape[2], shape[3])
        for _ in range(3):
            conv(x).backward(dy)
        fwd = bwd = 1e30
        for _ in range(20):
            t0 = time.perf_counter()
            y = conv(x)
            t1 = time.perf_counter()
            y.backward(dy)
            t2 = time.perf_counter()
            fwd, bwd = min(fwd, t1 - t0), min(bwd, t2 - t1)
        print(f"torch {name} {shape} -> {k}, {threads} threads: forward {1e3 * fwd:.2f} ms, "
              f"backward {1e3 * bwd:.2f} ms, total {1e3 * (fwd + bwd):.2f} ms")

if len(sys.argv) > 1:
    out = subprocess.run([sys.argv[1], "-tc=conv2d: benchmark*", "--no-skip"], capture_output=True, text=True)
    for line in out.stdout.splitlines():
        if "MESSAGE: stride" in line:
            print(line.split("MESSAGE: ")[1])

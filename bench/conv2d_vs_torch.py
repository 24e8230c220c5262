#!/usr/bin/python3
"""Forward+backward time of cifar10_quick's conv2 (N=100, 32->32, 16x16, 5x5 pad 2) in PyTorch with 2 threads,
next to stride's Conv2d on the same shape (the skipped doctest case 'conv2d: benchmark*').

Usage: /usr/bin/python3 bench/conv2d_vs_torch.py [path/to/stride_tests]
"""
import subprocess
import sys
import time

import torch

torch.set_num_threads(2)
conv = torch.nn.Conv2d(32, 32, 5, padding=2)
x = torch.randn(100, 32, 16, 16, requires_grad=True)
dy = torch.randn(100, 32, 16, 16)
for _ in range(3):
    conv(x).backward(dy)
iters = 20
fwd = bwd = 0.0
for _ in range(iters):
    t0 = time.perf_counter()
    y = conv(x)
    t1 = time.perf_counter()
    y.backward(dy)
    t2 = time.perf_counter()
    fwd += t1 - t0
    bwd += t2 - t1
print(f"torch {torch.__version__} conv2, 2 threads: forward {1e3 * fwd / iters:.2f} ms, "
      f"backward {1e3 * bwd / iters:.2f} ms, total {1e3 * (fwd + bwd) / iters:.2f} ms")

if len(sys.argv) > 1:
    out = subprocess.run([sys.argv[1], "-tc=conv2d: benchmark*", "--no-skip"], capture_output=True, text=True)
    for line in out.stdout.splitlines():
        if "stride conv2" in line:
            print(line.strip())

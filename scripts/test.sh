#!/usr/bin/env bash
# Installs the dependencies, builds stride (Release) and runs every test, then the sanitizer builds, the
# fuzzers and the corpus replay (scripts/sanitizers.sh, docs/reliability.md). The README's test command.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh --test  # --test: PyTorch and h5py for tests/torch_one_step.py, clang-14 for the sanitizers
# -DSTRIDE_WERROR=ON: a warning fails CI, so the build stays warning-free.
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DSTRIDE_WERROR=ON
cmake --build build -j"$(nproc)"
ctest --test-dir build --output-on-failure -j"$(nproc)"
./scripts/sanitizers.sh

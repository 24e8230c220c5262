#!/usr/bin/env bash
# The reliability stages of CI (docs/reliability.md), after scripts/test.sh's Release build and tests:
#   1. build-asan: clang-14 with AddressSanitizer + UndefinedBehaviorSanitizer (and libFuzzer coverage);
#      every unit test but the long runs (label long: test_accuracy, test_mpi_acceptance), and the corpus
#      replays, under both sanitizers;
#   2. the fuzz targets, 10,000 executions each (scripts/fuzz.sh);
#   3. build-tsan: clang-14 with ThreadSanitizer; the threaded kernels' tests.
# Each stage prints its wall time. Needs clang-14 and libclang-rt-14-dev (install-deps.sh --test).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
stage() { echo "== sanitizers: $1"; }
t0=$SECONDS

stage "ASan+UBSan build (build-asan)"
CC=clang-14 CXX=clang++-14 cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DSTRIDE_SANITIZE=address,undefined -DSTRIDE_FUZZ=ON >/dev/null
cmake --build build-asan -j"$jobs" >/dev/null
t1=$SECONDS
stage "ASan+UBSan tests"
# Leaks are not checked: HDF5, TBB and OpenBLAS keep global state until exit. The cluster tests (label
# cluster: the same binary across testbed hosts and Slurm) ran in the Release stage; they test launching, not
# memory, and would only repeat it slower.
ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j"$jobs" -LE '^(cluster|long)$'
t2=$SECONDS
stage "fuzzing, 10000 executions per target"
./scripts/fuzz.sh --runs 10000 --jobs "$jobs" --build build-asan
t3=$SECONDS

stage "TSan build (build-tsan) and the threaded kernels' tests"
CC=clang-14 CXX=clang++-14 cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTRIDE_SANITIZE=thread \
  >/dev/null
cmake --build build-tsan -j"$jobs" --target stride_thread_tests >/dev/null
TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 ./build-tsan/stride_thread_tests --no-intro --no-version
t4=$SECONDS
echo "sanitizers: ASan+UBSan build $((t1 - t0)) s, tests $((t2 - t1)) s, fuzzing $((t3 - t2)) s, TSan $((t4 - t3)) s"

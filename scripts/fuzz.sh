#!/usr/bin/env bash
# Runs stride's libFuzzer targets (fuzz/fuzz_<target>.cpp), one reader each, under AddressSanitizer and
# UndefinedBehaviorSanitizer. CI runs `scripts/fuzz.sh --runs 10000` (scripts/test.sh); long runs:
#   scripts/fuzz.sh --seconds 3600            # an hour per target
#   scripts/fuzz.sh --seconds 600 idx image   # some targets
# Options: --runs N (executions per target), --seconds S (time per target), --build DIR (default build-asan,
# configured with clang-14 if absent), --jobs N (targets run in parallel, default 1).
# Any crash, hang (>10 s), sanitizer report, untyped exception or allocation over 256 MB fails the run; the
# input is saved as DIR/fuzz-artifacts/<target>-crash-*, to be added to tests/corpus/<target>/ once fixed
# (ctest replays that folder in every build). New interesting inputs accumulate in DIR/fuzz-corpus/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
runs=""
seconds=""
build=build-asan
jobs=1
targets=()
while (($#)); do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
if [[ -z "$runs" && -z "$seconds" ]]; then runs=10000; fi
all=(cifar idx hdf5_dataset checkpoint model_spec run_config image cli)
((${#targets[@]})) || targets=("${all[@]}")

if [[ ! -x "$build/fuzz_${targets[0]}" ]]; then
  CC=clang-14 CXX=clang++-14 cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DSTRIDE_SANITIZE=address,undefined -DSTRIDE_FUZZ=ON >/dev/null
  cmake --build "$build" -j"$(nproc)"
fi

seeds="$build/fuzz-seeds"
rm -rf "$seeds"
"$build/fuzz_seeds" "$seeds"
mkdir -p "$build/fuzz-artifacts" "$build/fuzz-logs"

limit=()
[[ -n "$runs" ]] && limit+=("-runs=$runs")
[[ -n "$seconds" ]] && limit+=("-max_total_time=$seconds")
# Leaks are not findings here (HDF5 and TBB keep global state); everything else is.
# A small quarantine keeps the fuzzer's memory small across hundreds of thousands of inputs.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1:quarantine_size_mb=4:malloc_context_size=5}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

run_target() {
  local t=$1
  local corpus="$build/fuzz-corpus/$t" log="$build/fuzz-logs/$t.log"
  mkdir -p "$corpus"
  local start=$SECONDS
  if "$build/fuzz_$t" "${limit[@]}" -seed=1 -max_len=1048576 -malloc_limit_mb=256 -rss_limit_mb=2048 -timeout=10 \
      -print_final_stats=1 -artifact_prefix="$build/fuzz-artifacts/$t-" \
      "$corpus" "$seeds/$t" "$root/tests/corpus/$t" >"$log" 2>&1; then
    local execs
    execs=$(grep -m1 'stat::number_of_executed_units' "$log" | awk '{print $2}')
    echo "fuzz_$t: ${execs:-?} executions in $((SECONDS - start)) s, no finding"
  else
    echo "fuzz_$t: FINDING after $((SECONDS - start)) s (log: $log)"
    grep -m5 -E 'ERROR|runtime error|escaped|Test unit written' "$log" | sed 's/^/  /'
    return 1
  fi
}

status=0
if ((jobs > 1)); then
  pids=()
  for t in "${targets[@]}"; do
    run_target "$t" & pids+=($!)
    while (($(jobs -rp | wc -l) >= jobs)); do wait -n || status=1; done
  done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || status=1; done
else
  for t in "${targets[@]}"; do run_target "$t" || status=1; done
fi
if ((status)); then
  echo "fuzz.sh: findings above; once fixed, copy each input into tests/corpus/<target>/ (ctest replays them)" >&2
fi
exit $status

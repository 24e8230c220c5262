#!/usr/bin/env bash
# Installs what stride builds and runs with, from Debian 12's packages (run as root). Idempotent.
# --test adds what only the tests need: Debian's PyTorch, h5py and numpy for tests/torch_one_step.py, and
# clang-14 with its sanitizer and libFuzzer runtimes for scripts/sanitizers.sh and scripts/fuzz.sh, and the
# multi-host testbed's tools (cluster/testbed/: iproute2, unshare/nsenter, Slurm 22.05 and munge).
set -euo pipefail
packages=(
  cmake g++ make pkg-config
  libtbb-dev libhdf5-dev libboost-program-options-dev doctest-dev nlohmann-json3-dev
  zlib1g-dev libpng-dev
  libopenmpi-dev openmpi-bin
  libonnx-dev libprotobuf-dev
  dataset-fashion-mnist
)
for arg in "$@"; do
  case "$arg" in
    --test) packages+=(python3-torch python3-h5py python3-numpy clang-14 libclang-rt-14-dev
                       iproute2 util-linux slurm-wlm munge) ;;
    *) echo "usage: $0 [--test]" >&2; exit 2 ;;
  esac
done
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "stride: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

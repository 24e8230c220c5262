#!/usr/bin/env bash
# The main job (the README's first command): installs the dependencies, builds stride and trains.
#   - cifar10_quick on CIFAR-10 when data/cifar-10-batches-bin/ exists (scripts/get-cifar10.sh fetches it),
#   - otherwise lenet5 on Fashion-MNIST from Debian's dataset-fashion-mnist package (the embedded default).
# Extra arguments go to `stride train` after the defaults below and override them (the last of a flag wins),
# e.g. `scripts/main-job.sh --epochs 30` for a longer CIFAR-10 run.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"

# The main job starts its run afresh each time (--overwrite replaces an earlier one in the same --out), unless
# it is asked to --resume it.
fresh=(--overwrite)
for a in "$@"; do [[ "$a" == --resume || "$a" == --resume=* ]] && fresh=(); done

if [ -d data/cifar-10-batches-bin ]; then
  exec ./build/stride train --model cifar10_quick --data data/cifar-10-batches-bin \
    --epochs 5 --batch 64 --lr 0.01 --momentum 0.9 --weight-decay 5e-4 --schedule cosine \
    --augment crop-flip --out runs/cifar10_quick "${fresh[@]}" "$@"
fi
echo "stride: no CIFAR-10 in data/cifar-10-batches-bin (scripts/get-cifar10.sh downloads it);" \
     "training lenet5 on Fashion-MNIST from /usr/share/datasets/fashion-mnist"
exec ./build/stride train --model lenet5 --data /usr/share/datasets/fashion-mnist --classes fashion-mnist \
  --epochs 5 --batch 64 --lr 0.01 --momentum 0.9 --weight-decay 5e-4 --schedule cosine \
  --out runs/fashion_mnist_lenet5 "${fresh[@]}" "$@"

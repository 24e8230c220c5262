#!/usr/bin/env bash
# Downloads the CIFAR-10 binary version from its official site into data/cifar-10-batches-bin/.
# Needs internet access; without it, it stops with a message saying what to fetch by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
url="https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
mkdir -p data
if [ -d data/cifar-10-batches-bin ]; then echo "data/cifar-10-batches-bin already exists"; exit 0; fi
tmp=$(mktemp data/cifar-10-binary.XXXXXX.tar.gz)
trap 'rm -f "$tmp"' EXIT
fetch() {
  if command -v curl >/dev/null; then curl -fsSL --connect-timeout 15 -o "$tmp" "$url"
  elif command -v wget >/dev/null; then wget -q --timeout=15 -O "$tmp" "$url"
  else python3 -c "import sys,urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])" "$url" "$tmp"
  fi
}
if ! fetch 2>/dev/null; then
  echo "error: could not download $url (no internet access?)." >&2
  echo "Fetch cifar-10-binary.tar.gz (162 MB) on a machine with internet and unpack it here:" >&2
  echo "  tar -xzf cifar-10-binary.tar.gz -C $(pwd)/data   # creates data/cifar-10-batches-bin/" >&2
  exit 1
fi
tar -xzf "$tmp" -C data
echo "CIFAR-10 is in data/cifar-10-batches-bin"

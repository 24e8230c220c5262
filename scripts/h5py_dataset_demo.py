#!/usr/bin/python3
"""Write a tiny dataset in stride's HDF5 layout with h5py, then read it back (docs/data.md).

Usage: /usr/bin/python3 scripts/h5py_dataset_demo.py [OUT.h5] [--read FILE.h5]

  OUT.h5        where to write the demo dataset (default: stride_demo.h5 in the current directory)
  --read FILE   only read FILE (for example one written by `stride convert`) and print a summary

The written file opens with `stride train --data OUT.h5` and with stride::open_dataset().
"""
import sys

import h5py
import numpy as np

CLASS_NAMES = ["dark", "light"]


def write_demo(path, n_train=20, n_test=6, c=1, h=8, w=8, seed=0):
    rng = np.random.default_rng(seed)

    def split(n):
        labels = rng.integers(0, len(CLASS_NAMES), size=n).astype(np.uint8)
        # Class 0 images are dark, class 1 light: a problem a model can actually learn.
        base = np.where(labels == 1, 170, 40).astype(np.int16)[:, None, None, None]
        images = np.clip(base + rng.integers(-40, 40, size=(n, c, h, w)), 0, 255).astype(np.uint8)
        return images, labels

    with h5py.File(path, "w") as f:
        for name, n in (("train", n_train), ("test", n_test)):
            images, labels = split(n)
            g = f.create_group(name)
            # (N, C, H, W) uint8, chunked along N and deflate-compressed, as `stride convert` writes it.
            g.create_dataset("images", data=images, chunks=(min(256, n), c, h, w), maxshape=(None, c, h, w),
                             compression="gzip", compression_opts=4)
            g.create_dataset("labels", data=labels)
        # Variable-length strings: h5py needs string_dtype() for a list of str.
        f.attrs.create("class_names", CLASS_NAMES, dtype=h5py.string_dtype())
        f.attrs["source"] = "scripts/h5py_dataset_demo.py"
        f.attrs["format"] = "stride-dataset"
        f.attrs["version"] = np.int32(1)


def read(path):
    with h5py.File(path, "r") as f:
        names = [s.decode() if isinstance(s, bytes) else s for s in f.attrs["class_names"]]
        print(f"{path}: format={f.attrs.get('format')!r} version={f.attrs.get('version')} "
              f"source={f.attrs.get('source')!r}")
        print(f"  class_names: {names}")
        for name in ("train", "test"):
            images, labels = f[name]["images"], f[name]["labels"]
            assert images.dtype == np.uint8 and images.ndim == 4, images
            assert labels.shape == (images.shape[0],), labels
            first = images[0]  # a hyperslab: h5py reads only the chunk holding image 0
            counts = np.bincount(labels[:], minlength=len(names))
            print(f"  /{name}/images {images.shape} {images.dtype} chunks={images.chunks} "
                  f"compression={images.compression}; image 0: label {labels[0]} ({names[labels[0]]}), "
                  f"mean {first.mean():.1f}; per class {counts.tolist()}")
    return names


def main(argv):
    if len(argv) >= 2 and argv[0] == "--read":
        read(argv[1])
        return 0
    path = argv[0] if argv else "stride_demo.h5"
    write_demo(path)
    names = read(path)
    assert names == CLASS_NAMES
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

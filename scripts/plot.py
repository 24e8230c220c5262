#!/usr/bin/python3
"""Draw pictures of a stride training run into PNG files.

    plot.py RUN_DIR [--data DATA] [--stride PATH_TO_BINARY] [--out DIR]

RUN_DIR is what `stride train --out RUN_DIR` wrote:
  metrics.jsonl  -> curves.png     train loss per logged step and per epoch, test loss,
                                   train/test accuracy per epoch, learning rate
  final.h5       -> filters.png    the first conv layer's filters (first conv2d of the model spec)
  eval result    -> confusion.png  confusion matrix with class names; from `stride eval --json`
                                   (run here when --data is given, and saved as RUN_DIR/eval.json)
                                   or from an existing RUN_DIR/eval.json

Needs only Debian's python3-matplotlib and python3-h5py; run with /usr/bin/python3.
Errors (missing files, malformed input, a failing `stride eval`) print one line and exit 1.
"""

import argparse
import json
import math
import os
import shutil
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")  # no display on build machines; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

PROG = "plot.py"
DPI = 100


class PlotError(Exception):
    """A user-facing problem: printed as one line, exit status 1."""


# ---------------------------------------------------------------- inputs


def require_file(path, what):
    if not os.path.isfile(path):
        raise PlotError(f"{path}: no such file ({what})")


def read_metrics(path):
    """metrics.jsonl -> (step records, epoch records), each a list of dicts in file order."""
    require_file(path, "written by `stride train --out RUN_DIR`")
    steps, epochs = [], []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                if not line.endswith("\n"):
                    break  # the last line of a run in progress, still being written
                raise PlotError(f"{path}:{number}: expected one JSON object per line, got {e.msg}") from None
            if not isinstance(rec, dict):
                raise PlotError(f"{path}:{number}: expected a JSON object, got {type(rec).__name__}")
            kind = rec.get("kind")
            needed = ["epoch", "step", "loss", "train_acc", "lr"] + (["test_acc"] if kind == "epoch" else [])
            missing = [k for k in needed if k not in rec]
            if kind not in ("step", "epoch"):
                raise PlotError(f"{path}:{number}: expected \"kind\" to be \"step\" or \"epoch\", got {kind!r}")
            if missing:
                raise PlotError(f"{path}:{number}: {kind} record lacks {', '.join(missing)}")
            (steps if kind == "step" else epochs).append(rec)
    if not steps and not epochs:
        raise PlotError(f"{path}: no step or epoch records (did the run log anything?)")
    return steps, epochs


def find_stride(explicit):
    """The stride binary: --stride, else `stride` on PATH, else the repository's build/stride."""
    if explicit:
        if not (os.path.isfile(explicit) and os.access(explicit, os.X_OK)):
            raise PlotError(f"{explicit}: not an executable file (--stride)")
        return explicit
    on_path = shutil.which("stride")
    if on_path:
        return on_path
    repo_build = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "build", "stride")
    if os.access(repo_build, os.X_OK):
        return os.path.normpath(repo_build)
    raise PlotError("cannot find the stride binary: give --stride PATH (not on PATH, no build/stride)")


def run_eval(stride, weights, data, save_to):
    """Runs `stride eval --json` and returns its parsed object; saves it for later runs without --data."""
    cmd = [stride, "eval", "--weights", weights, "--data", data, "--json"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError as e:
        raise PlotError(f"{stride}: cannot run ({e.strerror})") from None
    if proc.returncode != 0:
        lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
        why = lines[-1] if lines else f"exit status {proc.returncode}"
        why = why[len("error: "):] if why.startswith("error: ") else why
        raise PlotError(f"stride eval failed: {why}")
    text = proc.stdout.strip().splitlines()
    result = parse_eval(text[-1] if text else "", "output of " + " ".join(cmd))
    try:
        with open(save_to, "w", encoding="utf-8") as f:
            f.write(json.dumps(result) + "\n")
    except OSError as e:  # a read-only run directory only loses the cache
        print(f"{PROG}: note: {save_to}: not saved ({e.strerror})", file=sys.stderr)
    return result


def parse_eval(text, where):
    try:
        r = json.loads(text)
    except json.JSONDecodeError as e:
        raise PlotError(f"{where}: expected the JSON of `stride eval --json`, got {e.msg}") from None
    if not isinstance(r, dict):
        raise PlotError(f"{where}: expected a JSON object, got {type(r).__name__}")
    missing = [k for k in ("accuracy", "confusion", "classes") if k not in r]
    if missing:
        raise PlotError(f"{where}: lacks {', '.join(missing)}")
    m = np.asarray(r["confusion"], dtype=np.int64)
    k = len(r["classes"])
    if m.shape != (k, k):
        raise PlotError(f"{where}: expected a {k}x{k} confusion matrix for {k} classes, got shape {m.shape}")
    return r


def as_text(value):
    """h5py gives str or bytes depending on how the attribute was stored."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray) and value.shape == ():
        return as_text(value[()])
    return str(value)


def read_first_conv(path):
    """final.h5 -> (model name, layer name, weights (K, C, R, S) float32).

    The first conv in *model order* (the spec's layers list): HDF5 groups iterate alphabetically, so the
    file alone cannot tell which 4-D dataset is the first layer (e.g. 'block_conv' < 'conv1')."""
    require_file(path, "the final model written by `stride train`")
    import h5py  # imported here so that errors about other inputs do not need h5py

    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise PlotError(f"{path}: not a readable HDF5 file ({e})") from None
    with f:
        if "params" not in f:
            raise PlotError(f"{path}: has no /params group (not a stride checkpoint?)")
        if "model_spec" not in f.attrs:
            raise PlotError(f"{path}: has no model_spec attribute; cannot tell which layer comes first")
        try:
            spec = json.loads(as_text(f.attrs["model_spec"]))
        except json.JSONDecodeError as e:
            raise PlotError(f"{path}: model_spec attribute is not JSON ({e.msg})") from None
        if not isinstance(spec, dict):
            raise PlotError(f"{path}: model_spec attribute: expected a JSON object, got {type(spec).__name__}")
        convs = [l.get("name") for l in spec.get("layers", []) if isinstance(l, dict) and l.get("type") == "conv2d"]
        if not convs:
            raise PlotError(f"{path}: the model has no conv2d layer, so there are no filters to draw")
        name = convs[0]
        group = f["params"].get(name)
        if not isinstance(group, h5py.Group):
            raise PlotError(f"{path}: has no /params/{name} for the first conv layer '{name}'")
        # stride names it "weight"; any other 4-D parameter of the layer (a foreign file) is the fallback.
        four_d = [k for k in group if isinstance(group[k], h5py.Dataset) and group[k].ndim == 4]
        if not four_d:
            raise PlotError(f"{path}: /params/{name} has no 4-D (out, in, kh, kw) weight dataset")
        key = "weight" if "weight" in four_d else four_d[0]
        return str(spec.get("name", "model")), name, np.asarray(group[key], dtype=np.float32)


# ---------------------------------------------------------------- pictures


def plot_curves(steps, epochs, out_path, title):
    """Loss (top), accuracy (middle), learning rate (bottom) against the global step."""
    fig, (ax_loss, ax_acc, ax_lr) = plt.subplots(
        3, 1, figsize=(8, 7.5), sharex=True, gridspec_kw={"height_ratios": [3, 3, 1.4]}
    )
    s_x = np.array([r["step"] for r in steps], dtype=float)
    e_x = np.array([r["step"] for r in epochs], dtype=float)

    if len(steps):
        ax_loss.plot(s_x, [r["loss"] for r in steps], color="tab:blue", lw=0.8, alpha=0.55,
                     label="train loss (mean per log interval)")
    if len(epochs):
        ax_loss.plot(e_x, [r["loss"] for r in epochs], "o-", color="tab:blue", lw=1.8,
                     label="train loss (epoch mean)")
        test_loss = [(x, r["test_loss"]) for x, r in zip(e_x, epochs) if "test_loss" in r]
        if test_loss:
            ax_loss.plot(*zip(*test_loss), "s-", color="tab:red", lw=1.8, label="test loss")
    ax_loss.set_ylabel("cross-entropy loss")
    ax_loss.legend(loc="upper right", fontsize=9)

    if len(steps):
        ax_acc.plot(s_x, [100 * r["train_acc"] for r in steps], color="tab:blue", lw=0.8, alpha=0.45,
                    label="train accuracy (mean per log interval)")
    if len(epochs):
        ax_acc.plot(e_x, [100 * r["train_acc"] for r in epochs], "o-", color="tab:blue", lw=1.8,
                    label="train accuracy (epoch)")
        ax_acc.plot(e_x, [100 * r["test_acc"] for r in epochs], "s-", color="tab:red", lw=1.8,
                    label="test accuracy (epoch)")
        last = epochs[-1]
        ax_acc.annotate(f"{100 * last['test_acc']:.2f}%", (e_x[-1], 100 * last["test_acc"]),
                        textcoords="offset points", xytext=(-6, -16), ha="right", color="tab:red", fontsize=9)
    ax_acc.set_ylabel("accuracy (%)")
    ax_acc.legend(loc="lower right", fontsize=9)

    lr_src = steps if steps else epochs
    ax_lr.plot([r["step"] for r in lr_src], [r["lr"] for r in lr_src], color="tab:green", lw=1.5)
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("training step (mini-batches)")
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))

    # Epoch boundaries help read the per-epoch points against the step axis; with many epochs only every
    # k-th is marked and numbered, so that the lines and labels do not run together.
    every = max(1, int(math.ceil(len(epochs) / 12)))
    marked = [(x, r["epoch"]) for i, (x, r) in enumerate(zip(e_x, epochs)) if (i + 1) % every == 0 or i + 1 == len(epochs)]
    for ax in (ax_loss, ax_acc, ax_lr):
        ax.grid(True, alpha=0.3)
        for x, _ in marked[:-1]:
            ax.axvline(x, color="gray", ls=":", lw=0.8)
    if marked:
        top = ax_loss.secondary_xaxis("top")
        top.set_xticks([x for x, _ in marked])
        top.set_xticklabels([str(e) for _, e in marked], fontsize=8)
        top.set_xlabel("end of epoch", fontsize=9)
    fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    fig.savefig(out_path, dpi=DPI)
    plt.close(fig)


def plot_confusion(result, out_path, title):
    """Counts in every cell; colour is the row fraction (recall), so rare classes read like common ones."""
    names = [str(c) for c in result["classes"]]
    m = np.asarray(result["confusion"], dtype=np.int64)
    k = len(names)
    totals = m.sum(axis=1, keepdims=True)
    frac = np.divide(m, totals, out=np.zeros(m.shape, dtype=float), where=totals > 0)
    per_class = np.diag(frac)

    side = max(5.5, 0.62 * k + 2.5)
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    if k <= 20:  # numbers stop being readable beyond ~20 classes
        for t in range(k):
            for p in range(k):
                if m[t, p]:
                    ax.text(p, t, str(m[t, p]), ha="center", va="center", fontsize=8 if k <= 12 else 6,
                            color="white" if frac[t, p] > 0.55 else "black")
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xticklabels(names, rotation=45, ha="right", rotation_mode="anchor", fontsize=9)
    ax.set_yticklabels([f"{n} ({100 * a:.0f}%)" for n, a in zip(names, per_class)], fontsize=9)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class (per-class accuracy)")
    count = int(m.sum())
    ax.set_title(f"{title}\ntest accuracy {100 * float(result['accuracy']):.2f}% on {count} images", fontsize=11)
    cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cbar.set_label("fraction of the true class")
    fig.tight_layout()
    fig.savefig(out_path, dpi=DPI)
    plt.close(fig)


def filter_mosaic(w):
    """(K, C, R, S) -> an image grid (H, W) or (H, W, 3) in [0, 1] with 1-pixel white separators.

    Each filter is min-max scaled on its own, over all its input channels (as Caffe's and cs231n's filter
    pictures do): the filters' scales differ, and one shared scale would leave most of them flat grey.
    C == 3 is drawn as RGB; any other C in grayscale, one tile per (filter, input channel) with a filter's
    channels side by side on one row of the grid."""
    k, c, r, s = w.shape
    lo = w.min(axis=(1, 2, 3), keepdims=True)
    span = w.max(axis=(1, 2, 3), keepdims=True) - lo
    # A constant filter (e.g. a dead one) would divide by zero; show it as mid-grey.
    scaled = np.where(span > 0, (w - lo) / np.where(span > 0, span, 1), 0.5).astype(np.float32)
    rgb = c == 3
    if rgb:
        tiles = [scaled[i].transpose(1, 2, 0) for i in range(k)]
    else:
        tiles = [scaled[i, j] for i in range(k) for j in range(c)]
    if rgb or c == 1:
        # A full rectangle when K has a divisor a little above sqrt(K) (32 -> 4x8, 20 -> 4x5), else square-ish.
        n = len(tiles)
        root = math.sqrt(n)
        cols = next((d for d in range(int(math.ceil(root)), int(2 * root) + 1) if n % d == 0), int(math.ceil(root)))
        rows = int(math.ceil(n / cols))
    else:
        rows, cols = k, c
    pad = 1
    shape = (rows * (r + pad) + pad, cols * (s + pad) + pad) + ((3,) if rgb else ())
    grid = np.ones(shape, dtype=np.float32)
    for i, t in enumerate(tiles):
        y, x = divmod(i, cols)
        grid[pad + y * (r + pad): pad + y * (r + pad) + r, pad + x * (s + pad): pad + x * (s + pad) + s] = t
    return grid


def plot_filters(name, w, out_path, title):
    k, c, r, s = w.shape
    grid = filter_mosaic(w)
    gh, gw = grid.shape[:2]
    # Size the image by its pixels: about 16 screen pixels per weight, within a 9x9 inch box; the title
    # may be wider than a small grid, and bbox_inches="tight" grows the saved picture to hold it.
    inch_per_px = min(16.0 / DPI, 9.0 / gw, 9.0 / gh)
    fig = plt.figure(figsize=(gw * inch_per_px, gh * inch_per_px))
    ax = fig.add_axes([0, 0, 1, 1])
    if grid.ndim == 3:
        ax.imshow(grid, interpolation="nearest")
    else:
        ax.imshow(grid, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    how = "RGB" if c == 3 else ("grayscale" if c == 1 else "grayscale, one column per input channel")
    ax.set_title(f"{title}\n{name}: {k} filters of {c}x{r}x{s}\neach min-max scaled on its own ({how})", fontsize=10)
    fig.savefig(out_path, dpi=DPI, bbox_inches="tight", pad_inches=0.15)
    plt.close(fig)


# ---------------------------------------------------------------- main


def main(argv):
    ap = argparse.ArgumentParser(
        prog=PROG,
        description="Draw curves.png, confusion.png and filters.png from a stride run directory.",
    )
    ap.add_argument("run_dir", metavar="RUN_DIR", help="directory written by `stride train --out RUN_DIR`")
    ap.add_argument("--data", help="dataset for `stride eval` (its test split); without it RUN_DIR/eval.json is used")
    ap.add_argument("--stride", metavar="PATH_TO_BINARY", help="the stride binary (default: on PATH, or build/stride)")
    ap.add_argument("--out", metavar="DIR", help="where to write the PNG files (default: RUN_DIR)")
    args = ap.parse_args(argv)

    run = args.run_dir
    if not os.path.isdir(run):
        raise PlotError(f"{run}: no such run directory")
    out = args.out or run
    os.makedirs(out, exist_ok=True)
    label = os.path.basename(os.path.normpath(os.path.abspath(run)))
    weights = os.path.join(run, "final.h5")
    eval_json = os.path.join(run, "eval.json")

    # Curves need only metrics.jsonl, so they are drawn for a run still in progress too (no final.h5 yet);
    # every picture that cannot be drawn ends the script with one line naming the missing file, status 1.
    steps, epochs = read_metrics(os.path.join(run, "metrics.jsonl"))
    have_weights = os.path.isfile(weights)
    model_name, conv_name, conv_w = read_first_conv(weights) if have_weights else (None, None, None)
    if model_name:
        label = f"{model_name}, run {label}"

    def save(fname, draw):
        path = os.path.join(out, fname)
        draw(path)
        print(path)

    save("curves.png", lambda p: plot_curves(steps, epochs, p, f"training: {label}"))
    if not have_weights:
        raise PlotError(f"{weights}: no such file, filters.png and confusion.png not drawn (is the run still going?)")
    save("filters.png", lambda p: plot_filters(conv_name, conv_w, p, f"first conv layer: {label}"))
    if args.data:
        result = run_eval(find_stride(args.stride), weights, args.data, eval_json)
    elif os.path.isfile(eval_json):
        with open(eval_json, encoding="utf-8") as f:
            result = parse_eval(f.read(), eval_json)
    else:
        raise PlotError(f"{eval_json}: no such file, confusion.png not drawn (give --data DATA to run `stride eval`)")
    save("confusion.png", lambda p: plot_confusion(result, p, f"confusion matrix: {label}"))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except PlotError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        sys.exit(1)

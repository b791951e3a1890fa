"""Loaders for user files: ``.npz`` (``x``, ``y``), ``.csv`` (a named label column), MNIST IDX."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np

from jopt.core.errors import JoptError
from jopt.data._builtin import Raw

# IDX type codes (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT").
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _exists(path) -> Path:
    if path is None:
        raise JoptError("a data file path is required (data.path)")
    p = Path(path).expanduser()
    if not p.is_file():
        raise JoptError(f"data file not found: {p}")
    return p


def _infer_task(y: np.ndarray, task: str | None) -> str:
    if task is not None:
        if task not in ("classification", "regression"):
            raise JoptError(f"unknown task {task!r}; allowed: classification, regression")
        return task
    integral = y.dtype.kind in "biu" or (
        y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y))
    )
    return "classification" if integral and y.ndim == 1 else "regression"


def _raw(x, y, task, kind, num_classes=None) -> Raw:
    task = _infer_task(y, task)
    if task == "classification":
        n_cls = int(num_classes) if num_classes else int(np.max(y)) + 1 if len(y) else 0
    else:
        n_cls = 1 if y.ndim == 1 else y.shape[1]
    return Raw(x, y, task, n_cls, kind)


def load_npz(path, *, task=None, num_classes=None, kind="tabular") -> Raw:
    """An ``.npz`` file with arrays ``x`` (n, ...) and ``y`` (n,) [, ``x_test``, ``y_test``]."""
    p = _exists(path)
    try:
        with np.load(p, allow_pickle=False) as f:
            d = {k: f[k] for k in f.files}
    except Exception as e:  # zipfile/pickle errors: report as malformed
        raise JoptError(f"{p}: not a readable .npz file ({type(e).__name__})") from None
    if "x" not in d or "y" not in d:
        raise JoptError(f"{p}: an .npz data file needs arrays 'x' and 'y', found {sorted(d)}")
    raw = _raw(d["x"], d["y"], task, kind, num_classes)
    if ("x_test" in d) != ("y_test" in d):
        raise JoptError(f"{p}: 'x_test' and 'y_test' must come together")
    if "x_test" in d:
        raw.x_test, raw.y_test = d["x_test"], d["y_test"]
    return raw


def load_csv(path, *, label: str | None = None, task=None, num_classes=None, delimiter=",") -> Raw:
    """A ``.csv`` file with a header row; column ``label`` holds the target, the rest are features.

    Empty cells and ``nan`` become NaN, which validation then rejects with the file's name.
    """
    p = _exists(path)
    if not label:
        raise JoptError(f"{p}: name the label column (data.label)")
    with open(p, newline="") as f:
        rows = list(csv.reader(f, delimiter=delimiter))
    if len(rows) < 2:
        raise JoptError(f"{p}: a .csv data file needs a header row and at least one data row")
    header = [h.strip() for h in rows[0]]
    if label not in header:
        raise JoptError(f"{p}: label column {label!r} not found; columns: {', '.join(header)}")
    values = []
    for i, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise JoptError(f"{p}: line {i} has {len(row)} fields, the header has {len(header)}")
        try:
            values.append([float(c) if c.strip() else np.nan for c in row])
        except ValueError:
            raise JoptError(f"{p}: line {i} has a non-numeric value") from None
    table = np.asarray(values, dtype=np.float64)
    j = header.index(label)
    return _raw(np.delete(table, j, axis=1), table[:, j], task, "tabular", num_classes)


def read_idx(path) -> np.ndarray:
    """Read one IDX file (optionally gzipped), e.g. ``train-images-idx3-ubyte[.gz]``."""
    p = _exists(path)
    with (gzip.open if p.suffix == ".gz" else open)(p, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise JoptError(f"{p}: not an IDX file (bad magic number)")
    dtype, ndim = np.dtype(_IDX_DTYPES[data[2]]), data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise JoptError(f"{p}: truncated IDX header")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise JoptError(
            f"{p}: IDX size mismatch: header says {shape} ({expected} bytes), "
            f"file has {len(data) - header} bytes of data"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)


def load_idx(images=None, labels=None, *, test_images=None, test_labels=None, scale=True) -> Raw:
    """MNIST-style IDX files: ``images`` (n, H, W) and ``labels`` (n,), plus optional test files.

    With ``scale`` (default), uint8 pixels are divided by 255 into [0, 1]; other types are kept.
    """
    if images is None or labels is None:
        raise JoptError("the idx loader needs data.images and data.labels file paths")

    def pair(img_path, lbl_path):
        x, y = read_idx(img_path), read_idx(lbl_path)
        if len(x) != len(y):
            raise JoptError(f"{img_path}: {len(x)} images but {lbl_path} has {len(y)} labels")
        pixels = x.dtype == np.uint8  # only byte images have a known 0..255 range
        x = x.astype(np.float32)
        return (x / 255.0 if scale and pixels else x), y

    x, y = pair(images, labels)
    kind = "image" if x.ndim in (3, 4) else "tabular"
    raw = _raw(x, y, "classification", kind)
    if (test_images is None) != (test_labels is None):
        raise JoptError("give both data.test_images and data.test_labels, or neither")
    if test_images is not None:
        raw.x_test, raw.y_test = pair(test_images, test_labels)
        raw.num_classes = max(raw.num_classes, int(raw.y_test.max()) + 1)
    return raw

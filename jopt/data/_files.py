"""Loaders for user files: ``.npz`` (``x``, ``y``), ``.csv`` (a named label column), MNIST IDX.

Every malformed file is a one-line :class:`JoptError` raised here, while loading: an empty
file, undecodable text, a broken gzip stream, a truncated archive or IDX body. The loaders
only read; :func:`jopt.data.load_dataset` then validates the values (``check_arrays``).
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import math
import zlib
from pathlib import Path

import numpy as np

from jopt.core.errors import JoptError
from jopt.data._builtin import Raw
from jopt.data._dataset import resolve_task

# IDX type codes (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT").
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 24


def _exists(path) -> Path:
    if path is None or str(path) == "":
        raise JoptError("a data file path is required (data.path)")
    if not isinstance(path, (str, Path)):
        raise JoptError(f"a data file path must be a string, got {path!r}")
    p = Path(path).expanduser()
    if p.is_dir():
        raise JoptError(f"{p}: is a directory; a data file is needed")
    if not p.is_file():
        raise JoptError(f"data file not found: {p}")
    try:
        size = p.stat().st_size
    except OSError as e:
        raise JoptError(f"{p}: cannot read the data file ({e.strerror})") from None
    if size == 0:
        raise JoptError(f"{p}: the data file is empty (0 bytes)")
    return p


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:160]}" if text else type(e).__name__


def _raw(x, y, task, default_task, kind, num_classes, source) -> Raw:
    """A ``Raw`` record; the class count (``None``: from the labels) is settled by load_dataset."""
    task = resolve_task(task, default_task, source)
    if task == "regression" and num_classes is not None:
        raise JoptError(
            f"{source}: num_classes applies to classification only; remove it or pass "
            "task='classification'"
        )
    return Raw(np.asarray(x), np.asarray(y), task, num_classes, kind)


def load_npz(path, *, task=None, num_classes=None, kind="tabular") -> Raw:
    """An ``.npz`` file with arrays ``x`` (n, ...) and ``y`` (n,) [, ``x_test``, ``y_test``].

    ``task`` is ``"classification"`` (the default: ``y`` must hold integer class indices) or
    ``"regression"`` (``y`` of shape (n,) or (n, k), any finite values).
    """
    p = _exists(path)
    with open(p, "rb") as fh:  # ours to close, whatever np.load makes of it
        try:
            f = np.load(fh, allow_pickle=False)
        except Exception as e:  # zipfile/format errors: report as malformed
            raise JoptError(
                f"{p}: not a readable .npz archive ({_one_line(e)}); expected numpy.savez "
                "output with arrays 'x' and 'y'"
            ) from None
        if not isinstance(f, np.lib.npyio.NpzFile):
            raise JoptError(
                f"{p}: holds a single .npy array, not an .npz archive; save it with "
                "numpy.savez(path, x=..., y=...)"
            )
        try:
            with f:
                d = {k: f[k] for k in f.files}
        except ValueError as e:
            if "allow_pickle" not in str(e):
                raise JoptError(f"{p}: a corrupt .npz archive ({_one_line(e)})") from None
            raise JoptError(
                f"{p}: holds object (pickled) arrays, which are never loaded; allowed: "
                "numeric arrays"
            ) from None
        except Exception as e:  # a truncated or corrupt member
            raise JoptError(f"{p}: a corrupt or truncated .npz archive ({_one_line(e)})") from None
    if "x" not in d or "y" not in d:
        raise JoptError(f"{p}: an .npz data file needs arrays 'x' and 'y', found {sorted(d)}")
    raw = _raw(d["x"], d["y"], task, "classification", kind, num_classes, str(p))
    if ("x_test" in d) != ("y_test" in d):
        raise JoptError(f"{p}: 'x_test' and 'y_test' must come together")
    if "x_test" in d:
        raw.x_test, raw.y_test = d["x_test"], d["y_test"]
    return raw


def _read_text(p: Path, encoding: str) -> str:
    """Decode ``p``; UTF-8 (the default) also accepts and drops a leading byte-order mark."""
    try:
        name = codecs.lookup(encoding).name
    except (LookupError, TypeError):
        raise JoptError(
            f"unknown text encoding {encoding!r} (loader option 'encoding'); "
            "e.g. utf-8, latin-1, cp1252"
        ) from None
    try:
        data = p.read_bytes()
    except OSError as e:
        raise JoptError(f"{p}: cannot read the data file ({e.strerror})") from None
    if name == "utf-8":
        if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            raise JoptError(f"{p}: is UTF-16 text; save it as UTF-8, or pass encoding='utf-16'")
        name = "utf-8-sig"
    try:
        text = data.decode(name)
    except UnicodeDecodeError as e:
        raise JoptError(
            f"{p}: not valid {encoding} text (byte 0x{data[e.start]:02x} at offset {e.start}); "
            "save it as UTF-8, or name its encoding with the loader option encoding "
            "(e.g. encoding: latin-1)"
        ) from None
    if "\x00" in text:
        raise JoptError(f"{p}: contains NUL bytes, so it is a binary file, not CSV text")
    return text


def load_csv(
    path,
    *,
    label: str | None = None,
    task=None,
    num_classes=None,
    delimiter: str = ",",
    encoding: str = "utf-8",
) -> Raw:
    """A ``.csv`` file with a header row; column ``label`` holds the target, the rest are features.

    The text is UTF-8 by default (a leading byte-order mark is dropped); give ``encoding`` for
    anything else, e.g. ``"latin-1"``: an undecodable byte is an error, never a guess. Empty
    cells and ``nan`` become NaN, which validation then rejects with the file's name. ``task``
    is as in :func:`load_npz`.
    """
    p = _exists(path)
    if not label:
        raise JoptError(f"{p}: name the label column (data.label)")
    if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in '\r\n"':
        raise JoptError(f"delimiter must be one character, not a quote or newline: {delimiter!r}")
    text = _read_text(p, encoding)
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    except csv.Error as e:
        raise JoptError(f"{p}: malformed CSV ({e})") from None
    if len(rows) < 2:
        raise JoptError(f"{p}: a .csv data file needs a header row and at least one data row")
    header = [h.strip() for h in rows[0]]
    if label not in header:
        raise JoptError(f"{p}: label column {label!r} not found; columns: {', '.join(header)}")
    if header.count(label) > 1:
        raise JoptError(f"{p}: the header names the label column {label!r} more than once")
    values = []
    for i, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise JoptError(f"{p}: line {i} has {len(row)} fields, the header has {len(header)}")
        cells = []
        for name, c in zip(header, row, strict=True):
            try:
                cells.append(float(c) if c.strip() else np.nan)
            except ValueError:
                raise JoptError(
                    f"{p}: line {i}, column {name!r}: {c.strip()[:40]!r} is not a number; "
                    "allowed: numbers (an empty cell is NaN)"
                ) from None
        values.append(cells)
    if not values:
        raise JoptError(f"{p}: a .csv data file needs a header row and at least one data row")
    table = np.asarray(values, dtype=np.float64)
    j = header.index(label)
    x = np.delete(table, j, axis=1)
    return _raw(x, table[:, j], task, "classification", "tabular", num_classes, str(p))


def _open_idx(p: Path):
    """A binary stream of ``p``: gunzipped when it starts with gzip's magic bytes."""
    with open(p, "rb") as f:
        gz = f.read(2) == _GZIP_MAGIC
    if p.suffix == ".gz" and not gz:
        raise JoptError(
            f"{p}: named .gz but not gzip-compressed (no gzip header); gzip it, or drop the .gz"
        )
    return (gzip.open(p, "rb") if gz else open(p, "rb")), gz


def _read_up_to(f, n: int) -> bytes:
    """Up to ``n`` bytes, in chunks, so a header that lies about its size costs no memory."""
    parts, got = [], 0
    while got < n:
        chunk = f.read(min(_CHUNK, n - got))
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def read_idx(path) -> np.ndarray:
    """Read one IDX file, plain or gzipped (``train-images-idx3-ubyte[.gz]``).

    Raises ``JoptError`` for a bad magic number, a truncated header or body, trailing bytes,
    and a broken gzip stream.
    """
    p = _exists(path)
    gz = False
    try:
        stream, gz = _open_idx(p)
        with stream as f:
            head = f.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _IDX_DTYPES:
                raise JoptError(f"{p}: not an IDX file (bad magic number)")
            dtype, ndim = np.dtype(_IDX_DTYPES[head[2]]), head[3]
            dims = f.read(4 * ndim)
            if ndim == 0 or len(dims) < 4 * ndim:
                raise JoptError(f"{p}: truncated IDX header ({ndim} dimensions promised)")
            shape = tuple(int.from_bytes(dims[4 * i : 4 * i + 4], "big") for i in range(ndim))
            expected = math.prod(shape) * dtype.itemsize  # Python ints: never overflows
            body = _read_up_to(f, expected + 1)
    except (OSError, EOFError, zlib.error) as e:
        what = "a broken gzip stream" if gz else "cannot read the file"
        raise JoptError(f"{p}: {what} ({_one_line(e)})") from None
    if len(body) != expected:
        extra = "or more " if len(body) > expected else ""
        raise JoptError(
            f"{p}: IDX size mismatch: header says {shape} ({expected} bytes), "
            f"file has {len(body)} {extra}bytes of data"
        )
    return np.frombuffer(body, dtype=dtype).reshape(shape)


def load_idx(
    images=None,
    labels=None,
    *,
    test_images=None,
    test_labels=None,
    scale=True,
    task=None,
    num_classes=None,
) -> Raw:
    """MNIST-style IDX files: ``images`` (n, H, W) and ``labels`` (n,), plus optional test files.

    With ``scale`` (default), uint8 pixels are divided by 255 into [0, 1]; other types are kept.
    ``task`` defaults to ``"classification"``.
    """
    if images is None or labels is None:
        raise JoptError("the idx loader needs data.images and data.labels file paths")
    if (test_images is None) != (test_labels is None):
        raise JoptError("give both data.test_images and data.test_labels, or neither")

    def pair(img_path, lbl_path):
        x, y = read_idx(img_path), read_idx(lbl_path)
        if len(x) != len(y):
            raise JoptError(f"{img_path}: {len(x)} images but {lbl_path} has {len(y)} labels")
        pixels = x.dtype == np.uint8  # only byte images have a known 0..255 range
        x = x.astype(np.float32)
        return (x / 255.0 if scale and pixels else x), y

    x, y = pair(images, labels)
    kind = "image" if x.ndim in (3, 4) else "tabular"
    raw = _raw(x, y, task, "classification", kind, num_classes, str(images))
    if test_images is not None:
        raw.x_test, raw.y_test = pair(test_images, test_labels)
    return raw

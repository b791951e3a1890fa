"""Every malformed data input is one clean line of ``JoptError``, raised while loading.

Each case writes its own bad file to ``tmp_path``. No case compiles anything: the data layer
is numpy only, so the whole module runs in about a second.
"""

from __future__ import annotations

import gzip
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jopt import JoptError
from jopt.data import load_dataset, read_idx
from jopt.data._dataset import MAX_CLASSES


def _error(fn, *patterns: str) -> str:
    """Run ``fn``; it must raise a one-line JoptError matching every pattern."""
    with pytest.raises(JoptError) as info:
        fn()
    msg = str(info.value)
    assert msg and "\n" not in msg, msg
    for pat in patterns:
        assert re.search(pat, msg), f"{pat!r} not in {msg!r}"
    return msg


def _npz(tmp_path, x, y, name="d.npz", **extra) -> str:
    path = tmp_path / name
    np.savez(path, x=x, y=y, **extra)
    return str(path)


def _idx(a: np.ndarray) -> bytes:
    code = {np.uint8: 0x08, np.int32: 0x0C, np.float32: 0x0D}[a.dtype.type]
    head = bytes([0, 0, code, a.ndim]) + b"".join(struct.pack(">I", s) for s in a.shape)
    return head + a.astype(a.dtype.newbyteorder(">")).tobytes()


def _idx_pair(tmp_path, images: bytes, labels: bytes, suffix=""):
    (tmp_path / f"img{suffix}").write_bytes(images)
    (tmp_path / f"lbl{suffix}").write_bytes(labels)
    return dict(images=str(tmp_path / f"img{suffix}"), labels=str(tmp_path / f"lbl{suffix}"))


GOOD_X = np.arange(30.0).reshape(10, 3)
GOOD_Y = np.arange(10) % 2
IMGS = np.arange(4 * 3 * 2, dtype=np.uint8).reshape(4, 3, 2)
LBLS = np.array([0, 1, 0, 1], np.uint8)


# ----- shapes and sizes ---------------------------------------------------------------------


def test_zero_feature_data(tmp_path):
    _error(
        lambda: load_dataset(_npz(tmp_path, np.ones((10, 0)), GOOD_Y)), "no features", r"\(10, 0\)"
    )
    p = tmp_path / "only_label.csv"
    p.write_text("y\n0\n1\n0\n1\n")
    _error(lambda: load_dataset(str(p), label="y"), "no features", "at least one value")
    files = _idx_pair(tmp_path, _idx(np.zeros((4, 0, 3), np.uint8)), _idx(LBLS))
    _error(lambda: load_dataset("idx", **files), "no features")


def test_empty_files(tmp_path):
    for name in ("e.csv", "e.npz", "e.idx"):
        (tmp_path / name).write_bytes(b"")
    _error(lambda: load_dataset(str(tmp_path / "e.csv"), label="y"), "empty", "0 bytes")
    _error(lambda: load_dataset(str(tmp_path / "e.npz")), "empty")
    _error(lambda: read_idx(tmp_path / "e.idx"), "empty")
    (tmp_path / "h.csv").write_text("a,y\n")
    _error(lambda: load_dataset(str(tmp_path / "h.csv"), label="y"), "at least one data row")
    (tmp_path / "blank.csv").write_text("a,y\n\n\n")
    _error(lambda: load_dataset(str(tmp_path / "blank.csv"), label="y"), "at least one data row")
    path = _npz(tmp_path, np.ones((0, 3)), np.zeros(0, int), "zero.npz")
    _error(lambda: load_dataset(path), "empty", "0 examples")
    _error(lambda: load_dataset("npz", path=""), "path is required")


def test_mismatched_lengths(tmp_path):
    _error(lambda: load_dataset(_npz(tmp_path, GOOD_X, GOOD_Y[:9])), r"shape \(10,\)", "got")
    path = _npz(tmp_path, GOOD_X, GOOD_Y, "t.npz", x_test=GOOD_X[:4], y_test=GOOD_Y[:3])
    _error(lambda: load_dataset(path), r"\(test\)", r"shape \(4,\)")
    files = _idx_pair(tmp_path, _idx(IMGS), _idx(LBLS[:3]))
    _error(lambda: load_dataset("idx", **files), "4 images", "3 labels")


# ----- text encodings -----------------------------------------------------------------------


def test_csv_with_a_byte_order_mark_just_works(tmp_path):
    p = tmp_path / "bom.csv"
    p.write_bytes(b"\xef\xbb\xbfy,a\r\n" + b"".join(b"%d,%d\r\n" % (i % 2, i) for i in range(8)))
    ds = load_dataset(str(p), label="y", test_fraction=0.0, preprocess="none")  # "y", not "\ufeffy"
    np.testing.assert_array_equal(np.sort(ds.x_train[:, 0]), np.arange(8))
    assert ds.num_classes == 2


def test_latin1_csv_is_an_error_unless_its_encoding_is_named(tmp_path):
    p = tmp_path / "latin1.csv"
    p.write_bytes(
        "café,y\n".encode("latin-1") + b"".join(b"%d,%d\n" % (i, i % 2) for i in range(6))
    )
    msg = _error(lambda: load_dataset(str(p), label="y"), "not valid utf-8", "0xe9", "latin-1")
    assert "offset 3" in msg
    ds = load_dataset(str(p), label="y", encoding="latin-1", test_fraction=0.0, preprocess="none")
    assert ds.input_shape == (1,) and ds.sizes()["train"] == 6
    _error(lambda: load_dataset(str(p), label="y", encoding="klingon"), "unknown text encoding")


def test_utf16_and_binary_files_as_csv(tmp_path):
    p = tmp_path / "u16.csv"
    p.write_bytes("a,y\n1,0\n2,1\n".encode("utf-16"))
    _error(lambda: load_dataset(str(p), label="y"), "UTF-16", "UTF-8")
    ok = load_dataset(str(p), label="y", encoding="utf-16", test_fraction=0.0, preprocess="none")
    assert ok.sizes()["train"] == 2
    b = tmp_path / "bin.csv"
    b.write_bytes(b"a,y\n1,0\x00\x00\n")
    _error(lambda: load_dataset(str(b), label="y"), "NUL", "not CSV text")


def test_csv_cells_and_columns(tmp_path):
    p = tmp_path / "s.csv"
    p.write_text("a,y\n1,cat\n2,dog\n")
    _error(lambda: load_dataset(str(p), label="y"), "line 2", "column 'y'", "'cat' is not a number")
    d = tmp_path / "dup.csv"
    d.write_text("y,a,y\n0,1,0\n1,2,1\n")
    _error(lambda: load_dataset(str(d), label="y"), "more than once")
    _error(lambda: load_dataset(str(d), label="y", delimiter=";;"), "one character")


# ----- gzip, IDX and npz containers ---------------------------------------------------------


def test_broken_gzip(tmp_path):
    whole = gzip.compress(_idx(LBLS))
    (tmp_path / "cut.gz").write_bytes(whole[: len(whole) - 12])  # stream ends early
    _error(lambda: read_idx(tmp_path / "cut.gz"), "broken gzip stream")
    bad = bytearray(whole)
    bad[12:16] = b"\xff\xff\xff\xff"  # corrupt deflate data
    (tmp_path / "bad.gz").write_bytes(bytes(bad))
    _error(lambda: read_idx(tmp_path / "bad.gz"), "broken gzip stream|size mismatch|magic")
    crc = bytearray(whole)
    crc[-8] ^= 0xFF  # wrong CRC32 in the trailer
    (tmp_path / "crc.gz").write_bytes(bytes(crc))
    _error(lambda: read_idx(tmp_path / "crc.gz"), "broken gzip stream", "CRC")


def test_gz_name_but_not_gzip_and_gzip_without_the_name(tmp_path):
    (tmp_path / "plain.gz").write_bytes(_idx(LBLS))
    _error(lambda: read_idx(tmp_path / "plain.gz"), "not gzip-compressed", "drop the .gz")
    (tmp_path / "zipped").write_bytes(gzip.compress(_idx(LBLS)))  # decided by content
    np.testing.assert_array_equal(read_idx(tmp_path / "zipped"), LBLS)


def test_truncated_idx(tmp_path):
    data = _idx(IMGS)
    (tmp_path / "head").write_bytes(data[:9])  # 3 dimensions promised, 1 given
    _error(lambda: read_idx(tmp_path / "head"), "truncated IDX header")
    (tmp_path / "body").write_bytes(data[:-5])
    _error(
        lambda: read_idx(tmp_path / "body"), "size mismatch", r"\(4, 3, 2\)", "24 bytes", "19 bytes"
    )
    (tmp_path / "long").write_bytes(data + b"\x00")
    _error(lambda: read_idx(tmp_path / "long"), "size mismatch", "or more")
    (tmp_path / "magic").write_bytes(b"\x00\x00\x07\x01\x00\x00\x00\x01a")
    _error(lambda: read_idx(tmp_path / "magic"), "not an IDX file")
    (tmp_path / "zero").write_bytes(b"\x00\x00\x08\x00")
    _error(lambda: read_idx(tmp_path / "zero"), "truncated IDX header")


def test_idx_dimensions_whose_product_overflows(tmp_path):
    big = 0xFFFFFFFF
    head = bytes([0, 0, 0x08, 3]) + struct.pack(">III", big, big, big)
    (tmp_path / "huge").write_bytes(head + b"\x00" * 64)
    msg = _error(lambda: read_idx(tmp_path / "huge"), "size mismatch", "64 bytes of data")
    assert str(big**3) in msg  # the exact product, no int64 wrap-around
    (tmp_path / "huge.gz").write_bytes(gzip.compress(head + b"\x00" * 64))
    _error(lambda: read_idx(tmp_path / "huge.gz"), "size mismatch")


def test_truncated_and_foreign_npz(tmp_path):
    path = _npz(tmp_path, GOOD_X, GOOD_Y, "w.npz")
    whole = Path(path).read_bytes()
    (tmp_path / "cut.npz").write_bytes(whole[: len(whole) // 2])
    _error(lambda: load_dataset(str(tmp_path / "cut.npz")), "npz", "x' and 'y'")
    np.save(tmp_path / "single.npy", GOOD_X)
    os.replace(tmp_path / "single.npy", tmp_path / "single.npz")
    _error(lambda: load_dataset(str(tmp_path / "single.npz")), "single .npy array", "savez")
    path = _npz(tmp_path, np.array([[1], [2]], dtype=object), np.array([0, 1]), "obj.npz")
    _error(lambda: load_dataset(path), "object", "never loaded", "numeric arrays")
    path = _npz(tmp_path, GOOD_X.astype(complex), GOOD_Y, "c.npz")
    _error(lambda: load_dataset(path), "must be numeric", "complex")


# ----- values -------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_inputs_and_labels(tmp_path, bad):
    x = GOOD_X.copy()
    x[3, 1] = bad
    _error(
        lambda: load_dataset(_npz(tmp_path, x, GOOD_Y)),
        "inputs contain NaN or inf",
        "example 3",
        "finite",
    )
    y = GOOD_Y.astype(float)
    y[2] = bad
    _error(
        lambda: load_dataset(_npz(tmp_path, GOOD_X, y, "y.npz")), "class labels contain NaN or inf"
    )
    _error(
        lambda: load_dataset(_npz(tmp_path, GOOD_X, y, "r.npz"), task="regression"),
        "regression targets contain NaN or inf",
    )
    p = tmp_path / "n.csv"
    p.write_text(f"a,y\n1,0\n{bad},1\n3,0\n")
    _error(lambda: load_dataset(str(p), label="y"), "NaN or inf", "example 1")


def test_values_beyond_float32(tmp_path):
    x = GOOD_X.copy()
    x[0, 0] = 1e300
    _error(lambda: load_dataset(_npz(tmp_path, x, GOOD_Y)), "beyond float32")
    y = GOOD_Y * 1e300
    _error(
        lambda: load_dataset(_npz(tmp_path, GOOD_X, y, "y.npz"), task="regression"),
        "beyond float32",
    )


# ----- the task is an explicit choice -------------------------------------------------------


def test_fractional_labels_are_not_turned_into_regression(tmp_path):
    y = GOOD_Y + 0.5
    path = _npz(tmp_path, GOOD_X, y)
    for task in (None, "classification"):
        _error(lambda: load_dataset(path, task=task), "fractional", "0.5", "task='regression'")
    ds = load_dataset(path, task="regression", test_fraction=0.0)
    assert ds.task == "regression" and ds.num_classes == 1
    p = tmp_path / "f.csv"
    p.write_text("a,y\n1,0.25\n2,1\n")
    _error(lambda: load_dataset(str(p), label="y"), "fractional", "0.25")


def test_one_hot_labels_are_refused_for_classification(tmp_path):
    y = np.eye(2)[GOOD_Y]
    path = _npz(tmp_path, GOOD_X, y)
    _error(lambda: load_dataset(path), "one-hot", r"\(10, 2\)", "argmax", "task='regression'")
    ds = load_dataset(path, task="regression", test_fraction=0.0)  # asked for: 2 targets
    assert ds.task == "regression" and ds.num_classes == 2 and ds.y_train.shape == (10, 2)
    _error(lambda: load_dataset(_npz(tmp_path, GOOD_X, y * 3.0, "m.npz")), "1-D integers")


def test_integer_labels_under_regression_are_fine(tmp_path):
    ds = load_dataset(_npz(tmp_path, GOOD_X, GOOD_Y), task="regression", test_fraction=0.0)
    assert ds.task == "regression" and ds.y_train.dtype == np.float32
    iris = load_dataset("iris", task="regression")
    assert iris.task == "regression" and iris.num_classes == 1
    assert load_dataset("iris").task == "classification"  # None keeps the built-in's task
    assert load_dataset("diabetes", task=None).task == "regression"
    _error(lambda: load_dataset("linear", task="classification"), "fractional")
    _error(
        lambda: load_dataset("iris", task="ranking"),
        "unknown task 'ranking'",
        "classification, regression",
    )


def test_absurd_class_counts(tmp_path):
    y = GOOD_Y.copy()
    y[4] = 5_000_000
    msg = _error(
        lambda: load_dataset(_npz(tmp_path, GOOD_X, y)), "5000000", "5000001 classes", "at most"
    )
    assert str(MAX_CLASSES) in msg
    # the same numbers as regression targets are fine
    assert load_dataset(_npz(tmp_path, GOOD_X, y, "r.npz"), task="regression").num_classes == 1
    big = np.iinfo(np.int64).max
    y64 = GOOD_Y.astype(np.int64)
    y64[0] = big  # would wrap to -1 as int32
    _error(lambda: load_dataset(_npz(tmp_path, GOOD_X, y64, "w.npz")), "at most")
    path = _npz(tmp_path, GOOD_X, GOOD_Y, "k.npz")
    _error(lambda: load_dataset(path, num_classes=MAX_CLASSES + 1), "more than the")
    _error(lambda: load_dataset(path, num_classes=2.5), "must be an integer")
    _error(lambda: load_dataset(path, num_classes=2, task="regression"), "classification only")
    _error(
        lambda: load_dataset(_npz(tmp_path, GOOD_X, GOOD_Y * 0, "one.npz")), "at least 2 classes"
    )
    _error(lambda: load_dataset(path, num_classes=1), "at least 2 classes")
    _error(
        lambda: load_dataset(_npz(tmp_path, GOOD_X, GOOD_Y - 1, "neg.npz")), r"\[0, num_classes\)"
    )


# ----- the command line turns these into exit 2 and one line --------------------------------


def test_cli_run_exits_2_with_one_line(tmp_path):
    y = GOOD_Y + 0.5
    np.savez(tmp_path / "bad.npz", x=GOOD_X, y=y)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        f"data: {{name: npz, options: {{path: {tmp_path / 'bad.npz'}}}}}\n"
        f"output: {{runs_dir: {tmp_path / 'runs'}}}\n"
    )
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(
        [sys.executable, "-m", "jopt.cli", "run", str(cfg)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "fractional" in lines[0] and "Traceback" not in proc.stderr, lines
    assert str(tmp_path / "bad.npz") in lines[0]  # names the file
    runs = tmp_path / "runs"
    assert not runs.exists() or not any(runs.iterdir())  # nothing left behind


# ----- options of the built-in sets, the seed and the split ---------------------------------


@pytest.mark.parametrize(
    ("name", "opts", "pattern"),
    [
        ("two_moons", {"n": 0}, "n must be an integer >= 2, got 0"),
        ("two_moons", {"n": 2.5}, "n must be an integer"),
        ("two_moons", {"noise": float("nan")}, "noise must be a finite number >= 0"),
        ("spirals", {"arms": 0}, "arms must be an integer >= 2"),
        ("linear", {"n": "abc"}, "n must be an integer >= 1, got 'abc'"),
        ("linear", {"dim": 0}, "dim must be an integer >= 1"),
        ("quadratic", {"condition_number": float("inf")}, "condition_number must be a finite"),
        ("mnist1d", {"num_samples": -1}, "num_samples must be an integer"),
        ("iris", {"noise": 0.1}, "takes no options"),
    ],
)
def test_builtin_options(name, opts, pattern):
    _error(lambda: load_dataset(name, **opts), re.escape(pattern))


def test_seed_name_path_and_split(tmp_path):
    _error(lambda: load_dataset("iris", seed=-1), r"seed must be an integer in \[0, 2\*\*32\)")
    _error(lambda: load_dataset("iris", seed=2**40), "seed must be")
    _error(lambda: load_dataset(None), "non-empty string")
    _error(lambda: load_dataset("npz", path=5), "must be a string, got 5")
    _error(lambda: load_dataset("csv", path=str(tmp_path), label="y"), "is a directory")
    _error(
        lambda: load_dataset("iris", test_fraction=float("nan")),
        r"test_fraction must be in \[0, 1\)",
    )
    _error(
        lambda: load_dataset("two_moons", n=3, test_fraction=0.5, val_fraction=0.4),
        "training split is empty",
    )


def test_a_corrupt_mnist1d_cache_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("JOPT_CACHE_DIR", str(tmp_path))
    first = load_dataset("mnist1d", num_samples=100, val_fraction=0.0)
    (cache,) = tmp_path.glob("mnist1d_*.npz")
    cache.write_bytes(cache.read_bytes()[:100])  # truncated by a crash, say
    again = load_dataset("mnist1d", num_samples=100, val_fraction=0.0)
    np.testing.assert_array_equal(again.x_train, first.x_train)

"""Data sets, user-file loaders, splits and preprocessing."""

import gzip
import struct

import numpy as np
import pytest

from jopt import JoptError
from jopt.data import Batching, dataset_names, load_dataset, read_idx

BUILTIN = {
    # name: (task, num_classes, input_shape, kind)
    "digits": ("classification", 10, (8, 8), "image"),
    "iris": ("classification", 3, (4,), "tabular"),
    "wine": ("classification", 3, (13,), "tabular"),
    "breast_cancer": ("classification", 2, (30,), "tabular"),
    "diabetes": ("regression", 1, (10,), "tabular"),
    "two_moons": ("classification", 2, (2,), "tabular"),
    "spirals": ("classification", 2, (2,), "tabular"),
    "linear": ("regression", 1, (10,), "tabular"),
    "quadratic": ("regression", 1, (10,), "tabular"),
}


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_builtin_datasets(name):
    task, k, shape, kind = BUILTIN[name]
    ds = load_dataset(name, seed=0, val_fraction=0.2, test_fraction=0.2)
    assert (ds.task, ds.num_classes, ds.input_shape, ds.kind) == (task, k, shape, kind)
    n = sum(ds.sizes().values())
    assert abs(ds.sizes()["test"] - 0.2 * n) <= 1 and abs(ds.sizes()["val"] - 0.2 * n) <= 1
    for s in ("train", "val", "test"):
        x, y = ds.split(s)
        assert x.dtype == np.float32 and x.shape[1:] == shape
        assert y.dtype == (np.int32 if task == "classification" else np.float32)
    if task == "classification":
        assert set(np.unique(ds.y_train)) == set(range(k))


def test_mnist1d_generated_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("JOPT_CACHE_DIR", str(tmp_path))
    before = np.random.get_state()[1].copy()
    # A small sample keeps the test fast; the default is the canonical 5000 (4000/1000).
    ds = load_dataset("mnist1d", seed=0, val_fraction=0.0, num_samples=500)
    assert ds.input_shape == (40,) and ds.kind == "signal" and ds.num_classes == 10
    assert ds.sizes() == {"train": 400, "val": 0, "test": 100}
    # the package seeds numpy's global RNG; we restore it
    np.testing.assert_array_equal(np.random.get_state()[1], before)
    assert len(list(tmp_path.glob("mnist1d_*.npz"))) == 1
    again = load_dataset("mnist1d", seed=0, val_fraction=0.0, num_samples=500)  # from the cache
    np.testing.assert_array_equal(again.x_train, ds.x_train)


def test_quadratic_has_the_requested_condition_number():
    ds = load_dataset(
        "quadratic",
        seed=3,
        test_fraction=0.0,
        preprocess="none",
        condition_number=1000.0,
        dim=8,
        n=200,
    )
    x = ds.x_train.astype(np.float64)
    ev = np.linalg.eigvalsh(x.T @ x / len(x))
    np.testing.assert_allclose(ev[-1] / ev[0], 1000.0, rtol=1e-3)
    np.testing.assert_allclose(ds.info["train_condition_number"], 1000.0, rtol=1e-3)


def test_split_is_deterministic_and_seeded():
    a = load_dataset("wine", seed=7, val_fraction=0.2, test_fraction=0.25)
    b = load_dataset("wine", seed=7, val_fraction=0.2, test_fraction=0.25)
    c = load_dataset("wine", seed=8, val_fraction=0.2, test_fraction=0.25)
    for s in ("train", "val", "test"):
        np.testing.assert_array_equal(a.split(s)[0], b.split(s)[0])
        np.testing.assert_array_equal(a.split(s)[1], b.split(s)[1])
    assert not np.array_equal(a.y_test, c.y_test) or not np.array_equal(a.x_test, c.x_test)


def test_split_is_stratified():
    ds = load_dataset("wine", seed=1, val_fraction=0.2, test_fraction=0.25, preprocess="none")
    y_all = np.concatenate([ds.y_train, ds.y_val, ds.y_test])
    overall = np.bincount(y_all) / len(y_all)
    for s in ("train", "val", "test"):
        y = ds.split(s)[1]
        # each class count is within one example of its proportional share
        np.testing.assert_array_less(
            np.abs(np.bincount(y, minlength=3) - overall * len(y)), 1.0 + 1e-9
        )


def _write_npz(path, x, y, **extra):
    np.savez(path, x=x, y=y, **extra)
    return str(path)


@pytest.mark.parametrize("method", ["standardize", "minmax"])
def test_preprocessing_is_fitted_on_train_only(tmp_path, method):
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, (60, 4))
    y = np.arange(60) % 3
    x_test = rng.normal(3.0, 2.0, (20, 4))
    extreme = x_test * 1000.0 + 1e4  # wildly different test data
    a = load_dataset(
        _write_npz(tmp_path / "a.npz", x, y, x_test=x_test, y_test=y[:20]),
        preprocess=method,
        val_fraction=0.25,
    )
    b = load_dataset(
        _write_npz(tmp_path / "b.npz", x, y, x_test=extreme, y_test=y[:20]),
        preprocess=method,
        val_fraction=0.25,
    )
    # the test data cannot influence how train/val are transformed
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.x_val, b.x_val)
    if method == "standardize":
        np.testing.assert_allclose(a.x_train.mean(0), 0.0, atol=1e-5)
        np.testing.assert_allclose(a.x_train.std(0), 1.0, atol=1e-5)
    else:
        np.testing.assert_allclose(a.x_train.min(0), 0.0, atol=1e-6)
        np.testing.assert_allclose(a.x_train.max(0), 1.0, atol=1e-6)
        assert b.x_test.min() > 1.0  # test is scaled with train's range, not its own
    # val/test are transformed with the train statistics
    stats = a.info["preprocess"]
    np.testing.assert_allclose(a.x_test, (x_test - stats["shift"]) / stats["scale"], rtol=1e-5)


def test_npz_loader(tmp_path):
    x = np.arange(40, dtype=np.float64).reshape(20, 2)
    y = np.arange(20) % 2
    ds = load_dataset(
        "npz", path=_write_npz(tmp_path / "d.npz", x, y), test_fraction=0.25, preprocess="none"
    )
    assert ds.task == "classification" and ds.num_classes == 2 and ds.sizes()["test"] == 5
    got = np.concatenate([ds.x_train, ds.x_test])
    np.testing.assert_array_equal(np.sort(got[:, 0]), x[:, 0])
    # the task is an explicit choice, never guessed from float labels
    path = _write_npz(tmp_path / "r.npz", x, y + 0.5)
    with pytest.raises(JoptError, match="fractional"):
        load_dataset(path, preprocess="none")
    reg = load_dataset(path, task="regression", preprocess="none")
    assert reg.task == "regression" and reg.y_train.dtype == np.float32


def test_csv_loader(tmp_path):
    p = tmp_path / "d.csv"
    rows = ["a,label,b"] + [f"{i},{i % 3},{2 * i}" for i in range(30)]
    p.write_text("\n".join(rows) + "\n")
    ds = load_dataset("csv", path=str(p), label="label", test_fraction=0.2, preprocess="none")
    assert ds.input_shape == (2,) and ds.num_classes == 3
    x = np.concatenate([ds.x_train, ds.x_test])
    y = np.concatenate([ds.y_train, ds.y_test])
    np.testing.assert_array_equal(x[:, 1], 2 * x[:, 0])  # label column removed, b = 2a
    np.testing.assert_array_equal(y, x[:, 0].astype(int) % 3)


def _idx_bytes(a: np.ndarray) -> bytes:
    code = {np.uint8: 0x08, np.int32: 0x0C}[a.dtype.type]
    dtype = ">u1" if code == 0x08 else ">i4"
    head = bytes([0, 0, code, a.ndim]) + b"".join(struct.pack(">I", s) for s in a.shape)
    return head + a.astype(dtype).tobytes()


def test_idx_loader_reads_mnist_format(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (30, 6, 5), dtype=np.uint8)
    labels = (np.arange(30) % 10).astype(np.uint8)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(_idx_bytes(imgs))
    # real MNIST is distributed gzipped: both forms must load
    with gzip.open(tmp_path / "train-labels-idx1-ubyte.gz", "wb") as f:
        f.write(_idx_bytes(labels))
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(_idx_bytes(imgs[:10]))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(labels[:10]))
    np.testing.assert_array_equal(read_idx(tmp_path / "train-images-idx3-ubyte"), imgs)
    ds = load_dataset(
        "idx",
        images=str(tmp_path / "train-images-idx3-ubyte"),
        labels=str(tmp_path / "train-labels-idx1-ubyte.gz"),
        test_images=str(tmp_path / "t10k-images-idx3-ubyte"),
        test_labels=str(tmp_path / "t10k-labels-idx1-ubyte"),
        preprocess="none",
        val_fraction=0.0,
    )
    assert ds.kind == "image" and ds.input_shape == (6, 5) and ds.num_classes == 10
    assert ds.sizes() == {"train": 30, "val": 0, "test": 10}
    np.testing.assert_allclose(ds.x_test, imgs[:10] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(ds.y_test, labels[:10])


# ----- bad input: one clear JoptError each, raised while loading -----------------------


def test_nan_in_file_is_rejected(tmp_path):
    x = np.ones((10, 3))
    x[4, 1] = np.nan
    with pytest.raises(JoptError, match="NaN"):
        load_dataset(_write_npz(tmp_path / "n.npz", x, np.arange(10) % 2))
    p = tmp_path / "n.csv"
    p.write_text("a,y\n1,0\n,1\n3,0\n")  # an empty cell
    with pytest.raises(JoptError, match="NaN"):
        load_dataset(str(p), label="y")


def test_wrong_shapes_are_rejected(tmp_path):
    with pytest.raises(JoptError, match="labels must have shape"):
        load_dataset(_write_npz(tmp_path / "s.npz", np.ones((10, 3)), np.zeros(9)))
    with pytest.raises(JoptError, match="inputs must have shape"):
        load_dataset(_write_npz(tmp_path / "v.npz", np.ones(10), np.zeros(10)))
    with pytest.raises(JoptError, match="test inputs have shape"):
        load_dataset(
            _write_npz(
                tmp_path / "t.npz",
                np.ones((10, 3)),
                np.arange(10) % 2,
                x_test=np.ones((4, 2)),
                y_test=np.zeros(4, int),
            )
        )
    p = tmp_path / "ragged.csv"
    p.write_text("a,b,y\n1,2,0\n1,1\n")
    with pytest.raises(JoptError, match="line 3 has 2 fields"):
        load_dataset(str(p), label="y")


def test_labels_out_of_range_are_rejected(tmp_path):
    with pytest.raises(JoptError, match="labels out of range"):
        load_dataset(
            _write_npz(tmp_path / "l.npz", np.ones((10, 3)), np.arange(10) % 5), num_classes=3
        )
    with pytest.raises(JoptError, match="class labels must be in"):
        load_dataset(
            _write_npz(tmp_path / "m.npz", np.ones((10, 3)), np.arange(10) - 1),
            task="classification",
        )


def test_missing_and_malformed_files_are_rejected(tmp_path):
    with pytest.raises(JoptError, match="not found"):
        load_dataset(str(tmp_path / "nope.npz"))
    (tmp_path / "bad.npz").write_bytes(b"this is not a zip file")
    with pytest.raises(JoptError, match=r"not a readable \.npz"):
        load_dataset(str(tmp_path / "bad.npz"))
    np.savez(tmp_path / "keys.npz", a=np.ones((3, 2)))
    with pytest.raises(JoptError, match="needs arrays 'x' and 'y'"):
        load_dataset(str(tmp_path / "keys.npz"))
    p = tmp_path / "d.csv"
    p.write_text("a,b\n1,2\n")
    with pytest.raises(JoptError, match="label column 'y' not found"):
        load_dataset(str(p), label="y")
    (tmp_path / "x.idx").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05ab")  # 5 promised, 2 there
    with pytest.raises(JoptError, match="size mismatch"):
        read_idx(tmp_path / "x.idx")
    (tmp_path / "y.idx").write_bytes(b"PK\x03\x04....")
    with pytest.raises(JoptError, match="bad magic"):
        read_idx(tmp_path / "y.idx")


def test_bad_options_are_rejected():
    with pytest.raises(JoptError, match="unknown data set 'mnist'"):
        load_dataset("mnist")
    with pytest.raises(JoptError, match="unknown preprocess"):
        load_dataset("iris", preprocess="whiten")
    with pytest.raises(JoptError, match="val_fraction"):
        load_dataset("iris", val_fraction=1.5)
    with pytest.raises(JoptError, match="takes no options"):
        load_dataset("iris", noise=0.3)
    with pytest.raises(JoptError, match="bad option"):
        load_dataset("two_moons", widht=3)
    assert "digits" in dataset_names() and "csv" in dataset_names()


def test_batch_larger_than_dataset_is_rejected():
    with pytest.raises(JoptError, match="larger than the training set"):
        Batching("minibatch", batch_size=101).steps_per_epoch(100)
    with pytest.raises(JoptError, match="accumulate_steps x batch_size = 120"):
        Batching("accumulate", batch_size=30, accumulate_steps=4).steps_per_epoch(100)
    with pytest.raises(JoptError, match="unknown batching strategy"):
        Batching("sgd")

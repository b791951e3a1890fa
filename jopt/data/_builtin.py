"""Built-in data sets: scikit-learn's bundled files, mnist1d (generated offline), synthetic sets.

Each loader returns a :class:`Raw` record; :func:`jopt.data.load_dataset` splits and scales it.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from jopt.core.errors import JoptError


@dataclasses.dataclass
class Raw:
    x: np.ndarray
    y: np.ndarray
    task: str
    num_classes: int | None  # None: the largest label + 1 (user files)
    kind: str = "tabular"
    x_test: np.ndarray | None = None  # a predefined test split, if the data set has one
    y_test: np.ndarray | None = None
    info: dict = dataclasses.field(default_factory=dict)


def _no_opts(name: str, opts: dict) -> None:
    if opts:
        raise JoptError(f"data set {name!r} takes no options, got {sorted(opts)}")


def _int_opt(dataset: str, key: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise JoptError(f"data set {dataset!r}: {key} must be an integer >= {low}, got {value!r}")
    return int(value)


def _float_opt(dataset: str, key: str, value, low: float) -> float:
    ok = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value < low:
        raise JoptError(
            f"data set {dataset!r}: {key} must be a finite number >= {low:g}, got {value!r}"
        )
    return float(value)


def _sklearn(loader_name: str, kind: str = "tabular"):
    def load(seed: int, **opts) -> Raw:
        del seed
        _no_opts(loader_name, opts)
        import sklearn.datasets

        bunch = getattr(sklearn.datasets, f"load_{loader_name}")()
        x, y = np.asarray(bunch.data), np.asarray(bunch.target)
        if loader_name == "diabetes":
            return Raw(x, y.astype(np.float32), "regression", 1)
        if loader_name == "digits":
            x = x.reshape(-1, 8, 8)  # 8x8 images, intensities 0..16
        return Raw(x, y, "classification", int(y.max()) + 1, kind)

    return load


def _cache_dir() -> Path:
    return Path(os.environ.get("JOPT_CACHE_DIR", Path.home() / ".cache" / "jopt"))


def _mnist1d(seed: int, *, generator_seed: int = 42, num_samples: int = 5000) -> Raw:
    """mnist1d from the package's own generator (no download): 4000 train / 1000 test, 40 features.

    Generation takes seconds, so the arrays are cached under ``$JOPT_CACHE_DIR`` (default
    ``~/.cache/jopt``). The generator seeds numpy's and Python's global RNGs; we restore both
    afterwards so loading data leaves no global state behind.
    """
    del seed  # the canonical data set is fixed by generator_seed; ``seed`` drives the val split
    generator_seed = _int_opt("mnist1d", "generator_seed", generator_seed, 0)
    num_samples = _int_opt("mnist1d", "num_samples", num_samples, 10)
    path = _cache_dir() / f"mnist1d_{generator_seed}_{num_samples}.npz"
    d = _read_cache(path)
    if d is None:
        from mnist1d.data import get_dataset_args, make_dataset

        args = get_dataset_args()
        args.seed, args.num_samples = generator_seed, num_samples
        np_state, py_state = np.random.get_state(), random.getstate()
        try:
            g = make_dataset(args)
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)
        d = {k: np.asarray(g[k]) for k in ("x", "y", "x_test", "y_test")}
        path.parent.mkdir(parents=True, exist_ok=True)
        # Atomic write: concurrent runs never see a half-written cache file.
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz", delete=False) as tmp:
            np.savez(tmp, **d)
        os.replace(tmp.name, path)
    return Raw(d["x"], d["y"], "classification", 10, "signal", d["x_test"], d["y_test"])


def _read_cache(path: Path) -> dict | None:
    """The cached arrays, or None when missing or unreadable (a cache is rebuilt, never trusted)."""
    keys = {"x", "y", "x_test", "y_test"}
    try:
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as f:
            d = {k: f[k] for k in f.files}
    except Exception:  # missing, truncated or corrupt: generate it again
        return None
    return d if set(d) == keys else None


def _two_moons(seed: int, *, n: int = 1000, noise: float = 0.1) -> Raw:
    from sklearn.datasets import make_moons

    n, noise = _int_opt("two_moons", "n", n, 2), _float_opt("two_moons", "noise", noise, 0.0)
    x, y = make_moons(n_samples=n, noise=noise, random_state=seed)
    return Raw(x, y, "classification", 2)


def _spirals(
    seed: int, *, n: int = 1000, arms: int = 2, noise: float = 0.05, turns: float = 1.5
) -> Raw:
    """``arms`` interleaved Archimedean spirals in 2-D, ``n`` points in all."""
    arms = _int_opt("spirals", "arms", arms, 2)
    n = _int_opt("spirals", "n", n, arms)
    noise = _float_opt("spirals", "noise", noise, 0.0)
    turns = _float_opt("spirals", "turns", turns, 0.0)
    rng = np.random.default_rng(seed)
    y = np.arange(n) % arms
    r = rng.uniform(0.05, 1.0, n)
    theta = 2 * np.pi * (turns * r + y / arms)
    x = np.stack([r * np.cos(theta), r * np.sin(theta)], 1) + noise * rng.standard_normal((n, 2))
    return Raw(x, y, "classification", arms)


def _linear(seed: int, *, n: int = 500, dim: int = 10, noise: float = 0.1) -> Raw:
    """``y = x w* + b* + noise`` with ``x ~ N(0, I)``; ``info`` holds ``w*`` and ``b*``."""
    n, dim = _int_opt("linear", "n", n, 1), _int_opt("linear", "dim", dim, 1)
    noise = _float_opt("linear", "noise", noise, 0.0)
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(dim)
    b = rng.standard_normal()
    x = rng.standard_normal((n, dim))
    y = x @ w + b + noise * rng.standard_normal(n)
    return Raw(x, y, "regression", 1, info={"w_true": w.astype(np.float32), "b_true": float(b)})


def _quadratic(
    seed: int, *, n: int = 500, dim: int = 10, condition_number: float = 100.0, noise: float = 0.0
) -> Raw:
    """Least squares whose design has an exact, known condition number.

    ``x = sqrt(n) Q diag(sqrt(lambda)) V^T`` with orthonormal ``Q`` (n x dim), ``V`` (dim x dim) and
    ``lambda`` log-spaced in ``[1/kappa, 1]``, so ``x^T x / n`` has eigenvalues exactly ``lambda``:
    the MSE loss ``||x w - y||^2 / n`` is a quadratic with Hessian ``2 x^T x / n`` and condition
    number ``kappa`` on the whole data set (the train split alone is close; its measured value is
    stored as ``info["train_condition_number"]``). Use ``preprocess: none`` to keep it.
    """
    dim = _int_opt("quadratic", "dim", dim, 1)
    n = _int_opt("quadratic", "n", n, dim)
    condition_number = _float_opt("quadratic", "condition_number", condition_number, 1.0)
    noise = _float_opt("quadratic", "noise", noise, 0.0)
    if condition_number < 1 or n < dim:
        raise JoptError(
            f"quadratic needs condition_number >= 1 and n >= dim, got {condition_number}, {n}<{dim}"
        )
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n, dim)))
    v, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    lam = np.logspace(-np.log10(condition_number), 0.0, dim)
    x = np.sqrt(n) * (q * np.sqrt(lam)) @ v.T
    w = rng.standard_normal(dim)
    y = x @ w + noise * rng.standard_normal(n)
    info = {
        "condition_number": float(condition_number),
        "eigenvalues": lam.astype(np.float32),
        "w_true": w.astype(np.float32),
    }
    return Raw(x, y, "regression", 1, info=info)


BUILTIN: dict[str, Callable[..., Raw]] = {
    "digits": _sklearn("digits", "image"),
    "iris": _sklearn("iris"),
    "wine": _sklearn("wine"),
    "breast_cancer": _sklearn("breast_cancer"),
    "diabetes": _sklearn("diabetes"),
    "mnist1d": _mnist1d,
    "two_moons": _two_moons,
    "spirals": _spirals,
    "linear": _linear,
    "quadratic": _quadratic,
}

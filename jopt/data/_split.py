"""Seeded, stratified splits and train-fitted preprocessing."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split

from jopt.core.errors import JoptError

PREPROCESS = ("none", "standardize", "minmax")


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise JoptError(f"{name} must be in [0, 1), got {value}")


def _take(x, y, n_take, seed, stratify):
    """Split off ``n_take`` examples; stratified by ``y`` when possible."""
    if n_take == 0:
        empty = np.arange(0)
        return np.arange(len(y)), empty
    if n_take >= len(y):
        raise JoptError(
            f"the training split is empty ({len(y)} examples left, {n_take} asked for "
            "val/test); lower val_fraction/test_fraction or use more data"
        )
    idx = np.arange(len(y))
    strat = y if stratify else None
    if stratify:
        _, counts = np.unique(y, return_counts=True)
        # sklearn needs >= 2 members per class and room for every class on both sides.
        n_cls = len(counts)
        if counts.min() < 2 or n_take < n_cls or len(y) - n_take < n_cls:
            strat = None
    rest, taken = train_test_split(idx, test_size=n_take, random_state=seed, stratify=strat)
    return np.sort(rest), np.sort(taken)


def split_arrays(
    x: np.ndarray,
    y: np.ndarray,
    *,
    seed: int,
    val_fraction: float,
    test_fraction: float,
    stratify: bool,
    x_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
) -> tuple[np.ndarray, ...]:
    """Deterministic train/val/test split; fractions are of the whole data set.

    The same ``seed`` always gives the same split. With ``stratify`` every split keeps the class
    proportions (sklearn's stratified shuffle). If a predefined test split is given (mnist1d,
    MNIST IDX test files), ``test_fraction`` is ignored and validation comes out of train.

    Returns ``(x_train, y_train, x_val, y_val, x_test, y_test)``.
    """
    _check_fraction("val_fraction", val_fraction)
    _check_fraction("test_fraction", test_fraction)
    if val_fraction + test_fraction >= 1.0:
        raise JoptError(
            f"val_fraction + test_fraction must be < 1, got {val_fraction + test_fraction}"
        )
    n = len(y)
    if x_test is None:
        n_test = round(test_fraction * n)
        rest, test = _take(x, y, n_test, seed, stratify)
        x_test, y_test = x[test], y[test]
        x, y = x[rest], y[rest]
        n_val = round(val_fraction * n)
    else:
        n_val = round(val_fraction * n)
    # A different stream for the second cut, so changing test_fraction does not reshuffle val.
    train, val = _take(x, y, n_val, seed + 1, stratify)
    if len(train) == 0:
        raise JoptError("the training split is empty; lower val_fraction/test_fraction")
    return x[train], y[train], x[val], y[val], x_test, y_test


def fit_preprocess(x_train: np.ndarray, method: str | None) -> dict:
    """Statistics of ``method`` fitted on the training inputs only (per feature).

    ``standardize``: ``(x - mean) / std`` with std 0 replaced by 1 (constant features stay 0).
    ``minmax``: ``(x - min) / (max - min)`` to [0, 1] on train, range 0 replaced by 1.
    """
    method = "none" if method is None else method
    if method not in PREPROCESS:
        raise JoptError(f"unknown preprocess {method!r}; allowed: {', '.join(PREPROCESS)}")
    if method == "none":
        return {"method": "none"}
    x = x_train.astype(np.float64)
    if method == "standardize":
        shift, scale = x.mean(0), x.std(0)
    else:
        shift = x.min(0)
        scale = x.max(0) - shift
    scale = np.where(scale > 0, scale, 1.0)
    return {
        "method": method,
        "shift": shift.astype(np.float32),
        "scale": scale.astype(np.float32),
    }


def apply_preprocess(x: np.ndarray, stats: dict[str, np.ndarray]) -> np.ndarray:
    """Apply statistics from :func:`fit_preprocess` to any split."""
    if str(stats["method"]) == "none":
        return x.astype(np.float32)
    return ((x - stats["shift"]) / stats["scale"]).astype(np.float32)

"""A seeded synthetic data function (nothing downloaded)."""

from __future__ import annotations

import numpy as np


def blobs(*, seed: int, n: int = 120, features: int = 4, classes: int = 3, spread: float = 1.0):
    """``classes`` Gaussian clusters in ``features`` dimensions, ``n`` examples in all.

    jopt passes ``seed`` (``data.seed``) and ``data.options``; it splits, stratifies and
    standardizes what this returns, as for a built-in data set.
    """
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=3.0, size=(classes, features))
    y = np.arange(n) % classes
    x = centers[y] + rng.normal(scale=spread, size=(n, features))
    return {"x": x.astype(np.float32), "y": y, "task": "classification"}

"""The ``Dataset`` container and input validation shared by every loader."""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np

from jopt.core.errors import JoptError

Task = Literal["classification", "regression"]
# How the trailing axes of one example are laid out; augmentation uses it to know what a
# "shift" or a "flip" means.
Kind = Literal["tabular", "signal", "image"]


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Train/validation/test splits as numpy arrays, plus what a model needs to know.

    Attributes:
        x_train, y_train, x_val, y_val, x_test, y_test: float32 inputs of shape
            ``(n, *input_shape)``; int32 labels of shape ``(n,)`` for classification, float32
            targets of shape ``(n,)`` or ``(n, k)`` for regression. A split may be empty (n = 0).
        task: ``"classification"`` or ``"regression"``.
        num_classes: number of classes (classification) or of regression outputs.
        input_shape: shape of one example.
        kind: ``"tabular"``, ``"signal"`` (1-D, length first) or ``"image"`` (H, W[, C]).
        name: the dataset's name.
        info: extra facts (e.g. the condition number of a quadratic problem, preprocessing stats).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    task: Task
    num_classes: int
    input_shape: tuple[int, ...]
    kind: Kind = "tabular"
    name: str = ""
    info: dict = dataclasses.field(default_factory=dict)

    @property
    def num_outputs(self) -> int:
        """Width of the model's last layer: classes, or regression targets."""
        return self.num_classes

    def split(self, which: str) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)`` of ``"train"``, ``"val"`` or ``"test"``."""
        if which not in ("train", "val", "test"):
            raise JoptError(f"unknown split {which!r}; allowed: train, val, test")
        return getattr(self, f"x_{which}"), getattr(self, f"y_{which}")

    def sizes(self) -> dict[str, int]:
        return {s: len(self.split(s)[1]) for s in ("train", "val", "test")}


def check_arrays(x: np.ndarray, y: np.ndarray, task: str, source: str) -> tuple[np.ndarray, ...]:
    """Validate raw ``(x, y)`` and cast them to the canonical dtypes.

    Raises ``JoptError`` for NaN/inf, mismatched lengths, empty data, non-integer or negative
    class labels, and object/string arrays. ``source`` names the file or dataset in the message.
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if x.dtype.kind not in "biuf":
        raise JoptError(f"{source}: inputs must be numeric, got dtype {x.dtype}")
    if y.dtype.kind not in "biuf":
        raise JoptError(f"{source}: labels/targets must be numeric, got dtype {y.dtype}")
    if x.ndim < 2:
        raise JoptError(f"{source}: inputs must have shape (n, features...), got {x.shape}")
    if len(x) == 0:
        raise JoptError(f"{source}: the data set is empty")
    if y.ndim not in (1, 2) or len(y) != len(x):
        raise JoptError(
            f"{source}: labels must have shape ({len(x)},) to match {len(x)} inputs, got {y.shape}"
        )
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise JoptError(
            f"{source}: inputs contain NaN or inf ({int((~np.isfinite(x)).sum())} values)"
        )
    if task == "classification":
        if y.ndim != 1:
            raise JoptError(f"{source}: class labels must be 1-D integers, got shape {y.shape}")
        if y.dtype.kind == "f" and (not np.all(np.isfinite(y)) or np.any(y != np.round(y))):
            raise JoptError(f"{source}: class labels must be integers (got NaN or fractions)")
        if np.any(y < 0):
            raise JoptError(f"{source}: class labels must be in [0, num_classes), got {y.min()}")
        y = y.astype(np.int32)
    else:
        y = y.astype(np.float32)
        if not np.all(np.isfinite(y)):
            raise JoptError(f"{source}: regression targets contain NaN or inf")
    return x, y


def check_labels(y: np.ndarray, num_classes: int, source: str) -> None:
    """Raise ``JoptError`` if a class label is outside ``[0, num_classes)``."""
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise JoptError(
            f"{source}: labels out of range: found {int(y.min())}..{int(y.max())}, "
            f"allowed 0..{num_classes - 1}"
        )

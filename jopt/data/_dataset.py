"""The ``Dataset`` container and input validation shared by every loader."""

from __future__ import annotations

import dataclasses
import math
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


TASKS = ("classification", "regression")
# A dense classifier's last layer holds hidden x num_classes weights; beyond this many classes
# the labels are almost surely not class indices (ImageNet-21k has 21,841). See docs/decisions.md.
MAX_CLASSES = 100_000
_F32_MAX = float(np.finfo(np.float32).max)
# The config key is named so a CLI user knows what to set.
_REGRESSION_HINT = "for real-valued targets pass task='regression' (config: data.task: regression)"


def resolve_task(task: str | None, default: str, source: str) -> str:
    """``task`` if given (checked), else ``default``."""
    if task is None:
        return default
    if task not in TASKS:
        raise JoptError(f"{source}: unknown task {task!r}; allowed: classification, regression")
    return task


def _check_finite(a: np.ndarray, what: str, source: str) -> None:
    """Reject NaN/inf, and finite values that would overflow float32."""
    if a.dtype.kind != "f":
        return  # integers always fit float32's range (|x| < 2**64 < 3.4e38)
    bad = ~np.isfinite(a)
    if bad.any():
        first = int(np.argwhere(bad)[0][0])
        raise JoptError(
            f"{source}: {what} contain NaN or inf ({int(bad.sum())} values, first in example "
            f"{first}); allowed: finite numbers"
        )
    if a.size and float(np.abs(a).max()) > _F32_MAX:
        raise JoptError(
            f"{source}: {what} hold values beyond float32's range (|v| > 3.4e38); "
            "allowed: finite float32 numbers"
        )


def _looks_one_hot(y: np.ndarray) -> bool:
    if y.ndim != 2 or y.size == 0:
        return False
    return bool(np.all((y == 0) | (y == 1)) and np.all(y.sum(1) == 1))


def _class_labels(y: np.ndarray, source: str) -> np.ndarray:
    """Check that ``y`` holds class indices 0..K-1 (K <= MAX_CLASSES); return them as int32."""
    if y.ndim != 1:
        if _looks_one_hot(y):
            raise JoptError(
                f"{source}: labels look one-hot (shape {y.shape}); class labels must be 1-D "
                f"integer indices 0..K-1 (y.argmax(1)), or {_REGRESSION_HINT}"
            )
        raise JoptError(
            f"{source}: class labels must be 1-D integers 0..K-1, got shape {y.shape}; "
            f"{_REGRESSION_HINT}"
        )
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)):
            raise JoptError(f"{source}: class labels contain NaN or inf; allowed: integers 0..K-1")
        frac = y != np.round(y)
        if frac.any():
            raise JoptError(
                f"{source}: class labels must be integers 0..K-1, found fractional values "
                f"(e.g. {y[frac][0]:g}); {_REGRESSION_HINT}"
            )
    if len(y) and y.min() < 0:
        raise JoptError(f"{source}: class labels must be in [0, num_classes), got {y.min():g}")
    if len(y) and y.max() >= MAX_CLASSES:
        top = int(y.max())
        raise JoptError(
            f"{source}: label {top} implies {top + 1} classes; at most {MAX_CLASSES} are "
            f"allowed (labels must be class indices 0..K-1; {_REGRESSION_HINT})"
        )
    return y.astype(np.int32)


def check_arrays(x: np.ndarray, y: np.ndarray, task: str, source: str) -> tuple[np.ndarray, ...]:
    """Validate raw ``(x, y)`` and cast them to the canonical dtypes.

    Raises ``JoptError`` for non-numeric arrays, empty data, examples without features,
    mismatched lengths, NaN/inf or values past float32's range, and, for classification,
    labels that are not 1-D integers in ``[0, MAX_CLASSES)`` (fractions and one-hot rows are
    refused, never turned into regression). ``source`` names the file or data set.
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
        raise JoptError(f"{source}: the data set is empty (0 examples); at least 1 is needed")
    if math.prod(x.shape[1:]) == 0:
        raise JoptError(
            f"{source}: inputs have no features (shape {x.shape}); each example needs at "
            "least one value"
        )
    if y.ndim not in (1, 2) or len(y) != len(x):
        raise JoptError(
            f"{source}: labels must have shape ({len(x)},) to match {len(x)} inputs, got {y.shape}"
        )
    _check_finite(x, "inputs", source)
    x = x.astype(np.float32)
    if task == "classification":
        return x, _class_labels(y, source)
    if y.ndim == 2 and y.shape[1] == 0:
        raise JoptError(f"{source}: regression targets have no columns (shape {y.shape})")
    _check_finite(y, "regression targets", source)
    return x, y.astype(np.float32)


def num_classes_of(ys: list[np.ndarray], num_classes, source: str) -> int:
    """The class count: ``num_classes`` if given (checked), else the largest label + 1."""
    implied = max((int(y.max()) + 1 for y in ys if len(y)), default=0)
    if num_classes is None:
        k = implied
    else:
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
            raise JoptError(f"{source}: num_classes must be an integer, got {num_classes!r}")
        k = int(num_classes)
        if k > MAX_CLASSES:
            raise JoptError(f"{source}: num_classes={k} is more than the {MAX_CLASSES} allowed")
    if k < 2:
        raise JoptError(
            f"{source}: a classifier needs at least 2 classes, the labels hold {max(k, 0)}; "
            f"give labels 0..K-1 with K >= 2, or {_REGRESSION_HINT}"
        )
    for y in ys:
        check_labels(y, k, source)
    return k


def check_labels(y: np.ndarray, num_classes: int, source: str) -> None:
    """Raise ``JoptError`` if a class label is outside ``[0, num_classes)``."""
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise JoptError(
            f"{source}: labels out of range: found {int(y.min())}..{int(y.max())}, "
            f"allowed 0..{num_classes - 1}"
        )

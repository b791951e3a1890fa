"""A sharded data set: directories of shards read through Grain, never loaded whole.

:func:`load_shards` describes a training directory (and optional held-out ``val`` / ``test``
directories) the way a :class:`jopt.data.Dataset` describes arrays: task, classes, input shape
and kind, from the shards' headers and one record. Training batches come from
:meth:`ShardedData.train_shards` (a :class:`jopt.data.GrainShards`: this process's contiguous
slice, shuffled per epoch by seed, resumable); evaluation reads every record of a split once
through :func:`eval_batches`, in fixed-size chunks padded with zero-weight rows so every
process runs the same number of equally shaped chunks.

The examples are read as stored: ``x`` is cast to float32, labels to int32 (classification) or
float32 (regression) as they are fed; there is no preprocessing and no random split (the
held-out directories are the splits).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np

from jopt.core.errors import JoptError
from jopt.data._dataset import MAX_CLASSES, resolve_task
from jopt.data._grain import ArrayShards, GrainShards, _grain, shard_range

__all__ = ["ShardedData", "eval_batches", "load_shards"]

KINDS = ("tabular", "signal", "image")
_ARRAYS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")


@dataclasses.dataclass(frozen=True)
class ShardedData:
    """What a run needs to know of a sharded data set (nothing of it is loaded).

    Attributes:
        train, val, test: shard directories (``val`` / ``test`` may be None).
        task, num_classes, input_shape, kind, name: as :class:`jopt.data.Dataset`'s.
        num_train: records in ``train`` (over all processes).
        sample: the first training example's ``x``, shape ``(1, *input_shape)``, float32 (a
            model is initialised on it).
    """

    train: str
    val: str | None
    test: str | None
    task: str
    num_classes: int
    input_shape: tuple[int, ...]
    kind: str
    num_train: int
    sample: np.ndarray
    name: str = "shards"

    @property
    def num_outputs(self) -> int:
        return self.num_classes

    def __getattr__(self, name: str) -> Any:
        # Dataset's in-memory arrays: code written for them gets one line, not a traceback
        if name in _ARRAYS or name == "split":
            raise JoptError(
                f"data {self.name!r} is read in batches from its shards, not held in memory: "
                "this needs an in-memory data set"
            )
        raise AttributeError(name)

    def splits(self) -> dict[str, str]:
        """The held-out directories, ``{"val": dir, "test": dir}`` (those given)."""
        return {s: d for s, d in (("val", self.val), ("test", self.test)) if d}

    def train_shards(self, batch_size: int, **kwargs: Any) -> GrainShards:
        """This process's training batches (:class:`GrainShards` keyword arguments)."""
        return GrainShards(self.train, batch_size=batch_size, **kwargs)

    def cast(self, batch: dict) -> tuple[np.ndarray, np.ndarray]:
        """A host batch as the model and loss take it: float32 ``x``, int32 or float32 ``y``."""
        y = np.asarray(batch["y"], np.int32 if self.task == "classification" else np.float32)
        return np.asarray(batch["x"], np.float32), y


def _label_max(src: ArrayShards, where: str) -> int:
    """The largest label of a split, read from the label arrays alone."""
    top = -1
    for k, (kind, _, _) in enumerate(src.files):
        if kind == "ar":
            raise JoptError(
                f"{where}: ArrayRecord shards hold no separate label array; "
                "give the class count (data.options.num_classes)"
            )
        y = src._open(k)[1]
        if not np.issubdtype(y.dtype, np.integer) or y.ndim != 1:
            raise JoptError(
                f"{where}: classification labels must be 1-D integers, got {y.dtype} {y.shape}"
                " (for real-valued targets set data.task: regression)"
            )
        if len(y):
            lo, hi = int(np.min(y)), int(np.max(y))
            if lo < 0:
                raise JoptError(f"{where}: labels must be >= 0, got {lo}")
            top = max(top, hi)
    return top


def load_shards(
    train: str,
    *,
    val: str | None = None,
    test: str | None = None,
    task: str | None = None,
    num_classes: int | None = None,
    kind: str | None = None,
) -> ShardedData:
    """Describe a sharded data set (see the module docstring); nothing is loaded whole.

    ``task`` defaults to classification; its class count is ``num_classes`` or, for ``.npz`` /
    ``.npy`` shards, one more than the largest label (read from the label arrays).
    ``kind`` is ``tabular`` for one-dimensional examples and must be given otherwise.
    """
    _grain()  # the optional dependency, checked first
    src = ArrayShards(train)
    if len(src) == 0:
        raise JoptError(f"{train} holds no records")
    first = src[0]
    x0, y0 = np.asarray(first["x"]), np.asarray(first["y"])
    input_shape = tuple(int(d) for d in x0.shape)
    task = resolve_task(task, "classification", "data shards")
    if kind is None:
        if len(input_shape) != 1:
            raise JoptError(
                f"{train}: examples of shape {input_shape}: say what they are with "
                f"data.options.kind ({', '.join(KINDS)})"
            )
        kind = "tabular"
    if kind not in KINDS:
        raise JoptError(f"data.options.kind: unknown kind {kind!r} (allowed: {', '.join(KINDS)})")
    held = {"val": val, "test": test}
    for split, d in held.items():
        if d is not None:
            other = ArrayShards(d)
            if not len(other):
                raise JoptError(f"{split} shards {d} hold no records")
            if len(other) and tuple(np.shape(other[0]["x"])) != input_shape:
                raise JoptError(
                    f"{split} shards {d}: examples of shape {tuple(np.shape(other[0]['x']))}, "
                    f"training examples {input_shape}"
                )
    if task == "classification":
        if num_classes is None:
            tops = [_label_max(src, train)]
            tops += [_label_max(ArrayShards(d), d) for d in held.values() if d is not None]
            num_classes = max(max(tops) + 1, 2)
        num_classes = int(num_classes)
        if not 2 <= num_classes <= MAX_CLASSES:
            raise JoptError(f"num_classes must be in [2, {MAX_CLASSES}], got {num_classes}")
    else:
        num_classes = int(np.prod(y0.shape)) if y0.ndim else 1
    return ShardedData(
        train=train,
        val=val,
        test=test,
        task=task,
        num_classes=num_classes,
        input_shape=input_shape,
        kind=kind,
        num_train=len(src),
        sample=np.asarray(x0, np.float32)[None],
    )


def eval_batches(
    directory: str,
    chunk: int,
    *,
    process_index: int = 0,
    process_count: int = 1,
) -> Iterator[dict[str, np.ndarray]]:
    """Every record of this process's contiguous slice of ``directory``, once, in chunks of
    ``chunk`` rows ``{"x", "y", "w"}``; the last is padded with rows of weight 0. Every process
    gets ``ceil(ceil(N / P) / chunk)`` chunks (an all-padding chunk where its slice is short)."""
    grain = _grain()
    src = ArrayShards(directory)
    n = len(src)
    start, stop = shard_range(n, process_index, process_count)
    most = -(-n // process_count)  # the longest slice
    count = -(-most // chunk)
    ds = grain.MapDataset.source(src)[start:stop].batch(chunk, drop_remainder=False)
    it = iter(ds.to_iter_dataset()) if stop > start else iter(())
    template = src[0] if n else None
    for _ in range(count):
        b = next(it, None)
        rows = 0 if b is None else len(b["y"])
        if b is None:
            b = {k: np.asarray(v)[None][:0] for k, v in template.items()}
        pad = chunk - rows
        out = {k: np.concatenate([v, np.zeros((pad, *v.shape[1:]), v.dtype)]) for k, v in b.items()}
        out["w"] = np.concatenate([np.ones(rows, np.float32), np.zeros(pad, np.float32)])
        yield out

"""The streamed epoch: one jitted step per batch, the batches fed from the host (Grain shards).

For data that does not fit in memory (``jopt.data.GrainShards``) the epoch cannot be one
``lax.scan`` over an on-device array. :class:`StreamEpoch` is an ``epoch_fn(state, *unused) ->
(state, metrics)`` that :func:`jopt.train.run_epochs` drives like the scan-fused epoch: it
pulls ``steps_per_epoch`` batches of the epoch from its shards, runs the jitted step of
:func:`make_stream_step` (the engine's :func:`jopt.train.make_train_step`) on each and returns
the same epoch metrics as :func:`jopt.train.make_train_epoch` (``train_loss``,
``train_accuracy``, ``penalty``, ``grad_norm``, ``step_loss``, ``step_grad_norm``,
``step_finite``, by the same formulas).

Randomness: step ``t`` (the state's step count) draws its dropout/augmentation key as
``fold_in(state.key, t)``; the state's key never changes, so a run resumed at any step draws
what the uninterrupted run drew. The order of the examples is the shards' (seeded per epoch).

Mid-epoch: ``on_step(state, epoch, position)`` runs after every step but an epoch's last (a
checkpoint hook); :meth:`StreamEpoch.position_state` is what a checkpoint stores (the data
iterator's state and the epoch's step metrics so far) and :meth:`StreamEpoch.resume` restores
it, so the resumed epoch continues at the same example and logs the same epoch record.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jopt.core.errors import JoptError
from jopt.train._step import (
    LossSpec,
    make_train_step,
    pack_train_state,
    summarize_steps,
    unpack_train_state,
)

__all__ = ["StreamEpoch", "evaluate_stream", "make_stream_step"]

STEP_KEYS = ("loss", "penalty", "correct", "count", "grad_norm", "finite")


def make_stream_step(
    model: nn.Module,
    tx: Any,
    spec: LossSpec,
    *,
    accumulate_steps: int = 1,
    augment: Any = None,
    kind: str = "tabular",
    layout: Any = None,
) -> Callable:
    """A pure ``step(state, x, y) -> (state, metrics)`` on one host batch of ``k * b`` rows.

    The batch is cut into ``k = accumulate_steps`` micro-batches of ``b`` (exact gradient
    accumulation, as ``make_train_step``); the key is ``fold_in(state.key, state.step)``. With
    a ``layout`` the state is packed on entry and unpacked on exit (per-leaf in and out, as the
    packed epoch); ``metrics`` are the step's (``loss``, ``penalty``, ``correct``, ``count``,
    ``grad_norm``, ``finite``).
    """
    step = make_train_step(model, tx, spec, augment=augment, kind=kind, layout=layout)
    k = int(accumulate_steps)

    def stream_step(state, x, y):
        if x.shape[0] % k:
            raise JoptError(f"a batch of {x.shape[0]} rows does not split into {k} micro-batches")
        xb = x.reshape(k, x.shape[0] // k, *x.shape[1:])
        yb = y.reshape(k, y.shape[0] // k, *y.shape[1:])
        wb = jnp.ones(yb.shape[:2], jnp.float32)
        key = jax.random.fold_in(state.key, state.step)
        if layout is not None:
            state = pack_train_state(state, tx, layout)
        state, m = step(state, xb, yb, wb, key)
        if layout is not None:
            state = unpack_train_state(state, tx, layout)
        return state, m

    return stream_step


class StreamEpoch:
    """``epoch_fn(state, *unused) -> (state, metrics)`` over host batches (see the module).

    Args:
        step: the jitted :func:`make_stream_step` (state donated).
        shards: a ``jopt.data.GrainShards`` (this process's batches).
        put: ``batch dict -> (x, y)`` on device (cast, and for a multi-process run one global
            array from this process's rows).
        classification: whether ``train_accuracy`` is computed.
        on_step: ``(state, epoch, position) -> None`` after each step but the epoch's last;
            ``epoch`` is 1-based, ``position`` the steps done in it.
    """

    def __init__(
        self,
        step: Callable,
        shards: Any,
        put: Callable[[dict], tuple],
        *,
        classification: bool,
        on_step: Callable[[Any, int, int], None] | None = None,
    ) -> None:
        self.step, self.shards, self.put = step, shards, put
        self.steps_per_epoch = int(shards.steps_per_epoch)
        self.on_step = on_step
        self.classification = classification
        self.epoch = 0  # epochs completed
        self._summary = jax.jit(lambda m: summarize_steps(m, classification))
        self._iter: Any = None
        self._done: list[dict] = []  # host step metrics restored from a checkpoint
        self._ms: list[dict] = []  # this session's device step metrics of the current epoch

    @property
    def position(self) -> int:
        """Steps done in the current epoch."""
        return len(self._done) + len(self._ms)

    def resume(self, epoch: int, position: dict | None = None) -> None:
        """Continue after ``epoch`` completed epochs, mid-way into the next one when
        ``position`` (a :meth:`position_state`) says so."""
        self.epoch, self._ms, self._iter = int(epoch), [], None
        self._done = []
        if position is None:
            return
        data, steps = position.get("data"), position.get("steps")
        if not isinstance(data, dict) or not isinstance(steps, dict):
            raise JoptError(f"not a streamed-epoch position: {position}")
        if int(data.get("epoch", -1)) != self.epoch:
            raise JoptError(
                f"the data position is in epoch {data.get('epoch')} (0-based), the state after "
                f"{self.epoch} epochs"
            )
        cols = {k: np.asarray(v["values"], v["dtype"]) for k, v in steps.items()}
        n = len(cols["loss"])
        if int(data.get("next_index", -1)) != n:
            raise JoptError(f"the data position {data} does not follow {n} logged steps")
        self._done = [{k: c[i] for k, c in cols.items()} for i in range(n)]
        self._iter = self.shards.iterator(data)

    def position_state(self) -> dict:
        """JSON-able: the data iterator's state and the current epoch's step metrics so far."""
        rows = self._done + jax.device_get(self._ms)
        steps = {}
        for k in STEP_KEYS:
            col = np.asarray([r[k] for r in rows]) if rows else np.zeros((0,), np.float32)
            steps[k] = {"dtype": str(col.dtype), "values": col.tolist()}
        data = (
            self._iter.get_state()
            if self._iter is not None
            else {"epoch": self.epoch, "next_index": 0}
        )
        return {"data": dict(data), "steps": steps}

    def __call__(self, state: Any, *unused: Any) -> tuple[Any, dict]:
        if self._iter is None:
            self._iter = self.shards.iterator({"epoch": self.epoch, "next_index": 0})
        spe = self.steps_per_epoch
        epoch = self.epoch + 1
        for batch in itertools.islice(self._iter, spe - self.position):
            x, y = self.put(batch)
            state, m = self.step(state, x, y)
            self._ms.append(m)
            if self.on_step is not None and self.position < spe:
                self.on_step(state, epoch, self.position)
        if self.position != spe:
            raise JoptError(f"the shards ran out after {self.position} of {spe} steps")
        rows = self._done + jax.device_get(self._ms)
        stacked = {k: np.stack([np.asarray(r[k]) for r in rows]) for k in STEP_KEYS}
        metrics = self._summary(stacked)
        self.epoch, self._done, self._ms, self._iter = epoch, [], [], None
        return state, metrics


def evaluate_stream(
    sums: Callable, params: Any, model_state: Any, splits: dict, put: Callable[[dict], tuple]
) -> dict:
    """``{split: {metric: mean}}``: ``splits`` maps a name to ``(chunks, size)``, where
    ``chunks()`` yields ``{"x", "y", "w"}`` host chunks (``jopt.data.eval_batches``), ``size``
    the split's record count; ``sums`` is the jitted :func:`jopt.train.make_eval_sums`."""
    out = {}
    for name, (chunks, size) in splits.items():
        acc = None
        for chunk in chunks():
            s = sums(params, model_state, *put(chunk))
            acc = s if acc is None else jax.tree.map(jnp.add, acc, s)
        if acc is None:
            raise JoptError(f"evaluation split {name!r} gave no chunks")
        out[name] = {k: v / jnp.float32(size) for k, v in acc.items()}
    return out

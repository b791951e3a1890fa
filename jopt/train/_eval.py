"""Evaluation: loss and accuracy (classification) or MSE (regression) on one split."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jopt.train._losses import mse
from jopt.train._step import LossSpec, _targets, apply_model

__all__ = ["make_eval_fn", "make_eval_sums"]


def make_eval_sums(model: nn.Module, spec: LossSpec) -> Callable:
    """A pure ``sums(params, model_state, x, y, w) -> {metric: weighted sum}`` for one chunk,
    eval mode (``make_eval_fn``'s metrics before the division by the weight total; the
    streamed evaluation, ``jopt.train.evaluate_stream``, sums chunks with it too)."""
    # the data loss alone: no label smoothing, no penalty (the user's loss_fn, if any, kept)
    plain = dataclasses.replace(spec, label_smoothing=0.0, l1=0.0, l2=0.0, penalty_mask=None)
    loss_fn = plain.per_example()

    def sums(params, model_state, x, y, w):
        out, _ = apply_model(model, params, model_state, x, train=False)
        s = {"loss": jnp.sum(w * loss_fn(out, _targets(plain, y)))}
        if spec.task == "classification":
            s["accuracy"] = jnp.sum(w * (jnp.argmax(out, -1) == y).astype(jnp.float32))
        else:
            s["mse"] = jnp.sum(w * mse(out, y))
        return s

    return sums


def make_eval_fn(model: nn.Module, spec: LossSpec, *, chunk_size: int | None = 4096) -> Callable:
    """A pure ``eval_fn(params, model_state, x, y) -> dict`` (un-jitted).

    The model runs with ``train=False``: dropout off, batch norm on its running averages, no
    augmentation. Returns ``loss`` (the data loss without label smoothing or penalty) and
    ``accuracy`` (classification) or ``mse`` (regression). Inputs larger than ``chunk_size`` are
    evaluated in padded chunks under ``lax.map`` to bound memory.
    """
    sums = make_eval_sums(model, spec)

    def eval_fn(params, model_state, x, y):
        n = x.shape[0]
        if n == 0:
            keys = ("loss", "accuracy") if spec.task == "classification" else ("loss", "mse")
            return {k: jnp.full((), jnp.nan, jnp.float32) for k in keys}
        if chunk_size is None or n <= chunk_size:
            s = sums(params, model_state, x, y, jnp.ones((n,), jnp.float32))
        else:
            c = -(-n // chunk_size)
            pad = c * chunk_size - n
            w = jnp.concatenate([jnp.ones((n,), jnp.float32), jnp.zeros((pad,), jnp.float32)])
            xp = jnp.concatenate([x, jnp.zeros((pad, *x.shape[1:]), x.dtype)])
            yp = jnp.concatenate([y, jnp.zeros((pad, *y.shape[1:]), y.dtype)])
            shape = lambda a: a.reshape(c, chunk_size, *a.shape[1:])  # noqa: E731
            per = jax.lax.map(
                lambda t: sums(params, model_state, *t), (shape(xp), shape(yp), shape(w))
            )
            s = jax.tree.map(lambda a: jnp.sum(a, 0), per)
        return {k: v / n for k, v in s.items()}

    return eval_fn

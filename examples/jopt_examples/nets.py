"""Tiny classifiers, one per framework, each with batch-norm statistics and dropout.

jopt builds them from ``model.options`` plus, where the signature names them, ``num_outputs``,
``input_shape``, ``dropout`` (``regularization.dropout``) and ``rngs`` (NNX) or ``key``
(equinox) drawn from the run's seed.
"""

from __future__ import annotations

import math

import equinox as eqx
import flax.linen as nn
import jax
from flax import nnx


class LinenMLP(nn.Module):
    """flax linen: ``__call__(x, train)``; batch statistics in the ``batch_stats`` collection,
    dropout from the ``dropout`` RNG stream (jopt passes both)."""

    num_outputs: int
    hidden: int = 8
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = x.reshape(x.shape[0], -1)
        x = nn.Dense(self.hidden)(x)
        x = nn.BatchNorm(use_running_average=not train)(x)
        x = nn.Dropout(self.dropout, deterministic=not train)(nn.relu(x))
        return nn.Dense(self.num_outputs)(x)


class NNXMLP(nnx.Module):
    """flax NNX: built with ``rngs``; ``__call__(x)``; jopt switches ``train()``/``eval()``."""

    def __init__(self, input_shape, num_outputs, hidden=8, dropout=0.0, *, rngs: nnx.Rngs):
        self.dense1 = nnx.Linear(math.prod(input_shape), hidden, rngs=rngs)
        self.norm = nnx.BatchNorm(hidden, rngs=rngs)
        self.drop = nnx.Dropout(dropout, rngs=rngs)
        self.dense2 = nnx.Linear(hidden, num_outputs, rngs=rngs)

    def __call__(self, x):
        x = x.reshape(x.shape[0], -1)
        x = self.drop(nnx.relu(self.norm(self.dense1(x))))
        return self.dense2(x)


class EqxMLP(eqx.Module):
    """equinox: built with ``key``; one example at a time, ``__call__(x, state, *, key)``
    (jopt vmaps over the batch with ``axis_name="batch"``, which ``BatchNorm`` names)."""

    dense1: eqx.nn.Linear
    norm: eqx.nn.BatchNorm
    drop: eqx.nn.Dropout
    dense2: eqx.nn.Linear

    def __init__(self, input_shape, num_outputs, hidden=8, dropout=0.0, *, key):
        k1, k2 = jax.random.split(key)
        self.dense1 = eqx.nn.Linear(math.prod(input_shape), hidden, key=k1)
        self.norm = eqx.nn.BatchNorm(hidden, axis_name="batch", mode="batch")
        self.drop = eqx.nn.Dropout(dropout)
        self.dense2 = eqx.nn.Linear(hidden, num_outputs, key=k2)

    def __call__(self, x, state, *, key=None):
        x = self.dense1(x.reshape(-1))
        x, state = self.norm(x, state)
        x = self.drop(jax.nn.relu(x), key=key)
        return self.dense2(x), state

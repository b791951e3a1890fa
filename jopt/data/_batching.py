"""Batching strategies: which examples each optimizer step sees, planned on device.

==============  ==================================  ====================================
strategy        examples per step                   steps per epoch (n training examples)
==============  ==================================  ====================================
``full``        all n (batch gradient descent)      1
``minibatch``   ``batch_size``, reshuffled          ``n // batch_size`` (``remainder="drop"``)
                each epoch                          ``ceil(n / batch_size)`` (``"pad"``)
``stochastic``  1, reshuffled each epoch            n
``accumulate``  ``accumulate_steps`` micro-batches  ``n // (k * batch_size)`` (``"drop"``)
                of ``batch_size``, gradients        ``ceil(n / (k * batch_size))`` (``"pad"``)
                averaged into one step
==============  ==================================  ====================================

``remainder="drop"`` (the default) drops the last ``n mod batch`` examples of each shuffled
epoch; a different random subset is dropped every epoch, and every step has the same size.
``remainder="pad"`` keeps every example: the last batch is padded with copies of index 0 that get
weight 0 in a mask, and the loss is the weighted mean over the real examples only.

``accumulate`` is exact: it sums per-example loss gradients over the k micro-batches and divides
by the number of real examples, so it equals ``minibatch`` with ``k * batch_size`` (same key, same
permutation) up to float rounding, for any model without batch statistics.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from jopt.core.errors import JoptError

STRATEGIES = ("full", "minibatch", "stochastic", "accumulate")
REMAINDERS = ("drop", "pad")


@dataclasses.dataclass(frozen=True)
class Batching:
    """How an epoch is cut into optimizer steps (see the module docstring for the table)."""

    strategy: str = "minibatch"
    batch_size: int = 32
    accumulate_steps: int = 1
    remainder: str = "drop"
    shuffle: bool = True

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise JoptError(
                f"unknown batching strategy {self.strategy!r}; allowed: {', '.join(STRATEGIES)}"
            )
        if self.remainder not in REMAINDERS:
            raise JoptError(f"unknown remainder {self.remainder!r}; allowed: drop, pad")
        if int(self.batch_size) < 1:
            raise JoptError(f"batch_size must be >= 1, got {self.batch_size}")
        if int(self.accumulate_steps) < 1:
            raise JoptError(f"accumulate_steps must be >= 1, got {self.accumulate_steps}")

    def shape(self, n: int) -> tuple[int, int, int]:
        """``(steps, micro_batches, micro_batch_size)`` for ``n`` training examples.

        Raises ``JoptError`` when a step needs more examples than the data set holds.
        """
        if n < 1:
            raise JoptError("the training split is empty")
        s = self.strategy
        if s == "full":
            return 1, 1, n
        if s == "stochastic":
            return n, 1, 1
        k = self.accumulate_steps if s == "accumulate" else 1
        per_step = k * self.batch_size
        if per_step > n:
            what = (
                f"accumulate_steps x batch_size = {per_step}" if k > 1 else f"batch_size {per_step}"
            )
            raise JoptError(f"{what} is larger than the training set ({n} examples)")
        steps = n // per_step if self.remainder == "drop" else math.ceil(n / per_step)
        return steps, k, self.batch_size

    def steps_per_epoch(self, n: int) -> int:
        return self.shape(n)[0]

    def plan(self, key: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
        """Example indices ``(steps, k, b)`` int32 and weights ``(steps, k, b)`` float32 (0 = pad).

        Shuffling is a ``jax.random.permutation`` on device, so a whole epoch can run under
        ``lax.scan`` inside one jitted call.
        """
        steps, k, b = self.shape(n)
        total = steps * k * b
        shuffle = self.shuffle and self.strategy != "full"
        perm = jax.random.permutation(key, n) if shuffle else jnp.arange(n)
        perm = perm.astype(jnp.int32)
        if total <= n:
            idx, mask = perm[:total], jnp.ones((total,), jnp.float32)
        else:
            pad = total - n
            idx = jnp.concatenate([perm, jnp.zeros((pad,), jnp.int32)])
            mask = jnp.concatenate([jnp.ones((n,), jnp.float32), jnp.zeros((pad,), jnp.float32)])
        return idx.reshape(steps, k, b), mask.reshape(steps, k, b)

"""A flax model of many tiny parameter leaves: issue 13's 2000-leaf benchmark as a config.

``ManyLeaves(leaves=2000, size=4)`` holds ``leaves`` parameters of shape ``(size,)``. The input
is average-pooled to ``size`` features ``h``; the model computes ``sum_i w_i * h`` (every leaf
touches the output, and its gradient is one small reduction), then a fixed (not trained)
projection to the classes. Forward and backward are as cheap as a model can be, so what an
optimizer adds per leaf shows. Used by ``benchmarks/configs/leaves2000.yaml``.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp


class ManyLeaves(nn.Module):
    """``leaves`` parameters of shape ``(size,)``; outputs ``(batch, num_outputs)``."""

    num_outputs: int
    leaves: int = 2000
    size: int = 4

    @nn.compact
    def __call__(self, x, train: bool = False):
        del train
        h = jnp.reshape(x, (x.shape[0], self.size, -1)).mean(-1)
        acc = jnp.zeros_like(h)
        for i in range(self.leaves):
            w = self.param(f"w{i:05d}", nn.initializers.normal(0.1), (self.size,), h.dtype)
            acc = acc + h * w
        return acc @ jnp.eye(self.size, self.num_outputs, dtype=acc.dtype)

"""The flax MLP of issue 6: ``blocks`` x (Dense + LayerNorm), then a Dense head."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


class BlockMLP(nn.Module):
    blocks: int
    width: int = 64
    outputs: int = 10

    @nn.compact
    def __call__(self, x):
        for _ in range(self.blocks):
            x = nn.LayerNorm()(nn.relu(nn.Dense(self.width)(x)))
        return nn.Dense(self.outputs)(x)


def make_problem(blocks: int, width: int = 64, batch: int = 32, seed: int = 0):
    """``(model, params, x, y)`` for a classification batch of random data."""
    model = BlockMLP(blocks=blocks, width=width)
    kx, ky, kp = jax.random.split(jax.random.key(seed), 3)
    x = jax.random.normal(kx, (batch, width), jnp.float32)
    y = jax.random.randint(ky, (batch,), 0, 10)
    params = model.init(kp, x)["params"]
    return model, params, x, y


def make_loss(model):
    def loss_fn(params, x, y):
        logits = model.apply({"params": params}, x)
        logp = jax.nn.log_softmax(logits)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    return loss_fn

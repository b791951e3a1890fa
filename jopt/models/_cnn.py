"""Small convolutional networks: 1-D for signals (mnist1d), 2-D for images (digits, MNIST)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jopt.models._layers import activation, apply_norm, dense, kernel_init


class CNN(nn.Module):
    """``[Conv -> norm -> act -> (max-pool 2)] x len(channels) -> flatten -> Dense -> act -> head``.

    ``dims`` is the number of spatial axes (1 or 2). If ``None`` it is inferred from one
    example: ``(L,)`` is a 1-D signal, ``(H, W)`` a 2-D image, ``(H, W, C)`` a 2-D image with
    channels. Inputs without a channel axis get one. Pooling halves each spatial axis while it is
    at least ``2 * pool`` long, so tiny 8x8 digits still work with three layers.

    Attributes:
        num_outputs: classes or regression targets.
        channels: output channels of each convolution.
        kernel_size: convolution width (same along every spatial axis); "SAME" padding.
        dense: width of the hidden dense layer (0 for none).
        pool: max-pool window and stride after each convolution (1 disables pooling).
        dtype: compute (activation) dtype; ``None`` infers it from the inputs and parameters.
        param_dtype: dtype of the parameters (float32 master weights under ``bf16_mixed``).
    """

    num_outputs: int
    channels: Sequence[int] = (32, 32)
    kernel_size: int = 3
    dense: int = 128
    activation: str = "relu"
    dropout: float = 0.0
    norm: str | None = None
    pool: int = 2
    dims: int | None = None
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        act = activation(self.activation)
        per_example = x.ndim - 1
        dims = self.dims if self.dims is not None else min(per_example, 2)
        if per_example == dims:
            x = x[..., None]  # add a channel axis
        for i, ch in enumerate(self.channels):
            x = nn.Conv(
                ch,
                (self.kernel_size,) * dims,
                padding="SAME",
                kernel_init=kernel_init(self.activation),
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                name=f"conv_{i}",
            )(x)
            x = apply_norm(self.norm, x, train, f"norm_{i}", self.dtype, self.param_dtype)
            x = act(x)
            if self.pool > 1 and all(s >= 2 * self.pool for s in x.shape[1 : 1 + dims]):
                window = (self.pool,) * dims
                x = nn.max_pool(x, window, strides=window)
        x = x.reshape((x.shape[0], -1))
        if self.dense:
            x = dense(self, self.dense, "dense", self.activation)(x)
            x = act(x)
            if self.dropout:
                x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return dense(self, self.num_outputs, "head")(x)

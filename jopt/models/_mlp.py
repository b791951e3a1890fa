"""Linear models and multi-layer perceptrons."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jopt.models._layers import activation, apply_norm, dense


class Linear(nn.Module):
    """``y = x W + b`` on flattened inputs: logistic regression with cross-entropy (softmax over
    ``num_outputs`` classes), linear regression with MSE.

    ``dtype`` is the compute dtype (``None``: from the inputs and parameters) and
    ``param_dtype`` the parameters' dtype (flax's convention; see :class:`Precision`)."""

    num_outputs: int
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        del train
        x = x.reshape((x.shape[0], -1))
        return nn.Dense(
            self.num_outputs,
            kernel_init=nn.initializers.lecun_normal(),
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )(x)


class MLP(nn.Module):
    """``Dense -> [norm] -> activation -> [dropout]`` for each width in ``hidden``, then a linear
    head. Inputs are flattened. Dropout is active only when ``train=True`` and draws from the
    ``"dropout"`` RNG stream.

    Attributes:
        num_outputs: width of the output layer (classes or regression targets).
        hidden: widths of the hidden layers; its length is the depth.
        activation: relu, gelu, tanh, sigmoid, elu, leaky_relu or silu.
        dropout: drop probability after each hidden activation.
        norm: ``None``, ``"layer"`` or ``"batch"`` (before the activation).
        dtype: compute (activation) dtype; ``None`` infers it from the inputs and parameters.
        param_dtype: dtype of the parameters (float32 master weights under ``bf16_mixed``).
    """

    num_outputs: int
    hidden: Sequence[int] = (128,)
    activation: str = "relu"
    dropout: float = 0.0
    norm: str | None = None
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        act = activation(self.activation)
        x = x.reshape((x.shape[0], -1))
        for i, width in enumerate(self.hidden):
            x = dense(self, width, f"dense_{i}", self.activation)(x)
            x = apply_norm(self.norm, x, train, f"norm_{i}", self.dtype, self.param_dtype)
            x = act(x)
            if self.dropout:
                x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return dense(self, self.num_outputs, "head")(x)

"""Linear models and multi-layer perceptrons."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax

from jopt.models._layers import activation, apply_norm, kernel_init


class Linear(nn.Module):
    """``y = x W + b`` on flattened inputs: logistic regression with cross-entropy (softmax over
    ``num_outputs`` classes), linear regression with MSE."""

    num_outputs: int

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        del train
        x = x.reshape((x.shape[0], -1))
        return nn.Dense(self.num_outputs, kernel_init=nn.initializers.lecun_normal())(x)


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
    """

    num_outputs: int
    hidden: Sequence[int] = (128,)
    activation: str = "relu"
    dropout: float = 0.0
    norm: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        act = activation(self.activation)
        x = x.reshape((x.shape[0], -1))
        for i, width in enumerate(self.hidden):
            x = nn.Dense(width, kernel_init=kernel_init(self.activation), name=f"dense_{i}")(x)
            x = apply_norm(self.norm, x, train, f"norm_{i}")
            x = act(x)
            if self.dropout:
                x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return nn.Dense(self.num_outputs, kernel_init=nn.initializers.lecun_normal(), name="head")(
            x
        )

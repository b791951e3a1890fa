"""Activations and initializers shared by the built-in models."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jopt.core.errors import JoptError

ACTIVATIONS = {
    "relu": nn.relu,
    "gelu": nn.gelu,
    "tanh": nn.tanh,
    "sigmoid": nn.sigmoid,
    "elu": nn.elu,
    "leaky_relu": nn.leaky_relu,
    "silu": nn.silu,
}
_RELU_LIKE = ("relu", "gelu", "elu", "leaky_relu", "silu")
NORMS = (None, "none", "layer", "batch")


def activation(name: str):
    if name not in ACTIVATIONS:
        raise JoptError(f"unknown activation {name!r}; allowed: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def kernel_init(act: str) -> jax.nn.initializers.Initializer:
    """He (Kaiming) normal for ReLU-like units, LeCun normal for tanh/sigmoid and linear layers.

    He et al. 2015 ("Delving Deep into Rectifiers") scale the variance by 2/fan_in so ReLU
    activations keep their scale with depth; LeCun normal (1/fan_in) is flax's default.
    """
    if act in _RELU_LIKE:
        return nn.initializers.he_normal()
    return nn.initializers.lecun_normal()


def dense(module: nn.Module, features: int, name: str, act: str | None = None) -> nn.Dense:
    """A ``Dense`` layer of ``module`` in its ``dtype``/``param_dtype``: :func:`kernel_init` of
    ``act`` for a hidden layer, LeCun normal for the output layer (``act`` None). Call it inside
    the module's ``nn.compact`` method."""
    init = kernel_init(act) if act is not None else nn.initializers.lecun_normal()
    return nn.Dense(
        features, kernel_init=init, dtype=module.dtype, param_dtype=module.param_dtype, name=name
    )


def check_norm(norm) -> None:
    if norm not in NORMS:
        raise JoptError(f"unknown norm {norm!r}; allowed: none, layer, batch")


def apply_norm(norm, x, train: bool, name: str, dtype=None, param_dtype=jnp.float32):
    """Layer or batch norm. flax computes their statistics in float32 (and keeps batch norm's
    running averages float32) whatever ``dtype``; only the output is cast to ``dtype``."""
    if norm not in ("layer", "batch"):
        return x
    # flax combines float32 statistics with bfloat16 inputs/params by implicit promotion, which
    # strict promotion (jopt's tests) rejects; the promotion is intended, so allow it here.
    with jax.numpy_dtype_promotion("standard"):
        if norm == "layer":
            return nn.LayerNorm(dtype=dtype, param_dtype=param_dtype, name=name)(x)
        # Batch statistics in training, running averages at evaluation.
        return nn.BatchNorm(
            use_running_average=not train,
            momentum=0.9,
            dtype=dtype,
            param_dtype=param_dtype,
            name=name,
        )(x)


def check_dtype(key: str, value, *, allow_none: bool):
    """A floating ``jnp.dtype`` from a dtype or its name (``"bfloat16"``); one-line error else."""
    if value is None:
        if allow_none:
            return None
        raise JoptError(f"model {key} must be a floating dtype, got None")
    try:
        dt = jnp.dtype(value)
    except TypeError:
        raise JoptError(f"model {key} {value!r} is not a dtype") from None
    if not jnp.issubdtype(dt, jnp.floating):
        raise JoptError(f"model {key} must be a floating dtype, got {dt}")
    return dt

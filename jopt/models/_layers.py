"""Activations and initializers shared by the built-in models."""

from __future__ import annotations

import flax.linen as nn
import jax

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


def check_norm(norm) -> None:
    if norm not in NORMS:
        raise JoptError(f"unknown norm {norm!r}; allowed: none, layer, batch")


def apply_norm(norm, x, train: bool, name: str):
    if norm == "layer":
        return nn.LayerNorm(name=name)(x)
    if norm == "batch":
        # Batch statistics in training, running averages at evaluation.
        return nn.BatchNorm(use_running_average=not train, momentum=0.9, name=name)(x)
    return x

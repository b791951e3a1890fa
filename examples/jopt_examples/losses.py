"""A per-example loss (Lin et al. 2017, "Focal Loss for Dense Object Detection")."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def focal(outputs, targets, gamma: float = 2.0):
    """``-sum_k t_k (1 - p_k)^gamma log p_k`` per example, ``p = softmax(outputs)``.

    ``targets`` are one-hot (or label-smoothed) floats ``(b, K)``; the result has shape
    ``(b,)``: jopt takes the weighted mean, so padding and accumulation stay exact.
    ``gamma = 0`` is cross-entropy.
    """
    logp = jax.nn.log_softmax(outputs, axis=-1)
    weight = (1.0 - jnp.exp(logp)) ** gamma
    return -jnp.sum(targets * weight * logp, axis=-1)

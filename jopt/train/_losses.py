"""Per-example losses and the L1/L2 penalties added to the loss.

Loss-side penalties vs optimizer-side decay: ``l2`` here adds ``(l2/2) ||w||^2`` to the loss, so
its gradient ``l2 w`` passes through the optimizer's preconditioning (for Adam it is rescaled
per coordinate, which weakens it on large-gradient weights). Use it (or ``l1``, which has no
optimizer-side twin here) when the regularized *objective* is what you study. For adaptive
optimizers prefer the optimizer-side decoupled weight decay (AdamW, Loshchilov & Hutter 2019),
which shrinks every weight by the same factor; with plain SGD the two coincide.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jopt.core.errors import JoptError

LOSSES = ("cross_entropy", "mse", "huber")


def one_hot_targets(labels: jax.Array, num_classes: int, label_smoothing: float = 0.0) -> jax.Array:
    """One-hot float32 targets, smoothed to ``(1 - eps) onehot + eps / K`` (Szegedy et al. 2016)."""
    t = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
    if label_smoothing:
        t = (1.0 - label_smoothing) * t + label_smoothing / num_classes
    return t


def cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Per-example ``-sum_k t_k log softmax(logits)_k`` for (soft) targets ``(b, K)``."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return -jnp.sum(targets * logp, axis=-1)


def _match(pred: jax.Array, y: jax.Array) -> jax.Array:
    # A 1-output regression head gives (b, 1) for targets (b,).
    return pred.reshape(y.shape).astype(jnp.float32)


def mse(pred: jax.Array, y: jax.Array) -> jax.Array:
    """Per-example squared error, averaged over output dimensions."""
    d = _match(pred, y) - y
    return jnp.mean(jnp.reshape(d * d, (d.shape[0], -1)), axis=-1)


def huber(pred: jax.Array, y: jax.Array, delta: float = 1.0) -> jax.Array:
    """Per-example Huber loss (Huber 1964): ``d^2/2`` if ``|d| <= delta`` else
    ``delta (|d| - delta/2)``, averaged over output dimensions."""
    a = jnp.abs(_match(pred, y) - y)
    quad = jnp.minimum(a, delta)
    h = 0.5 * quad * quad + delta * (a - quad)
    return jnp.mean(jnp.reshape(h, (h.shape[0], -1)), axis=-1)


def make_loss(
    name: str, *, huber_delta: float = 1.0
) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """``loss(outputs, targets) -> (b,)`` per-example losses; targets are float (one-hot for CE)."""
    if name == "cross_entropy":
        return cross_entropy
    if name == "mse":
        return mse
    if name == "huber":
        if huber_delta <= 0:
            raise JoptError(f"huber_delta must be > 0, got {huber_delta}")
        return lambda p, y: huber(p, y, huber_delta)
    raise JoptError(f"unknown loss {name!r}; allowed: {', '.join(LOSSES)}")


def default_penalty_mask(params) -> object:
    """True for weight matrices and conv kernels (ndim >= 2); False for biases and norm scales."""
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def penalty(params, *, l1: float = 0.0, l2: float = 0.0, mask=None) -> jax.Array:
    """``l1 * sum|w| + (l2 / 2) * sum w^2`` over the leaves where ``mask`` is True."""
    mask = default_penalty_mask(params) if mask is None else mask
    total = jnp.zeros((), jnp.float32)
    for p, m in zip(jax.tree.leaves(params), jax.tree.leaves(mask), strict=True):
        if not m:
            continue
        p32 = p.astype(jnp.float32)
        if l1:
            total = total + l1 * jnp.sum(jnp.abs(p32))
        if l2:
            total = total + 0.5 * l2 * jnp.sum(p32 * p32)
    return total

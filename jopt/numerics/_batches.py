"""Losses over a dataset in batches, and Hessian-vector products.

Every curvature tool in :mod:`jopt.numerics` takes a ``loss_fn`` and an optional ``batches``:

- ``batches is None``: ``loss_fn(params) -> scalar`` (data closed over, or none at all);
- otherwise ``loss_fn(params, batch) -> scalar`` and ``batches`` is a pytree whose leaves
  share a leading "batch index" axis, e.g. ``(x[nb, bs, ...], y[nb, bs])`` from
  :func:`stack_batches`. The dataset loss is the mean of the batch losses, computed with
  ``lax.scan`` so that only one batch's activations are live at a time.

All of it is pure and traceable: the caller wraps it in ``jax.jit``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jopt.core.errors import JoptError

LossFn = Callable[..., jax.Array]


def stack_batches(*arrays: Any, batch_size: int) -> tuple[np.ndarray, ...]:
    """Reshape arrays of ``n`` examples into ``[n // batch_size, batch_size, ...]``.

    The remainder (``n % batch_size`` trailing examples) is dropped so that every batch has
    the same size and the dataset loss is an unweighted mean of batch losses.
    """
    if not arrays:
        raise JoptError("stack_batches needs at least one array")
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise JoptError("stack_batches: all arrays must have the same number of examples")
    if not isinstance(batch_size, int) or batch_size < 1 or batch_size > n:
        raise JoptError(f"batch_size must be an integer in [1, {n}], got {batch_size!r}")
    nb = n // batch_size
    return tuple(
        np.asarray(a)[: nb * batch_size].reshape((nb, batch_size, *np.shape(a)[1:])) for a in arrays
    )


def _over_batches(fn: Callable[[Any], Any], batches: Any) -> Any:
    """Mean of ``fn(batch)`` (a pytree) over the leading axis of ``batches``."""
    first = jax.tree.map(lambda b: b[0], batches)
    zero = jax.tree.map(jnp.zeros_like, jax.eval_shape(fn, first))

    def body(acc, batch):
        return jax.tree.map(jnp.add, acc, fn(batch)), None

    total, _ = jax.lax.scan(body, zero, batches)
    nb = jax.tree.leaves(batches)[0].shape[0]
    return jax.tree.map(lambda t: t / nb, total)


def dataset_loss(loss_fn: LossFn, params: Any, batches: Any = None) -> jax.Array:
    """The loss over the whole dataset: ``loss_fn(params)`` or the mean over ``batches``."""
    if batches is None:
        return loss_fn(params)
    return _over_batches(lambda b: loss_fn(params, b), batches)


def dataset_grad(loss_fn: LossFn, params: Any, batches: Any = None) -> Any:
    """The gradient of :func:`dataset_loss`, accumulated batch by batch."""
    if batches is None:
        return jax.grad(loss_fn)(params)
    return _over_batches(lambda b: jax.grad(loss_fn)(params, b), batches)


def hvp(loss_fn: LossFn, params: Any, v: Any, batches: Any = None) -> Any:
    """Hessian-vector product ``H v`` of the dataset loss, forward-over-reverse.

    ``H v = d/dt ∇L(θ + t v)|_{t=0}``: one ``jax.jvp`` of ``jax.grad``, about the cost of two
    gradients and no ``n × n`` matrix (Pearlmutter 1994). ``v`` has the structure of
    ``params``. With ``batches``, the per-batch products are averaged.
    """

    def one(batch: Any) -> Any:
        g = (
            (lambda p: jax.grad(loss_fn)(p))
            if batch is None
            else (lambda p: jax.grad(loss_fn)(p, batch))
        )
        return jax.jvp(g, (params,), (v,))[1]

    if batches is None:
        return one(None)
    return _over_batches(one, batches)


def flax_loss_fn(
    model: Any,
    loss: str = "cross_entropy",
    model_state: dict[str, Any] | None = None,
    **apply_kwargs: Any,
) -> LossFn:
    """``loss_fn(params, (x, y))`` for a flax linen model, ready for the curvature tools.

    Args:
        model: a ``flax.linen.Module``; called as ``model.apply(variables, x, **apply_kwargs)``.
        loss: ``"cross_entropy"`` (integer labels) or ``"mse"`` (targets shaped like outputs,
            or integer labels that are one-hot encoded first).
        model_state: non-parameter collections (e.g. ``{"batch_stats": ...}``), held fixed.
        apply_kwargs: extra call arguments, e.g. ``train=False`` for jopt's models.
    """
    if loss not in ("cross_entropy", "mse"):
        raise JoptError(f"unknown loss {loss!r}; choose 'cross_entropy' or 'mse'")
    state = dict(model_state or {})

    def loss_fn(params: Any, batch: Any) -> jax.Array:
        x, y = batch
        out = model.apply({"params": params, **state}, x, **apply_kwargs)
        if loss == "cross_entropy":
            return optax.softmax_cross_entropy_with_integer_labels(out, y).mean()
        target = (
            jax.nn.one_hot(y, out.shape[-1], dtype=out.dtype)
            if jnp.issubdtype(y.dtype, jnp.integer)
            else y.astype(out.dtype)
        )
        # 0.5 * squared error summed over outputs, averaged over examples (Cohen et al. 2021).
        return 0.5 * jnp.mean(jnp.sum((out - target) ** 2, axis=-1))

    return loss_fn

"""Apply a precision policy (:class:`jopt.models.Precision`) to a loss, a step and an optimizer.

Mixed precision (Micikevicius et al. 2018) keeps float32 *master* parameters and runs the
forward and backward passes in bfloat16:

.. math::

    g = \\nabla_{\\theta}\\, L\\big(\\mathrm{cast}_{bf16}(\\theta), \\mathrm{cast}_{bf16}(x)\\big),
    \\qquad \\theta \\leftarrow \\theta + \\mathrm{tx}(g)

The cast's gradient casts back, so ``g`` has the master dtype (float32 under ``bf16_mixed``) and
the optimizer state, built from float32 parameters, is float32 too. ``bf16`` stores the
parameters themselves in bfloat16; jopt's optimizers still keep float32 moments for them
unless the policy's ``state_dtype`` asks otherwise (``jopt.with_precision``). Losses and
metrics come out in float32 under every policy. bfloat16 has float32's exponent range, so no
loss scaling is needed (unlike float16).

Typical use, for any ``loss_fn(params, *batch)`` and any layout::

    p = jopt.models.Precision("bf16_mixed")
    loss_fn, params, tx = apply_precision(loss_fn, params, tx, p)
    state, step, unpack = jopt.fused.packed_train_step(loss_fn, params, tx)   # or a plain step
    step = jax.jit(under_matmul_precision(step, p), donate_argnums=0)

For a flax model trained with :func:`jopt.train.fit`, build the model with
``jopt.models.make_model(..., precision=p)`` (or ``model_with_precision``), wrap the
optimizer with :func:`precision_optimizer` and call ``fit`` inside
``jax.default_matmul_precision(p.matmul)``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jopt.combinators import with_precision
from jopt.models import Precision, cast_floating, precision_policy


def under_matmul_precision(fn: Callable[..., Any], precision: str | Precision) -> Callable:
    """``fn`` traced under ``jax.default_matmul_precision(precision.matmul)``.

    The precision is fixed when ``fn`` is traced (it is recorded on every ``dot_general``,
    and the backward pass's transposed matmuls inherit it), so jitting the result is enough.
    """
    precision = precision_policy(precision)

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        with jax.default_matmul_precision(precision.matmul):
            return fn(*args, **kwargs)

    return wrapped


def precision_params(params: Any, precision: str | Precision) -> Any:
    """The (master) parameters in the policy's ``param_dtype`` (bfloat16 only under ``bf16``)."""
    return cast_floating(params, precision_policy(precision).param_dtype)


def precision_optimizer(tx: Any, precision: str | Precision) -> Any:
    """``tx`` with the policy's optimizer-state dtype (``jopt.with_precision`` on every moment
    and accumulator slot) when it sets one; otherwise ``tx`` unchanged, whose state jopt keeps
    in float32 (or the parameters' dtype where wider)."""
    dt = precision_policy(precision).state_dtype
    if dt is None:
        return tx
    return with_precision(tx, mu_dtype=dt, nu_dtype=dt, accumulator_dtype=dt)


def _to_float32(tree: Any) -> Any:
    return cast_floating(tree, jnp.float32)


def precision_loss(
    loss_fn: Callable[..., Any],
    precision: str | Precision,
    *,
    has_aux: bool = False,
    cast_batch: bool | Sequence[int] = True,
) -> Callable[..., Any]:
    """``loss_fn(params, *batch)`` run under ``precision``.

    The wrapped function casts the floating parameter leaves and the floating batch arrays to
    ``compute_dtype`` (``cast_batch``: ``True`` for every batch argument, ``False`` for none,
    or the positions of the batch arguments to cast, e.g. ``(0,)`` to keep float regression
    targets in float32), traces ``loss_fn`` under the policy's matmul precision and returns the
    loss (and the floating leaves of ``aux``) in float32. Integer leaves (labels) pass through.
    Its gradient has the dtype of the parameters given to it (the master dtype).

    A loss that reduces in bfloat16 inside ``loss_fn`` has already rounded; jopt's own losses
    (:func:`jopt.train.cross_entropy`, ``mse``, ``huber``) upcast their inputs first, and a
    user loss should do the same (``logits.astype(jnp.float32)``).
    """
    precision = precision_policy(precision)
    compute = precision.compute_dtype

    def wrapped(params: Any, *batch: Any) -> Any:
        if cast_batch is True:
            batch = cast_floating(batch, compute)
        elif cast_batch is not False:
            picked = set(cast_batch)
            batch = tuple(
                cast_floating(b, compute) if i in picked else b for i, b in enumerate(batch)
            )
        with jax.default_matmul_precision(precision.matmul):
            out = loss_fn(cast_floating(params, compute), *batch)
        if has_aux:
            loss, aux = out
            return jnp.asarray(loss).astype(jnp.float32), _to_float32(aux)
        return jnp.asarray(out).astype(jnp.float32)

    return wrapped


def apply_precision(
    loss_fn: Callable[..., Any],
    params: Any,
    tx: Any,
    precision: str | Precision,
    *,
    has_aux: bool = False,
    cast_batch: bool | Sequence[int] = True,
) -> tuple[Callable[..., Any], Any, Any]:
    """``(loss_fn, params, tx)`` under ``precision``: :func:`precision_loss`,
    :func:`precision_params` and :func:`precision_optimizer` in one call. The results feed a
    plain step (``jax.value_and_grad`` + ``tx.update``) or ``jopt.fused.packed_train_step``
    unchanged; wrap that step with :func:`under_matmul_precision` so the optimizer's own
    matmuls (Shampoo, Muon...) follow the policy too.
    """
    precision = precision_policy(precision)
    return (
        precision_loss(loss_fn, precision, has_aux=has_aux, cast_batch=cast_batch),
        precision_params(params, precision),
        precision_optimizer(tx, precision),
    )

"""Regularization: coupled L2, decoupled weight decay, L1 subgradient and L1 proximal step.

Every factory takes an optional ``mask``: a pytree of Python booleans with the structure of
the parameters (or a prefix of it), or a function ``params -> such a tree``. ``True`` marks the
leaves to regularize (optax's convention); the updates of the other leaves pass through.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import jax.typing

from jopt.core import (
    EmptyState,
    GradientTransformation,
    JoptError,
    ScalarOrSchedule,
    inexact,
    leaf_labels,
    map_elementwise,
    safe_increment,
    scalar_as,
    state_dtype,
)

Mask = Any | Callable[[Any], Any] | None


def _flags(mask: Mask, params: Any) -> Any:
    """A tree of Python bools with the structure of ``params`` (all True when no mask).

    Through ``leaf_labels``, so a mask stays exact on packed buffers (one flag per buffer).
    """
    if mask is None:
        return jax.tree.map(lambda _: True, params)
    return leaf_labels(params, lambda leaves: _leaf_flags(mask, leaves))


def _leaf_flags(mask: Mask, params: Any) -> Any:
    tree = mask(params) if callable(mask) else mask
    try:
        return jax.tree.map(lambda f, sub: jax.tree.map(lambda _: bool(f), sub), tree, params)
    except (ValueError, TypeError) as e:
        raise JoptError(
            f"mask must be a tree of booleans shaped like the params (or a prefix of them): {e}"
        ) from None


def _need_params(name: str, params: Any) -> None:
    if params is None:
        raise ValueError(f"{name} needs params: call update(updates, state, params)")


def _masked_map(fn, updates, params, mask):
    """``fn(u, p)`` on the leaves the mask selects; the others keep their update."""
    flags = _flags(mask, params)
    return map_elementwise(lambda u, p, f: fn(inexact(u), p) if f else u, updates, params, flags)


def _stateless(update_fn) -> GradientTransformation:
    def init_fn(params):
        del params
        return EmptyState()

    return GradientTransformation(init_fn, update_fn)


def add_l2(strength: jax.typing.ArrayLike, mask: Mask = None) -> GradientTransformation:
    """Coupled weight decay: ``u <- u + strength * w``.

    Placed first in a chain (on the raw gradient), this is exactly the gradient of the
    penalised loss :math:`L(w) + \\tfrac{\\lambda}{2}\\lVert w\\rVert^2`; the decay then goes
    through the optimizer's preconditioner (which is what :func:`add_decayed_weights` avoids).
    """

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        _need_params("add_l2", params)

        def fn(u, p):
            return (u + scalar_as(strength, u) * p.astype(u.dtype)).astype(u.dtype)

        return _masked_map(fn, updates, params, mask), state

    return _stateless(update_fn)


def add_l1(strength: jax.typing.ArrayLike, mask: Mask = None) -> GradientTransformation:
    """L1 subgradient: ``u <- u + strength * sign(w)``, the (sub)gradient of
    :math:`L(w) + \\lambda\\lVert w\\rVert_1` (with ``sign(0) = 0``).

    The iterates oscillate around zero instead of reaching it; use :func:`l1_proximal` for
    exact zeros.
    """

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        _need_params("add_l1", params)

        def fn(u, p):
            sign = jnp.sign(inexact(p)).astype(u.dtype)
            return (u + scalar_as(strength, u) * sign).astype(u.dtype)

        return _masked_map(fn, updates, params, mask), state

    return _stateless(update_fn)


class AddDecayedWeightsState(NamedTuple):
    """State of :func:`add_decayed_weights`.

    Attributes:
        count: int32 number of updates so far, the argument of a ``weight_decay`` schedule.
    """

    count: jax.Array


def add_decayed_weights(
    weight_decay: ScalarOrSchedule = 0.0, mask: Mask = None
) -> GradientTransformation:
    """Decoupled weight decay (Loshchilov & Hutter 2019): ``u <- u + weight_decay * w``.

    Placed *after* the preconditioner and before the learning-rate scaling (as in
    :func:`jopt.adamw`), the step becomes
    :math:`w \\leftarrow w - \\eta(\\Delta_t + \\lambda w)`: the decay is not divided by
    Adam's :math:`\\sqrt{\\hat v}`. ``weight_decay`` is a scalar or a schedule ``count ->
    value``; ``mask`` selects the leaves to decay (same semantics as ``optax``).
    """

    def init_fn(params):
        del params
        return AddDecayedWeightsState(count=jnp.zeros([], jnp.int32))

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        _need_params("add_decayed_weights", params)
        wd = weight_decay(state.count) if callable(weight_decay) else weight_decay

        def fn(u, p):
            return (u + scalar_as(wd, u) * p.astype(u.dtype)).astype(u.dtype)

        updates = _masked_map(fn, updates, params, mask)
        return updates, AddDecayedWeightsState(count=safe_increment(state.count))

    return GradientTransformation(init_fn, update_fn)


class L1ProximalState(NamedTuple):
    """State of :func:`l1_proximal`.

    Attributes:
        count: int32 number of updates so far, the argument of a ``learning_rate`` schedule.
    """

    count: jax.Array


def l1_proximal(
    strength: jax.typing.ArrayLike, learning_rate: ScalarOrSchedule, mask: Mask = None
) -> GradientTransformation:
    """The proximal step of :math:`\\lambda\\lVert w\\rVert_1`: soft-thresholding (ISTA).

    Put it **last** in the chain, after the learning-rate scaling. Given the step ``u`` the rest
    of the chain proposes, it returns the update that lands on

    .. math::

        w^+ = \\operatorname{sign}(w + u)\\,\\max(|w + u| - \\eta_t\\lambda,\\; 0)

    the proximal-gradient step of Beck & Teboulle 2009 (FISTA/ISTA). Weights inside the
    threshold become exactly zero. The threshold needs the step size :math:`\\eta_t`, which a
    transform cannot see, so ``learning_rate`` (the same float or schedule the chain's
    learning-rate scaling uses) is an argument.
    """

    def init_fn(params):
        del params
        return L1ProximalState(count=jnp.zeros([], jnp.int32))

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        _need_params("l1_proximal", params)
        lr = learning_rate(state.count) if callable(learning_rate) else learning_rate
        threshold = jnp.asarray(lr, jnp.float32) * jnp.asarray(strength, jnp.float32)

        def fn(u, p):
            dt = state_dtype(p)
            z = inexact(p).astype(dt) + u.astype(dt)
            shrunk = jnp.sign(z) * jnp.maximum(jnp.abs(z) - threshold.astype(dt), 0.0)
            # w + (w+ - w) is exactly 0 when w+ = 0, so the zeros survive apply_updates.
            return (shrunk - p.astype(dt)).astype(u.dtype)

        updates = _masked_map(fn, updates, params, mask)
        return updates, L1ProximalState(count=safe_increment(state.count))

    return GradientTransformation(init_fn, update_fn)

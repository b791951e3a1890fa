"""Sharpness-aware minimisation (SAM), as ``optax.contrib.sam``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jopt.core import (
    EmptyState,
    GradientTransformation,
    JoptError,
    apply_updates,
    global_norm,
    inexact,
    inexact_dtype,
    map_elementwise,
)


def normalize() -> GradientTransformation:
    """Normalise by the global L2 norm, the usual first half of SAM's adversarial optimizer
    (Foret et al. 2021; ``chain(normalize(), sgd(rho))``):

    .. math::

        g \\leftarrow g / \\lVert g \\rVert_2

    A zero gradient stays zero (optax's divides 0 by 0).

    Args:
        (none)

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> tx = jopt.normalize()
        >>> u, _ = tx.update({"w": jnp.array([3.0, 4.0])}, tx.init(None))
    """

    def init_fn(params):
        del params
        return EmptyState()

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        n = global_norm(updates)
        safe = jnp.where(n > 0, n, 1.0)
        return map_elementwise(lambda g: inexact(g) / safe.astype(inexact(g).dtype), updates), state

    return GradientTransformation(init_fn, update_fn)


class SAMState(NamedTuple):
    """State of :func:`sam` (optax.contrib's fields).

    Attributes:
        steps_since_sync: int32 position in the ``sync_period`` cycle.
        opt_state: the outer optimizer's state.
        adv_state: the adversarial optimizer's state.
        cache: the parameters at the start of the cycle (``None`` in opaque mode).
    """

    steps_since_sync: jax.Array
    opt_state: Any
    adv_state: Any
    cache: Any


def sam(
    optimizer: GradientTransformation,
    adv_optimizer: GradientTransformation,
    sync_period: int = 2,
    reset_state: bool = True,
    opaque_mode: bool = False,
    batch_axis_name: str | None = None,
) -> GradientTransformation:
    """SAM (Foret et al. 2021, "Sharpness-Aware Minimization for Efficiently Improving
    Generalization"), with optax.contrib's two modes:

    .. math::

        \\tilde\\theta = \\theta + \\rho\\, \\frac{\\nabla f(\\theta)}{\\lVert\\nabla f(\\theta)
            \\rVert}, \\qquad \\theta \\leftarrow \\theta + \\mathrm{opt}(\\nabla f(\\tilde\\theta))

    (with ``adv_optimizer = chain(normalize(), sgd(rho))``; ``sync_period - 1`` adversarial
    steps in general).

    **The extra gradient call goes through the train step.** In the default *transparent*
    mode every call to ``update`` is one train step with one gradient: the first
    ``sync_period - 1`` steps move the parameters to the adversarial point, the last one
    returns them to the cached start plus the outer optimizer's update, computed from the
    gradient *at the adversarial point*. So an unmodified train step runs SAM, at the cost of
    ``sync_period`` steps (and data batches) per outer step; evaluate at the end of a cycle.
    In *opaque* mode (``opaque_mode=True``) one ``update`` is a whole SAM step: the train
    step must pass ``grad_fn=lambda params, i: grad`` as an extra argument, which ``update``
    calls ``sync_period - 1`` times. ``batch_axis_name`` averages those gradients with
    ``lax.pmean``. Same arguments and defaults as ``optax.contrib.sam``.

    Args:
        optimizer: the outer optimizer.
        adv_optimizer: the adversarial optimizer (typically ``chain(normalize(), sgd(rho))``).
        sync_period: steps per cycle (``sync_period - 1`` adversarial steps).
        reset_state: reset the adversarial optimizer's state at the end of each cycle.
        opaque_mode: one ``update`` is a whole SAM step (needs ``grad_fn=``).
        batch_axis_name: the axis ``lax.pmean`` averages the adversarial gradients over.

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> tx = jopt.sam(jopt.sgd(0.1), jopt.chain(jopt.normalize(), jopt.sgd(0.05)))
        >>> p = {"w": jnp.ones(3)}
        >>> u, s = tx.update(p, tx.init(p), p)
    """
    if sync_period < 1:
        raise JoptError(f"sam: sync_period must be >= 1, got {sync_period}")

    def init_fn(params):
        return SAMState(
            steps_since_sync=jnp.zeros([], jnp.int32),
            opt_state=optimizer.init(params),
            adv_state=adv_optimizer.init(params),
            cache=None if opaque_mode else params,
        )

    def pick(cond, a, b):
        return jax.tree.map(lambda x, y: jnp.where(cond, x, y), a, b)

    def transparent(updates, state, params=None, **extra_args):
        if params is None:
            raise JoptError("sam: update needs params")
        first = state.steps_since_sync == 0
        last = state.steps_since_sync == sync_period - 1
        adv_u, adv_state = adv_optimizer.update(updates, state.adv_state, params)
        adv_u = map_elementwise(lambda u: -inexact(u), adv_u)
        opt_u, opt_state = optimizer.update(updates, state.opt_state, state.cache)

        def back(c, p, u):
            dt = inexact_dtype(p)
            return (inexact(c).astype(dt) - inexact(p) + u.astype(dt)).astype(dt)

        opt_u = map_elementwise(back, state.cache, params, opt_u)
        cache = pick(first, params, state.cache)
        out = pick(last, opt_u, adv_u)
        adv_reset = adv_optimizer.init(params) if reset_state else state.adv_state
        adv_state = pick(last, adv_reset, adv_state)
        opt_state = pick(last, opt_state, state.opt_state)
        count = (state.steps_since_sync + 1) % sync_period
        return out, SAMState(count, opt_state, adv_state, cache)

    def opaque(updates, state, params=None, *, grad_fn: Callable | None = None, **extra_args):
        if grad_fn is None:
            raise JoptError("sam(opaque_mode=True): update needs the extra argument grad_fn=")
        adv_params, adv_u, adv_state = params, updates, state.adv_state
        for i in range(sync_period - 1):
            adv_u, adv_state = adv_optimizer.update(adv_u, adv_state, adv_params)
            adv_u = map_elementwise(lambda u: -inexact(u), adv_u)
            adv_params = apply_updates(adv_params, adv_u)
            adv_u = grad_fn(adv_params, i)
            if batch_axis_name is not None:
                adv_u = jax.lax.pmean(adv_u, axis_name=batch_axis_name)
        if reset_state:
            adv_state = adv_optimizer.init(params)
        out, opt_state = optimizer.update(adv_u, state.opt_state, params)
        return out, SAMState(jnp.zeros([], jnp.int32), opt_state, adv_state, None)

    return GradientTransformation(init_fn, opaque if opaque_mode else transparent)

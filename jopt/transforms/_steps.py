"""Elementwise step rules: the optimistic gradient and Rprop's sign-adapted step sizes.

Every per-array formula goes through :func:`jopt.core.map_elementwise` (packable).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import jax.typing

from jopt.core import (
    GradientTransformation,
    inexact,
    inexact_dtype,
    map_elementwise,
    scalar_as,
    zeros_like,
)


class ScaleByOptimisticGradientState(NamedTuple):
    """State of :func:`scale_by_optimistic_gradient`.

    Attributes:
        is_initial_step: bool, ``True`` until the first update.
        previous_gradient: the previous step's incoming updates.
    """

    is_initial_step: jax.Array
    previous_gradient: Any


def scale_by_optimistic_gradient(
    alpha: jax.typing.ArrayLike = 1.0, beta: jax.typing.ArrayLike = 1.0
) -> GradientTransformation:
    """Optimistic gradient (Mokhtari, Ozdaglar & Pattathil 2020).

    .. math::

        u_t = (\\alpha + \\beta) g_t - \\beta g_{t-1}, \\qquad g_0 := g_1

    Same arguments as ``optax.scale_by_optimistic_gradient``. Elementwise (packable).

    Reference: Mokhtari et al. 2020, "A Unified Analysis of Extra-gradient and Optimistic
    Gradient Methods for Saddle Point Problems".
    """

    def init_fn(params):
        return ScaleByOptimisticGradientState(jnp.array(True), zeros_like(params))

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args

        def step(g, prev):
            gw = inexact(g).astype(prev.dtype)
            prev = jnp.where(state.is_initial_step, gw, prev)
            u = scalar_as(alpha + beta, gw) * gw - scalar_as(beta, gw) * prev
            return u.astype(inexact_dtype(g)), gw

        updates, prev = map_elementwise(step, updates, state.previous_gradient, n_out=2)
        return updates, ScaleByOptimisticGradientState(jnp.array(False), prev)

    return GradientTransformation(init_fn, update_fn)


class ScaleByRpropState(NamedTuple):
    """State of :func:`scale_by_rprop`.

    Attributes:
        step_sizes: per-element step sizes :math:`\\Delta` (start at ``learning_rate``).
        prev_updates: the previous step's ``sign(g) * step`` (0 after a sign change).
    """

    step_sizes: Any
    prev_updates: Any


def scale_by_rprop(
    learning_rate: jax.typing.ArrayLike,
    eta_minus: jax.typing.ArrayLike = 0.5,
    eta_plus: jax.typing.ArrayLike = 1.2,
    min_step_size: jax.typing.ArrayLike = 1e-6,
    max_step_size: jax.typing.ArrayLike = 50.0,
) -> GradientTransformation:
    """Resilient backpropagation (Riedmiller & Braun 1993), as ``optax.scale_by_rprop``.

    .. math::

        s = g_t\\, p_{t-1}, \\quad
        \\Delta_t = \\begin{cases} \\mathrm{clip}(\\eta^+ \\Delta_{t-1}) & s > 0 \\\\
            \\mathrm{clip}(\\eta^- \\Delta_{t-1}) & s < 0 \\\\ \\Delta_{t-1} & s = 0
            \\end{cases}, \\quad
        p_t = \\begin{cases} 0 & s < 0 \\\\ \\Delta_t\\,\\mathrm{sign}(g_t) & \\text{else}
            \\end{cases}

    and the output is :math:`p_{t-1}` (0 after a sign change: iRprop-): like
    ``optax.scale_by_rprop`` 0.2.8 it emits the step one update late, so the first update is
    zero (torch's ``Rprop`` emits :math:`p_t`). Apply it with a negative scale. Elementwise
    (packable). For complex leaves the sign test is :math:`\\mathrm{Re}(g\\bar p) > 0` and
    :math:`\\mathrm{sign}(g) = g/|g|`.

    Reference: Riedmiller & Braun 1993, "A Direct Adaptive Method for Faster Backpropagation
    Learning: The RPROP Algorithm"; Igel & Hüsken 2000 (iRprop-).
    """

    def init_fn(params):
        sizes = map_elementwise(
            lambda z: z + scalar_as(learning_rate, z), zeros_like(params, real=True)
        )
        return ScaleByRpropState(sizes, zeros_like(params))

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args

        def step(g, size, prev):
            gw = inexact(g).astype(prev.dtype)
            # real(g conj(p)): the sign test; for complex leaves, whether g keeps its phase.
            s = jnp.real(gw * jnp.conj(prev)) if jnp.iscomplexobj(gw) else gw * prev
            factor = jnp.where(s > 0, scalar_as(eta_plus, size), scalar_as(eta_minus, size))
            clipped = jnp.clip(
                size * factor, scalar_as(min_step_size, size), scalar_as(max_step_size, size)
            )
            size = jnp.where(s == 0, size, clipped)
            new_prev = jnp.where(s < 0, jnp.zeros_like(gw), size.astype(gw.dtype) * jnp.sign(gw))
            # optax 0.2.8 emits the *previous* p (one step late); kept for parity.
            u = jnp.where(s < 0, jnp.zeros_like(prev), prev)
            return u.astype(inexact_dtype(g)), size, new_prev

        updates, sizes, prev = map_elementwise(
            step, updates, state.step_sizes, state.prev_updates, n_out=3
        )
        return updates, ScaleByRpropState(sizes, prev)

    return GradientTransformation(init_fn, update_fn)

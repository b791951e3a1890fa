"""Sign-based updates: signSGD's sign and Lion."""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import jax.typing

from jopt.core import (
    EmptyState,
    GradientTransformation,
    JoptError,
    inexact,
    inexact_dtype,
    map_elementwise,
    safe_increment,
    scalar_as,
    zeros_like,
)


def scale_by_sign() -> GradientTransformation:
    """``u <- sign(u)`` elementwise (signSGD, Bernstein et al. 2018); ``sign(0) = 0``."""

    def init_fn(params):
        del params
        return EmptyState()

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        return map_elementwise(lambda u: jnp.sign(inexact(u)), updates), state

    return GradientTransformation(init_fn, update_fn)


class ScaleByLionState(NamedTuple):
    """State of :func:`scale_by_lion`.

    Attributes:
        count: int32 number of updates so far (saturating).
        mu: the momentum ``m``.
    """

    count: jax.Array
    mu: Any


_LION_MODES = ("hard", "smooth", "refined")


def scale_by_lion(
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.99,
    mu_dtype: Any = None,
    *,
    mode: Literal["hard", "smooth", "refined"] = "hard",
    smooth_beta: float = 1.0,
) -> GradientTransformation:
    """Lion's signed interpolation (Chen et al. 2023, "Symbolic Discovery of Optimization
    Algorithms").

    .. math::

        \\Delta_t = \\operatorname{sign}((1-\\beta_1) g_t + \\beta_1 m_{t-1}), \\qquad
        m_t = (1-\\beta_2) g_t + \\beta_2 m_{t-1}

    ``mode="smooth"`` uses ``tanh(smooth_beta * x)`` and ``mode="refined"`` is linear on
    ``|x| < 1``, as ``optax.scale_by_lion``.
    """
    if mode not in _LION_MODES:
        raise JoptError(f"scale_by_lion: unknown mode {mode!r}; allowed: {', '.join(_LION_MODES)}")

    def sign(x):
        if mode == "hard":
            return jnp.sign(x)
        if mode == "smooth":
            return jnp.tanh(smooth_beta * x)
        return jnp.where(jnp.abs(x) < 1.0, x, jnp.sign(x))

    def init_fn(params):
        return ScaleByLionState(count=jnp.zeros([], jnp.int32), mu=zeros_like(params, mu_dtype))

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args

        def step(g, m):
            gm = g.astype(m.dtype)
            b1_, b2_ = scalar_as(b1, m), scalar_as(b2, m)
            d = sign(scalar_as(1 - b1, m) * gm + b1_ * m)
            m = scalar_as(1 - b2, m) * gm + b2_ * m
            return d.astype(inexact_dtype(g)), m

        updates, mu = map_elementwise(step, updates, state.mu, n_out=2)
        return updates, ScaleByLionState(count=safe_increment(state.count), mu=mu)

    return GradientTransformation(init_fn, update_fn)

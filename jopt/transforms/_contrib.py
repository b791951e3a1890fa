"""Research Adam variants from optax.contrib: ADOPT and AdEMAMix (elementwise, packable)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import jax.typing

from jopt.core import (
    GradientTransformation,
    ScalarOrSchedule,
    inexact,
    map_elementwise,
    safe_increment,
    scalar_as,
    zeros_like,
)
from jopt.transforms._adam import ScaleByAdamState


def _abs_sq(x: jax.Array) -> jax.Array:
    # |x|^2 in x's dtype: x*x for real x, (conj(x) x).real for complex (optax's abs_sq).
    return (jnp.conj(x) * x).real.astype(x.dtype) if jnp.iscomplexobj(x) else x * x


def scale_by_adopt(
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.9999,
    eps: jax.typing.ArrayLike = 1e-6,
    mu_dtype: Any = None,
    *,
    nesterov: bool = False,
    use_clipping: bool = True,
    clip_value_fn: Callable[[jax.Array], jax.Array] = lambda x: x**0.25,
) -> GradientTransformation:
    """ADOPT's direction (Taniguchi et al. 2024, "ADOPT: Modified Adam Can Converge with Any
    beta_2 with the Optimal Rate").

    The gradient is normalised by the *previous* second moment, then averaged:

    .. math::

        m_t = \\beta_1 m_{t-1} + (1-\\beta_1)\\,
            \\mathrm{clip}\\!\\left(\\frac{g_t}{\\max(\\sqrt{v_{t-1}}, \\epsilon)}, c_t\\right),
        \\qquad v_t = \\beta_2 v_{t-1} + (1-\\beta_2) g_t^2, \\qquad u_t = m_t

    with :math:`c_t` = ``clip_value_fn(t-1)`` (:math:`t^{1/4}`) and, at the first step,
    :math:`v_1 = g_1^2`, :math:`m_1 = 0` (so the first update is zero). ``nesterov=True``
    returns :math:`\\beta_1 m_t + (1-\\beta_1)\\hat g_t`. For complex parameters the clip
    bounds the modulus and keeps the phase (optax's clip refuses complex values). Same as
    ``optax.contrib.scale_by_adopt``; the state is :class:`ScaleByAdamState` (``nu_max``
    empty).
    """

    def init_fn(params):
        return ScaleByAdamState(
            count=jnp.zeros([], jnp.int32), mu=zeros_like(params, mu_dtype), nu=zeros_like(params)
        )

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        first = state.count == 0
        clip_value = clip_value_fn(state.count.astype(jnp.float32)) if use_clipping else None

        def step(g, m, v):
            g = inexact(g)
            b1_ = jnp.where(first, jnp.ones([], m.dtype), scalar_as(b1, m))
            b2_ = jnp.where(first, jnp.zeros([], v.dtype), scalar_as(b2, v))
            gv = g.astype(v.dtype)
            v_new = (1 - b2_) * _abs_sq(gv) + b2_ * v
            gn = gv / jnp.maximum(jnp.sqrt(v), scalar_as(eps, v))
            if use_clipping:
                c = jnp.asarray(clip_value).astype(jnp.abs(gn).dtype)
                if jnp.iscomplexobj(gn):  # clip the modulus, keep the phase
                    mod = jnp.abs(gn)
                    gn = gn * (jnp.minimum(mod, c) / jnp.where(mod > 0, mod, 1.0)).astype(gn.dtype)
                else:
                    gn = jnp.clip(gn, -c, c)
            gn = gn.astype(m.dtype)
            m_new = (1 - b1_) * gn + b1_ * m
            u = (1 - b1_) * gn + b1_ * m_new if nesterov else m_new
            return u.astype(g.dtype), m_new, v_new

        out, mu, nu = map_elementwise(step, updates, state.mu, state.nu, n_out=3)
        return out, ScaleByAdamState(count=safe_increment(state.count), mu=mu, nu=nu)

    return GradientTransformation(init_fn, update_fn)


class ScaleByAdemamixState(NamedTuple):
    """State of :func:`scale_by_ademamix`.

    Attributes:
        count: int32 steps taken (saturating), for the bias corrections of ``m1`` and ``nu``.
        count_m2: int32 steps taken, the argument of the ``b3`` and ``alpha`` schedules.
        m1: fast EMA of the gradient (rate ``b1``).
        m2: slow EMA of the gradient (rate ``b3``), not bias-corrected.
        nu: EMA of the squared gradient (rate ``b2``).
    """

    count: jax.Array
    count_m2: jax.Array
    m1: Any
    m2: Any
    nu: Any


def scale_by_ademamix(
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    b3: ScalarOrSchedule = 0.9999,
    alpha: ScalarOrSchedule = 6.0,
    eps: jax.typing.ArrayLike = 1e-8,
    eps_root: jax.typing.ArrayLike = 0.0,
    mu_dtype: Any = None,
) -> GradientTransformation:
    """AdEMAMix's direction (Pagliardini, Ablin & Grangier 2024, "The AdEMAMix Optimizer:
    Better, Faster, Older").

    .. math::

        m^{(1)}_t = \\beta_1 m^{(1)}_{t-1} + (1-\\beta_1) g_t, \\quad
        m^{(2)}_t = \\beta_3 m^{(2)}_{t-1} + (1-\\beta_3) g_t, \\quad
        v_t = \\beta_2 v_{t-1} + (1-\\beta_2) g_t^2,

        u_t = \\frac{m^{(1)}_t/(1-\\beta_1^t) + \\alpha\\, m^{(2)}_t}
            {\\sqrt{v_t/(1-\\beta_2^t) + \\epsilon_{root}} + \\epsilon}

    ``b3`` and ``alpha`` may be schedules of the step (the paper warms them up). Same as
    ``optax.contrib.scale_by_ademamix``.
    """

    def init_fn(params):
        m1, m2, nu = (zeros_like(params, mu_dtype) for _ in range(3))
        return ScaleByAdemamixState(
            count=jnp.zeros([], jnp.int32),
            count_m2=jnp.zeros([], jnp.int32),
            m1=m1,
            m2=m2,
            nu=nu,
        )

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        c_b3 = b3(state.count_m2) if callable(b3) else b3
        c_alpha = alpha(state.count_m2) if callable(alpha) else alpha
        count = safe_increment(state.count)
        t = count.astype(jnp.float32)
        c1 = 1 - jnp.asarray(b1, jnp.float32) ** t
        c2 = 1 - jnp.asarray(b2, jnp.float32) ** t

        def step(g, m1, m2, v):
            g = inexact(g)
            gm = g.astype(m1.dtype)
            m1 = scalar_as(1 - b1, m1) * gm + scalar_as(b1, m1) * m1
            m2 = scalar_as(1 - c_b3, m2) * gm + scalar_as(c_b3, m2) * m2
            v = scalar_as(1 - b2, v) * _abs_sq(gm) + scalar_as(b2, v) * v
            m1_hat, v_hat = m1 / c1.astype(m1.dtype), v / c2.astype(v.dtype)
            den = jnp.sqrt(v_hat + scalar_as(eps_root, v)) + scalar_as(eps, v)
            u = (m1_hat + scalar_as(c_alpha, m2) * m2) / den
            return u.astype(g.dtype), m1, m2, v

        out, m1, m2, nu = map_elementwise(step, updates, state.m1, state.m2, state.nu, n_out=4)
        return out, ScaleByAdemamixState(
            count=count, count_m2=safe_increment(state.count_m2), m1=m1, m2=m2, nu=nu
        )

    return GradientTransformation(init_fn, update_fn)

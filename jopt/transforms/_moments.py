"""Elementwise moment estimators: AdaBelief, Yogi, Adan and an EMA.

Every per-array formula here goes through :func:`jopt.core.map_elementwise`, so these blocks
can run on packed buffers.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import jax.typing

from jopt.core import (
    GradientTransformation,
    abs_sq,
    inexact,
    inexact_dtype,
    map_elementwise,
    safe_increment,
    scalar_as,
    zeros_like,
)


def _ema(g: jax.Array, m: jax.Array, decay: Any) -> jax.Array:
    """``(1 - decay) g + decay m`` in ``m``'s dtype."""
    return scalar_as(1 - decay, m) * inexact(g).astype(m.dtype) + scalar_as(decay, m) * m


def _bias(decay: Any, t: jax.Array) -> jax.Array:
    # 1 - decay**t in float32 (low precision rounds decay**t to 1).
    return 1 - jnp.asarray(decay, jnp.float32) ** t.astype(jnp.float32)


def _full_like(tree: Any, value: Any, dtype: Any = None, *, real: bool = False) -> Any:
    return map_elementwise(lambda z: z + scalar_as(value, z), zeros_like(tree, dtype, real=real))


class ScaleByBeliefState(NamedTuple):
    """State of :func:`scale_by_belief`.

    Attributes:
        count: int32 number of updates (saturating), for bias correction.
        mu: first moment ``m``.
        nu: second *central* moment ``s`` (of the prediction error ``g - m``), with
            ``eps_root`` added every step (as optax stores it); real for complex parameters.
    """

    count: jax.Array
    mu: Any
    nu: Any


def scale_by_belief(
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-16,
    eps_root: jax.typing.ArrayLike = 1e-16,
    *,
    nesterov: bool = False,
) -> GradientTransformation:
    """Rescale by the belief in the gradient (AdaBelief; Zhuang et al. 2020).

    .. math::

        m_t = \\beta_1 m_{t-1} + (1-\\beta_1) g_t, \\quad
        s_t = \\beta_2 s_{t-1} + (1-\\beta_2) |g_t - m_t|^2 + \\epsilon_{root},

        u_t = \\frac{m_t/(1-\\beta_1^t)}{\\sqrt{s_t/(1-\\beta_2^t)} + \\epsilon}

    ``nesterov=True`` uses NAdam's momentum estimate. Same arguments as
    ``optax.scale_by_belief``. Elementwise (packable).

    Reference: Zhuang et al. 2020, "AdaBelief Optimizer: Adapting Stepsizes by the Belief in
    Observed Gradients".
    """

    def init_fn(params):
        # s holds |g - m|^2: real slots for complex parameters (optax's stay complex, imag 0).
        nu = zeros_like(params, real=True)
        return ScaleByBeliefState(jnp.zeros([], jnp.int32), zeros_like(params), nu)

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        count = safe_increment(state.count)
        c1, c1n, c2 = _bias(b1, count), _bias(b1, safe_increment(count)), _bias(b2, count)

        def step(g, m, s):
            m = _ema(g, m, b1)
            s = _ema(abs_sq(inexact(g).astype(m.dtype) - m), s, b2) + scalar_as(eps_root, s)
            if nesterov:
                b1_ = scalar_as(b1, m)
                m_hat = b1_ * (m / c1n.astype(m.dtype)) + scalar_as(1 - b1, m) * (
                    inexact(g).astype(m.dtype) / c1.astype(m.dtype)
                )
            else:
                m_hat = m / c1.astype(m.dtype)
            u = m_hat / (jnp.sqrt(s / c2.astype(s.dtype)) + scalar_as(eps, s)).astype(m.dtype)
            return u.astype(inexact_dtype(g)), m, s

        updates, mu, nu = map_elementwise(step, updates, state.mu, state.nu, n_out=3)
        return updates, ScaleByBeliefState(count, mu, nu)

    return GradientTransformation(init_fn, update_fn)


class ScaleByYogiState(NamedTuple):
    """State of :func:`scale_by_yogi`.

    Attributes:
        count: int32 number of updates (saturating), for bias correction.
        mu: first moment ``m`` (starts at ``initial_accumulator_value``).
        nu: second moment ``v`` (starts at ``initial_accumulator_value``; real for complex
            parameters).
    """

    count: jax.Array
    mu: Any
    nu: Any


def scale_by_yogi(
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-3,
    eps_root: jax.typing.ArrayLike = 0.0,
    initial_accumulator_value: jax.typing.ArrayLike = 1e-6,
) -> GradientTransformation:
    """Yogi's additive second-moment update (Zaheer et al. 2018).

    .. math::

        m_t = \\beta_1 m_{t-1} + (1-\\beta_1) g_t, \\quad
        v_t = v_{t-1} - (1-\\beta_2)\\,\\mathrm{sign}(v_{t-1} - g_t^2)\\, g_t^2,

        u_t = \\frac{m_t/(1-\\beta_1^t)}{\\sqrt{v_t/(1-\\beta_2^t) + \\epsilon_{root}} +
            \\epsilon}

    Same arguments as ``optax.scale_by_yogi``. Elementwise (packable).

    Reference: Zaheer et al. 2018, "Adaptive Methods for Nonconvex Optimization".
    """

    def init_fn(params):
        return ScaleByYogiState(
            jnp.zeros([], jnp.int32),
            _full_like(params, initial_accumulator_value),
            _full_like(params, initial_accumulator_value, real=True),
        )

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        count = safe_increment(state.count)
        c1, c2 = _bias(b1, count), _bias(b2, count)

        def step(g, m, v):
            m = _ema(g, m, b1)
            g2 = abs_sq(inexact(g)).astype(v.dtype)
            v = v - scalar_as(1 - b2, v) * jnp.sign(v - g2) * g2
            m_hat, v_hat = m / c1.astype(m.dtype), v / c2.astype(v.dtype)
            denom = jnp.sqrt(v_hat + scalar_as(eps_root, v)) + scalar_as(eps, v)
            u = m_hat / denom.astype(m.dtype)
            return u.astype(inexact_dtype(g)), m, v

        updates, mu, nu = map_elementwise(step, updates, state.mu, state.nu, n_out=3)
        return updates, ScaleByYogiState(count, mu, nu)

    return GradientTransformation(init_fn, update_fn)


class ScaleByAdanState(NamedTuple):
    """State of :func:`scale_by_adan`.

    Attributes:
        m: EMA of the gradient.
        v: EMA of the gradient difference ``g_t - g_{t-1}``.
        n: EMA of ``|g_t + (1-\\beta_2)(g_t - g_{t-1})|^2`` (real for complex parameters).
        g: the previous gradient.
        t: int32 number of updates (saturating).
    """

    m: Any
    v: Any
    n: Any
    g: Any
    t: jax.Array


def scale_by_adan(
    b1: jax.typing.ArrayLike = 0.98,
    b2: jax.typing.ArrayLike = 0.92,
    b3: jax.typing.ArrayLike = 0.99,
    eps: jax.typing.ArrayLike = 1e-8,
    eps_root: jax.typing.ArrayLike = 0.0,
) -> GradientTransformation:
    """Adan's Nesterov-style moments (Xie et al. 2022, Algorithm 1).

    .. math::

        \\Delta_t = g_t - g_{t-1}\\ (0 \\text{ at } t=1), \\quad
        m_t = \\beta_1 m_{t-1} + (1-\\beta_1) g_t, \\quad
        v_t = \\beta_2 v_{t-1} + (1-\\beta_2) \\Delta_t,

        n_t = \\beta_3 n_{t-1} + (1-\\beta_3) |g_t + (1-\\beta_2)\\Delta_t|^2, \\quad
        u_t = \\frac{\\hat m_t + (1-\\beta_2)\\hat v_t}{\\sqrt{\\hat n_t + \\epsilon_{root}} +
            \\epsilon}

    with hats the bias-corrected moments. Same arguments as ``optax.scale_by_adan``.
    Elementwise (packable).

    Reference: Xie et al. 2022, "Adan: Adaptive Nesterov Momentum Algorithm for Faster
    Optimizing Deep Models".
    """

    def init_fn(params):
        z = zeros_like
        zero = jnp.zeros([], jnp.int32)
        return ScaleByAdanState(z(params), z(params), z(params, real=True), z(params), zero)

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        first = state.t == 0
        t = safe_increment(state.t)
        c1, c2, c3 = _bias(b1, t), _bias(b2, t), _bias(b3, t)

        def step(g, m, v, n, g_prev):
            gw = inexact(g).astype(m.dtype)
            diff = jnp.where(first, jnp.zeros_like(gw), gw - g_prev)
            m = _ema(gw, m, b1)
            v = _ema(diff, v, b2)
            n = _ema(abs_sq(gw + scalar_as(1 - b2, diff) * diff), n, b3)
            m_hat, v_hat = m / c1.astype(m.dtype), v / c2.astype(v.dtype)
            n_hat = n / c3.astype(n.dtype)
            denom = jnp.sqrt(n_hat + scalar_as(eps_root, n)) + scalar_as(eps, n)
            u = (m_hat + scalar_as(1 - b2, v_hat) * v_hat) / denom.astype(m.dtype)
            return u.astype(inexact_dtype(g)), m, v, n, gw

        out = map_elementwise(step, updates, state.m, state.v, state.n, state.g, n_out=5)
        updates, m, v, n, g = out
        return updates, ScaleByAdanState(m, v, n, g, t)

    return GradientTransformation(init_fn, update_fn)


class ScaleByEmaState(NamedTuple):
    """State of :func:`scale_by_ema`.

    Attributes:
        count: int32 number of updates (saturating), for the debiasing.
        ema: the moving average, one array per parameter.
    """

    count: jax.Array
    ema: Any


def scale_by_ema(
    decay: jax.typing.ArrayLike, debias: bool = True, accumulator_dtype: Any = None
) -> GradientTransformation:
    """Replace the updates by their exponential moving average (``optax.ema``).

    .. math::

        a_t = \\beta a_{t-1} + (1-\\beta) g_t, \\qquad u_t = a_t \\;\\text{or}\\;
            a_t / (1-\\beta^t) \\;(\\text{debias})

    This is optax's ``ema`` *transform*; jopt's :func:`jopt.ema` is the different thing of
    averaging the parameters. Elementwise (packable).
    """

    def init_fn(params):
        return ScaleByEmaState(jnp.zeros([], jnp.int32), zeros_like(params, accumulator_dtype))

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        count = safe_increment(state.count)
        corr = _bias(decay, count) if debias else jnp.ones([], jnp.float32)

        def step(g, a):
            a = _ema(g, a, decay)
            return (a / corr.astype(a.dtype)).astype(inexact_dtype(g)), a

        updates, ema = map_elementwise(step, updates, state.ema, n_out=2)
        return updates, ScaleByEmaState(count, ema)

    return GradientTransformation(init_fn, update_fn)

"""Elementwise moment estimators: AdaBelief, Yogi, Adan, an EMA, optimistic gradients, Rprop.

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

"""Adamax (infinity-norm Adam) and RAdam (rectified Adam)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import jax.typing

from jopt.core import (
    GradientTransformation,
    abs_sq,
    compute_dtype,
    inexact_dtype,
    map_elementwise,
    safe_increment,
    scalar_as,
    zeros_like,
)


class ScaleByAdamaxState(NamedTuple):
    """State of :func:`scale_by_adamax`.

    Attributes:
        count: int32 number of updates so far (saturating).
        mu: first-moment estimate ``m``.
        nu: exponentially weighted infinity norm ``u`` of the gradients.
    """

    count: jax.Array
    mu: Any
    nu: Any


def scale_by_adamax(
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    *,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> GradientTransformation:
    """Adam with the infinity norm in place of the second moment (Kingma & Ba 2015, §7.1).

    .. math::

        m_t = (1-\\beta_1) g_t + \\beta_1 m_{t-1}, \\quad
        u_t = \\max(|g_t| + \\epsilon, \\beta_2 u_{t-1}), \\quad
        \\Delta_t = \\frac{m_t / (1-\\beta_1^t)}{u_t}

    ``eps`` sits inside the maximum, as in ``optax.scale_by_adamax``, so ``u_t > 0`` always.
    """

    def init_fn(params):
        return ScaleByAdamaxState(
            count=jnp.zeros([], jnp.int32),
            mu=zeros_like(params, mu_dtype),
            nu=zeros_like(params, nu_dtype, real=True),
        )

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        count = safe_increment(state.count)
        c1 = 1 - jnp.asarray(b1, jnp.float32) ** count.astype(jnp.float32)

        def step(g, m, u):
            b1_, b2_ = scalar_as(b1, m), scalar_as(b2, u)
            m = scalar_as(1 - b1, m) * g.astype(m.dtype) + b1_ * m
            # |g| (real) for complex g: optax's infinity norm of the modulus.
            u = jnp.maximum(jnp.sqrt(abs_sq(g, u.dtype)) + scalar_as(eps, u), b2_ * u)
            dt = compute_dtype(m, u)
            d = m.astype(dt) / c1.astype(dt) / u.astype(dt)
            return d.astype(inexact_dtype(g)), m, u

        updates, mu, nu = map_elementwise(step, updates, state.mu, state.nu, n_out=3)
        return updates, ScaleByAdamaxState(count=count, mu=mu, nu=nu)

    return GradientTransformation(init_fn, update_fn)


class ScaleByRAdamState(NamedTuple):
    """State of :func:`scale_by_radam`.

    Attributes:
        count: int32 number of updates so far (saturating).
        mu: first-moment estimate ``m``.
        nu: second-moment estimate ``v``.
    """

    count: jax.Array
    mu: Any
    nu: Any


def scale_by_radam(
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    eps_root: jax.typing.ArrayLike = 0.0,
    threshold: jax.typing.ArrayLike = 5.0,
    *,
    nesterov: bool = False,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> GradientTransformation:
    """Rectified Adam (Liu et al. 2020, "On the Variance of the Adaptive Learning Rate and Beyond").

    .. math::

        \\rho_\\infty = \\frac{2}{1-\\beta_2} - 1, \\quad
        \\rho_t = \\rho_\\infty - \\frac{2 t \\beta_2^t}{1-\\beta_2^t}, \\quad
        r_t = \\sqrt{\\frac{(\\rho_t-4)(\\rho_t-2)\\rho_\\infty}
            {(\\rho_\\infty-4)(\\rho_\\infty-2)\\rho_t}}

        \\Delta_t = r_t \\hat m_t / (\\sqrt{\\hat v_t + \\epsilon_{root}} + \\epsilon)
        \\;\\text{if}\\; \\rho_t \\ge \\text{threshold}, \\;\\text{else}\\; \\hat m_t

    with Adam's bias-corrected moments :math:`\\hat m_t, \\hat v_t` (``nesterov`` as in
    :func:`scale_by_adam`). While the variance of the adaptive rate is intractable
    (:math:`\\rho_t` below ``threshold``) the step is plain bias-corrected momentum.
    """

    def init_fn(params):
        return ScaleByRAdamState(
            count=jnp.zeros([], jnp.int32),
            mu=zeros_like(params, mu_dtype),
            nu=zeros_like(params, nu_dtype, real=True),
        )

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        count = safe_increment(state.count)
        t = count.astype(jnp.float32)
        b1f, b2f = jnp.asarray(b1, jnp.float32), jnp.asarray(b2, jnp.float32)
        c1, c1_next, b2t = 1 - b1f**t, 1 - b1f ** (t + 1), b2f**t
        c2 = 1 - b2t
        # In Python double precision when b2 is a float, as optax does.
        ro_inf = jnp.asarray(2.0 / (1.0 - b2) - 1.0, jnp.float32)
        ro = ro_inf - 2 * t * b2t / c2
        # Clamp inside the root so the untaken branch of the `where` is not NaN.
        ratio = (ro - 4.0) * (ro - 2.0) * ro_inf / ((ro_inf - 4.0) * (ro_inf - 2.0) * ro)
        r = jnp.sqrt(jnp.maximum(ratio, 0.0))
        rectify = ro >= jnp.asarray(threshold, jnp.float32)

        def step(g, m, v):
            b1_, b2_ = scalar_as(b1, m), scalar_as(b2, v)
            m = scalar_as(1 - b1, m) * g.astype(m.dtype) + b1_ * m
            v = scalar_as(1 - b2, v) * abs_sq(g, v.dtype) + b2_ * v
            dt = compute_dtype(m, v)
            if nesterov:
                m_hat = scalar_as(b1, m.astype(dt)) * (m.astype(dt) / c1_next.astype(dt)) + (
                    scalar_as(1 - b1, m.astype(dt))
                ) * (g.astype(dt) / c1.astype(dt))
            else:
                m_hat = m.astype(dt) / c1.astype(dt)
            v_hat = v / c2.astype(v.dtype)
            denom = jnp.sqrt(v_hat + scalar_as(eps_root, v)) + scalar_as(eps, v)
            adaptive = r.astype(dt) * m_hat / denom.astype(dt)
            return jnp.where(rectify, adaptive, m_hat).astype(inexact_dtype(g)), m, v

        updates, mu, nu = map_elementwise(step, updates, state.mu, state.nu, n_out=3)
        return updates, ScaleByRAdamState(count=count, mu=mu, nu=nu)

    return GradientTransformation(init_fn, update_fn)

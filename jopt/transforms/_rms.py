"""Second-moment preconditioners: RMSProp, Adagrad (root of the sum of squares), Adadelta."""

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
    real_dtype,
    safe_increment,
    scalar_as,
    state_dtype,
    zeros_like,
)


def _full_like(tree: Any, value: jax.typing.ArrayLike, dtype: Any = None) -> Any:
    # jax.tree.map (not map_elementwise): this builds state, it is not update maths. The
    # slots hold |g|^2 sums, so they are real for complex parameters.
    return jax.tree.map(
        lambda x: jnp.full(jnp.shape(x), value, real_dtype(state_dtype(x, dtype))), tree
    )


class ScaleByRmsState(NamedTuple):
    """State of :func:`scale_by_rms`.

    Attributes:
        count: int32 number of updates so far (saturating), for the optional bias correction.
        mu: running mean of the gradients (only with ``centered=True``, else an empty tuple).
        nu: running mean of the squared gradients.
    """

    count: jax.Array
    mu: Any
    nu: Any


def scale_by_rms(
    decay: jax.typing.ArrayLike = 0.9,
    eps: jax.typing.ArrayLike = 1e-8,
    initial_scale: jax.typing.ArrayLike = 0.0,
    eps_in_sqrt: bool = True,
    bias_correction: bool = False,
    *,
    centered: bool = False,
    nu_dtype: Any = None,
) -> GradientTransformation:
    """Divide by the root of a moving average of squared gradients (RMSProp, Hinton 2012).

    .. math::

        v_t = (1-\\rho) g_t^2 + \\rho v_{t-1}, \\qquad
        \\Delta_t = g_t / \\sqrt{v_t + \\epsilon} \\;\\;(\\text{or } g_t / (\\sqrt{v_t} +
            \\epsilon))

    With ``centered=True`` (Graves 2013) :math:`v_t` is replaced by the variance estimate
    :math:`v_t - m_t^2`, where :math:`m_t = (1-\\rho) g_t + \\rho m_{t-1}`
    (``optax.scale_by_stddev``). ``bias_correction`` divides :math:`m_t, v_t` by
    :math:`1-\\rho^t`. ``v_0 = `` ``initial_scale``.
    """

    def init_fn(params):
        return ScaleByRmsState(
            count=jnp.zeros([], jnp.int32),
            mu=zeros_like(params, nu_dtype) if centered else (),
            nu=_full_like(params, initial_scale, nu_dtype),
        )

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        count = safe_increment(state.count)
        if bias_correction:
            corr = 1 - jnp.asarray(decay, jnp.float32) ** count.astype(jnp.float32)
        else:
            corr = jnp.ones([], jnp.float32)

        def scaling(g, v, denom):
            if eps_in_sqrt:
                s = jax.lax.rsqrt(denom + scalar_as(eps, v))
            else:
                s = 1 / (jnp.sqrt(denom) + scalar_as(eps, v))
            dt = compute_dtype(g, v)
            return (s.astype(dt) * g.astype(dt)).astype(inexact_dtype(g))

        def step(g, v):
            rho = scalar_as(decay, v)
            v = scalar_as(1 - decay, v) * abs_sq(g, v.dtype) + rho * v
            return scaling(g, v, v / corr.astype(v.dtype)), v

        def step_centered(g, m, v):
            rho = scalar_as(decay, v)
            m = scalar_as(1 - decay, m) * g.astype(m.dtype) + scalar_as(decay, m) * m
            v = scalar_as(1 - decay, v) * abs_sq(g, v.dtype) + rho * v
            c = corr.astype(v.dtype)
            m_hat, v_hat = m / c.astype(m.dtype), v / c
            return scaling(g, v, v_hat - abs_sq(m_hat, v.dtype)), m, v

        if centered:
            updates, mu, nu = map_elementwise(step_centered, updates, state.mu, state.nu, n_out=3)
        else:
            (updates, nu), mu = map_elementwise(step, updates, state.nu, n_out=2), ()
        return updates, ScaleByRmsState(count=count, mu=mu, nu=nu)

    return GradientTransformation(init_fn, update_fn)


class ScaleByRssState(NamedTuple):
    """State of :func:`scale_by_rss`.

    Attributes:
        sum_of_squares: running sum of squared gradients, starting at
            ``initial_accumulator_value``.
    """

    sum_of_squares: Any


def scale_by_rss(
    initial_accumulator_value: jax.typing.ArrayLike = 0.1,
    eps: jax.typing.ArrayLike = 1e-7,
    *,
    accumulator_dtype: Any = None,
) -> GradientTransformation:
    """Divide by the root of the sum of all squared gradients so far (Adagrad, Duchi et al. 2011).

    .. math::

        G_t = G_{t-1} + g_t^2, \\qquad \\Delta_t = g_t / \\sqrt{G_t + \\epsilon}

    where :math:`G_t = 0` gives a zero update (not NaN), as in ``optax.scale_by_rss``.
    """

    def init_fn(params):
        return ScaleByRssState(
            sum_of_squares=_full_like(params, initial_accumulator_value, accumulator_dtype)
        )

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args

        def step(g, s):
            s = abs_sq(g, s.dtype) + s
            inv = jnp.where(s > 0, jax.lax.rsqrt(s + scalar_as(eps, s)), jnp.zeros_like(s))
            dt = compute_dtype(g, s)
            return (inv.astype(dt) * g.astype(dt)).astype(inexact_dtype(g)), s

        updates, sos = map_elementwise(step, updates, state.sum_of_squares, n_out=2)
        return updates, ScaleByRssState(sum_of_squares=sos)

    return GradientTransformation(init_fn, update_fn)


class ScaleByAdadeltaState(NamedTuple):
    """State of :func:`scale_by_adadelta`.

    Attributes:
        e_g: running mean of the squared gradients, :math:`E[g^2]`.
        e_x: running mean of the squared updates, :math:`E[\\Delta x^2]`.
    """

    e_g: Any
    e_x: Any


def scale_by_adadelta(
    rho: jax.typing.ArrayLike = 0.9,
    eps: jax.typing.ArrayLike = 1e-6,
    *,
    accumulator_dtype: Any = None,
) -> GradientTransformation:
    """Adadelta's unit-corrected step (Zeiler 2012, "ADADELTA: An Adaptive Learning Rate Method").

    .. math::

        E[g^2]_t = (1-\\rho) g_t^2 + \\rho E[g^2]_{t-1}, \\quad
        \\Delta_t = \\frac{\\sqrt{E[\\Delta^2]_{t-1} + \\epsilon}}{\\sqrt{E[g^2]_t +
            \\epsilon}} g_t,
        \\quad E[\\Delta^2]_t = (1-\\rho) \\Delta_t^2 + \\rho E[\\Delta^2]_{t-1}
    """

    def init_fn(params):
        return ScaleByAdadeltaState(
            e_g=zeros_like(params, accumulator_dtype, real=True),
            e_x=zeros_like(params, accumulator_dtype, real=True),
        )

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args

        def step(g, e_g, e_x):
            r, e = scalar_as(rho, e_g), scalar_as(eps, e_g)
            e_g = scalar_as(1 - rho, e_g) * abs_sq(g, e_g.dtype) + r * e_g
            dt = compute_dtype(g, e_g)
            d = (jnp.sqrt(e_x + e) / jnp.sqrt(e_g + e)).astype(dt) * g.astype(dt)
            e_x = scalar_as(1 - rho, e_x) * abs_sq(d, e_x.dtype) + r * e_x
            return d.astype(inexact_dtype(g)), e_g, e_x

        updates, e_g, e_x = map_elementwise(step, updates, state.e_g, state.e_x, n_out=3)
        return updates, ScaleByAdadeltaState(e_g=e_g, e_x=e_x)

    return GradientTransformation(init_fn, update_fn)

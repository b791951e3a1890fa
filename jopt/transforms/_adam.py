"""Adam's moment estimates, with the NAdam and AMSGrad variants."""

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


class ScaleByAdamState(NamedTuple):
    """State of :func:`scale_by_adam`.

    Attributes:
        count: int32 number of updates so far (saturating), for bias correction.
        mu: first-moment estimate ``m``, one array per parameter.
        nu: second-moment estimate ``v``, one array per parameter.
        nu_max: running maximum of the (bias-corrected) ``v`` (AMSGrad); an empty tuple when
            ``amsgrad=False``.
    """

    count: jax.Array
    mu: Any
    nu: Any
    nu_max: Any = ()


def _correction(decay: jax.typing.ArrayLike, t: jax.Array) -> jax.Array:
    # 1 - decay**t in float32: in low precision decay**t rounds to 1 and the division blows up.
    return 1 - jnp.asarray(decay, jnp.float32) ** t


def scale_by_adam(
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    eps_root: jax.typing.ArrayLike = 0.0,
    mu_dtype: Any = None,
    *,
    nesterov: bool = False,
    amsgrad: bool = False,
    bias_correction_mu: bool = True,
    bias_correction_nu: bool = True,
    nu_dtype: Any = None,
) -> GradientTransformation:
    """Rescale updates by Adam's bias-corrected moments (Kingma & Ba 2015).

    .. math::

        m_t = (1-\\beta_1) g_t + \\beta_1 m_{t-1}, \\quad
        v_t = (1-\\beta_2) g_t^2 + \\beta_2 v_{t-1},

        \\hat m_t = m_t / (1-\\beta_1^t), \\quad \\hat v_t = v_t / (1-\\beta_2^t), \\quad
        u_t = \\hat m_t / (\\sqrt{\\hat v_t + \\epsilon_{root}} + \\epsilon).

    ``nesterov=True`` (NAdam, Dozat 2016) replaces :math:`\\hat m_t` by
    :math:`\\beta_1 m_t/(1-\\beta_1^{t+1}) + (1-\\beta_1) g_t/(1-\\beta_1^t)`.
    ``amsgrad=True`` (Reddi et al. 2018) divides by the running maximum
    :math:`\\hat v^{max}_t = \\max(\\hat v^{max}_{t-1}, \\hat v_t)` of the *bias-corrected*
    second moment, exactly as ``optax.scale_by_amsgrad``. ``bias_correction_mu=False`` /
    ``bias_correction_nu=False`` drop the corrections (the original AMSGrad paper).

    Every numeric argument may be a traced scalar array.

    Args:
        b1, b2: decay rates of the first and second moments.
        eps: added to the denominator outside the square root.
        eps_root: added inside the square root (useful when differentiating through Adam).
        mu_dtype, nu_dtype: dtypes of the moments; default float32 or wider.
        nesterov: the NAdam variant.
        amsgrad: the AMSGrad variant.
        bias_correction_mu, bias_correction_nu: apply the bias corrections.
    """

    def init_fn(params):
        mu = zeros_like(params, mu_dtype)
        nu = zeros_like(params, nu_dtype, real=True)
        nu_max = zeros_like(params, nu_dtype, real=True) if amsgrad else ()
        return ScaleByAdamState(count=jnp.zeros([], jnp.int32), mu=mu, nu=nu, nu_max=nu_max)

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        count = safe_increment(state.count)
        t = count.astype(jnp.float32)
        c1 = _correction(b1, t) if bias_correction_mu else jnp.ones([], jnp.float32)
        c1_next = _correction(b1, t + 1) if bias_correction_mu else jnp.ones([], jnp.float32)
        c2 = _correction(b2, t) if bias_correction_nu else jnp.ones([], jnp.float32)

        def moments(g, m, v):
            # |g|^2 (real) in the second moment, as optax, so complex parameters work.
            b1_, b2_ = scalar_as(b1, m), scalar_as(b2, v)
            m = scalar_as(1 - b1, m) * g.astype(m.dtype) + b1_ * m
            v = scalar_as(1 - b2, v) * abs_sq(g, v.dtype) + b2_ * v
            return m, v

        mu, nu = map_elementwise(moments, updates, state.mu, state.nu, n_out=2)

        def direction(g, m, v_hat):
            dt = compute_dtype(m, v_hat)
            m = m.astype(dt)
            if nesterov:
                b1_ = scalar_as(b1, m)
                m_hat = b1_ * (m / c1_next.astype(dt)) + scalar_as(1 - b1, m) * (
                    g.astype(dt) / c1.astype(dt)
                )
            else:
                m_hat = m / c1.astype(dt)
            denom = jnp.sqrt(v_hat + scalar_as(eps_root, v_hat)) + scalar_as(eps, v_hat)
            return (m_hat / denom.astype(dt)).astype(inexact_dtype(g))

        if amsgrad:
            # optax.amsgrad keeps the maximum of the bias-corrected nu, not of the raw nu.
            nu_max = map_elementwise(
                lambda vm, v: jnp.maximum(vm, v / c2.astype(v.dtype)), state.nu_max, nu
            )
            updates = map_elementwise(direction, updates, mu, nu_max)
        else:
            nu_max = ()
            nu_hat = map_elementwise(lambda v: v / c2.astype(v.dtype), nu)
            updates = map_elementwise(direction, updates, mu, nu_hat)
        return updates, ScaleByAdamState(count=count, mu=mu, nu=nu, nu_max=nu_max)

    return GradientTransformation(init_fn, update_fn)

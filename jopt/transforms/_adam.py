"""Adam's moment estimates."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jopt.core import GradientTransformation, map_elementwise, safe_increment, zeros_like


class ScaleByAdamState(NamedTuple):
    """State of :func:`scale_by_adam`.

    Attributes:
        count: int32 number of updates so far (saturating), for bias correction.
        mu: first-moment estimate, one array per parameter.
        nu: second-moment estimate, one array per parameter.
        nu_max: running maximum of ``nu`` (AMSGrad); an empty tuple when ``amsgrad=False``.
    """

    count: jax.Array
    mu: Any
    nu: Any
    nu_max: Any = ()


def scale_by_adam(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    *,
    nesterov: bool = False,
    amsgrad: bool = False,
    nu_dtype: Any = None,
) -> GradientTransformation:
    """Rescale updates by Adam's bias-corrected moments (Kingma & Ba 2015).

    .. math::

        m_t = \\beta_1 m_{t-1} + (1-\\beta_1) g_t, \\quad
        v_t = \\beta_2 v_{t-1} + (1-\\beta_2) g_t^2,

        \\hat m_t = m_t / (1-\\beta_1^t), \\quad \\hat v_t = v_t / (1-\\beta_2^t), \\quad
        u_t = \\hat m_t / (\\sqrt{\\hat v_t + \\epsilon_{root}} + \\epsilon).

    With ``nesterov=True`` (NAdam, Dozat 2016) ``\\hat m_t`` is replaced by
    ``\\beta_1 m_t/(1-\\beta_1^{t+1}) + (1-\\beta_1) g_t/(1-\\beta_1^t)``. With ``amsgrad=True``
    (Reddi et al. 2018) ``\\hat v_t`` uses the running maximum of ``v``, as in ``optax.amsgrad``.

    Args:
        b1, b2: decay rates of the first and second moments.
        eps: added to the denominator outside the square root.
        eps_root: added inside the square root (useful when differentiating through Adam).
        mu_dtype, nu_dtype: dtypes of the moments; default float32 or wider.
        nesterov: the NAdam variant.
        amsgrad: the AMSGrad variant.
    """

    def init_fn(params):
        mu = zeros_like(params, mu_dtype)
        nu = zeros_like(params, nu_dtype)
        nu_max = zeros_like(params, nu_dtype) if amsgrad else ()
        return ScaleByAdamState(count=jnp.zeros([], jnp.int32), mu=mu, nu=nu, nu_max=nu_max)

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        count = safe_increment(state.count)
        t = count.astype(jnp.float32)
        c1 = 1 - b1**t
        c2 = 1 - b2**t
        c1_next = 1 - b1 ** (t + 1)

        def moments(g, m, v):
            m = (b1 * m + (1 - b1) * g).astype(m.dtype)
            v = (b2 * v + (1 - b2) * jnp.square(g.astype(v.dtype))).astype(v.dtype)
            return m, v

        mu, nu = map_elementwise(moments, updates, state.mu, state.nu)
        if amsgrad:
            nu_max = map_elementwise(jnp.maximum, state.nu_max, nu)
            nu_hat_src = nu_max
        else:
            nu_max = ()
            nu_hat_src = nu

        def direction(g, m, v):
            if nesterov:
                m_hat = b1 * m / c1_next + (1 - b1) * g / c1
            else:
                m_hat = m / c1
            v_hat = v / c2
            return (m_hat / (jnp.sqrt(v_hat + eps_root) + eps)).astype(g.dtype)

        updates = map_elementwise(direction, updates, mu, nu_hat_src)
        return updates, ScaleByAdamState(count=count, mu=mu, nu=nu, nu_max=nu_max)

    return GradientTransformation(init_fn, update_fn)

"""Adam."""

from __future__ import annotations

from typing import Any

from jopt.core import GradientTransformation, ScalarOrSchedule, chain
from jopt.transforms import scale_by_adam, scale_by_learning_rate


def adam(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    *,
    nesterov: bool = False,
) -> GradientTransformation:
    """Adam (Kingma & Ba 2015, "Adam: A Method for Stochastic Optimization").

    .. math::

        m_t = \\beta_1 m_{t-1} + (1-\\beta_1) g_t, \\quad v_t = \\beta_2 v_{t-1} + (1-\\beta_2) g_t^2,

        \\theta_t = \\theta_{t-1} - \\eta\\, \\frac{m_t/(1-\\beta_1^t)}{\\sqrt{v_t/(1-\\beta_2^t) + \\epsilon_{root}} + \\epsilon}

    Same arguments and defaults as ``optax.adam``.

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> tx = jopt.adam(1e-3)
        >>> params = {"w": jnp.ones(3)}
        >>> updates, state = tx.update({"w": jnp.ones(3)}, tx.init(params), params)
    """
    return chain(
        scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
        scale_by_learning_rate(learning_rate),
    )

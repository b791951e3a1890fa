"""Adamax, RAdam and LAMB."""

from __future__ import annotations

from typing import Any

import jax.typing

from jopt.core import GradientTransformation, ScalarOrSchedule, chain
from jopt.transforms import (
    Mask,
    add_decayed_weights,
    scale_by_adam,
    scale_by_adamax,
    scale_by_learning_rate,
    scale_by_radam,
    scale_by_trust_ratio,
)


def adamax(
    learning_rate: ScalarOrSchedule,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    *,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> GradientTransformation:
    """Adamax, Adam with the infinity norm (Kingma & Ba 2015, §7.1).

    .. math::

        m_t = \\beta_1 m_{t-1} + (1-\\beta_1) g_t, \\quad
        u_t = \\max(\\beta_2 u_{t-1}, |g_t| + \\epsilon), \\quad
        \\theta_t = \\theta_{t-1} - \\eta\\, \\frac{m_t}{(1-\\beta_1^t)\\, u_t}

    Same arguments and defaults as ``optax.adamax``.

    Args:
        learning_rate: :math:`\\eta`, a float, a (traced) array or a schedule ``count -> value``.
        b1: decay rate of the first moment.
        b2: decay rate of the infinity norm.
        eps: added to :math:`|g_t|` inside the maximum.
        mu_dtype, nu_dtype: dtypes of the state slots (default float32 or wider).

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> tx = jopt.adamax(2e-3)
        >>> state = tx.init({"w": jnp.ones(3)})
    """
    return chain(
        scale_by_adamax(b1, b2, eps, mu_dtype=mu_dtype, nu_dtype=nu_dtype),
        scale_by_learning_rate(learning_rate),
    )


def radam(
    learning_rate: ScalarOrSchedule,
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
    """RAdam, rectified Adam (Liu et al. 2020, "On the Variance of the Adaptive Learning Rate
    and Beyond").

    .. math::

        \\rho_t = \\rho_\\infty - \\frac{2t\\beta_2^t}{1-\\beta_2^t}, \\quad
        \\theta_t = \\theta_{t-1} - \\eta
        \\begin{cases} r_t\\, \\hat m_t / (\\sqrt{\\hat v_t + \\epsilon_{root}} + \\epsilon)
        & \\rho_t \\ge \\text{threshold} \\\\ \\hat m_t & \\text{otherwise} \\end{cases}

    with the rectification :math:`r_t` of :func:`jopt.scale_by_radam`. Same arguments and
    defaults as ``optax.radam``.

    Args:
        learning_rate: :math:`\\eta`, a float, a (traced) array or a schedule ``count -> value``.
        b1, b2: decay rates of the first and second moments.
        eps, eps_root: added outside / inside the square root.
        threshold: the :math:`\\rho_t` above which the adaptive step is used.
        nesterov: Nesterov momentum, as in :func:`nadam`.
        mu_dtype, nu_dtype: dtypes of the moments (default float32 or wider).

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> tx = jopt.radam(1e-3)
        >>> state = tx.init({"w": jnp.ones(3)})
    """
    return chain(
        scale_by_radam(
            b1,
            b2,
            eps,
            eps_root,
            threshold,
            nesterov=nesterov,
            mu_dtype=mu_dtype,
            nu_dtype=nu_dtype,
        ),
        scale_by_learning_rate(learning_rate),
    )


def lamb(
    learning_rate: ScalarOrSchedule,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-6,
    eps_root: jax.typing.ArrayLike = 0.0,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: Mask = None,
    *,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> GradientTransformation:
    """LAMB (You et al. 2020, "Large Batch Optimization for Deep Learning: Training BERT in
    76 minutes").

    .. math::

        r_t = \\frac{\\hat m_t}{\\sqrt{\\hat v_t + \\epsilon_{root}} + \\epsilon} + \\lambda
            \\theta_{t-1},
        \\qquad
        \\theta_t = \\theta_{t-1} - \\eta\\, \\frac{\\lVert\\theta_{t-1}\\rVert}{\\lVert
            r_t\\rVert}\\, r_t

    per parameter array (layer-wise trust ratio; 1 when a norm is zero). Same arguments and
    defaults as ``optax.lamb``.

    Args:
        learning_rate: :math:`\\eta`, a float, a (traced) array or a schedule ``count -> value``.
        b1, b2: decay rates of the first and second moments.
        eps, eps_root: added outside / inside the square root.
        weight_decay: :math:`\\lambda` (decoupled, before the trust ratio), float or schedule.
        mask: which leaves to decay: a tree of bools (or a prefix) or ``params -> tree``.
        mu_dtype, nu_dtype: dtypes of the moments (default float32 or wider).

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> tx = jopt.lamb(1e-3)
        >>> params = {"w": jnp.ones(3)}
        >>> updates, state = tx.update({"w": jnp.ones(3)}, tx.init(params), params)
    """
    return chain(
        scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nu_dtype=nu_dtype),
        add_decayed_weights(weight_decay, mask),
        scale_by_trust_ratio(),
        scale_by_learning_rate(learning_rate),
    )

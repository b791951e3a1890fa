"""optax's Adam-family optimizers that jopt lacked: AdaBelief, Yogi, Adan, AdamaxW, NAdamW.

Each has optax's name, argument order and defaults, and is a short chain of building blocks.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.typing

from jopt.core import GradientTransformation, ScalarOrSchedule, chain
from jopt.transforms import (
    add_decayed_weights,
    scale_by_adam,
    scale_by_adamax,
    scale_by_adan,
    scale_by_belief,
    scale_by_learning_rate,
    scale_by_yogi,
)

AL = jax.typing.ArrayLike


def adabelief(
    learning_rate: ScalarOrSchedule,
    b1: AL = 0.9,
    b2: AL = 0.999,
    eps: AL = 1e-16,
    eps_root: AL = 1e-16,
    *,
    nesterov: bool = False,
) -> GradientTransformation:
    """AdaBelief (Zhuang et al. 2020): Adam whose denominator tracks the *belief*
    :math:`s_t`, the EMA of :math:`|g_t - m_t|^2`, instead of :math:`g_t^2`.

    .. math::

        \\theta_t = \\theta_{t-1} - \\eta\\, \\frac{\\hat m_t}{\\sqrt{\\hat s_t} + \\epsilon}

    See :func:`jopt.scale_by_belief`. Same arguments and defaults as ``optax.adabelief``.

    Args:
        learning_rate: the learning rate :math:`\\eta`: a float, a (traced) array or a schedule.
        b1: decay rate of the first moment.
        b2: decay rate of the second moment (Adan: of the gradient-difference moment).
        eps: added to the denominator (outside the square root).
        eps_root: added inside the square root.
        nesterov: use the Nesterov (NAdam) momentum estimate.

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> tx = jopt.adabelief(1e-3)
        >>> state = tx.init({"w": jnp.ones(3)})
    """
    return chain(
        scale_by_belief(b1, b2, eps, eps_root, nesterov=nesterov),
        scale_by_learning_rate(learning_rate),
    )


def yogi(
    learning_rate: ScalarOrSchedule, b1: AL = 0.9, b2: AL = 0.999, eps: AL = 1e-3
) -> GradientTransformation:
    """Yogi (Zaheer et al. 2018): Adam with an additive, sign-controlled second moment.

    .. math::

        v_t = v_{t-1} - (1-\\beta_2)\\,\\mathrm{sign}(v_{t-1} - g_t^2)\\, g_t^2, \\qquad
        \\theta_t = \\theta_{t-1} - \\eta\\, \\frac{\\hat m_t}{\\sqrt{\\hat v_t} + \\epsilon}

    See :func:`jopt.scale_by_yogi`. Same arguments and defaults as ``optax.yogi``.

    Args:
        learning_rate: the learning rate :math:`\\eta`: a float, a (traced) array or a schedule.
        b1: decay rate of the first moment.
        b2: decay rate of the second moment (Adan: of the gradient-difference moment).
        eps: added to the denominator (outside the square root).

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> tx = jopt.yogi(1e-2)
        >>> state = tx.init({"w": jnp.ones(3)})
    """
    return chain(scale_by_yogi(b1, b2, eps), scale_by_learning_rate(learning_rate))


def adan(
    learning_rate: ScalarOrSchedule,
    b1: AL = 0.98,
    b2: AL = 0.92,
    b3: AL = 0.99,
    eps: AL = 1e-8,
    eps_root: AL = 1e-8,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: Any = None,
) -> GradientTransformation:
    """Adan (Xie et al. 2022): adaptive Nesterov momentum from gradient differences, with
    decoupled weight decay.

    .. math::

        \\theta_t = \\theta_{t-1} - \\eta\\left(\\frac{\\hat m_t + (1-\\beta_2)\\hat v_t}
            {\\sqrt{\\hat n_t + \\epsilon_{root}} + \\epsilon} + \\lambda \\theta_{t-1}\\right)

    See :func:`jopt.scale_by_adan`. Same arguments and defaults as ``optax.adan``.

    Args:
        learning_rate: the learning rate :math:`\\eta`: a float, a (traced) array or a schedule.
        b1: decay rate of the first moment.
        b2: decay rate of the second moment (Adan: of the gradient-difference moment).
        b3: decay rate of Adan's squared-sum moment.
        eps: added to the denominator (outside the square root).
        eps_root: added inside the square root.
        weight_decay: decoupled weight decay :math:`\\lambda` (a float or a schedule).
        mask: which leaves to decay: a tree of bools (or a prefix) or ``params -> tree``.

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> tx = jopt.adan(1e-3)
        >>> state = tx.init({"w": jnp.ones(3)})
    """
    return chain(
        scale_by_adan(b1, b2, b3, eps, eps_root),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


def adamaxw(
    learning_rate: ScalarOrSchedule,
    b1: AL = 0.9,
    b2: AL = 0.999,
    eps: AL = 1e-8,
    weight_decay: ScalarOrSchedule = 1e-4,
    mask: Any = None,
) -> GradientTransformation:
    """AdamaxW: Adamax (Kingma & Ba 2015, §7.1) with decoupled weight decay (Loshchilov &
    Hutter 2019).

    .. math::

        u_t = \\max(\\beta_2 u_{t-1}, |g_t|), \\qquad
        \\theta_t = \\theta_{t-1} - \\eta\\left(\\frac{\\hat m_t}{u_t + \\epsilon} +
            \\lambda\\theta_{t-1}\\right)

    Same arguments and defaults as ``optax.adamaxw``.

    Args:
        learning_rate: the learning rate :math:`\\eta`: a float, a (traced) array or a schedule.
        b1: decay rate of the first moment.
        b2: decay rate of the second moment (Adan: of the gradient-difference moment).
        eps: added to the denominator (outside the square root).
        weight_decay: decoupled weight decay :math:`\\lambda` (a float or a schedule).
        mask: which leaves to decay: a tree of bools (or a prefix) or ``params -> tree``.

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> tx = jopt.adamaxw(1e-3)
        >>> state = tx.init({"w": jnp.ones(3)})
    """
    return chain(
        scale_by_adamax(b1, b2, eps),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


def nadamw(
    learning_rate: ScalarOrSchedule,
    b1: AL = 0.9,
    b2: AL = 0.999,
    eps: AL = 1e-8,
    eps_root: AL = 0.0,
    mu_dtype: Any = None,
    weight_decay: ScalarOrSchedule = 1e-4,
    mask: Any = None,
    *,
    nesterov: bool = True,
    nu_dtype: Any = None,
) -> GradientTransformation:
    """NAdamW: NAdam (Dozat 2016) with decoupled weight decay; ``adamw(..., nesterov=True)``.

    .. math::

        \\theta_t = \\theta_{t-1} - \\eta\\left(\\frac{\\beta_1 m_t/(1-\\beta_1^{t+1}) +
            (1-\\beta_1) g_t/(1-\\beta_1^t)}{\\sqrt{\\hat v_t + \\epsilon_{root}} + \\epsilon}
            + \\lambda\\theta_{t-1}\\right)

    Same arguments and defaults as ``optax.nadamw``.

    Args:
        learning_rate: the learning rate :math:`\\eta`: a float, a (traced) array or a schedule.
        b1: decay rate of the first moment.
        b2: decay rate of the second moment (Adan: of the gradient-difference moment).
        eps: added to the denominator (outside the square root).
        eps_root: added inside the square root.
        mu_dtype: dtype of the first moment (default float32 or wider).
        weight_decay: decoupled weight decay :math:`\\lambda` (a float or a schedule).
        mask: which leaves to decay: a tree of bools (or a prefix) or ``params -> tree``.
        nesterov: use the Nesterov (NAdam) momentum estimate.
        nu_dtype: dtype of the second moment (default float32 or wider).

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> tx = jopt.nadamw(1e-3)
        >>> state = tx.init({"w": jnp.ones(3)})
    """
    return chain(
        scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov, nu_dtype=nu_dtype),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )

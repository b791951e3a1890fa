"""Lion."""

from __future__ import annotations

from typing import Any

import jax.typing

from jopt.core import GradientTransformation, ScalarOrSchedule, chain
from jopt.transforms import Mask, add_decayed_weights, scale_by_learning_rate, scale_by_lion


def lion(
    learning_rate: ScalarOrSchedule,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.99,
    mu_dtype: Any = None,
    weight_decay: ScalarOrSchedule = 1e-3,
    mask: Mask = None,
) -> GradientTransformation:
    """Lion, EvoLved Sign Momentum (Chen et al. 2023, "Symbolic Discovery of Optimization
    Algorithms").

    .. math::

        c_t = \\operatorname{sign}(\\beta_1 m_{t-1} + (1-\\beta_1) g_t), \\quad
        \\theta_t = \\theta_{t-1} - \\eta (c_t + \\lambda \\theta_{t-1}), \\quad
        m_t = \\beta_2 m_{t-1} + (1-\\beta_2) g_t

    Every coordinate moves by :math:`\\pm\\eta` (plus the decoupled decay), so Lion wants a
    learning rate 3-10x smaller than Adam's. Same arguments and defaults as ``optax.lion``.

    Args:
        learning_rate: :math:`\\eta`, a float, a (traced) array or a schedule ``count -> value``.
        b1: interpolation between momentum and gradient for the sign.
        b2: decay rate of the momentum.
        mu_dtype: dtype of the momentum (default float32 or wider).
        weight_decay: :math:`\\lambda`, decoupled, a float or a schedule.
        mask: which leaves to decay: a tree of bools (or a prefix) or ``params -> tree``.

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> tx = jopt.lion(1e-4)
        >>> params = {"w": jnp.ones(3)}
        >>> updates, state = tx.update({"w": jnp.ones(3)}, tx.init(params), params)
    """
    return chain(
        scale_by_lion(b1, b2, mu_dtype),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )

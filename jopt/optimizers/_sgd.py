"""Stochastic gradient descent, with optional heavy-ball or Nesterov momentum."""

from __future__ import annotations

from typing import Any

from jopt.core import GradientTransformation, ScalarOrSchedule, chain, identity
from jopt.transforms import scale_by_learning_rate, trace


def sgd(
    learning_rate: ScalarOrSchedule,
    momentum: float | None = None,
    nesterov: bool = False,
    accumulator_dtype: Any = None,
) -> GradientTransformation:
    """Stochastic gradient descent (Robbins & Monro 1951), optionally with momentum.

    .. math::

        m_t = \\mu m_{t-1} + g_t, \\qquad \\theta_t = \\theta_{t-1} - \\eta\\, m_t

    (``m_t = g_t`` without momentum; Nesterov uses ``g_t + \\mu m_t``, Sutskever et al. 2013).

    Args:
        learning_rate: ``eta``, a float or a schedule.
        momentum: ``mu``; ``None`` for plain SGD.
        nesterov: Nesterov momentum.
        accumulator_dtype: dtype of the momentum buffer.

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> tx = jopt.sgd(0.1, momentum=0.9)
        >>> params = {"w": jnp.ones(3)}
        >>> state = tx.init(params)
        >>> updates, state = tx.update({"w": jnp.ones(3)}, state, params)
    """
    return chain(
        trace(momentum, nesterov, accumulator_dtype) if momentum is not None else identity(),
        scale_by_learning_rate(learning_rate),
    )

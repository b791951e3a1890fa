"""RMSProp, Adagrad and Adadelta."""

from __future__ import annotations

from typing import Any

import jax.typing

from jopt.core import GradientTransformation, ScalarOrSchedule, chain, identity
from jopt.transforms import (
    Mask,
    add_decayed_weights,
    scale_by_adadelta,
    scale_by_learning_rate,
    scale_by_rms,
    scale_by_rss,
    trace,
)


def rmsprop(
    learning_rate: ScalarOrSchedule,
    decay: jax.typing.ArrayLike = 0.9,
    eps: jax.typing.ArrayLike = 1e-8,
    initial_scale: jax.typing.ArrayLike = 0.0,
    eps_in_sqrt: bool = True,
    centered: bool = False,
    momentum: jax.typing.ArrayLike | None = None,
    nesterov: bool = False,
    bias_correction: bool = False,
    *,
    nu_dtype: Any = None,
    accumulator_dtype: Any = None,
) -> GradientTransformation:
    """RMSProp (Hinton 2012, Lecture 6e; centered variant: Graves 2013, "Generating Sequences
    With Recurrent Neural Networks").

    .. math::

        v_t = \\rho v_{t-1} + (1-\\rho) g_t^2, \\qquad
        d_t = \\frac{g_t}{\\sqrt{v_t + \\epsilon}}, \\qquad
        b_t = \\mu b_{t-1} + \\eta d_t, \\qquad \\theta_t = \\theta_{t-1} - b_t

    ``centered`` uses :math:`v_t - m_t^2` (:math:`m_t` the running mean of :math:`g`);
    ``eps_in_sqrt=False`` uses :math:`\\sqrt{v_t} + \\epsilon`; ``momentum`` :math:`\\mu`
    (``None``: no momentum buffer, :math:`b_t = \\eta d_t`) is applied after the learning rate,
    as in optax, optionally ``nesterov``. Same arguments and defaults as ``optax.rmsprop``.

    Args:
        learning_rate: :math:`\\eta`, a float, a (traced) array or a schedule ``count -> value``.
        decay: :math:`\\rho`, decay rate of the squared-gradient average.
        eps: added inside (``eps_in_sqrt``) or outside the square root.
        initial_scale: :math:`v_0`.
        eps_in_sqrt: where ``eps`` goes.
        centered: divide by the variance estimate instead of the raw second moment.
        momentum: :math:`\\mu`, or ``None`` for no momentum buffer.
        nesterov: Nesterov momentum.
        bias_correction: divide the moments by :math:`1-\\rho^t`.
        nu_dtype, accumulator_dtype: dtypes of the moments and of the momentum buffer.

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> tx = jopt.rmsprop(1e-3, momentum=0.9, centered=True)
        >>> state = tx.init({"w": jnp.ones(3)})
    """
    return chain(
        scale_by_rms(
            decay,
            eps,
            initial_scale,
            eps_in_sqrt,
            bias_correction,
            centered=centered,
            nu_dtype=nu_dtype,
        ),
        scale_by_learning_rate(learning_rate),
        trace(momentum, nesterov, accumulator_dtype) if momentum is not None else identity(),
    )


def adagrad(
    learning_rate: ScalarOrSchedule,
    initial_accumulator_value: jax.typing.ArrayLike = 0.1,
    eps: jax.typing.ArrayLike = 1e-7,
    *,
    accumulator_dtype: Any = None,
) -> GradientTransformation:
    """Adagrad (Duchi, Hazan & Singer 2011, "Adaptive Subgradient Methods for Online Learning
    and Stochastic Optimization").

    .. math::

        G_t = G_{t-1} + g_t^2, \\qquad
        \\theta_t = \\theta_{t-1} - \\eta\\, \\frac{g_t}{\\sqrt{G_t + \\epsilon}}

    with :math:`G_0` = ``initial_accumulator_value``. Same arguments and defaults as
    ``optax.adagrad``.

    Args:
        learning_rate: :math:`\\eta`, a float, a (traced) array or a schedule ``count -> value``.
        initial_accumulator_value: :math:`G_0`.
        eps: added inside the square root.
        accumulator_dtype: dtype of :math:`G` (default float32 or wider).

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> tx = jopt.adagrad(0.1)
        >>> state = tx.init({"w": jnp.ones(3)})
    """
    return chain(
        scale_by_rss(initial_accumulator_value, eps, accumulator_dtype=accumulator_dtype),
        scale_by_learning_rate(learning_rate),
    )


def adadelta(
    learning_rate: ScalarOrSchedule | None = None,
    rho: jax.typing.ArrayLike = 0.9,
    eps: jax.typing.ArrayLike = 1e-6,
    weight_decay: ScalarOrSchedule = 0.0,
    weight_decay_mask: Mask = None,
    *,
    accumulator_dtype: Any = None,
) -> GradientTransformation:
    """Adadelta (Zeiler 2012, "ADADELTA: An Adaptive Learning Rate Method").

    .. math::

        E[g^2]_t = \\rho E[g^2]_{t-1} + (1-\\rho) g_t^2, \\quad
        \\Delta_t = \\frac{\\sqrt{E[\\Delta^2]_{t-1} + \\epsilon}}{\\sqrt{E[g^2]_t +
            \\epsilon}} g_t,
        \\quad \\theta_t = \\theta_{t-1} - \\eta \\Delta_t

    with :math:`g_t` the gradient plus ``weight_decay`` times the parameters (coupled, before
    the preconditioner, as in optax). **As in optax**, ``learning_rate=None`` applies no
    scaling at all, not even the sign flip, so pass a learning rate (Zeiler uses 1.0) to
    descend. Same arguments and defaults as ``optax.adadelta``.

    Args:
        learning_rate: a float or schedule, or ``None`` for no scaling (see above).
        rho: decay rate of both running averages.
        eps: added inside both square roots.
        weight_decay: coupled L2 coefficient, a float or a schedule.
        weight_decay_mask: which leaves to decay (a tree of bools or ``params -> tree``).
        accumulator_dtype: dtype of the running averages (default float32 or wider).

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> tx = jopt.adadelta(1.0)
        >>> params = {"w": jnp.ones(3)}
        >>> updates, state = tx.update({"w": jnp.ones(3)}, tx.init(params), params)
    """
    return chain(
        add_decayed_weights(weight_decay, weight_decay_mask),
        scale_by_adadelta(rho, eps, accumulator_dtype=accumulator_dtype),
        scale_by_learning_rate(learning_rate),
    )

"""optax's step-rule optimizers: noisy SGD, signSGD, Signum, optimistic GD/Adam, Rprop and
Polyak SGD, each with optax's name, argument order and defaults."""

from __future__ import annotations

from typing import Any

import jax
import jax.typing

from jopt.core import GradientTransformation, JoptError, ScalarOrSchedule, chain
from jopt.optimizers._sgd import sgd
from jopt.transforms import (
    add_noise,
    scale,
    scale_by_adam,
    scale_by_ema,
    scale_by_learning_rate,
    scale_by_optimistic_gradient,
    scale_by_polyak,
    scale_by_rprop,
    scale_by_sign,
)

AL = jax.typing.ArrayLike


def noisy_sgd(
    learning_rate: ScalarOrSchedule,
    eta: AL = 0.01,
    gamma: AL = 0.55,
    key: jax.Array | None = None,
    *,
    seed: int | None = None,
) -> GradientTransformation:
    """SGD with annealed Gaussian gradient noise (Neelakantan et al. 2015).

    .. math::

        \\theta_t = \\theta_{t-1} - \\eta_{lr}\\left(g_t + \\mathcal N(0, \\eta / t^\\gamma)
            \\right)

    ``key`` (a ``jax.random.key``) or ``seed`` (an int) is required: jopt has no global seed.
    With the same key the noise equals ``optax.noisy_sgd``'s. Same arguments and defaults as
    ``optax.noisy_sgd``.

    Args:
        learning_rate: the learning rate :math:`\\eta`: a float, a (traced) array or a schedule.
        eta: base variance of the gradient noise.
        gamma: annealing exponent of the noise variance.
        key: a ``jax.random.key`` for the noise.
        seed: an integer seed, instead of ``key``.

    Example:
        >>> import jax, jax.numpy as jnp, jopt
        >>> tx = jopt.noisy_sgd(1e-2, key=jax.random.key(0))
        >>> state = tx.init({"w": jnp.ones(3)})
    """
    if key is None and seed is None:
        raise JoptError("noisy_sgd needs key=jax.random.key(...) or seed=<int>")
    if key is not None and seed is not None:
        raise JoptError("noisy_sgd: pass key or seed, not both")
    return chain(
        add_noise(eta, gamma, key if key is not None else int(seed)),
        scale_by_learning_rate(learning_rate),
    )


def sign_sgd(learning_rate: ScalarOrSchedule) -> GradientTransformation:
    """signSGD (Bernstein et al. 2018, "signSGD: Compressed Optimisation for Non-Convex
    Problems").

    .. math::

        \\theta_t = \\theta_{t-1} - \\eta\\, \\mathrm{sign}(g_t)

    Same arguments as ``optax.sign_sgd``.

    Args:
        learning_rate: the learning rate :math:`\\eta`: a float, a (traced) array or a schedule.

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> tx = jopt.sign_sgd(1e-3)
        >>> state = tx.init({"w": jnp.ones(3)})
    """
    return chain(scale_by_sign(), scale_by_learning_rate(learning_rate))


def signum(
    learning_rate: ScalarOrSchedule, beta: AL = 0.9, accumulator_dtype: Any = None
) -> GradientTransformation:
    """Signum (Bernstein et al. 2018): signSGD on an (undebiased) EMA of the gradients.

    .. math::

        m_t = \\beta m_{t-1} + (1-\\beta) g_t, \\qquad
        \\theta_t = \\theta_{t-1} - \\eta\\, \\mathrm{sign}(m_t)

    Same arguments and defaults as ``optax.signum``.

    Args:
        learning_rate: the learning rate :math:`\\eta`: a float, a (traced) array or a schedule.
        beta: the momentum (Signum) or optimism (:math:`\\beta`) coefficient.
        accumulator_dtype: dtype of the moving average (default float32 or wider).

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> tx = jopt.signum(1e-3)
        >>> state = tx.init({"w": jnp.ones(3)})
    """
    return chain(
        scale_by_ema(beta, debias=False, accumulator_dtype=accumulator_dtype),
        scale_by_sign(),
        scale_by_learning_rate(learning_rate),
    )


def optimistic_gradient_descent(
    learning_rate: ScalarOrSchedule, alpha: AL = 1.0, beta: AL = 1.0
) -> GradientTransformation:
    """Optimistic gradient descent (Popov 1980; Mokhtari et al. 2020), for min-max games.

    .. math::

        \\theta_t = \\theta_{t-1} - \\eta\\left((\\alpha+\\beta) g_t - \\beta g_{t-1}\\right)

    Same arguments and defaults as ``optax.optimistic_gradient_descent`` (``alpha`` and
    ``beta`` are scalars).

    Args:
        learning_rate: the learning rate :math:`\\eta`: a float, a (traced) array or a schedule.
        alpha: weight :math:`\\alpha` of the current gradient.
        beta: the momentum (Signum) or optimism (:math:`\\beta`) coefficient.

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> tx = jopt.optimistic_gradient_descent(1e-2)
        >>> state = tx.init({"w": jnp.ones(3)})
    """
    return chain(scale_by_optimistic_gradient(alpha, beta), scale_by_learning_rate(learning_rate))


def optimistic_adam(
    learning_rate: AL,
    optimism: AL | None = None,
    b1: AL = 0.9,
    b2: AL = 0.999,
    eps: AL = 1e-8,
    eps_root: AL = 0.0,
    mu_dtype: Any = None,
    *,
    nesterov: bool = True,
) -> GradientTransformation:
    """Optimistic Adam (Daskalakis et al. 2018), optax's first version: the optimistic step
    on Adam's direction :math:`d_t`, with ``learning_rate`` inside it.

    .. math::

        \\theta_t = \\theta_{t-1} - \\left((\\eta + o)\\, d_t - o\\, d_{t-1}\\right),
        \\qquad o = \\text{optimism} \\;(\\text{default } \\eta)

    ``learning_rate`` must be a number (no schedule), as in optax; prefer
    :func:`optimistic_adam_v2`. Same arguments and defaults as ``optax.optimistic_adam``.

    Args:
        learning_rate: the learning rate :math:`\\eta`: a float, a (traced) array or a schedule.
        optimism: weight of the previous direction (default: ``learning_rate``).
        b1: decay rate of the first moment.
        b2: decay rate of the second moment (Adan: of the gradient-difference moment).
        eps: added to the denominator (outside the square root).
        eps_root: added inside the square root.
        mu_dtype: dtype of the first moment (default float32 or wider).
        nesterov: use the Nesterov (NAdam) momentum estimate.

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> tx = jopt.optimistic_adam(1e-3)
        >>> state = tx.init({"w": jnp.ones(3)})
    """
    if callable(learning_rate):
        raise JoptError("optimistic_adam takes no schedule; use optimistic_adam_v2")
    optimism = learning_rate if optimism is None else optimism
    return chain(
        scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
        scale_by_optimistic_gradient(learning_rate, optimism),
        scale(-1.0),
    )


def optimistic_adam_v2(
    learning_rate: ScalarOrSchedule,
    *,
    alpha: AL = 1.0,
    beta: AL = 1.0,
    b1: AL = 0.9,
    b2: AL = 0.999,
    eps: AL = 1e-8,
    eps_root: AL = 0.0,
    mu_dtype: Any = None,
    nesterov: bool = True,
) -> GradientTransformation:
    """Optimistic Adam (Daskalakis et al. 2018): the optimistic step on Adam's direction
    :math:`d_t`, then the learning rate.

    .. math::

        \\theta_t = \\theta_{t-1} - \\eta\\left((\\alpha+\\beta)\\, d_t - \\beta\\, d_{t-1}
            \\right)

    Same arguments and defaults as ``optax.optimistic_adam_v2``.

    Reference: Daskalakis et al. 2018, "Training GANs with Optimism".

    Args:
        learning_rate: the learning rate :math:`\\eta`: a float, a (traced) array or a schedule.
        alpha: weight :math:`\\alpha` of the current gradient.
        beta: the momentum (Signum) or optimism (:math:`\\beta`) coefficient.
        b1: decay rate of the first moment.
        b2: decay rate of the second moment (Adan: of the gradient-difference moment).
        eps: added to the denominator (outside the square root).
        eps_root: added inside the square root.
        mu_dtype: dtype of the first moment (default float32 or wider).
        nesterov: use the Nesterov (NAdam) momentum estimate.

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> tx = jopt.optimistic_adam_v2(1e-3)
        >>> state = tx.init({"w": jnp.ones(3)})
    """
    return chain(
        scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
        scale_by_optimistic_gradient(alpha, beta),
        scale_by_learning_rate(learning_rate),
    )


def rprop(
    learning_rate: AL,
    eta_minus: AL = 0.5,
    eta_plus: AL = 1.2,
    min_step_size: AL = 1e-6,
    max_step_size: AL = 50.0,
) -> GradientTransformation:
    """Rprop (Riedmiller & Braun 1993), optax's iRprop- variant: per-element step sizes that
    grow by ``eta_plus`` while the gradient keeps its sign and shrink by ``eta_minus`` when it
    flips; ``learning_rate`` is the initial step size.

    .. math::

        \\theta_t = \\theta_{t-1} - p_{t-1}, \\qquad p_t = \\Delta_t\\,\\mathrm{sign}(g_t)

    (see :func:`jopt.scale_by_rprop`; like optax 0.2.8 the step lags one update). Full-batch
    method. Same arguments and defaults as ``optax.rprop``.

    Args:
        learning_rate: the learning rate :math:`\\eta`: a float, a (traced) array or a schedule.
        eta_minus: step-size factor after a sign change.
        eta_plus: step-size factor while the sign is kept.
        min_step_size: lower bound of the step sizes.
        max_step_size: upper bound of the step sizes.

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> tx = jopt.rprop(1e-2)
        >>> state = tx.init({"w": jnp.ones(3)})
    """
    return chain(
        scale_by_rprop(learning_rate, eta_minus, eta_plus, min_step_size, max_step_size),
        scale(-1.0),
    )


def polyak_sgd(
    max_learning_rate: AL = 1.0,
    scaling: ScalarOrSchedule = 1.0,
    f_min: AL = 0.0,
    eps: AL = 0.0,
    variant: str = "sps",
) -> GradientTransformation:
    """SGD with the Polyak step size (Loizou et al. 2021).

    .. math::

        \\theta_t = \\theta_{t-1} - \\min\\left(\\frac{f(\\theta_{t-1}) - f^*}{\\lVert
            s\\, g_t\\rVert^2 + \\epsilon}, \\eta_{max}\\right) s\\, g_t

    with ``scaling`` :math:`s`. Needs the loss: ``update(grads, state, params, value=loss)``.
    Same arguments and defaults as ``optax.polyak_sgd``.

    Args:
        max_learning_rate: upper bound :math:`\\eta_{max}` of the Polyak step.
        scaling: scale :math:`s` of the gradient (a float or a schedule).
        f_min: a lower bound :math:`f^*` of the loss.
        eps: added to the denominator (outside the square root).
        variant: ``'sps'`` or ``'sps+'`` (the gap clipped at 0).

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> tx = jopt.polyak_sgd()
        >>> params = {"w": jnp.ones(3)}
        >>> u, s = tx.update({"w": jnp.ones(3)}, tx.init(params), params, value=jnp.array(1.5))
    """
    return chain(
        sgd(learning_rate=scaling),
        scale_by_polyak(f_min, max_learning_rate, eps, variant),
    )

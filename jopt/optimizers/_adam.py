"""Adam and its direct variants: NAdam, AdamW, AMSGrad."""

from __future__ import annotations

from typing import Any

import jax.typing

from jopt.core import GradientTransformation, ScalarOrSchedule, chain
from jopt.transforms import Mask, add_decayed_weights, scale_by_adam, scale_by_learning_rate


def adam(
    learning_rate: ScalarOrSchedule,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    eps_root: jax.typing.ArrayLike = 0.0,
    mu_dtype: Any = None,
    *,
    nesterov: bool = False,
    nu_dtype: Any = None,
) -> GradientTransformation:
    """Adam (Kingma & Ba 2015, "Adam: A Method for Stochastic Optimization").

    .. math::

        m_t = \\beta_1 m_{t-1} + (1-\\beta_1) g_t, \\quad v_t = \\beta_2 v_{t-1} + (1-\\beta_2)
            g_t^2,

        \\theta_t = \\theta_{t-1} - \\eta\\,
            \\frac{m_t/(1-\\beta_1^t)}{\\sqrt{v_t/(1-\\beta_2^t) + \\epsilon_{root}} + \\epsilon}

    Args:
        learning_rate: :math:`\\eta`, a float or a schedule ``count -> value``.
        b1, b2: decay rates of the first and second moments.
        eps, eps_root: added outside / inside the square root.
        mu_dtype, nu_dtype: dtypes of the moments (default float32 or wider).
        nesterov: NAdam's Nesterov momentum (see :func:`nadam`).

    Same arguments and defaults as ``optax.adam``.

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> tx = jopt.adam(1e-3)
        >>> params = {"w": jnp.ones(3)}
        >>> updates, state = tx.update({"w": jnp.ones(3)}, tx.init(params), params)
    """
    return chain(
        scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov, nu_dtype=nu_dtype),
        scale_by_learning_rate(learning_rate),
    )


def nadam(
    learning_rate: ScalarOrSchedule,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    eps_root: jax.typing.ArrayLike = 0.0,
    mu_dtype: Any = None,
    *,
    nesterov: bool = True,
    nu_dtype: Any = None,
) -> GradientTransformation:
    """NAdam: Adam with Nesterov momentum (Dozat 2016, "Incorporating Nesterov Momentum into Adam").

    .. math::

        \\hat m_t = \\frac{\\beta_1 m_t}{1-\\beta_1^{t+1}} + \\frac{(1-\\beta_1) g_t}{1-\\beta_1^t},
        \\qquad
        \\theta_t = \\theta_{t-1} - \\eta\\,\\frac{\\hat m_t}{\\sqrt{\\hat v_t +
            \\epsilon_{root}} + \\epsilon}

    with :math:`m_t, \\hat v_t` as in :func:`adam`. This is ``adam(..., nesterov=True)``, as in
    optax, with the same arguments and defaults as ``optax.nadam``.

    Args:
        learning_rate: :math:`\\eta`, a float, a (traced) array or a schedule ``count -> value``.
        b1, b2: decay rates of the first and second moments.
        eps, eps_root: added outside / inside the square root.
        mu_dtype, nu_dtype: dtypes of the moments (default float32 or wider).
        nesterov: keep ``True`` for NAdam (``False`` is Adam).

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> tx = jopt.nadam(1e-3)
        >>> state = tx.init({"w": jnp.ones(3)})
    """
    return adam(
        learning_rate, b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov, nu_dtype=nu_dtype
    )


def adamw(
    learning_rate: ScalarOrSchedule,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    eps_root: jax.typing.ArrayLike = 0.0,
    mu_dtype: Any = None,
    weight_decay: ScalarOrSchedule = 1e-4,
    mask: Mask = None,
    *,
    nesterov: bool = False,
    nu_dtype: Any = None,
) -> GradientTransformation:
    """AdamW: Adam with decoupled weight decay (Loshchilov & Hutter 2019,
    "Decoupled Weight Decay Regularization").

    .. math::

        \\theta_t = \\theta_{t-1} - \\eta \\left(\\frac{\\hat m_t}{\\sqrt{\\hat v_t +
            \\epsilon_{root}}
        + \\epsilon} + \\lambda\\, \\theta_{t-1}\\right)

    The decay :math:`\\lambda` (``weight_decay``) is not divided by :math:`\\sqrt{\\hat v_t}`,
    unlike an L2 penalty in the loss. ``mask`` selects the decayed leaves (a tree of bools or a
    function of the params). Same arguments and defaults as ``optax.adamw``.

    Args:
        learning_rate: :math:`\\eta`, a float, a (traced) array or a schedule ``count -> value``.
        b1, b2: decay rates of the first and second moments.
        eps, eps_root: added outside / inside the square root.
        mu_dtype, nu_dtype: dtypes of the moments (default float32 or wider).
        weight_decay: :math:`\\lambda`, a float or a schedule.
        mask: which leaves to decay: a tree of bools (or a prefix) or ``params -> tree``.
        nesterov: NAdamW.

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> tx = jopt.adamw(1e-3, weight_decay=1e-2)
        >>> params = {"w": jnp.ones(3)}
        >>> updates, state = tx.update({"w": jnp.ones(3)}, tx.init(params), params)
    """
    return chain(
        scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov, nu_dtype=nu_dtype),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


def amsgrad(
    learning_rate: ScalarOrSchedule,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    eps_root: jax.typing.ArrayLike = 0.0,
    mu_dtype: Any = None,
    bias_correction_mu: bool = True,
    bias_correction_nu: bool = True,
    *,
    nu_dtype: Any = None,
) -> GradientTransformation:
    """AMSGrad (Reddi et al. 2018, "On the Convergence of Adam and Beyond").

    .. math::

        \\hat v^{max}_t = \\max(\\hat v^{max}_{t-1}, \\hat v_t), \\qquad
        \\theta_t = \\theta_{t-1} - \\eta\\,\\frac{\\hat m_t}{\\sqrt{\\hat v^{max}_t +
            \\epsilon_{root}} + \\epsilon}

    with Adam's bias-corrected moments; the maximum is taken over the *bias-corrected*
    :math:`\\hat v_t` as in ``optax.amsgrad`` (``bias_correction_nu=False`` uses the raw
    :math:`v_t`, as in the paper). Same arguments and defaults as ``optax.amsgrad``.

    Args:
        learning_rate: :math:`\\eta`, a float, a (traced) array or a schedule ``count -> value``.
        b1, b2: decay rates of the first and second moments.
        eps, eps_root: added outside / inside the square root.
        mu_dtype, nu_dtype: dtypes of the moments (default float32 or wider).
        bias_correction_mu, bias_correction_nu: apply Adam's bias corrections.

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> tx = jopt.amsgrad(1e-3)
        >>> state = tx.init({"w": jnp.ones(3)})
    """
    return chain(
        scale_by_adam(
            b1,
            b2,
            eps,
            eps_root,
            mu_dtype,
            amsgrad=True,
            bias_correction_mu=bias_correction_mu,
            bias_correction_nu=bias_correction_nu,
            nu_dtype=nu_dtype,
        ),
        scale_by_learning_rate(learning_rate),
    )

"""optax's optimizers whose maths needs whole arrays: Adafactor, SM3, NovoGrad, LARS, Fromage.

They are built from per-leaf building blocks (factored moments, per-axis accumulators,
per-array norms and trust ratios), so they run leaf by leaf and cannot be packed as they are.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import jax.typing

from jopt.core import GradientTransformation, JoptError, ScalarOrSchedule, chain
from jopt.transforms import (
    add_decayed_weights,
    clip_by_block_rms,
    masked,
    scale,
    scale_by_ema,
    scale_by_factored_rms,
    scale_by_learning_rate,
    scale_by_novograd,
    scale_by_param_block_rms,
    scale_by_sm3,
    scale_by_trust_ratio,
    trace,
)

AL = jax.typing.ArrayLike


def adafactor(
    learning_rate: ScalarOrSchedule | None = None,
    min_dim_size_to_factor: int = 128,
    decay_rate: AL = 0.8,
    decay_offset: AL = 0,
    multiply_by_parameter_scale: bool = True,
    clipping_threshold: AL | None = 1.0,
    momentum: AL | None = None,
    dtype_momentum: Any = jnp.float32,
    weight_decay_rate: ScalarOrSchedule | None = None,
    eps: AL = 1e-30,
    factored: bool = True,
    weight_decay_mask: Any = None,
) -> GradientTransformation:
    """Adafactor (Shazeer & Stern 2018): factored second moments, update clipping and steps
    relative to the parameter scale.

    .. math::

        u_t = \\frac{g_t}{\\sqrt{\\hat V_t}}, \\quad
        \\hat u_t = \\frac{u_t}{\\max(1, \\mathrm{rms}(u_t)/d)}, \\quad
        \\theta_t = \\theta_{t-1} - \\eta\\, \\max(\\mathrm{rms}(\\theta_{t-1}), 10^{-3})\\,
            \\hat u_t

    where :math:`\\hat V_t` is the factored (row x column) estimate for matrices with both
    dimensions ``>= min_dim_size_to_factor`` and the full one otherwise (see
    :func:`jopt.scale_by_factored_rms`), :math:`d` = ``clipping_threshold``; optional
    momentum (an undebiased EMA) and decoupled weight decay follow. ``learning_rate=None``
    (the default) leaves the relative step unscaled. Per-leaf: not packable. Same arguments
    and defaults as ``optax.adafactor``.

    Args:
        learning_rate: the learning rate :math:`\\eta`: a float, a (traced) array or a schedule.
        min_dim_size_to_factor: factor only arrays whose two largest dimensions are at least this.
        decay_rate: exponent :math:`c` of the decay :math:`1 - (t+1)^{-c}`.
        decay_offset: step offset of the decay schedule (for fine-tuning).
        multiply_by_parameter_scale: scale steps by the RMS of each parameter array.
        clipping_threshold: clip each update to RMS at most this (``None``: no clipping).
        momentum: momentum coefficient (Adafactor: ``None`` for none).
        dtype_momentum: dtype of the momentum buffer.
        weight_decay_rate: decoupled weight decay (``None``: none).
        eps: added to the denominator (outside the square root).
        factored: use the factored second moment for matrices.
        weight_decay_mask: which leaves to decay (a tree of bools, a prefix or a function).

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> tx = jopt.adafactor(1e-2)
        >>> state = tx.init({"w": jnp.ones((3, 2))})
    """
    txs = [scale_by_factored_rms(factored, decay_rate, decay_offset, min_dim_size_to_factor, eps)]
    if clipping_threshold is not None:
        txs.append(clip_by_block_rms(clipping_threshold))
    if learning_rate is not None:
        txs.append(scale_by_learning_rate(learning_rate, flip_sign=False))
    if multiply_by_parameter_scale:
        txs.append(scale_by_param_block_rms())
    if momentum is not None:
        txs.append(scale_by_ema(momentum, debias=False, accumulator_dtype=dtype_momentum))
    if weight_decay_rate is not None:
        txs.append(add_decayed_weights(weight_decay_rate, weight_decay_mask))
    txs.append(scale(-1.0))
    return chain(*txs)


def sm3(learning_rate: AL, momentum: AL = 0.9) -> GradientTransformation:
    """SM3 (Anil et al. 2019): adaptive steps from one accumulator per tensor axis, so the
    optimizer memory is sublinear in the parameter count.

    .. math::

        \\theta_t = \\theta_{t-1} - \\eta\\, n_t

    with :math:`n_t` from :func:`jopt.scale_by_sm3`. ``learning_rate`` is a number, as in
    optax. Per-axis reductions: not packable. Same arguments and defaults as ``optax.sm3``.

    Args:
        learning_rate: the learning rate :math:`\\eta`: a float, a (traced) array or a schedule.
        momentum: momentum coefficient (Adafactor: ``None`` for none).

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> tx = jopt.sm3(1e-1)
        >>> state = tx.init({"w": jnp.ones((3, 2))})
    """
    if callable(learning_rate):
        raise JoptError("sm3 takes a number as learning_rate, not a schedule (as optax.sm3)")
    return chain(scale_by_sm3(momentum), scale(-learning_rate))


def novograd(
    learning_rate: ScalarOrSchedule,
    b1: AL = 0.9,
    b2: AL = 0.25,
    eps: AL = 1e-6,
    eps_root: AL = 0.0,
    weight_decay: AL = 0.0,
) -> GradientTransformation:
    """NovoGrad (Ginsburg et al. 2019): momentum on gradients normalised per layer by the EMA
    of the layer's squared gradient norm, with weight decay inside the momentum.

    .. math::

        \\theta_t = \\theta_{t-1} - \\eta\\, m_t, \\quad
        m_t = \\beta_1 m_{t-1} + \\frac{g_t}{\\sqrt{v_t + \\epsilon_{root}} + \\epsilon} +
            \\lambda\\theta_{t-1}

    (see :func:`jopt.scale_by_novograd`). One norm per array: not packable. Same arguments
    and defaults as ``optax.novograd``.

    Args:
        learning_rate: the learning rate :math:`\\eta`: a float, a (traced) array or a schedule.
        b1: decay rate of the first moment.
        b2: decay rate of the second moment (Adan: of the gradient-difference moment).
        eps: added to the denominator (outside the square root).
        eps_root: added inside the square root.
        weight_decay: decoupled weight decay :math:`\\lambda` (a float or a schedule).

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> tx = jopt.novograd(1e-2)
        >>> state = tx.init({"w": jnp.ones(3)})
    """
    return chain(
        scale_by_novograd(b1, b2, eps, eps_root, weight_decay),
        scale_by_learning_rate(learning_rate),
    )


def lars(
    learning_rate: ScalarOrSchedule,
    weight_decay: ScalarOrSchedule = 0.0,
    weight_decay_mask: Any = True,
    trust_coefficient: AL = 0.001,
    eps: AL = 0.0,
    trust_ratio_mask: Any = True,
    momentum: AL = 0.9,
    nesterov: bool = False,
) -> GradientTransformation:
    """LARS (You, Gitman & Ginsburg 2017): SGD with momentum on layer-wise trust-ratio-scaled
    updates.

    .. math::

        d_\\ell = (g_\\ell + \\lambda w_\\ell)\\, \\frac{c\\,\\lVert w_\\ell\\rVert}{\\lVert
            g_\\ell + \\lambda w_\\ell\\rVert + \\epsilon}, \\quad
        m_t = \\mu m_{t-1} - \\eta d, \\quad \\theta_t = \\theta_{t-1} + m_t

    per parameter array :math:`\\ell` (``trust_ratio_mask`` selects the arrays that get the
    ratio). One norm per array: not packable. Same arguments and defaults as ``optax.lars``.

    Args:
        learning_rate: the learning rate :math:`\\eta`: a float, a (traced) array or a schedule.
        weight_decay: decoupled weight decay :math:`\\lambda` (a float or a schedule).
        weight_decay_mask: which leaves to decay (a tree of bools, a prefix or a function).
        trust_coefficient: the trust coefficient :math:`c`.
        eps: added to the denominator (outside the square root).
        trust_ratio_mask: which leaves get the trust ratio (bools, a prefix or a function).
        momentum: momentum coefficient (Adafactor: ``None`` for none).
        nesterov: use the Nesterov (NAdam) momentum estimate.

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> tx = jopt.lars(1e-1)
        >>> state = tx.init({"w": jnp.ones(3)})
    """
    decay_mask = None if weight_decay_mask is True else weight_decay_mask
    ratio = scale_by_trust_ratio(trust_coefficient=trust_coefficient, eps=eps)
    return chain(
        add_decayed_weights(weight_decay, decay_mask),
        ratio if trust_ratio_mask is True else masked(ratio, trust_ratio_mask),
        scale_by_learning_rate(learning_rate),
        trace(momentum, nesterov),
    )


def fromage(learning_rate: ScalarOrSchedule, min_norm: AL = 1e-6) -> GradientTransformation:
    """Fromage (Bernstein et al. 2020): steps of relative size :math:`\\eta` in each layer,
    shrunk to stay on the sphere.

    .. math::

        \\theta_t = \\frac{1}{\\sqrt{1+\\eta^2}}\\left(\\theta_{t-1} - \\eta\\,
            \\frac{\\lVert\\theta_{t-1}\\rVert}{\\lVert g_t \\rVert} g_t\\right)

    per parameter array. One norm per array: not packable. Same arguments and defaults as
    ``optax.fromage``.

    Reference: Bernstein et al. 2020, "On the distance between two neural networks and the
    stability of learning".

    Args:
        learning_rate: the learning rate :math:`\\eta`: a float, a (traced) array or a schedule.
        min_norm: floor of the parameter and update norms.

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> tx = jopt.fromage(1e-2)
        >>> state = tx.init({"w": jnp.ones(3)})
    """
    if callable(learning_rate):

        def mult(count):
            return 1 / (1 + learning_rate(count) ** 2) ** 0.5

        lr = lambda count: mult(count) * learning_rate(count)  # noqa: E731
        decay = lambda count: mult(count) - 1  # noqa: E731
    else:
        m = 1 / (1 + learning_rate**2) ** 0.5
        lr, decay = learning_rate * m, m - 1
    return chain(
        scale_by_trust_ratio(min_norm),
        scale_by_learning_rate(lr),
        add_decayed_weights(decay),
    )

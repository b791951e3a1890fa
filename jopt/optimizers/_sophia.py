"""Sophia with the Hutchinson Hessian-diagonal estimator, as ``optax.contrib.sophia``.

The estimator needs the objective: ``update`` takes the extra argument ``obj_fn`` (``params ->
loss`` on the current batch) and differentiates it twice. It is written here rather than
taken from ``jopt.numerics`` (whose ``hutchinson_trace`` estimates the trace, not the
diagonal) because optimizers sit above numerics in the layer order.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import jax.typing

from jopt.core import (
    GradientTransformation,
    JoptError,
    ScalarOrSchedule,
    chain,
    inexact,
    layout_dependent,
    map_elementwise,
    safe_increment,
    zeros_like,
)
from jopt.transforms import Mask, add_decayed_weights, scale_by_learning_rate


class HutchinsonState(NamedTuple):
    """State of :func:`hutchinson_estimator_diag_hessian`.

    Attributes:
        key: the PRNG key of the next probe vector.
    """

    key: jax.Array


def hutchinson_estimator_diag_hessian(
    random_seed: jax.Array | None = None,
) -> GradientTransformation:
    """Hutchinson's estimator of the Hessian diagonal (Bekas, Kokiopoulou & Saad 2007):

    .. math::

        \\mathrm{diag}(H) \\approx z \\odot (H z), \\qquad z_i \\in \\{-1, +1\\}
            \\text{ uniformly (Rademacher)},

    the
    Hessian-vector product by forward-over-reverse differentiation of ``obj_fn`` (an extra
    argument of ``update``). One estimate per call, a new key each time (as optax's, same
    random draws for the same key).

    Args:
        random_seed: the PRNG key (``None``: ``jax.random.PRNGKey(0)``, optax's default).

    Example:
        >>> import jax, jax.numpy as jnp, jopt
        >>> f = lambda p: jnp.sum(p["w"] ** 4)
        >>> p = {"w": jnp.ones(3)}
        >>> tx = jopt.hutchinson_estimator_diag_hessian()
        >>> u, s = tx.update(jax.grad(f)(p), tx.init(p), p, obj_fn=f)
    """

    def init_fn(params):
        del params
        return HutchinsonState(jax.random.PRNGKey(0) if random_seed is None else random_seed)

    def update_fn(updates, state, params=None, *, obj_fn=None, **extra_args):
        del updates, extra_args
        if params is None or obj_fn is None:
            raise JoptError("hutchinson_estimator_diag_hessian: update needs params and obj_fn=")
        layout_dependent("sophia's Hutchinson estimate draws its random signs leaf by leaf")
        key, sub = jax.random.split(state.key)
        leaves, treedef = jax.tree.flatten(params)
        keys = jax.random.split(sub, len(leaves))
        signs = treedef.unflatten(
            [
                jax.random.rademacher(k, jnp.shape(x), jnp.float32).astype(inexact(x).dtype)
                for k, x in zip(keys, leaves, strict=True)
            ]
        )
        hvp = jax.jvp(jax.grad(obj_fn), (params,), (signs,))[1]
        return map_elementwise(lambda h, z: h * z, hvp, signs), HutchinsonState(key)

    return GradientTransformation(init_fn, update_fn)


class SophiaState(NamedTuple):
    """State of :func:`scale_by_sophia`.

    Attributes:
        count: int32 steps taken (saturating).
        mu: EMA of the gradient.
        nu: EMA of the Hessian-diagonal estimates (refreshed every ``update_interval`` steps).
        hessian_fn_state: the estimator's state (its PRNG key).
    """

    count: jax.Array
    mu: Any
    nu: Any
    hessian_fn_state: Any


def scale_by_sophia(
    b1: jax.typing.ArrayLike = 0.965,
    b2: jax.typing.ArrayLike = 0.99,
    eps: jax.typing.ArrayLike = 1e-8,
    gamma: jax.typing.ArrayLike = 0.01,
    clip_threshold: jax.typing.ArrayLike | None = 1.0,
    update_interval: int = 10,
    hessian_diagonal_fn: GradientTransformation | None = None,
    mu_dtype: Any = None,
) -> GradientTransformation:
    """Sophia's direction (Liu et al. 2024, "Sophia: A Scalable Stochastic Second-order
    Optimizer for Language Model Pre-training"):

    .. math::

        m_t = \\beta_1 m_{t-1} + (1-\\beta_1) g_t, \\quad
        u_t = \\mathrm{clip}\\!\\left(\\frac{m_t/(1-\\beta_1^t)}{\\max(\\gamma h_{t-1},
            \\epsilon)}, \\pm\\rho\\right),

        h_t = \\beta_2 h_{t-1} + (1-\\beta_2)\\,\\hat{\\mathrm{diag}}(H_t) \\text{ every
            ``update_interval`` steps (from step 0), else } h_{t-1}.

    ``update`` needs ``params`` and the extra argument ``obj_fn`` (the loss on the current
    batch) for the default Hutchinson estimator: a train step passes
    ``obj_fn=lambda p: loss(p, batch)``. Same as ``optax.contrib.scale_by_sophia``.

    Args:
        b1: gradient EMA decay :math:`\\beta_1`.
        b2: Hessian-diagonal EMA decay :math:`\\beta_2`.
        eps: floor :math:`\\epsilon` of the denominator.
        gamma: scale :math:`\\gamma` of the Hessian estimate.
        clip_threshold: the clip :math:`\\rho` (``None``: no clipping).
        update_interval: steps between Hessian estimates.
        hessian_diagonal_fn: the estimator (``None``: Hutchinson with key 0).
        mu_dtype: dtype of the gradient EMA (default: the parameters').

    Example:
        >>> import jax, jax.numpy as jnp, jopt
        >>> f = lambda p: jnp.sum(p["w"] ** 4)
        >>> p = {"w": jnp.ones(3)}
        >>> tx = jopt.scale_by_sophia()
        >>> u, s = tx.update(jax.grad(f)(p), tx.init(p), p, obj_fn=f)
    """
    hess = hessian_diagonal_fn or hutchinson_estimator_diag_hessian()

    def init_fn(params):
        return SophiaState(
            count=jnp.zeros([], jnp.int32),
            mu=zeros_like(params, mu_dtype),
            nu=zeros_like(params),
            hessian_fn_state=hess.init(params),
        )

    def update_fn(updates, state, params=None, **extra_args):
        if params is None:
            raise JoptError("scale_by_sophia: update needs params (and obj_fn=)")
        count = safe_increment(state.count)
        with jax.numpy_dtype_promotion("standard"):  # b1 ** int count, as optax rounds it
            corr = 1 - jnp.asarray(b1, jnp.float32) ** count

        def direction(g, m, h):
            m = (1 - b1) * inexact(g).astype(m.dtype) + b1 * m
            u = (m / corr.astype(m.dtype)) / jnp.maximum(gamma * h.astype(m.dtype), eps)
            if clip_threshold is not None:
                u = jnp.clip(u, -clip_threshold, clip_threshold)
            return u.astype(inexact(g).dtype), m

        out, mu = map_elementwise(direction, updates, state.mu, state.nu, n_out=2)

        def refresh(hs, nu):
            diag, hs = hess.update(updates, hs, params, **extra_args)
            nu = map_elementwise(lambda d, n: (1 - b2) * d.astype(n.dtype) + b2 * n, diag, nu)
            return hs, nu

        hs, nu = jax.lax.cond(
            state.count % update_interval == 0,
            refresh,
            lambda hs, nu: (hs, nu),
            state.hessian_fn_state,
            state.nu,
        )
        return out, SophiaState(count, mu, nu, hs)

    return GradientTransformation(init_fn, update_fn)


def sophia(
    learning_rate: ScalarOrSchedule,
    b1: jax.typing.ArrayLike = 0.965,
    b2: jax.typing.ArrayLike = 0.99,
    eps: jax.typing.ArrayLike = 1e-8,
    weight_decay: jax.typing.ArrayLike = 1e-4,
    weight_decay_mask: Mask = None,
    gamma: jax.typing.ArrayLike = 0.01,
    clip_threshold: jax.typing.ArrayLike | None = 1.0,
    update_interval: int = 10,
    hessian_diagonal_fn: GradientTransformation | None = None,
    mu_dtype: Any = None,
    verbose: bool = False,
    print_win_rate_every_n_steps: int = 0,
) -> GradientTransformation:
    """Sophia (Liu et al. 2024): :func:`scale_by_sophia`, decoupled weight decay, then
    ``-learning_rate``:

    .. math::

        \\theta_t = \\theta_{t-1} - \\eta\\left(\\mathrm{clip}\\!\\left(\\frac{\\hat m_t}
            {\\max(\\gamma h_{t-1}, \\epsilon)}, \\pm\\rho\\right) + \\lambda\\theta_{t-1}\\right)

    (:math:`\\hat m_t = m_t/(1-\\beta_1^t)`, :math:`h` and the clip :math:`\\rho` =
    ``clip_threshold`` as in :func:`scale_by_sophia`). Each ``update`` needs ``obj_fn=`` (see
    :func:`scale_by_sophia`).
    Same arguments as ``optax.contrib.sophia`` (``hessian_diagonal_fn=None`` is the Hutchinson
    estimator with key 0, optax's default object). optax's debug printing (``verbose=True``,
    ``print_win_rate_every_n_steps > 0``) is refused in one line.

    Args:
        learning_rate: step size :math:`\\eta` (a number or a schedule).
        b1: gradient EMA decay.
        b2: Hessian-diagonal EMA decay.
        eps: floor of the denominator.
        weight_decay: decoupled weight decay :math:`\\lambda`.
        weight_decay_mask: which parameters decay (a tree of bools or a function).
        gamma: scale :math:`\\gamma` of the Hessian estimate.
        clip_threshold: the clip :math:`\\rho` (``None``: no clipping).
        update_interval: steps between Hessian estimates.
        hessian_diagonal_fn: the estimator (``None``: Hutchinson with key 0).
        mu_dtype: dtype of the gradient EMA (default: the parameters').
        verbose: only ``False``.
        print_win_rate_every_n_steps: only ``0``.

    Example:
        >>> import jax, jax.numpy as jnp, jopt
        >>> f = lambda p: jnp.sum(p["w"] ** 4)
        >>> p = {"w": jnp.ones(3)}
        >>> tx = jopt.sophia(1e-2)
        >>> u, s = tx.update(jax.grad(f)(p), tx.init(p), p, obj_fn=f)
    """
    if verbose or print_win_rate_every_n_steps:
        raise JoptError(
            "sophia: verbose printing is not supported (verbose=False, "
            "print_win_rate_every_n_steps=0)"
        )
    return chain(
        scale_by_sophia(
            b1, b2, eps, gamma, clip_threshold, update_interval, hessian_diagonal_fn, mu_dtype
        ),
        add_decayed_weights(weight_decay, weight_decay_mask),
        scale_by_learning_rate(learning_rate),
    )

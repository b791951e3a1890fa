"""Optimizers with torch.optim's and Keras's own conventions: ASGD, Rprop and FTRL.

torch's ``Rprop`` differs from optax's (``jopt.rprop``): torch moves by ``lr * sign(g)`` at the
first step, optax's first update is zero, and the trajectories stay apart. :func:`torch_rprop`
is torch's. All three are tested in ``tests/test_contrib_torch_keras.py``.
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
    inexact,
    inexact_dtype,
    map_elementwise,
    safe_increment,
    state_dtype,
)


class AsgdState(NamedTuple):
    """State of :func:`asgd` (torch's per-parameter state, shared by all leaves).

    Attributes:
        count: int32 steps taken (torch's ``step``).
        eta: float32 step size for the next step.
        mu: float32 averaging rate for the next step.
        ax: the averaged parameters (evaluate with these: :func:`asgd_averaged_params`).
    """

    count: jax.Array
    eta: jax.Array
    mu: jax.Array
    ax: Any


def asgd(
    learning_rate: jax.typing.ArrayLike = 1e-2,
    lambd: jax.typing.ArrayLike = 1e-4,
    alpha: jax.typing.ArrayLike = 0.75,
    t0: jax.typing.ArrayLike = 1e6,
    weight_decay: jax.typing.ArrayLike = 0.0,
) -> GradientTransformation:
    """Averaged SGD with torch's conventions (Polyak & Juditsky 1992; Bottou 2012 for the
    step-size rule), ``torch.optim.ASGD`` with the same arguments and defaults.

    .. math::

        g \\leftarrow g + \\text{wd}\\,\\theta, \\qquad
        \\theta \\leftarrow (1 - \\lambda\\eta_t)\\,\\theta - \\eta_t g, \\qquad
        \\bar\\theta \\leftarrow \\bar\\theta + \\mu_t(\\theta - \\bar\\theta)

        \\eta_{t+1} = \\frac{\\text{lr}}{(1 + \\lambda\\,\\text{lr}\\, t)^{\\alpha}}, \\qquad
        \\mu_{t+1} = \\frac{1}{\\max(1, t - t_0)}

    (:math:`\\eta_1` = lr, :math:`\\mu_1 = 1`). The average :math:`\\bar\\theta` lives in the
    state; :func:`asgd_averaged_params` returns it for evaluation. ``params`` are required.

    Args:
        learning_rate: lr, the initial :math:`\\eta`.
        lambd: the decay :math:`\\lambda`.
        alpha: the power :math:`\\alpha` of the step-size decay.
        t0: the step :math:`t_0` at which averaging starts.
        weight_decay: wd, coupled (added to the gradient).

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> tx = jopt.asgd(1e-2)
        >>> p = {"w": jnp.ones(3)}
        >>> u, s = tx.update(p, tx.init(p), p)
        >>> avg = jopt.asgd_averaged_params(s)
    """

    def init_fn(params):
        return AsgdState(
            count=jnp.zeros([], jnp.int32),
            eta=jnp.asarray(learning_rate, jnp.float32),
            mu=jnp.ones([], jnp.float32),
            ax=map_elementwise(lambda p: jnp.zeros(jnp.shape(p), state_dtype(p)), params),
        )

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        if params is None:
            raise JoptError("asgd: update needs params")
        count = safe_increment(state.count)
        eta, mu = state.eta, state.mu

        def step(g, p, ax):
            dt = ax.dtype
            g, p32 = inexact(g).astype(dt), inexact(p).astype(dt)
            g = g + weight_decay * p32
            new = p32 * (1 - lambd * eta.astype(dt)) - eta.astype(dt) * g
            ax = jnp.where(mu != 1, ax + (new - ax) * mu.astype(dt), new)
            return (new - p32).astype(inexact_dtype(p)), ax

        out, ax = map_elementwise(step, updates, params, state.ax, n_out=2)
        t = count.astype(jnp.float32)
        new_eta = learning_rate / ((1 + lambd * learning_rate * t) ** alpha)
        new_mu = 1 / jnp.maximum(1.0, t - t0)
        return out, AsgdState(count, jnp.asarray(new_eta, jnp.float32), new_mu, ax)

    return GradientTransformation(init_fn, update_fn)


def asgd_averaged_params(state: Any) -> Any:
    """The averaged parameters :math:`\\bar\\theta` of the :class:`AsgdState` in ``state``
    (Polyak & Juditsky 1992), to evaluate an :func:`asgd` run with:

    .. math::

        \\bar\\theta_t = \\bar\\theta_{t-1} + \\mu_t(\\theta_t - \\bar\\theta_{t-1})

    Args:
        state: the optimizer state (an :class:`AsgdState`, or a tree holding exactly one).

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> tx = jopt.asgd(1e-2)
        >>> p = {"w": jnp.ones(3)}
        >>> u, s = tx.update(p, tx.init(p), p)
        >>> avg = jopt.asgd_averaged_params(s)
    """
    found = [
        s
        for s in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, AsgdState))
        if isinstance(s, AsgdState)
    ]
    if len(found) != 1:
        raise JoptError(f"asgd_averaged_params: expected one AsgdState, found {len(found)}")
    return found[0].ax


class FtrlState(NamedTuple):
    """State of :func:`ftrl` (Keras's slots).

    Attributes:
        count: int32 steps taken (the argument of a learning-rate schedule).
        accumulator: :math:`n`, the sum of squared gradients (starts at
            ``initial_accumulator_value``).
        linear: :math:`z`, the FTRL linear term.
    """

    count: jax.Array
    accumulator: Any
    linear: Any


def ftrl(
    learning_rate: ScalarOrSchedule = 0.001,
    learning_rate_power: jax.typing.ArrayLike = -0.5,
    initial_accumulator_value: jax.typing.ArrayLike = 0.1,
    l1_regularization_strength: jax.typing.ArrayLike = 0.0,
    l2_regularization_strength: jax.typing.ArrayLike = 0.0,
    l2_shrinkage_regularization_strength: jax.typing.ArrayLike = 0.0,
    beta: jax.typing.ArrayLike = 0.0,
) -> GradientTransformation:
    """FTRL-Proximal with Keras's conventions (McMahan et al. 2013, "Ad Click Prediction: a
    View from the Trenches"), ``keras.optimizers.Ftrl`` with the same arguments and defaults.

    With :math:`p` = ``-learning_rate_power``, :math:`\\lambda_2' = \\lambda_2 +
    \\beta/(2\\eta)` and :math:`\\tilde g = g + 2\\lambda_{shrink}\\theta`:

    .. math::

        n' = n + g^2, \\quad
        z \\leftarrow z + \\tilde g - \\frac{n'^{\\,p} - n^{p}}{\\eta}\\,\\theta, \\quad
        \\theta \\leftarrow \\frac{\\mathrm{clip}(z, \\pm\\lambda_1) - z}
            {n'^{\\,p}/\\eta + 2\\lambda_2'}

    The L1 term sets coordinates with :math:`|z| \\le \\lambda_1` to exactly zero (sparse
    models). ``params`` are required; the update is the full step (learning rate built in).

    Args:
        learning_rate: :math:`\\eta`.
        learning_rate_power: :math:`-p` (``-0.5``: AdaGrad-like).
        initial_accumulator_value: the starting :math:`n`.
        l1_regularization_strength: :math:`\\lambda_1`.
        l2_regularization_strength: :math:`\\lambda_2`.
        l2_shrinkage_regularization_strength: :math:`\\lambda_{shrink}`.
        beta: :math:`\\beta` in :math:`\\lambda_2'`.

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> tx = jopt.ftrl(0.1, l1_regularization_strength=0.01)
        >>> p = {"w": jnp.ones(3)}
        >>> u, s = tx.update(p, tx.init(p), p)
    """
    # (a traced value, as jopt.with_hparams passes, is not checked here)
    if isinstance(learning_rate_power, int | float) and learning_rate_power > 0:
        raise JoptError(f"ftrl: learning_rate_power must be <= 0, got {learning_rate_power}")

    def init_fn(params):
        if any(jnp.iscomplexobj(x) for x in jax.tree.leaves(params)):
            raise JoptError("ftrl: complex parameters are not supported (Keras's rule is real)")

        def acc(p):
            return jnp.full(jnp.shape(p), initial_accumulator_value, state_dtype(p))

        zeros = map_elementwise(lambda p: jnp.zeros(jnp.shape(p), state_dtype(p)), params)
        return FtrlState(jnp.zeros([], jnp.int32), map_elementwise(acc, params), zeros)

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        if params is None:
            raise JoptError("ftrl: update needs params")
        lr = learning_rate(state.count) if callable(learning_rate) else learning_rate
        lr = jnp.asarray(lr, jnp.float32)
        power = -learning_rate_power
        l1, l2 = l1_regularization_strength, l2_regularization_strength + beta / (2.0 * lr)

        def step(g, p, n, z):
            dt = n.dtype
            g, p32 = inexact(g).astype(dt), inexact(p).astype(dt)
            g_use = g + 2.0 * l2_shrinkage_regularization_strength * p32
            n_new = n + g * g
            z = z + g_use - (n_new**power - n**power) / lr.astype(dt) * p32
            quad = n_new**power / lr.astype(dt) + 2.0 * l2.astype(dt)
            new = (jnp.clip(z, -l1, l1) - z) / quad
            return (new - p32).astype(inexact_dtype(p)), n_new, z

        out, n, z = map_elementwise(step, updates, params, state.accumulator, state.linear, n_out=3)
        return out, FtrlState(safe_increment(state.count), n, z)

    return GradientTransformation(init_fn, update_fn)


class TorchRpropState(NamedTuple):
    """State of :func:`torch_rprop` (torch's ``prev`` and ``step_size``).

    Attributes:
        prev: the previous (masked) gradient.
        step_size: the per-element step sizes (start at ``learning_rate``).
    """

    prev: Any
    step_size: Any


def torch_rprop(
    learning_rate: jax.typing.ArrayLike = 0.01,
    etas: tuple[float, float] = (0.5, 1.2),
    step_sizes: tuple[float, float] = (1e-6, 50.0),
) -> GradientTransformation:
    """Rprop as ``torch.optim.Rprop`` (Riedmiller & Braun 1993; iRprop-, Igel & Husken 2000),
    same arguments and defaults (``lr`` is ``learning_rate``).

    .. math::

        s = \\mathrm{sign}(g_t g_{t-1}), \\quad
        \\Delta_t = \\mathrm{clip}(\\Delta_{t-1}\\cdot\\{\\eta_+, \\eta_-, 1\\}_{s>0, s<0, s=0},
            \\Delta_{min}, \\Delta_{max}),

        g_t \\leftarrow 0 \\text{ where } s < 0, \\qquad
        \\theta_t = \\theta_{t-1} - \\mathrm{sign}(g_t)\\,\\Delta_t

    with :math:`g_0 = 0` (so the first step is :math:`-\\text{lr}\\,\\mathrm{sign}(g_1)`,
    where optax's ``rprop`` makes no move).

    Args:
        learning_rate: the initial step size :math:`\\Delta_0` (torch's ``lr``).
        etas: :math:`(\\eta_-, \\eta_+)`, the step-size factors on a sign change / no change.
        step_sizes: :math:`(\\Delta_{min}, \\Delta_{max})`.

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> tx = jopt.torch_rprop(1e-2)
        >>> p = {"w": jnp.ones(3)}
        >>> u, s = tx.update(p, tx.init(p), p)
    """
    eta_minus, eta_plus = etas
    lo, hi = step_sizes

    def init_fn(params):
        def full(p):
            return jnp.full(jnp.shape(p), learning_rate, state_dtype(p))

        zeros = map_elementwise(lambda p: jnp.zeros(jnp.shape(p), state_dtype(p)), params)
        return TorchRpropState(prev=zeros, step_size=map_elementwise(full, params))

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args

        def step(g, prev, size):
            g32 = inexact(g).astype(prev.dtype)
            s = jnp.sign(g32 * prev)
            factor = jnp.where(s > 0, eta_plus, jnp.where(s < 0, eta_minus, 1.0))
            size = jnp.clip(size * factor.astype(size.dtype), lo, hi)
            g32 = jnp.where(s < 0, 0.0, g32).astype(prev.dtype)
            return (-jnp.sign(g32) * size).astype(inexact_dtype(g)), g32, size

        out, prev, size = map_elementwise(step, updates, state.prev, state.step_size, n_out=3)
        return out, TorchRpropState(prev, size)

    return GradientTransformation(init_fn, update_fn)

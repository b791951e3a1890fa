"""optax.contrib optimizers that wrap a base optimizer: schedule-free, Mechanic, SAM."""

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
    global_norm,
    inexact,
    inexact_dtype,
    map_elementwise,
    safe_increment,
    state_dtype,
)
from jopt.optimizers._sgd import sgd
from jopt.transforms import add_decayed_weights, scale_by_learning_rate, scale_by_rms


def _f32_tree(tree: Any, dtype: Any = None) -> Any:
    return map_elementwise(lambda p: jnp.asarray(p).astype(state_dtype(p, dtype)), tree)


def _state_copy(tree: Any, dtype: Any = None) -> Any:
    # A fresh buffer per leaf, never the parameter's own (a jitted step donates both).
    return map_elementwise(lambda p: jnp.array(p, dtype=state_dtype(p, dtype), copy=True), tree)


class ScheduleFreeState(NamedTuple):
    """State of :func:`schedule_free` (optax.contrib's fields).

    Attributes:
        b1: float32 interpolation :math:`\\beta` between the averaged and the base iterate.
        weight_sum: float32 :math:`\\sum_i \\gamma_{max,i}^{p}`, the averaging weights so far.
        step_count: int32 step, starting at 1 (the argument of a learning-rate schedule).
        max_lr: float32 largest learning rate seen.
        base_optimizer_state: the base optimizer's state.
        z: the base iterate :math:`z_t` (float32 or wider).
    """

    b1: jax.Array
    weight_sum: jax.Array
    step_count: jax.Array
    max_lr: jax.Array
    base_optimizer_state: Any
    z: Any


def schedule_free(
    base_optimizer: GradientTransformation,
    learning_rate: ScalarOrSchedule,
    b1: jax.typing.ArrayLike = 0.9,
    weight_lr_power: jax.typing.ArrayLike = 2.0,
    state_dtype: Any = None,
) -> GradientTransformation:
    """Schedule-free wrapper (Defazio et al. 2024, "The Road Less Scheduled"; the AlgoPerf
    2024 self-tuning winner). The parameters the optimizer sees are :math:`y_t`:

    .. math::

        z_{t+1} = z_t + \\Delta_{base}(g(y_t)), \\quad
        c_{t+1} = \\frac{\\gamma_{max}^p}{\\sum_{i \\le t+1} \\gamma_{max,i}^p}, \\quad
        x_{t+1} = (1 - c_{t+1}) x_t + c_{t+1} z_{t+1}, \\quad
        y_{t+1} = \\beta x_{t+1} + (1-\\beta) z_{t+1}

    with :math:`x_t = (y_t - (1-\\beta) z_t)/\\beta`. **Evaluate with** :math:`x_t`:
    :func:`schedule_free_eval_params` ``(state, params)`` returns it (the training
    parameters :math:`y_t` are an interpolation, worse to evaluate). ``base_optimizer``
    must include the learning rate (``sgd(lr)``); ``learning_rate`` is passed again for the
    averaging weights. Same arguments as ``optax.contrib.schedule_free``.

    Args:
        base_optimizer: the optimizer of :math:`z` (learning rate included).
        learning_rate: its learning rate :math:`\\gamma_t` (a number or a schedule), for the
            averaging weights.
        b1: the interpolation :math:`\\beta`.
        weight_lr_power: the power :math:`p` of the averaging weights.
        state_dtype: dtype of :math:`z` (default: the parameters', at least float32).

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> tx = jopt.schedule_free(jopt.sgd(0.1), 0.1)
        >>> p = {"w": jnp.ones(3)}
        >>> u, s = tx.update(p, tx.init(p), p)
    """

    def init_fn(params):
        return ScheduleFreeState(
            b1=jnp.asarray(b1, jnp.float32),
            weight_sum=jnp.zeros([], jnp.float32),
            step_count=jnp.ones([], jnp.int32),
            max_lr=jnp.zeros([], jnp.float32),
            base_optimizer_state=base_optimizer.init(params),
            z=_state_copy(params, state_dtype),
        )

    def update_fn(updates, state, params=None, **extra_args):
        if params is None:
            raise JoptError("schedule_free: update needs params")
        lr = learning_rate(state.step_count) if callable(learning_rate) else learning_rate
        max_lr = jnp.maximum(state.max_lr, jnp.asarray(lr, jnp.float32))
        weight = max_lr**weight_lr_power
        total = state.weight_sum + weight
        bad = jnp.logical_or(jnp.isnan(weight), jnp.isnan(total))
        ck = jnp.where(bad, jnp.nan, jnp.nan_to_num(weight / total, nan=0.0, posinf=jnp.inf))
        base_updates, base_state = base_optimizer.update(
            updates, state.base_optimizer_state, params, **extra_args
        )
        b1_ = state.b1

        def step(y, z, u):
            zt = z.dtype
            b, c = b1_.astype(zt), ck.astype(zt)
            z_new = z + u.astype(zt)
            x = (y.astype(zt) - (1.0 - b) * z) / b
            x = (1.0 - c) * x + c * z_new
            y_new = b * x + (1.0 - b) * z_new
            return (y_new - y.astype(zt)).astype(inexact_dtype(y)), z_new

        out, z = map_elementwise(step, params, state.z, base_updates, n_out=2)
        return out, ScheduleFreeState(
            b1=state.b1,
            weight_sum=total,
            step_count=safe_increment(state.step_count),
            max_lr=max_lr,
            base_optimizer_state=base_state,
            z=z,
        )

    return GradientTransformation(init_fn, update_fn)


def schedule_free_eval_params(state: Any, params: Any) -> Any:
    """The parameters to evaluate a schedule-free run with: :math:`x = (y - (1-\\beta) z)/\\beta`.

    ``state`` is the optimizer state (a :class:`ScheduleFreeState`, or any state tree that
    holds exactly one, e.g. inside a chain); ``params`` are the training parameters
    :math:`y`. Pure and jit-able; works per member under ``jax.vmap``. (Defazio et al. 2024.)

    .. math::

        x_t = \\frac{y_t - (1-\\beta) z_t}{\\beta}

    Args:
        state: the optimizer state.
        params: the training parameters :math:`y_t`.

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> tx = jopt.schedule_free_sgd(0.1)
        >>> p = {"w": jnp.ones(3)}
        >>> u, s = tx.update(p, tx.init(p), p)
        >>> x = jopt.schedule_free_eval_params(s, jopt.apply_updates(p, u))
    """
    found = [
        s
        for s in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, ScheduleFreeState))
        if isinstance(s, ScheduleFreeState)
    ]
    if len(found) != 1:
        raise JoptError(
            f"schedule_free_eval_params: the state must hold one ScheduleFreeState, found "
            f"{len(found)}"
        )
    sf = found[0]
    return map_elementwise(
        lambda y, z: (
            (y.astype(z.dtype) - (1.0 - sf.b1.astype(z.dtype)) * z) / sf.b1.astype(z.dtype)
        ).astype(inexact_dtype(y)),
        params,
        sf.z,
    )


def _warmup_constant(peak: Any, warmup_steps: int):
    # optax.warmup_constant_schedule's arithmetic: (0 - peak) * (1 - c / w) + peak.
    def schedule(count):
        c = jnp.clip(jnp.asarray(count, jnp.float32), 0, warmup_steps)
        p = jnp.asarray(peak, jnp.float32)
        return jnp.where(c < warmup_steps, -p * (1 - c / warmup_steps) + p, p)

    return schedule


def schedule_free_sgd(
    learning_rate: jax.typing.ArrayLike = 1.0,
    warmup_steps: int | None = None,
    b1: jax.typing.ArrayLike = 0.9,
    weight_decay: jax.typing.ArrayLike | None = None,
    weight_lr_power: jax.typing.ArrayLike = 2.0,
    state_dtype: Any = None,
) -> GradientTransformation:
    """Schedule-free SGD (Defazio et al. 2024): :func:`schedule_free` around
    ``sgd(learning_rate)`` (with coupled weight decay first when given), linear warm-up over
    ``warmup_steps``. Evaluate with :func:`schedule_free_eval_params`. Same arguments and
    defaults as ``optax.contrib.schedule_free_sgd``; with :math:`\\Delta_{base}(g) = -\\gamma_t (g +
    \\text{wd}\\,y_t)` in :func:`schedule_free`'s rule:

    .. math::

        z_{t+1} = z_t - \\gamma_t (g(y_t) + \\text{wd}\\, y_t), \\quad
        \\gamma_t = \\text{lr}\\,\\min(1, t/\\text{warmup\\_steps})

    Args:
        learning_rate: lr (a number or a schedule).
        warmup_steps: linear warm-up length (``None``: none).
        b1: the interpolation :math:`\\beta`.
        weight_decay: wd, coupled (``None``: none).
        weight_lr_power: the power of the averaging weights.
        state_dtype: dtype of :math:`z`.

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> tx = jopt.schedule_free_sgd(0.1)
        >>> p = {"w": jnp.ones(3)}
        >>> u, s = tx.update(p, tx.init(p), p)
    """
    lr = learning_rate if warmup_steps is None else _warmup_constant(learning_rate, warmup_steps)
    base = sgd(lr)
    if weight_decay is not None:
        base = chain(add_decayed_weights(weight_decay), base)
    return schedule_free(base, lr, b1, weight_lr_power, state_dtype)


def schedule_free_adamw(
    learning_rate: jax.typing.ArrayLike = 0.0025,
    warmup_steps: int | None = None,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    weight_decay: jax.typing.ArrayLike = 0.0,
    weight_lr_power: jax.typing.ArrayLike = 2.0,
    state_dtype: Any = None,
) -> GradientTransformation:
    """Schedule-free AdamW (Defazio et al. 2024): :func:`schedule_free` around a
    bias-corrected RMS scaling (no first moment: the averaging plays its role), decoupled
    weight decay and the learning rate. Evaluate with :func:`schedule_free_eval_params`. Same
    arguments and defaults as ``optax.contrib.schedule_free_adamw``. In :func:`schedule_free`'s
    rule:

    .. math::

        v_t = \\beta_2 v_{t-1} + (1-\\beta_2) g_t^2, \\quad
        z_{t+1} = z_t - \\gamma_t\\left(\\frac{g_t}{\\sqrt{v_t/(1-\\beta_2^t)} + \\epsilon}
            + \\text{wd}\\, y_t\\right)

    with :math:`\\gamma_t` warmed up linearly over ``warmup_steps``.

    Args:
        learning_rate: lr (a number or a schedule).
        warmup_steps: linear warm-up length (``None``: none).
        b1: the interpolation :math:`\\beta`.
        b2: :math:`\\beta_2`.
        eps: :math:`\\epsilon`.
        weight_decay: wd, decoupled.
        weight_lr_power: the power of the averaging weights.
        state_dtype: dtype of :math:`z`.

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> tx = jopt.schedule_free_adamw(1e-2)
        >>> p = {"w": jnp.ones(3)}
        >>> u, s = tx.update(p, tx.init(p), p)
    """
    lr = learning_rate if warmup_steps is None else _warmup_constant(learning_rate, warmup_steps)
    base = chain(
        scale_by_rms(decay=b2, eps=eps, eps_in_sqrt=False, bias_correction=True),
        add_decayed_weights(weight_decay),
        scale_by_learning_rate(lr),
    )
    return schedule_free(base, lr, b1, weight_lr_power, state_dtype)


class MechanicState(NamedTuple):
    """State of :func:`mechanize` (optax.contrib's fields).

    Attributes:
        base_optimizer_state: the base optimizer's state.
        count: int32 steps taken (saturating).
        r, m, v, s: float32 vectors of length ``num_betas``: per-beta reward, max |h|, second
            moment of h and scale.
        x0: the reference point (the parameters at the first step; float32 or wider).
    """

    base_optimizer_state: Any
    count: jax.Array
    r: jax.Array
    m: jax.Array
    v: jax.Array
    s: jax.Array
    x0: Any


def mechanize(
    base_optimizer: GradientTransformation,
    weight_decay: jax.typing.ArrayLike = 0.01,
    eps: jax.typing.ArrayLike = 1e-8,
    s_init: jax.typing.ArrayLike = 1e-6,
    num_betas: int = 6,
) -> GradientTransformation:
    """Mechanic (Cutkosky, Defazio & Mehta 2023, "Mechanic: A Learning Rate Tuner"): learns a
    scalar scale :math:`s = \\sum_j s_j` for the base optimizer's updates by online learning:

    .. math::

        \\Delta_t = \\frac{x_0 - x_t}{s + \\epsilon} - u^{base}_t, \\quad
        h_t = \\langle g_t + \\lambda s \\tfrac{\\lVert g_t\\rVert}{\\lVert x_t\\rVert}
            x_t, \\; \\tfrac{x_0 - x_t}{s+\\epsilon}\\rangle,

        m_j \\leftarrow \\max(\\beta_j m_j, |h_t| + \\epsilon), \\;
        v_j \\leftarrow \\beta_j^2 v_j + h_t^2, \\;
        r_j \\leftarrow \\beta_j r_j + \\mathrm{clip}(h_t, \\pm m_j^{old}) s_j,

        s_j = \\frac{s_{init} m_j / n + \\max(r_j, 0)}{\\sqrt{v_j} + \\epsilon}, \\quad
        x_{t+1} = x_0 - s\\,\\Delta_t

    with :math:`\\beta_j = 1 - 10^{-j}`, :math:`j = 1..n`. ``params`` are required. Same
    arguments and defaults as ``optax.contrib.mechanize``.

    Args:
        base_optimizer: the optimizer whose updates are scaled.
        weight_decay: :math:`\\lambda`.
        eps: :math:`\\epsilon`.
        s_init: :math:`s_{init}`.
        num_betas: :math:`n`.

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> tx = jopt.mechanize(jopt.adam(1e-2))
        >>> p = {"w": jnp.ones(3)}
        >>> u, s = tx.update(p, tx.init(p), p)
    """
    if int(num_betas) < 1:
        raise JoptError(f"mechanize: num_betas must be >= 1, got {num_betas}")

    def init_fn(params):
        return MechanicState(
            base_optimizer_state=base_optimizer.init(params),
            count=jnp.zeros([], jnp.int32),
            r=jnp.zeros([num_betas], jnp.float32),
            m=jnp.zeros([num_betas], jnp.float32),
            v=jnp.zeros([num_betas], jnp.float32),
            s=jnp.full([num_betas], s_init, jnp.float32),
            x0=_state_copy(params),
        )

    def update_fn(updates, state, params=None, **extra_args):
        if params is None:
            raise JoptError("mechanize: update needs params")
        base_u, base_state = base_optimizer.update(
            updates, state.base_optimizer_state, params, **extra_args
        )
        p32 = _f32_tree(params)
        x0 = jax.tree.map(lambda a, b: jnp.where(state.count == 0, a, b), p32, state.x0)
        s_sum = jnp.sum(state.s)
        coef = weight_decay * s_sum * global_norm(updates) / (global_norm(p32) + eps)
        g = map_elementwise(
            lambda g, p: inexact(g).astype(p.dtype) + coef.astype(p.dtype) * p, updates, p32
        )
        delta_prev = map_elementwise(lambda p, x: (x - p) / (s_sum + eps).astype(p.dtype), p32, x0)
        # <g, delta> (the real part for complex parameters: C^n as R^2n).
        h = sum(
            jax.tree.leaves(
                map_elementwise(lambda a, b: jnp.real(jnp.sum(jnp.conj(a) * b)), g, delta_prev)
            ),
            jnp.zeros([], jnp.float32),
        )
        clipped_h = jnp.clip(h, -state.m, state.m)
        betas = jnp.asarray([1.0 - 0.1**j for j in range(1, num_betas + 1)], jnp.float32)
        m = jnp.maximum(betas * state.m, jnp.abs(h) + eps)
        v = betas**2 * state.v + h**2
        r = betas * state.r + clipped_h * state.s
        s = (s_init / num_betas * m + jnp.maximum(0.0, r)) / (jnp.sqrt(v) + eps)
        s_total = jnp.sum(s)

        def step(p, x, d, u):
            new = x - s_total.astype(d.dtype) * (d - inexact(u).astype(d.dtype))
            return (new - p.astype(x.dtype)).astype(inexact_dtype(p))

        out = map_elementwise(step, params, x0, delta_prev, base_u)
        return out, MechanicState(base_state, safe_increment(state.count), r, m, v, s, x0)

    return GradientTransformation(init_fn, update_fn)

"""optax's schedule names, with optax's signatures and values.

``jopt.schedules`` spells some schedules its own way (``cosine_decay``, ``warmup_cosine_decay``,
``one_cycle``); these are the names optax users type. Each returns a float32 ``count -> value``
function that equals optax's over every step, edge cases included: where optax falls back to
a constant (a non-positive ``transition_steps``, a zero ``decay_rate``) so do these, and a
negative ``transition_begin`` counts from 0, as in optax. Arguments optax refuses are refused
with a :class:`jopt.JoptError`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import jax.typing

from jopt.core import JoptError

Schedule = Callable[[jax.typing.ArrayLike], jax.Array]
AL = jax.typing.ArrayLike


def _f32(x: AL) -> jax.Array:
    return jnp.asarray(x, jnp.float32)


def _count(count: AL) -> jax.Array:
    return jnp.asarray(count).astype(jnp.float32)


def constant_schedule(value: AL) -> Schedule:
    """:math:`\\eta(t) = v` (``optax.constant_schedule``)."""
    return lambda count: _f32(value)


def polynomial_schedule(
    init_value: AL, end_value: AL, power: AL, transition_steps: int, transition_begin: int = 0
) -> Schedule:
    """Polynomial decay (``optax.polynomial_schedule``).

    .. math::

        \\eta(t) = (\\eta_0 - \\eta_1)\\left(1 - \\frac{\\mathrm{clip}(t - t_0, 0, T)}{T}
            \\right)^p + \\eta_1

    ``transition_steps <= 0`` gives the constant ``init_value``.
    """
    if transition_steps <= 0:
        return constant_schedule(init_value)
    begin = max(transition_begin, 0)

    def schedule(count):
        t = jnp.clip(_count(count) - begin, 0, transition_steps)
        frac = 1 - t / transition_steps
        return (_f32(init_value) - _f32(end_value)) * frac ** _f32(power) + _f32(end_value)

    return schedule


def linear_schedule(
    init_value: AL, end_value: AL, transition_steps: int, transition_begin: int = 0
) -> Schedule:
    """Linear interpolation from ``init_value`` to ``end_value`` over ``transition_steps``
    steps starting at ``transition_begin`` (``optax.linear_schedule``)."""
    return polynomial_schedule(init_value, end_value, 1, transition_steps, transition_begin)


def piecewise_constant_schedule(
    init_value: AL, boundaries_and_scales: dict[int, float] | None = None
) -> Schedule:
    """Multiply the value by ``scale`` at each boundary step ``b`` (from step ``b`` on), as
    ``optax.piecewise_constant_schedule``: :math:`\\eta(t) = \\eta_0 \\prod_{b \\le t} s_b`.
    """
    items = sorted((boundaries_and_scales or {}).items())
    if any(scale < 0 for _, scale in items):
        raise JoptError("piecewise_constant_schedule: scales must be non-negative")

    def schedule(count):
        c = _count(count)
        v = _f32(init_value)
        for boundary, scale in items:
            v = jnp.where(c < boundary, v, v * _f32(scale))
        return v

    return schedule


def _exponential_decay(
    init_value: AL,
    transition_steps: int,
    decay_rate: float,
    transition_begin: int = 0,
    staircase: bool = False,
    end_value: AL | None = None,
) -> Schedule:
    """Exponential decay, exactly ``optax.exponential_decay`` (public as
    :func:`jopt.schedules.exponential_decay`, which refuses the degenerate arguments).

    .. math::

        \\eta(t) = \\eta_0\\, r^{(t - t_0)/T} \\;(\\lfloor\\cdot\\rfloor \\text{ with
            staircase}), \\quad \\eta(t) = \\eta_0 \\text{ for } t \\le t_0

    bounded by ``end_value`` (below when ``r < 1``, above when ``r > 1``). A non-positive
    ``transition_steps`` or a zero ``decay_rate`` gives the constant ``init_value``.
    """
    if transition_steps <= 0 or decay_rate == 0:
        return constant_schedule(init_value)
    begin = max(transition_begin, 0)
    clip = jnp.maximum if decay_rate < 1.0 else jnp.minimum

    def schedule(count):
        t = _count(count) - begin
        p = t / transition_steps
        if staircase:
            p = jnp.floor(p)
        v = jnp.where(t <= 0, _f32(init_value), _f32(init_value) * _f32(decay_rate) ** p)
        return v if end_value is None else clip(v, _f32(end_value))

    return schedule


def cosine_decay_schedule(
    init_value: AL, decay_steps: int, alpha: AL = 0.0, exponent: AL = 1.0
) -> Schedule:
    """Cosine decay (Loshchilov & Hutter 2017), as ``optax.cosine_decay_schedule``.

    .. math::

        \\eta(t) = \\eta_0\\left((1-\\alpha)\\left(\\tfrac12\\left(1 + \\cos\\frac{\\pi
            \\min(t, T)}{T}\\right)\\right)^{e} + \\alpha\\right)
    """
    if not decay_steps > 0:
        raise JoptError(f"cosine_decay_schedule: decay_steps must be positive, got {decay_steps}")

    def schedule(count):
        t = jnp.minimum(_count(count), float(decay_steps))
        cos = 0.5 * (1 + jnp.cos(jnp.pi * t / float(decay_steps)))
        a = _f32(alpha)
        return _f32(init_value) * ((1 - a) * cos ** _f32(exponent) + a)

    return schedule


def _join_schedules(schedules: Sequence[Schedule], boundaries: Sequence[int]) -> Schedule:
    """Run ``schedules[i]`` from ``boundaries[i-1]`` on, restarting its count at the
    boundary (``optax.join_schedules``; public as :func:`jopt.schedules.join_schedules`)."""
    if len(boundaries) != len(schedules) - 1:
        raise JoptError("join_schedules: need len(boundaries) == len(schedules) - 1")

    def schedule(count):
        c = jnp.asarray(count)
        out = _f32(schedules[0](c))
        for boundary, sched in zip(boundaries, schedules[1:], strict=True):
            out = jnp.where(c < boundary, out, _f32(sched(c - boundary)))
        return out

    return schedule


def warmup_constant_schedule(init_value: AL, peak_value: AL, warmup_steps: int) -> Schedule:
    """Linear warm-up from ``init_value`` to ``peak_value``, then constant
    (``optax.warmup_constant_schedule``)."""
    return linear_schedule(init_value, peak_value, warmup_steps)


def warmup_cosine_decay_schedule(
    init_value: AL,
    peak_value: AL,
    warmup_steps: int,
    decay_steps: int,
    end_value: AL = 0.0,
    exponent: AL = 1.0,
) -> Schedule:
    """Linear warm-up to ``peak_value``, then cosine decay to ``end_value`` at step
    ``decay_steps`` (the total, warm-up included), as ``optax.warmup_cosine_decay_schedule``.
    """
    alpha = 0.0 if peak_value == 0.0 else end_value / peak_value
    return _join_schedules(
        [
            linear_schedule(init_value, peak_value, warmup_steps),
            cosine_decay_schedule(peak_value, decay_steps - warmup_steps, alpha, exponent),
        ],
        [warmup_steps],
    )


def warmup_exponential_decay_schedule(
    init_value: AL,
    peak_value: AL,
    warmup_steps: int,
    transition_steps: int,
    decay_rate: AL,
    transition_begin: int = 0,
    staircase: bool = False,
    end_value: AL | None = None,
) -> Schedule:
    """Linear warm-up to ``peak_value``, then :func:`exponential_decay` from it (its count
    restarting after the warm-up), as ``optax.warmup_exponential_decay_schedule``."""
    return _join_schedules(
        [
            linear_schedule(init_value, peak_value, warmup_steps),
            _exponential_decay(
                peak_value, transition_steps, decay_rate, transition_begin, staircase, end_value
            ),
        ],
        [warmup_steps],
    )


def sgdr_schedule(cosine_kwargs: Iterable[dict[str, Any]]) -> Schedule:
    """SGDR, warm restarts (Loshchilov & Hutter 2017): one
    :func:`warmup_cosine_decay_schedule` per dict of ``cosine_kwargs``, each lasting its
    ``decay_steps`` (``optax.sgdr_schedule``)."""
    schedules, boundaries, step = [], [], 0
    for kwargs in cosine_kwargs:
        schedules.append(warmup_cosine_decay_schedule(**kwargs))
        step += kwargs["decay_steps"]
        boundaries.append(step)
    if not schedules:
        raise JoptError("sgdr_schedule: cosine_kwargs is empty")
    return _join_schedules(schedules, boundaries[:-1])


def piecewise_interpolate_schedule(
    interpolate_type: str,
    init_value: AL,
    boundaries_and_scales: dict[int, float] | None = None,
) -> Schedule:
    """Interpolate (``"linear"`` or ``"cosine"``) between values that are multiplied by
    ``scale`` at each boundary step (``optax.piecewise_interpolate_schedule``)."""
    if interpolate_type not in ("linear", "cosine"):
        raise JoptError(
            f"piecewise_interpolate_schedule: interpolate_type must be 'linear' or 'cosine', "
            f"got {interpolate_type!r}"
        )
    items = sorted((boundaries_and_scales or {}).items())
    if any(scale < 0 for _, scale in items):
        raise JoptError("piecewise_interpolate_schedule: scales must be non-negative")
    bounds = [0] + [b for b, _ in items]
    values = [_f32(init_value)]
    for _, scale in items:
        values.append(values[-1] * _f32(scale))

    def schedule(count):
        c = _count(count)
        out = jnp.where(c >= bounds[-1], values[-1], 0.0)
        for i in range(len(bounds) - 1):
            lo, hi = bounds[i], bounds[i + 1]
            pct = (c - lo) / max(hi - lo, 1)
            if interpolate_type == "linear":
                v = values[i] + pct * (values[i + 1] - values[i])
            else:
                v = values[i + 1] + 0.5 * (values[i] - values[i + 1]) * (1 + jnp.cos(jnp.pi * pct))
            out = out + jnp.where((lo <= c) & (c < hi), v, 0.0)
        return out.astype(jnp.float32)

    return schedule


def linear_onecycle_schedule(
    transition_steps: int,
    peak_value: AL,
    pct_start: float = 0.3,
    pct_final: float = 0.85,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> Schedule:
    """One-cycle with linear pieces (Smith & Topin 2018), as
    ``optax.linear_onecycle_schedule``: up to ``peak_value`` at ``pct_start``, back down by
    ``pct_final``, then annealed to ``peak / (div_factor * final_div_factor)``."""
    if transition_steps <= 0:
        raise JoptError("linear_onecycle_schedule: transition_steps must be positive")
    return piecewise_interpolate_schedule(
        "linear",
        peak_value / div_factor,
        {
            int(pct_start * transition_steps): div_factor,
            int(pct_final * transition_steps): 1.0 / div_factor,
            transition_steps: 1.0 / final_div_factor,
        },
    )


def cosine_onecycle_schedule(
    transition_steps: int,
    peak_value: AL,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> Schedule:
    """One-cycle with cosine pieces (Smith & Topin 2018), as
    ``optax.cosine_onecycle_schedule``: from ``peak / div_factor`` up to ``peak_value`` at
    ``pct_start``, then down to ``peak / (div_factor * final_div_factor)``."""
    if transition_steps <= 0:
        raise JoptError("cosine_onecycle_schedule: transition_steps must be positive")
    return piecewise_interpolate_schedule(
        "cosine",
        peak_value / div_factor,
        {
            int(pct_start * transition_steps): div_factor,
            int(transition_steps): 1.0 / (div_factor * final_div_factor),
        },
    )

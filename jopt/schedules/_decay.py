"""Decaying and cyclic schedules: exponential, polynomial, cosine, warm-up, one-cycle."""

from __future__ import annotations

import math
from typing import Literal

import jax.numpy as jnp
import jax.typing

from jopt.core import JoptError
from jopt.schedules._basic import Schedule, _f32, constant, join_schedules


def _positive(name: str, arg: str, value: int) -> None:
    if not value > 0:
        raise JoptError(f"{name}: {arg} must be a positive integer, got {value}")


def _is_zero(x: jax.typing.ArrayLike) -> bool:
    # Only a concrete number can be tested here; a traced rate is never "zero" at build time.
    return isinstance(x, int | float) and x == 0


def exponential_decay(
    init_value: jax.typing.ArrayLike,
    transition_steps: int,
    decay_rate: float,
    transition_begin: int = 0,
    staircase: bool = False,
    end_value: jax.typing.ArrayLike | None = None,
) -> Schedule:
    """Exponential decay, as ``optax.exponential_decay``.

    .. math::

        \\eta(t) = \\eta_0 \\, r^{p}, \\quad p = \\frac{t - t_0}{T}
        \\;(\\lfloor p \\rfloor \\text{ with staircase}), \\qquad \\eta(t) = \\eta_0 \\text{
            for } t \\le t_0

    clipped at ``end_value`` (a floor when ``r < 1``, a ceiling when ``r > 1``).

    Edge cases as optax: ``transition_steps <= 0`` or ``decay_rate == 0`` give the constant
    ``init_value``, and a negative ``transition_begin`` counts as 0.
    """
    if transition_steps <= 0 or _is_zero(decay_rate):
        return constant(init_value)
    transition_begin = max(transition_begin, 0)

    def schedule(count):
        t = _f32(count) - transition_begin
        p = t / transition_steps
        if staircase:
            p = jnp.floor(p)
        v = jnp.where(t <= 0, _f32(init_value), _f32(init_value) * jnp.power(_f32(decay_rate), p))
        if end_value is not None:
            # A floor when decaying, a ceiling when growing (jnp.where: values may be traced).
            end = _f32(end_value)
            v = jnp.where(_f32(decay_rate) < 1.0, jnp.maximum(v, end), jnp.minimum(v, end))
        return v

    return schedule


def polynomial(
    init_value: jax.typing.ArrayLike,
    end_value: jax.typing.ArrayLike,
    power: jax.typing.ArrayLike,
    transition_steps: int,
    transition_begin: int = 0,
) -> Schedule:
    """Polynomial decay from ``init_value`` to ``end_value``, as ``optax.polynomial_schedule``.

    .. math::

        \\eta(t) = (\\eta_0 - \\eta_T)\\left(1 - \\frac{\\min(\\max(t - t_0, 0), T)}{T}\\right)^{p}
        + \\eta_T

    Unlike :func:`polynomial_schedule` (optax's name and fallbacks), this jopt spelling refuses
    ``transition_steps <= 0`` and a negative ``transition_begin``.
    """
    _positive("polynomial", "transition_steps", transition_steps)
    if transition_begin < 0:
        raise JoptError(f"polynomial: transition_begin must be >= 0, got {transition_begin}")

    def schedule(count):
        t = jnp.clip(_f32(count) - transition_begin, 0, transition_steps)
        frac = 1 - t / transition_steps
        return (_f32(init_value) - _f32(end_value)) * frac ** _f32(power) + _f32(end_value)

    return schedule


def linear(
    init_value: jax.typing.ArrayLike,
    end_value: jax.typing.ArrayLike,
    transition_steps: int,
    transition_begin: int = 0,
) -> Schedule:
    """Linear interpolation from ``init_value`` to ``end_value`` over ``transition_steps``
    steps starting at ``transition_begin`` (``polynomial`` with power 1)."""
    return polynomial(init_value, end_value, 1.0, transition_steps, transition_begin)


def cosine_decay(
    init_value: jax.typing.ArrayLike,
    decay_steps: int,
    alpha: jax.typing.ArrayLike = 0.0,
    exponent: jax.typing.ArrayLike = 1.0,
) -> Schedule:
    """Cosine decay (Loshchilov & Hutter 2017, SGDR), as ``optax.cosine_decay_schedule``.

    .. math::

        \\eta(t) = \\eta_0\\left[(1-\\alpha)\\left(\\tfrac12\\left(1 + \\cos\\frac{\\pi
            \\min(t, T)}{T}\\right)\\right)^{e} + \\alpha\\right]
    """
    _positive("cosine_decay", "decay_steps", decay_steps)

    def schedule(count):
        t = jnp.minimum(_f32(count), decay_steps)
        cos = 0.5 * (1 + jnp.cos(math.pi * t / decay_steps))
        a = _f32(alpha)
        return _f32(init_value) * ((1 - a) * cos ** _f32(exponent) + a)

    return schedule


def warmup_cosine_decay(
    init_value: jax.typing.ArrayLike,
    peak_value: jax.typing.ArrayLike,
    warmup_steps: int,
    decay_steps: int,
    end_value: jax.typing.ArrayLike = 0.0,
    exponent: jax.typing.ArrayLike = 1.0,
) -> Schedule:
    """Linear warm-up to ``peak_value``, then cosine decay to ``end_value``.

    ``decay_steps`` counts the warm-up too (as ``optax.warmup_cosine_decay_schedule``): the
    value is ``end_value`` from step ``decay_steps`` on.
    """
    if warmup_steps < 0 or decay_steps <= warmup_steps:
        raise JoptError(
            "warmup_cosine_decay: need 0 <= warmup_steps < decay_steps, got "
            f"warmup_steps={warmup_steps}, decay_steps={decay_steps}"
        )
    peak = _f32(peak_value)
    alpha = jnp.where(peak == 0.0, 0.0, _f32(end_value) / jnp.where(peak == 0.0, 1.0, peak))
    warm = linear(init_value, peak_value, max(warmup_steps, 1))
    decay = cosine_decay(peak_value, decay_steps - warmup_steps, alpha, exponent)
    if warmup_steps == 0:
        return decay
    return join_schedules([warm, decay], [warmup_steps])


def _interpolate(count, bounds, values, kind):
    t = jnp.maximum(_f32(count), 0.0)
    out = _f32(values[-1])
    # Walk the phases from last to first so the earliest phase containing t wins.
    for i in reversed(range(len(bounds) - 1)):
        start, end = bounds[i], bounds[i + 1]
        pct = (t - start) / max(end - start, 1)
        a, b = _f32(values[i]), _f32(values[i + 1])
        if kind == "linear":
            v = a + (b - a) * pct
        else:
            v = b + (a - b) / 2.0 * (jnp.cos(math.pi * pct) + 1)
        out = jnp.where(t < end, v, out)
    return out


def one_cycle(
    transition_steps: int,
    peak_value: jax.typing.ArrayLike,
    *,
    pct_start: float = 0.3,
    pct_final: float = 0.85,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    anneal: Literal["cos", "linear"] = "cos",
) -> Schedule:
    """The one-cycle policy (Smith & Topin 2018, "Super-Convergence").

    ``anneal="cos"`` (default) equals ``optax.cosine_onecycle_schedule``: cosine from
    ``peak/div_factor`` up to ``peak`` over the first ``pct_start`` of the steps, then cosine
    down to ``peak/(div_factor*final_div_factor)`` at ``transition_steps``.
    ``anneal="linear"`` equals ``optax.linear_onecycle_schedule``: linear up to ``peak`` at
    ``pct_start``, linear back to ``peak/div_factor`` at ``pct_final``, then linear down to
    ``peak/(div_factor*final_div_factor)``. After ``transition_steps`` the value stays at the end.

    Everything after ``peak_value`` is keyword-only: optax's two one-cycle schedules order
    ``pct_final`` differently, so a positional call could silently mean another schedule.
    """
    _positive("one_cycle", "transition_steps", transition_steps)
    start = peak_value / div_factor
    end = start / final_div_factor
    if anneal == "cos":
        bounds = [0, int(pct_start * transition_steps), transition_steps]
        values = [start, peak_value, end]
    elif anneal == "linear":
        bounds = [
            0,
            int(pct_start * transition_steps),
            int(pct_final * transition_steps),
            transition_steps,
        ]
        values = [start, peak_value, start, end]
    else:
        raise JoptError(f"one_cycle: anneal must be 'cos' or 'linear', got {anneal!r}")
    if sorted(bounds) != bounds:
        raise JoptError("one_cycle: need 0 <= pct_start <= pct_final <= 1")

    def schedule(count):
        return _interpolate(count, bounds, values, "linear" if anneal == "linear" else "cos")

    return schedule

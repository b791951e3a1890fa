"""Basic schedules: pure functions ``count -> value`` (float32 scalars).

``count`` is the number of updates applied so far (an int or an int32 array, possibly traced).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import jax.typing

from jopt.core import JoptError

Schedule = Callable[[jax.typing.ArrayLike], jax.Array]


def _f32(x: jax.typing.ArrayLike) -> jax.Array:
    return jnp.asarray(x).astype(jnp.float32)


def constant(value: jax.typing.ArrayLike) -> Schedule:
    """``lr(t) = value``."""

    def schedule(count):
        del count
        return _f32(value)

    return schedule


def piecewise_constant(
    init_value: jax.typing.ArrayLike, boundaries_and_scales: dict[int, float] | None = None
) -> Schedule:
    """Multiply the value by ``scale`` from step ``boundary`` on, for each pair.

    .. math:: \\eta(t) = \\eta_0 \\prod_{b_i \\le t} s_i

    Same arguments as ``optax.piecewise_constant_schedule``; scales must be non-negative.
    """
    pairs = sorted((boundaries_and_scales or {}).items())
    if any(s < 0 for _, s in pairs):
        raise JoptError("piecewise_constant: scales must be non-negative")

    def schedule(count):
        t = _f32(count)
        v = _f32(init_value)
        for boundary, s in pairs:
            v = jnp.where(t >= boundary, v * s, v)
        return v

    return schedule


def step_decay(
    init_value: jax.typing.ArrayLike, step_size: int, decay_rate: float = 0.1
) -> Schedule:
    """Multiply by ``decay_rate`` every ``step_size`` steps (PyTorch's ``StepLR``).

    .. math:: \\eta(t) = \\eta_0 \\cdot r^{\\lfloor t / s \\rfloor}
    """
    if step_size <= 0:
        raise JoptError(f"step_decay: step_size must be a positive integer, got {step_size}")

    def schedule(count):
        k = jnp.floor(_f32(count) / step_size)
        return _f32(init_value) * jnp.power(_f32(decay_rate), k)

    return schedule


def join_schedules(schedules: Sequence[Schedule], boundaries: Sequence[int]) -> Schedule:
    """Run ``schedules[i]`` from ``boundaries[i-1]`` to ``boundaries[i]``.

    Each schedule restarts its own count at its start boundary: at step ``t >= b_{i-1}``,
    schedule ``i`` sees ``t - b_{i-1}`` (as ``optax.join_schedules``).
    """
    if len(schedules) != len(boundaries) + 1:
        raise JoptError(
            f"join_schedules: {len(schedules)} schedules need {len(schedules) - 1} boundaries, "
            f"got {len(boundaries)}"
        )

    def schedule(count):
        t = jnp.asarray(count)
        out = _f32(schedules[0](t))
        for boundary, fn in zip(boundaries, schedules[1:], strict=True):
            out = jnp.where(t < boundary, out, _f32(fn(t - boundary)))
        return out

    return schedule

"""Scaling by a constant, a learning rate or a schedule."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jopt.core import (
    EmptyState,
    GradientTransformation,
    ScalarOrSchedule,
    identity,
    inexact,
    map_elementwise,
    safe_increment,
    scalar_as,
)


def scale(step_size: float | jax.Array) -> GradientTransformation:
    """Multiply every update by ``step_size``: ``u <- step_size * u``."""

    def init_fn(params):
        del params
        return EmptyState()

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        return map_elementwise(lambda u: scalar_as(step_size, u) * inexact(u), updates), state

    return GradientTransformation(init_fn, update_fn)


class ScaleByScheduleState(NamedTuple):
    """State of :func:`scale_by_schedule`.

    Attributes:
        count: int32 number of updates applied so far (saturating).
    """

    count: jax.Array


def scale_by_schedule(step_size_fn) -> GradientTransformation:
    """``u <- step_size_fn(count) * u``, where ``count`` is the number of previous updates."""

    def init_fn(params):
        del params
        return ScaleByScheduleState(count=jnp.zeros([], jnp.int32))

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        step_size = step_size_fn(state.count)
        updates = map_elementwise(lambda u: scalar_as(step_size, u) * inexact(u), updates)
        return updates, ScaleByScheduleState(count=safe_increment(state.count))

    return GradientTransformation(init_fn, update_fn)


def scale_by_learning_rate(
    learning_rate: ScalarOrSchedule | None = None, *, flip_sign: bool = True
) -> GradientTransformation:
    """``u <- -learning_rate * u`` (or ``+`` with ``flip_sign=False``).

    ``learning_rate`` is a float, an array (possibly traced), or a schedule ``count -> value``.
    ``None`` means no scaling at all (the identity, as in optax; :func:`jopt.adadelta` uses it).
    """
    if learning_rate is None:
        return identity()
    sign = -1.0 if flip_sign else 1.0
    if callable(learning_rate):
        return scale_by_schedule(lambda count: sign * learning_rate(count))
    return scale(sign * learning_rate)

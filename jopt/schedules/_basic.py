"""Basic schedules: pure functions ``count -> value``."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

Schedule = Callable[[jax.Array], jax.Array]


def constant(value: float) -> Schedule:
    """``lr(t) = value``."""

    def schedule(count):
        del count
        return jnp.asarray(value, jnp.float32)

    return schedule

"""Timing primitives: compile time and steady-state step time of a jitted function.

Every figure comes from wall-clock time around ``block_until_ready``. Compile time is measured
as ``lower + compile`` of the jitted function on the real arguments, separately from steps.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np


@dataclasses.dataclass(frozen=True)
class StepStats:
    """Step times in seconds over ``n`` timed calls (after warm-up)."""

    n: int
    min: float
    median: float
    p90: float
    mean: float

    @classmethod
    def from_samples(cls, samples: list[float]) -> StepStats:
        a = np.asarray(samples, dtype=np.float64)
        return cls(
            n=int(a.size),
            min=float(a.min()),
            median=float(np.median(a)),
            p90=float(np.percentile(a, 90)),
            mean=float(a.mean()),
        )

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


def compile_fn(fn: Callable, *args: Any, donate_argnums: tuple[int, ...] = ()) -> tuple[Any, float]:
    """``jax.jit(fn)`` lowered and compiled for ``args``; returns ``(compiled, seconds)``."""
    jitted = jax.jit(fn, donate_argnums=donate_argnums)
    t0 = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    return compiled, time.perf_counter() - t0


def time_steps(
    compiled: Callable,
    carry: Any,
    *consts: Any,
    steps: int = 20,
    warmup: int = 2,
    min_time: float = 0.0,
) -> tuple[StepStats, Any]:
    """Time ``carry = compiled(*carry, *consts)`` (or ``compiled(carry, *consts)``).

    ``carry`` is a tuple fed back into the next call (so donated buffers are never reused);
    ``consts`` are passed unchanged. Runs ``warmup`` untimed calls, then at least ``steps``
    timed calls, and keeps going until ``min_time`` seconds have been timed. Returns the stats
    and the final carry.
    """
    for _ in range(warmup):
        carry = compiled(*carry, *consts)
        jax.block_until_ready(carry)
    samples: list[float] = []
    total = 0.0
    while len(samples) < steps or total < min_time:
        t0 = time.perf_counter()
        carry = compiled(*carry, *consts)
        jax.block_until_ready(carry)
        dt = time.perf_counter() - t0
        samples.append(dt)
        total += dt
        if len(samples) >= 100 * max(steps, 1):
            break
    return StepStats.from_samples(samples), carry

"""The memory-bandwidth bound, measured on the device by a jitted streaming kernel.

A STREAM-style triad ``a = b + s * c`` reads two arrays and writes one, so it moves
``3 * n * itemsize`` bytes; a scaled copy ``a = s * b`` moves ``2 * n * itemsize``. The best of many
timed calls gives the bandwidth the device actually sustains from jitted code, which is the
roof an elementwise optimizer update can reach (it is bandwidth bound: a few flops per byte).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

from jopt.bench._timing import StepStats, compile_fn, time_steps


@dataclasses.dataclass(frozen=True)
class Bandwidth:
    """Measured bandwidth in GB/s (1e9 bytes per second), from the fastest call."""

    triad_gbs: float
    copy_gbs: float
    elements: int
    dtype: str
    triad: StepStats
    copy: StepStats

    @property
    def gbs(self) -> float:
        """The bound used for rooflines: the better of triad and copy."""
        return max(self.triad_gbs, self.copy_gbs)

    def as_dict(self) -> dict[str, Any]:
        return {
            "gbs": self.gbs,
            "triad_gbs": self.triad_gbs,
            "copy_gbs": self.copy_gbs,
            "elements": self.elements,
            "dtype": self.dtype,
            "triad_s": self.triad.as_dict(),
            "copy_s": self.copy.as_dict(),
        }


def measure_bandwidth(
    elements: int, dtype: Any = jnp.float32, steps: int = 20, min_time: float = 0.05
) -> Bandwidth:
    """Measure triad and copy bandwidth over arrays of ``elements`` values of ``dtype``."""
    elements = max(int(elements), 1)
    dtype = jnp.dtype(dtype)
    b = jnp.ones((elements,), dtype)
    c = jnp.full((elements,), 0.5, dtype)
    s = jnp.asarray(1e-3, dtype)

    # Carry ``b`` through so each call depends on the last and nothing is cached or elided.
    def triad(b, c, s):
        return ((b + s * c).astype(dtype),)

    # A scaled copy: ``b * s`` with ``s`` an argument, which XLA cannot simplify away.
    def copy(b, s):
        return ((b * s).astype(dtype),)

    # Donating ``b`` lets the output reuse its buffer, as a donated optimizer step does.
    triad_c, _ = compile_fn(triad, b, c, s, donate_argnums=(0,))
    triad_stats, _ = time_steps(triad_c, (b,), c, s, steps=steps, min_time=min_time)
    a = jnp.ones((elements,), dtype)
    one = jnp.asarray(1.0, dtype)
    copy_c, _ = compile_fn(copy, a, one, donate_argnums=(0,))
    copy_stats, _ = time_steps(copy_c, (a,), one, steps=steps, min_time=min_time)
    nbytes = elements * dtype.itemsize
    return Bandwidth(
        triad_gbs=3 * nbytes / triad_stats.min / 1e9,
        copy_gbs=2 * nbytes / copy_stats.min / 1e9,
        elements=elements,
        dtype=dtype.name,
        triad=triad_stats,
        copy=copy_stats,
    )

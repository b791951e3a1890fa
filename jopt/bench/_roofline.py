"""Two memory-bandwidth bounds, measured on the device by jitted streaming kernels.

- :func:`measure_bandwidth`: XLA's best elementwise kernel (triad, scaled copy) over arrays as
  large as the parameters: the roof an XLA-compiled update can reach for that size.
- :func:`measure_copy_bound`: the device's copy bandwidth over arrays several times its
  last-level cache, so nothing comes from cache: the device's own memory bound.

A STREAM-style triad ``a = b + s * c`` reads two arrays and writes one, so it moves
``3 * n * itemsize`` bytes; a scaled copy ``a = s * b`` moves ``2 * n * itemsize``. The best of many
timed calls gives the bandwidth the device actually sustains from jitted code, which is the
roof an elementwise optimizer update can reach (it is bandwidth bound: a few flops per byte).
"""

from __future__ import annotations

import dataclasses
import glob
import pathlib
from typing import Any

import jax
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


# Last-level cache (or L2) per device kind, where the device cannot be asked (GPUs and TPUs).
_KNOWN_LLC = {"h200": 60 << 20, "h100": 50 << 20, "a100": 40 << 20, "v100": 6 << 20, "l4": 48 << 20}
_DEFAULT_LLC = 64 << 20


def last_level_cache_bytes(device: Any = None) -> int:
    """The device's last-level cache in bytes: read from sysfs on CPUs, a table of known GPUs
    (H200, H100, A100, V100, L4), else 64 MiB."""
    dev = device or jax.devices()[0]
    if dev.platform == "cpu":
        best = 0
        for path in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*/size"):
            try:
                text = pathlib.Path(path).read_text().strip().upper()
                mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
                best = max(best, int(text.rstrip("KMG")) * mult)
            except (OSError, ValueError):
                continue
        return best or _DEFAULT_LLC
    kind = str(getattr(dev, "device_kind", "")).lower()
    for name, size in _KNOWN_LLC.items():
        if name in kind:
            return size
    return _DEFAULT_LLC


@dataclasses.dataclass(frozen=True)
class CopyBound:
    """The device's copy bandwidth (GB/s), on arrays several times its last-level cache.

    ``gbs`` is the better of a plain copy (``jnp.copy``: XLA's copy, a memcpy on GPUs; not
    measured on CPUs, where each fresh output buffer times page faults: ``plain_gbs`` 0) and a
    scaled copy (a fused elementwise kernel, output donated); both move ``2 * bytes``. Unlike
    :class:`Bandwidth` (measured on arrays as large as the parameters, which may sit in cache),
    nothing here can come from cache, so it is the device's memory bound.
    """

    gbs: float
    plain_gbs: float
    scaled_gbs: float
    elements: int
    cache_bytes: int
    dtype: str
    plain: StepStats
    scaled: StepStats

    def as_dict(self) -> dict[str, Any]:
        return {
            "gbs": self.gbs,
            "plain_copy_gbs": self.plain_gbs,
            "scaled_copy_gbs": self.scaled_gbs,
            "elements": self.elements,
            "cache_bytes": self.cache_bytes,
            "dtype": self.dtype,
            "plain_s": self.plain.as_dict() if self.plain_gbs else None,
            "scaled_s": self.scaled.as_dict(),
        }


def copy_elements(dtype: Any = jnp.float32, factor: int = 4, minimum: int = 256 << 20) -> int:
    """Elements of ``dtype`` for arrays of ``max(factor * last-level cache, minimum)`` bytes."""
    nbytes = max(factor * last_level_cache_bytes(), minimum)
    return nbytes // jnp.dtype(dtype).itemsize


def measure_copy_bound(
    elements: int | None = None, dtype: Any = jnp.float32, steps: int = 10, min_time: float = 0.0
) -> CopyBound:
    """Measure the device's copy bandwidth over ``elements`` values (default: arrays four times
    the last-level cache, at least 256 MiB; see :func:`copy_elements`)."""
    dtype = jnp.dtype(dtype)
    n = copy_elements(dtype) if elements is None else max(int(elements), 1)
    a = jnp.ones((n,), dtype)

    def plain(b):  # not donated: the output is a new buffer, so XLA really copies it
        return (jnp.copy(b),)

    # On CPUs every new output buffer is fresh pages: a plain copy would time page faults.
    plain_stats = None
    if jax.devices()[0].platform != "cpu":
        plain_c, _ = compile_fn(plain, a)
        plain_stats, _ = time_steps(plain_c, (a,), steps=steps, min_time=min_time)

    def scaled(b, s):
        return ((b * s).astype(dtype),)

    one = jnp.asarray(1.0, dtype)
    scaled_c, _ = compile_fn(scaled, a, one, donate_argnums=(0,))
    scaled_stats, _ = time_steps(scaled_c, (a,), one, steps=steps, min_time=min_time)
    moved = 2 * n * dtype.itemsize
    plain_gbs = 0.0 if plain_stats is None else moved / plain_stats.min / 1e9
    scaled_gbs = moved / scaled_stats.min / 1e9
    return CopyBound(
        gbs=max(plain_gbs, scaled_gbs),
        plain_gbs=plain_gbs,
        scaled_gbs=scaled_gbs,
        elements=n,
        cache_bytes=last_level_cache_bytes(),
        dtype=dtype.name,
        plain=plain_stats if plain_stats is not None else StepStats.from_samples([float("nan")]),
        scaled=scaled_stats,
    )

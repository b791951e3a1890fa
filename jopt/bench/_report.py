"""The environment block and the terminal tables of a benchmark report."""

from __future__ import annotations

import datetime
import os
import platform
from typing import Any

import jax

SCHEMA = "jopt.bench/1"


def environment() -> dict[str, Any]:
    """Device, library versions and machine load: what a reader needs to trust a figure."""
    import jaxlib
    import optax

    from jopt._version import __version__

    dev = jax.devices()[0]
    try:
        load = list(os.getloadavg())
    except OSError:  # not available on every platform
        load = None
    return {
        "platform": dev.platform,
        "device_kind": dev.device_kind,
        "device_count": jax.device_count(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "optax": optax.__version__,
        "jopt": __version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "load_avg": load,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def format_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A plain fixed-width table; floats get 4 significant digits."""

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    cells = [[fmt(v) for v in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = "  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "-" * len(line)]
    out += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(out)


def parse_count(text: str) -> int:
    """``"10M"`` -> 10_000_000; accepts K, M, G suffixes and plain integers."""
    from jopt.core import JoptError

    t = str(text).strip().upper().replace("_", "")
    mult = {"K": 10**3, "M": 10**6, "G": 10**9}.get(t[-1:], 1)
    num = t[:-1] if t[-1:] in "KMG" and t else t
    try:
        value = float(num) * mult
    except ValueError:
        raise JoptError(f"cannot read a count from {text!r}; use e.g. 1000, 10K, 10M") from None
    if value < 1 or value != int(value):
        raise JoptError(f"count {text!r} must be a positive integer (e.g. 1000, 10K, 10M)")
    return int(value)


def parse_list(text: str, what: str) -> list[str]:
    from jopt.core import JoptError

    items = [s.strip() for s in str(text).split(",") if s.strip()]
    if not items:
        raise JoptError(f"{what} must be a comma-separated list, got {text!r}")
    return items

"""Multi-process start-up and process-local data.

Every process of a multi-host job runs the same program. :func:`initialize` connects it to the
coordinator (process 0) with ``jax.distributed.initialize``; afterwards ``jax.devices()`` lists the
devices of *all* processes and a mesh can span them. Each process loads only the rows of the
dataset its own devices hold (:func:`process_rows`) and :func:`global_array` stitches the local
pieces into one global ``jax.Array`` with ``jax.make_array_from_process_local_data``, without
copying data between hosts.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Sharding

from jopt.core.errors import JoptError
from jopt.distributed._config import DistributedSpec


def initialize(spec: DistributedSpec) -> bool:
    """Call ``jax.distributed.initialize`` when ``spec`` names a coordinator; True if it did.

    Idempotent: a second call in an already-connected process does nothing. Must run before any
    JAX computation in the process.
    """
    if not spec.multi_process or jax.distributed.is_initialized():
        return False
    jax.distributed.initialize(
        coordinator_address=spec.coordinator_address,
        num_processes=spec.num_processes,
        process_id=spec.process_id,
    )
    return True


def is_main_process() -> bool:
    """True in process 0, the only one that writes logs, summaries and plots."""
    return jax.process_index() == 0


def check_divisible(global_batch: int, data_size: int, what: str = "batch size") -> None:
    """Raise :class:`jopt.JoptError` unless ``global_batch`` splits evenly over the data axis."""
    if global_batch % data_size:
        lo = global_batch - global_batch % data_size
        raise JoptError(
            f"{what} {global_batch} is not divisible by the data-axis size {data_size}; "
            f"use a multiple of {data_size} (e.g. {lo or data_size} or {lo + data_size})"
        )


def process_rows(sharding: Sharding, global_rows: int) -> np.ndarray:
    """The row indices (of a ``global_rows``-row array) this process must load for ``sharding``.

    They are the rows held by this process's devices, in the order
    ``make_array_from_process_local_data`` expects them.
    """
    index_map = sharding.addressable_devices_indices_map((global_rows,))
    starts: dict[int, int] = {}
    for idx in index_map.values():
        sl = idx[0]
        start, stop, _ = sl.indices(global_rows)
        starts[start] = stop
    rows = [np.arange(start, stop) for start, stop in sorted(starts.items())]
    return np.concatenate(rows) if rows else np.zeros((0,), np.int64)


def global_array(sharding: Sharding, local: Any, global_rows: int | None = None) -> jax.Array:
    """One global array from this process's rows ``local`` (a numpy or jax array).

    ``global_rows`` defaults to ``local.shape[0] * jax.process_count()`` (every process holds an
    equal share). The leading dimension must split evenly over the data axis.
    """
    local = np.asarray(local)
    rows = local.shape[0] * jax.process_count() if global_rows is None else int(global_rows)
    size = int(np.prod([sharding.mesh.shape[a] for a in _sharded_axes(sharding)] or [1]))
    check_divisible(rows, size)
    return jax.make_array_from_process_local_data(sharding, local, (rows, *local.shape[1:]))


def _sharded_axes(sharding: Sharding) -> list[str]:
    spec = getattr(sharding, "spec", ())
    first = spec[0] if len(spec) else None
    if first is None:
        return []
    return list(first) if isinstance(first, tuple) else [first]

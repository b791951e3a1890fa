"""Device meshes and the two shardings data parallelism needs.

A data-parallel mesh is one axis named ``"data"``. Batches are split along it
(``PartitionSpec("data")``); parameters are replicated (``PartitionSpec()``). With those as the
``in_shardings``/``out_shardings`` of a jitted step, XLA's partitioner inserts the gradient
all-reduce itself: there is no hand-written collective in jopt.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from jopt.core.errors import JoptError
from jopt.distributed._config import DATA_AXIS


def request_cpu_devices(count: int) -> bool:
    """Ask JAX for ``count`` host (CPU) devices; True if the request could still take effect.

    It only works before JAX initialises its backends (before the first array is made); after
    that it returns False and changes nothing. On GPU/TPU hosts it does not affect the
    accelerators. Used so that ``jopt run cfg.yaml distributed.data=8`` works on a laptop.
    """
    try:
        jax.config.update("jax_num_cpu_devices", int(count))
    except RuntimeError:
        return False
    return True


def make_data_mesh(data: int = -1, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A one-axis mesh named ``"data"`` over ``data`` devices (``-1``: all of them).

    The axis type is ``Auto``: shardings are given at the ``jit`` boundary and XLA propagates
    them through the step (the GSPMD model), so a train step written for one device runs
    unchanged.
    """
    devices = list(jax.devices() if devices is None else devices)
    n = len(devices) if data == -1 else int(data)
    if n < 1:
        raise JoptError(f"distributed.data must be -1 or a positive count, got {data}")
    if n > len(devices):
        platform = devices[0].platform if devices else "?"
        hint = (
            "; on CPU ask for host devices first (distributed.local_devices, or "
            "XLA_FLAGS=--xla_force_host_platform_device_count=N)"
            if platform == "cpu"
            else ""
        )
        raise JoptError(
            f"distributed.data={n} but only {len(devices)} {platform} device(s) exist{hint}"
        )
    if jax.process_count() > 1 and n != len(devices):
        raise JoptError(
            f"distributed.data={n}: a multi-process run must use all {len(devices)} devices "
            "(set distributed.data: -1)"
        )
    return jax.make_mesh((n,), (DATA_AXIS,), axis_types=(AxisType.Auto,), devices=devices[:n])


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over the data axis, other axes whole."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
    """A full copy on every device of ``mesh``."""
    return NamedSharding(mesh, PartitionSpec())

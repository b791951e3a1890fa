"""The ``distributed`` config section, read into one typed record.

The experiment runner hands over its ``distributed`` section as a mapping (or a dataclass with
the same fields); :func:`parse_distributed` checks it and fills the defaults, which live here only.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from jopt.core.errors import JoptError

DATA_AXIS = "data"
"""The name of the mesh axis batches are split along."""

# Environment variables read when the config leaves the multi-host fields empty. They mirror the
# arguments of ``jax.distributed.initialize``.
ENV_COORDINATOR = "JOPT_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JOPT_NUM_PROCESSES"
ENV_PROCESS_ID = "JOPT_PROCESS_ID"


@dataclasses.dataclass(frozen=True)
class DistributedSpec:
    """How a run is spread over devices and processes.

    Attributes:
      data: devices on the data axis; ``1`` (the default) is a single device, ``-1`` every
        device (of every process). The experiment config's ``distributed`` section takes its
        defaults from here (``jopt.experiment`` has no second copy).
      zero: ``0`` replicates the optimizer state; ``1`` shards it over the data axis (ZeRO-1).
      coordinator_address: ``host:port`` of process 0, for multi-host runs (else from
        ``$JOPT_COORDINATOR_ADDRESS``; else single process unless JAX detects a cluster).
      num_processes: processes in the job (else ``$JOPT_NUM_PROCESSES``).
      process_id: this process's rank, ``0..num_processes-1`` (else ``$JOPT_PROCESS_ID``).
      local_devices: on CPU only, how many host devices each process creates (``0``: as many as
        the data axis needs when a single process runs it, else JAX's default of one).
    """

    data: int = 1
    zero: int = 0
    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    local_devices: int = 0

    @property
    def multi_process(self) -> bool:
        """True when a coordinator is named (then ``jax.distributed.initialize`` must run)."""
        return self.coordinator_address is not None


_FIELDS = tuple(f.name for f in dataclasses.fields(DistributedSpec))


def _as_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise JoptError(f"distributed.{name} must be an integer, got {value!r}")
    try:
        return int(value)
    except ValueError:
        raise JoptError(f"distributed.{name} must be an integer, got {value!r}") from None


def parse_distributed(
    section: Any = None, *, environ: Mapping[str, str] | None = None
) -> DistributedSpec:
    """Check a ``distributed`` config section and return a :class:`DistributedSpec`.

    ``section`` is ``None`` (single device), a mapping such as ``{"data": -1, "zero": 1}``, a
    dataclass with those fields, or a :class:`DistributedSpec`. Multi-host fields left empty are
    read from ``environ`` (default ``os.environ``). Bad values raise :class:`jopt.JoptError`.
    """
    environ = os.environ if environ is None else environ
    if section is None:
        raw: dict[str, Any] = {}
    elif dataclasses.is_dataclass(section) and not isinstance(section, type):
        raw = dataclasses.asdict(section)
    elif isinstance(section, Mapping):
        raw = dict(section)
    else:
        raise JoptError(f"distributed must be a mapping such as {{data: -1}}, got {section!r}")
    unknown = sorted(set(raw) - set(_FIELDS))
    if unknown:
        raise JoptError(f"distributed: unknown key(s) {unknown}; allowed: {list(_FIELDS)}")

    data = _as_int("data", raw.get("data", DistributedSpec.data))
    if data == 0 or data < -1:
        raise JoptError(
            f"distributed.data must be -1 (all devices) or a positive count, got {data}"
        )
    zero = _as_int("zero", raw.get("zero", 0))
    if zero not in (0, 1):
        raise JoptError(f"distributed.zero must be 0 (replicated) or 1 (ZeRO-1), got {zero}")
    local_devices = _as_int("local_devices", raw.get("local_devices", 0))
    if local_devices < 0:
        raise JoptError(f"distributed.local_devices must be >= 0, got {local_devices}")

    coordinator = raw.get("coordinator_address") or environ.get(ENV_COORDINATOR) or None
    nproc = raw.get("num_processes")
    nproc = environ.get(ENV_NUM_PROCESSES) if nproc is None else nproc
    pid = raw.get("process_id")
    pid = environ.get(ENV_PROCESS_ID) if pid is None else pid
    nproc = None if nproc is None else _as_int("num_processes", nproc)
    pid = None if pid is None else _as_int("process_id", pid)
    if coordinator is not None:
        if not isinstance(coordinator, str) or ":" not in coordinator:
            raise JoptError(
                f"distributed.coordinator_address must be 'host:port', got {coordinator!r}"
            )
        if nproc is None or pid is None:
            raise JoptError(
                "distributed: a coordinator_address needs num_processes and process_id "
                f"(config or ${ENV_NUM_PROCESSES} / ${ENV_PROCESS_ID})"
            )
    if nproc is not None and nproc < 1:
        raise JoptError(f"distributed.num_processes must be >= 1, got {nproc}")
    if pid is not None and nproc is not None and not 0 <= pid < nproc:
        raise JoptError(f"distributed.process_id must be in 0..{nproc - 1}, got {pid}")
    return DistributedSpec(data, zero, coordinator, nproc, pid, local_devices)

"""Optimizer-state memory, computed from shapes alone (``jax.eval_shape``), before allocation."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from jopt.fused import on_buffers


@dataclasses.dataclass(frozen=True)
class MemoryRow:
    """Bytes of one state slot for one parameter group.

    Attributes:
        slot: the path of the slot in the state, up to where the parameter tree starts
            (``"0.mu"``, ``"inner.0.nu"``); for state that does not mirror the parameters
            (step counters, hyperparameters) the full path.
        group: the top-level parameter key the arrays belong to (``"Dense_0"``, also for
            packed state), ``"(padding)"`` for the zero padding of packed buffers, or ``"-"``
            for non-parameter state.
        bytes: total bytes.
        arrays: number of arrays (a packed buffer counts once, in its first parameter's row).
        dtypes: the dtypes seen, comma separated.
    """

    slot: str
    group: str
    bytes: int
    arrays: int
    dtypes: str


@dataclasses.dataclass(frozen=True)
class MemoryReport:
    """What :func:`memory_report` returns: rows per (slot, group), plus totals."""

    rows: tuple[MemoryRow, ...]
    param_bytes: int

    @property
    def total_bytes(self) -> int:
        return sum(r.bytes for r in self.rows)

    def per_slot(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rows:
            out[r.slot] = out.get(r.slot, 0) + r.bytes
        return out

    def per_group(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rows:
            out[r.group] = out.get(r.group, 0) + r.bytes
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "total_bytes": self.total_bytes,
            "param_bytes": self.param_bytes,
            "per_slot": self.per_slot(),
            "per_group": self.per_group(),
            "rows": [dataclasses.asdict(r) for r in self.rows],
        }

    def table(self) -> str:
        """A plain-text table, one line per slot, with the per-group split."""
        lines = [f"{'state slot':<28} {'bytes':>14} {'x params':>9}  groups"]
        per_slot = self.per_slot()
        for slot, nbytes in per_slot.items():
            groups = sorted({r.group for r in self.rows if r.slot == slot})
            shown = ", ".join(groups[:4]) + (f", ... ({len(groups)})" if len(groups) > 4 else "")
            ratio = nbytes / self.param_bytes if self.param_bytes else 0.0
            lines.append(f"{slot:<28} {nbytes:>14,d} {ratio:>9.2f}  {shown}")
        ratio = self.total_bytes / self.param_bytes if self.param_bytes else 0.0
        lines.append(f"{'total':<28} {self.total_bytes:>14,d} {ratio:>9.2f}")
        return "\n".join(lines)


def _key_str(k: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def _nbytes(x: Any) -> int:
    return int(np.prod(x.shape, dtype=np.int64)) * np.dtype(x.dtype).itemsize


def memory_report(tx: Any, params: Any, *, layout: Any = None) -> MemoryReport:
    """Bytes of ``tx``'s state for ``params``, per state slot and parameter group.

    Nothing is allocated: the state's shapes come from ``jax.eval_shape(tx.init, params)``, and
    ``params`` may itself be a tree of ``jax.ShapeDtypeStruct``.

    A state leaf whose path ends with a parameter's path (``mu['Dense_0']['kernel']``) belongs to
    slot ``mu`` and group ``Dense_0``. Rows are always per parameter path, never per buffer:
    packed state (``jopt.fuse(tx)``, or ``tx`` on ``layout``'s buffers as in
    ``jopt.fused.packed_train_step``: pass ``layout=unpack.layout``) is split over the
    parameters each buffer holds; padding is the group ``(padding)``.

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> rep = jopt.memory_report(jopt.adam(1e-3), {"w": jnp.ones((10, 10))})
        >>> rep.per_slot()["0.mu"]
        400
    """
    if layout is None and hasattr(tx, "layout_for"):
        layout = tx.layout_for(params)
        abstract = jax.eval_shape(tx.init, params)
    elif layout is not None:
        buffers = {
            g: jax.ShapeDtypeStruct((n,), np.dtype(layout.dtype_of(g))) for g, n in layout.sizes
        }
        abstract = jax.eval_shape(on_buffers(tx, layout).init, buffers)
    else:
        abstract = jax.eval_shape(tx.init, params)
    flat_params = jax.tree_util.tree_flatten_with_path(params)[0]
    param_paths = {tuple(_key_str(k) for k in path) for path, _ in flat_params}
    tops = [_key_str(path[0]) if path else "state" for path, _ in flat_params]
    max_len = max((len(p) for p in param_paths), default=0)
    acc: dict[tuple[str, str], list] = {}

    def add(slot: str, group: str, nbytes: int, arrays: int, dtype: str) -> None:
        row = acc.setdefault((slot, group), [0, 0, set()])
        row[0] += nbytes
        row[1] += arrays
        row[2].add(dtype)

    buffer_names = set(layout.groups) if layout is not None else set()
    for path, leaf in jax.tree_util.tree_flatten_with_path(abstract)[0]:
        keys = tuple(_key_str(k) for k in path)
        dtype = np.dtype(leaf.dtype)
        if len(keys) >= 2 and keys[-2] == "offsets" and keys[-1].isdigit():
            keys = keys[:-1]  # a fused state's per-leaf offsets: one slot, not one per leaf
        if keys and keys[-1] in buffer_names and len(leaf.shape) == 1:
            # A packed slot: its bytes belong to the parameters the buffer holds.
            slot = ".".join(keys[:-1]) or "state"
            used = 0  # the one array is counted once, with its first parameter's row
            for s, top in zip(layout.slots, tops, strict=True):
                if s.group == keys[-1]:
                    add(slot, top, s.size * dtype.itemsize, int(used == 0), dtype.name)
                    used += s.size
            if leaf.shape[0] > used:
                add(slot, "(padding)", (leaf.shape[0] - used) * dtype.itemsize, 0, dtype.name)
            continue
        slot, group = ".".join(keys) or "state", "-"
        for n in range(min(max_len, len(keys)), 0, -1):
            if keys[-n:] in param_paths:
                slot, group = ".".join(keys[:-n]) or "state", keys[-n]
                break
        add(slot, group, _nbytes(leaf), 1, dtype.name)
    rows = tuple(
        MemoryRow(slot=slot, group=group, bytes=b, arrays=n, dtypes=",".join(sorted(d)))
        for (slot, group), (b, n, d) in acc.items()
    )
    param_bytes = sum(_nbytes(x) for x in jax.tree.leaves(params))
    return MemoryReport(rows=rows, param_bytes=param_bytes)

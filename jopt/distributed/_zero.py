"""ZeRO-1: the optimizer state sharded over the data axis.

ZeRO stage 1 (Rajbhandari et al. 2020, "ZeRO: Memory Optimizations Toward Training Trillion
Parameter Models") keeps parameters and gradients replicated but gives each data-parallel device
only a ``1/N`` slice of the optimizer state. Each device then updates only its slice:

.. math::

    g = \\tfrac{1}{N}\\textstyle\\sum_d g_d \\;(\\text{reduce}), \\qquad
    (u^{(d)}, s^{(d)}) = \\mathrm{update}(g^{(d)}, s^{(d)}) \\;(\\text{per shard}), \\qquad
    \\theta \\leftarrow \\theta + \\mathrm{all\\_gather}_d\\, u^{(d)}.

jopt expresses this with shardings only: the state's ``NamedSharding`` splits each array along
one axis, and XLA's partitioner computes the elementwise update on the local slice and
all-gathers the update for the replicated parameters. Because jopt's optimizer maths is
elementwise per leaf (``jopt.core.map_elementwise``), slicing a leaf slices its update.

Each state leaf is split along its *largest axis divisible by the data-axis size*; leaves with no
such axis (scalar step counts, odd shapes) stay replicated. :func:`zero1_coverage` reports the
fraction of state bytes that really is sharded.

Fused optimizers (``jopt.fused``) keep their state in one 1-D buffer per dtype. ``zero1`` runs
the inner ``init`` and ``update`` inside ``jopt.fused.pad_scope(N)``, so every fused transform
inside pads its buffers with zeros to a multiple of ``N`` and they split evenly: ``1/N`` of the
packed state per device, whatever the leaf shapes.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jopt.core import GradientTransformation, call_update
from jopt.distributed._config import DATA_AXIS
from jopt.fused import pad_scope


def _shard_axis(shape: tuple[int, ...], n: int) -> int | None:
    candidates = [i for i, d in enumerate(shape) if d >= n and d % n == 0]
    if not candidates:
        return None
    # Largest axis first; the first such axis on ties, for a stable layout.
    return max(candidates, key=lambda i: (shape[i], -i))


def zero1_sharding(x: Any, mesh: Mesh) -> NamedSharding:
    """The ZeRO-1 sharding of one state leaf (array or ``ShapeDtypeStruct``)."""
    n = mesh.shape[DATA_AXIS]
    shape = tuple(np.shape(x))
    axis = _shard_axis(shape, n) if n > 1 else None
    if axis is None:
        return NamedSharding(mesh, PartitionSpec())
    spec = [None] * len(shape)
    spec[axis] = DATA_AXIS
    return NamedSharding(mesh, PartitionSpec(*spec))


def zero1_shardings(tree: Any, mesh: Mesh) -> Any:
    """:func:`zero1_sharding` for every leaf of an optimizer-state tree."""
    return jax.tree.map(lambda x: zero1_sharding(x, mesh), tree)


def _nbytes(x: Any) -> int:
    return int(np.prod(np.shape(x), dtype=np.int64)) * np.dtype(x.dtype).itemsize


def zero1_coverage(tree: Any, mesh: Mesh) -> float:
    """Fraction of the tree's bytes that ZeRO-1 shards (the rest stays replicated)."""
    total = sharded = 0
    for x in jax.tree.leaves(tree):
        b = _nbytes(x)
        total += b
        if zero1_sharding(x, mesh).spec != PartitionSpec():
            sharded += b
    return sharded / total if total else 1.0


def bytes_per_device(tree: Any) -> dict[jax.Device, int]:
    """Bytes each addressable device holds for the arrays of ``tree`` (replicas counted)."""
    out: dict[jax.Device, int] = {}
    for x in jax.tree.leaves(tree):
        for shard in x.addressable_shards:
            out[shard.device] = out.get(shard.device, 0) + shard.data.nbytes
    return out


def _constrain(tree: Any, shardings: Any) -> Any:
    return jax.tree.map(jax.lax.with_sharding_constraint, tree, shardings)


def zero1(tx: Any, mesh: Mesh) -> GradientTransformation:
    """Wrap an optimizer so its state lives in ZeRO-1 shards and each device updates its own.

    Three sharding constraints, no hand-written collective: the incoming (replicated) gradient
    is constrained to the state's shards, so the partitioner can reduce-scatter it; the inner
    ``update`` then runs on the local slices and its new state is pinned to the shards; the
    outgoing updates are constrained to be replicated, which all-gathers them, so
    ``params + updates`` stays replicated. Results equal ``tx``'s up to float rounding.

    Works under any ``jit`` (including ``jopt.train.fit``'s, which sets no shardings itself).
    A ``jopt.fused`` transform inside pads its packed buffers to a multiple of the data-axis
    size (``jopt.fused.pad_scope``), so the packed state is sharded too.
    """
    replicated = NamedSharding(mesh, PartitionSpec())
    n = int(mesh.shape[DATA_AXIS])

    def init_fn(params):
        with pad_scope(n):
            state = tx.init(params)
        return _constrain(state, zero1_shardings(state, mesh))

    def update_fn(updates, state, params=None, **extra_args):
        updates = _constrain(updates, zero1_shardings(updates, mesh))
        with pad_scope(n):
            updates, state = call_update(tx, updates, state, params, **extra_args)
        state = _constrain(state, zero1_shardings(state, mesh))
        updates = jax.tree.map(lambda u: jax.lax.with_sharding_constraint(u, replicated), updates)
        return updates, state

    return GradientTransformation(init_fn, update_fn)

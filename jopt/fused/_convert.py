"""Optimizer state, packed <-> per leaf: a packed run resumes leaf by leaf, and back.

The state of ``tx`` on packed buffers and on the parameter tree differ only where ``tx`` keeps
a per-parameter slot: packed, a slot is a ``{buffer: 1-D array}`` dict (``None`` for buffers
outside a parameter group); per leaf, it is a tree shaped like the (group's) parameters. Every
other state leaf (counts, hyperparameters, metrics) is the same in both. So the conversion
walks the two states in order and slices or concatenates each slot; the target's structure
comes from ``jax.eval_shape`` of ``tx.init``, so nothing is guessed.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from jopt.core import JoptError
from jopt.fused._classes import is_slot as _is_slot
from jopt.fused._classes import packed_state_shapes
from jopt.fused._fused import FusedState
from jopt.fused._layout import PackLayout


def _check_leaf(got: Any, want: Any, where: str) -> None:
    if tuple(np.shape(got)) != tuple(want.shape):
        raise JoptError(
            f"{where}: a state leaf of shape {tuple(np.shape(got))} where {tuple(want.shape)} "
            "was expected; pass the state of this optimizer for these parameters"
        )


def state_to_per_leaf(tx: Any, layout: PackLayout, state: Any, offsets: Any = None) -> Any:
    """The state ``tx.init(params)`` would have, holding the values of packed ``state``.

    ``state`` is a :class:`FusedState` (or its ``inner``) made on ``layout``'s buffers.
    ``offsets`` (``layout.offsets()`` passed as runtime arguments of the jitted caller) cut the
    slots with dynamic slices, one compiled kernel per leaf size; without them, with one
    static split per buffer.

    Raises:
        JoptError: when ``state`` does not belong to ``tx`` on this layout.
    """
    inner = state.inner if isinstance(state, FusedState) else state
    slot = _is_slot(layout)
    items = jax.tree.leaves(inner, is_leaf=slot)
    flat: list[Any] = []
    for item in items:
        if slot(item):
            flat.extend(x for x in layout.unpack_leaves(item, offsets) if x is not None)
        else:
            flat.append(item)
    target = jax.eval_shape(tx.init, layout.leaf_view())
    want, treedef = jax.tree.flatten(target)
    if len(flat) != len(want):
        raise JoptError(
            f"state_to_per_leaf: the packed state unpacks to {len(flat)} arrays but the "
            f"optimizer's per-leaf state has {len(want)}; pass the state of this optimizer"
        )
    for got, w in zip(flat, want, strict=True):
        _check_leaf(got, w, "state_to_per_leaf")
    return jax.tree.unflatten(treedef, flat)


def state_to_packed(tx: Any, layout: PackLayout, state: Any, *, offsets: bool = True) -> FusedState:
    """The packed state (a :class:`FusedState` on ``layout``) holding per-leaf ``state``.

    The inverse of :func:`state_to_per_leaf`; ``offsets=False`` stores no leaf offsets (as
    ``dynamic_offsets=False`` does).
    """
    target = packed_state_shapes(tx, layout)[0]
    slot = _is_slot(layout)
    items, treedef = jax.tree.flatten(target, is_leaf=slot)
    leaves = jax.tree.leaves(state)
    need = sum(
        len(jax.tree.leaves(layout.leaf_view([g for g, v in x.items() if v is not None])))
        if slot(x)
        else 1
        for x in items
    )
    if need != len(leaves):
        raise JoptError(
            f"state_to_packed: the per-leaf state has {len(leaves)} arrays but the optimizer's "
            f"state has {need}; pass the state of this optimizer for these parameters"
        )
    pos, out = 0, []
    for item in items:
        if slot(item):
            view = layout.leaf_view([g for g, v in item.items() if v is not None])
            k = len(jax.tree.leaves(view))
            chunk = leaves[pos : pos + k]
            pos += k
            for got, w in zip(chunk, jax.tree.leaves(view), strict=False):
                _check_leaf(got, w, "state_to_packed")
            out.append(
                layout.pack_partial(jax.tree.unflatten(jax.tree.structure(view), chunk), item)
            )
        else:
            _check_leaf(leaves[pos], item, "state_to_packed")
            out.append(leaves[pos])
            pos += 1
    inner = jax.tree.unflatten(treedef, out)
    return FusedState(inner=inner, offsets=layout.offsets() if offsets else ())

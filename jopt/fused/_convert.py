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
import jax.numpy as jnp
import numpy as np

from jopt.core import JoptError
from jopt.fused._classes import layout_scope
from jopt.fused._fused import FusedState
from jopt.fused._layout import PackLayout


def _is_slot(layout: PackLayout):
    groups = set(layout.groups)

    def check(x: Any) -> bool:
        return isinstance(x, dict) and bool(x) and set(x) <= groups

    return check


def _abstract_params(layout: PackLayout) -> Any:
    return layout.leaf_view()


def _packed_target(tx: Any, layout: PackLayout) -> Any:
    packed = {
        g: jax.ShapeDtypeStruct((n,), jnp.dtype(layout.dtype_of(g))) for g, n in layout.sizes
    }
    with layout_scope(layout):
        return jax.eval_shape(tx.init, packed)


def _check_leaf(got: Any, want: Any, where: str) -> None:
    if tuple(np.shape(got)) != tuple(want.shape):
        raise JoptError(
            f"{where}: a state leaf of shape {tuple(np.shape(got))} where {tuple(want.shape)} "
            "was expected; pass the state of this optimizer for these parameters"
        )


def state_to_per_leaf(tx: Any, layout: PackLayout, state: Any) -> Any:
    """The state ``tx.init(params)`` would have, holding the values of packed ``state``.

    ``state`` is a :class:`FusedState` (or its ``inner``) made on ``layout``'s buffers.

    Raises:
        JoptError: when ``state`` does not belong to ``tx`` on this layout.
    """
    inner = state.inner if isinstance(state, FusedState) else state
    is_slot = _is_slot(layout)
    items = jax.tree.leaves(inner, is_leaf=is_slot)
    flat: list[Any] = []
    for item in items:
        if is_slot(item):
            flat.extend(x for x in layout.unpack_leaves(item) if x is not None)
        else:
            flat.append(item)
    target = jax.eval_shape(tx.init, _abstract_params(layout))
    want, treedef = jax.tree.flatten(target)
    if len(flat) != len(want):
        raise JoptError(
            f"state_to_per_leaf: the packed state unpacks to {len(flat)} arrays but the "
            f"optimizer's per-leaf state has {len(want)}; pass the state of this optimizer"
        )
    for got, w in zip(flat, want, strict=True):
        _check_leaf(got, w, "state_to_per_leaf")
    return jax.tree.unflatten(treedef, flat)


def state_to_packed(
    tx: Any, layout: PackLayout, state: Any, *, offsets: bool = True
) -> FusedState:
    """The packed state (a :class:`FusedState` on ``layout``) holding per-leaf ``state``.

    The inverse of :func:`state_to_per_leaf`; ``offsets=False`` stores no leaf offsets (as
    ``dynamic_offsets=False`` does).
    """
    target = _packed_target(tx, layout)
    is_slot = _is_slot(layout)
    items, treedef = jax.tree.flatten(target, is_leaf=is_slot)
    leaves = jax.tree.leaves(state)
    pos, out = 0, []
    for item in items:
        if is_slot(item):
            view = layout.unpack_partial(item)
            k = len(jax.tree.leaves(view))
            chunk = leaves[pos : pos + k]
            pos += k
            for got, w in zip(chunk, jax.tree.leaves(view), strict=False):
                _check_leaf(got, w, "state_to_packed")
            out.append(layout.pack_partial(jax.tree.unflatten(jax.tree.structure(view), chunk),
                                           item))
        else:
            if pos < len(leaves):
                _check_leaf(leaves[pos], item, "state_to_packed")
            out.append(leaves[pos] if pos < len(leaves) else None)
            pos += 1
    if pos != len(leaves):
        raise JoptError(
            f"state_to_packed: the per-leaf state has {len(leaves)} arrays but the optimizer's "
            f"packed state needs {pos}; pass the state of this optimizer for these parameters"
        )
    inner = jax.tree.unflatten(treedef, out)
    return FusedState(inner=inner, offsets=layout.offsets() if offsets else ())

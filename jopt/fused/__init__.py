"""Packed execution: optimizer maths on a few flat buffers instead of leaf by leaf.

- :func:`packed_train_step`: ``(loss_fn, params, tx)`` -> a packed train step (the fast path:
  parameters, gradients and state packed).
- :func:`fuse` (``jopt.fuse``): ``tx`` with its state packed, the parameters a tree (a drop-in
  for any train step).
- :func:`packed_layout`: the buffers ``tx`` needs, one per (dtype, leaf class); masks, groups
  and per-leaf norms are exact on them.
- :func:`state_to_per_leaf` / :func:`state_to_packed`: convert optimizer states between the two
  layouts.
"""

from jopt.fused._classes import layout_scope, leaf_classes, packed_layout
from jopt.fused._convert import state_to_packed, state_to_per_leaf
from jopt.fused._fused import FusedState, fuse, pad_scope, per_leaf
from jopt.fused._layout import LeafSlot, PackLayout, pack, pack_layout
from jopt.fused._step import on_buffers, packed_init, packed_step
from jopt.fused._train import (
    PackedState,
    Unpacker,
    packed_train_step,
    unread_buffers,
    unread_leaves,
)

__all__ = [
    "FusedState",
    "LeafSlot",
    "PackLayout",
    "PackedState",
    "Unpacker",
    "fuse",
    "layout_scope",
    "leaf_classes",
    "on_buffers",
    "pack",
    "pack_layout",
    "packed_init",
    "packed_layout",
    "packed_step",
    "packed_train_step",
    "pad_scope",
    "per_leaf",
    "state_to_packed",
    "state_to_per_leaf",
    "unread_buffers",
    "unread_leaves",
]

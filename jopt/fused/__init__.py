"""Fused execution: optimizer maths on packed buffers, one per dtype, instead of per leaf."""

from jopt.fused._fused import FusedState, fused, pad_scope, per_leaf
from jopt.fused._layout import LeafSlot, PackLayout, pack, pack_layout
from jopt.fused._step import packed_init, packed_step

# ``jopt.fused`` (the package attribute of ``jopt``) is the function ``fused``; give it the
# package's helpers as attributes so ``jopt.fused.packed_step`` and friends read naturally.
for _name in (
    "FusedState",
    "pack",
    "pack_layout",
    "packed_init",
    "packed_step",
    "pad_scope",
    "per_leaf",
):
    setattr(fused, _name, globals()[_name])
del _name

__all__ = [
    "FusedState",
    "LeafSlot",
    "PackLayout",
    "fused",
    "pack",
    "pack_layout",
    "packed_init",
    "packed_step",
    "pad_scope",
    "per_leaf",
]

"""Packing a pytree of arrays into a few flat buffers, one per dtype, and back.

A :class:`PackLayout` is static (hashable Python data, never traced): the tree structure and,
for every leaf, the buffer it lives in, its offset, size and shape. Packing concatenates the
raveled leaves of each dtype group; unpacking slices them back out. Both are pure ``jnp`` code,
so they run under ``jit``, ``grad`` and ``vmap``.

The packed form of a tree is a ``dict`` ``{dtype name: 1-D buffer}``, itself a pytree, so any
transform that treats its input as a tree of independent arrays runs on it unchanged.

With ``multiple_of=N`` every buffer is padded with zeros at its end to a multiple of ``N``
elements, so that it splits evenly over ``N`` devices (ZeRO-1 over packed state). The padding
belongs to no leaf: packing writes zeros there, unpacking never reads it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jopt.core.errors import JoptError


@dataclasses.dataclass(frozen=True)
class LeafSlot:
    """Where one leaf lives in the packed buffers."""

    group: str
    offset: int
    size: int
    shape: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class PackLayout:
    """How a tree maps onto its packed buffers (one per dtype).

    Attributes:
        treedef: the structure of the original tree (``None`` leaves stay ``None``).
        slots: one :class:`LeafSlot` per array leaf, in ``jax.tree.leaves`` order.
        sizes: ``{group: buffer length}``, with groups named by dtype (``"float32"``...): the
            elements of its leaves, plus the zero padding up to a multiple of ``multiple_of``.
        multiple_of: every buffer length is a multiple of it (``1``: no padding).
    """

    treedef: Any
    slots: tuple[LeafSlot, ...]
    sizes: tuple[tuple[str, int], ...]
    multiple_of: int = 1

    @property
    def groups(self) -> tuple[str, ...]:
        """The buffer names, sorted."""
        return tuple(g for g, _ in self.sizes)

    @property
    def num_leaves(self) -> int:
        return len(self.slots)

    def used(self, group: str) -> int:
        """Elements of buffer ``group`` that hold leaves (its length minus the padding)."""
        return sum(s.size for s in self.slots if s.group == group)

    def padding(self, group: str) -> int:
        """Zero elements at the end of buffer ``group``."""
        return dict(self.sizes)[group] - self.used(group)

    def pack(self, tree: Any, *, cast: bool = True) -> dict[str, jax.Array]:
        """Concatenate the leaves of ``tree`` (structure of this layout) into its buffers.

        With ``cast=True`` each leaf is cast to its group's dtype. With ``cast=False`` leaves keep
        their own dtype (used to pack parameters alongside updates of another dtype); the
        leaves of one group must then share a dtype.
        """
        leaves, treedef = jax.tree.flatten(tree)
        if treedef != self.treedef:
            raise JoptError(
                f"cannot pack a tree of structure {treedef}; the layout was built for "
                f"{self.treedef}"
            )
        parts: dict[str, list[jax.Array]] = {g: [] for g in self.groups}
        for slot, leaf in zip(self.slots, leaves, strict=True):
            leaf = jnp.asarray(leaf)
            if tuple(leaf.shape) != slot.shape:
                raise JoptError(
                    f"cannot pack a leaf of shape {tuple(leaf.shape)} into a slot of shape "
                    f"{slot.shape}; pack trees with the structure the layout was built from"
                )
            flat = jnp.ravel(leaf)
            parts[slot.group].append(flat.astype(slot.group) if cast else flat)
        if not cast:
            for g, p in parts.items():
                dtypes = sorted({x.dtype.name for x in p})
                if len(dtypes) > 1:
                    raise JoptError(
                        f"cannot pack leaves of dtypes {dtypes} into one buffer {g!r}; "
                        "parameters sharing an update dtype must share a dtype"
                    )
        for g, p in parts.items():
            pad = self.padding(g)
            if pad:  # zeros: a zero gradient keeps zero moments, adds nothing to global norms
                p.append(jnp.zeros((pad,), p[0].dtype))
        return {g: p[0] if len(p) == 1 else jnp.concatenate(p) for g, p in parts.items()}

    def offsets(self) -> tuple[jax.Array, ...]:
        """One int32 scalar array per leaf: where it starts in its buffer.

        Pass them to :meth:`unpack` as *runtime* arguments (keep them in the state, as
        :func:`jopt.fused` does). XLA then sees the same "slice ``size`` values at offset ``o``"
        kernel for every leaf of a given size and compiles it once; with constant offsets every
        leaf is a different kernel, and XLA:CPU compile time grows by tens of milliseconds per
        leaf.
        """
        return tuple(jnp.asarray(s.offset, jnp.int32) for s in self.slots)

    def unpack(self, packed: dict[str, jax.Array], offsets: Any = None) -> Any:
        """Slice the buffers back into a tree with the original structure, shapes and dtypes.

        Without ``offsets``: one static ``split`` per buffer. With ``offsets`` (from
        :meth:`offsets`, as runtime arrays): one dynamic slice per leaf, whose gradient is one
        concatenation per buffer (a custom VJP), never a buffer-sized pad per leaf.
        """
        missing = set(self.groups) - set(packed)
        if missing:
            raise JoptError(
                f"packed buffers are missing groups {sorted(missing)}; expected {list(self.groups)}"
            )
        if offsets is not None and len(offsets) > 0:
            if len(offsets) != len(self.slots):
                raise JoptError(
                    f"got {len(offsets)} offsets for a layout of {len(self.slots)} leaves"
                )
            leaves = _dynamic_unpack(self, dict(packed), tuple(offsets))
            return jax.tree.unflatten(self.treedef, leaves)
        # One ``split`` per buffer, not one ``slice`` per leaf: the transpose of ``split`` is a
        # single concatenation, whereas each ``slice`` transposes to a full-size ``pad`` that
        # the backward pass then sums (quadratic in the leaf count; seconds per step).
        pieces: dict[str, list[jax.Array]] = {}
        for g in self.groups:
            bounds = [s.offset for s in self.slots if s.group == g][1:]
            if self.padding(g):
                bounds.append(self.used(g))  # the last piece is the padding, never read
            buf = packed[g]
            pieces[g] = [buf] if not bounds else jnp.split(buf, bounds)
        taken = dict.fromkeys(self.groups, 0)
        leaves = []
        for slot in self.slots:
            leaves.append(pieces[slot.group][taken[slot.group]].reshape(slot.shape))
            taken[slot.group] += 1
        return jax.tree.unflatten(self.treedef, leaves)

    def segment_ids(self, group: str) -> np.ndarray:
        """For buffer ``group``, the index of the leaf each element belongs to (numpy, static).

        Leaf indices are positions in ``jax.tree.leaves`` order; use them with
        ``jax.ops.segment_sum`` to compute per-leaf reductions on a packed buffer. Padding
        elements get ``num_leaves`` (out of range for ``num_segments=num_leaves``, so dropped).
        """
        ids = np.full((dict(self.sizes)[group],), self.num_leaves, np.int32)
        for i, slot in enumerate(self.slots):
            if slot.group == group:
                ids[slot.offset : slot.offset + slot.size] = i
        return ids

    def nbytes(self) -> int:
        """Bytes of one packed copy of the tree."""
        return sum(n * jnp.dtype(g).itemsize for g, n in self.sizes)


def _slice_leaves(layout: PackLayout, packed, offsets):
    return [
        jax.lax.dynamic_slice_in_dim(packed[s.group], off, s.size).reshape(s.shape)
        for s, off in zip(layout.slots, offsets, strict=True)
    ]


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _dynamic_unpack(layout: PackLayout, packed, offsets):
    return _slice_leaves(layout, packed, offsets)


def _dynamic_unpack_fwd(layout, packed, offsets):
    return _slice_leaves(layout, packed, offsets), offsets


def _dynamic_unpack_bwd(layout, offsets, cts):
    # The leaves tile each buffer in order, so the cotangent of the buffer is the
    # concatenation of the leaves' cotangents (the transpose of ``dynamic_slice`` would be a
    # buffer-sized ``dynamic_update_slice`` of zeros per leaf).
    grads = layout.pack(jax.tree.unflatten(layout.treedef, list(cts)))
    return grads, tuple(None for _ in offsets)


_dynamic_unpack.defvjp(_dynamic_unpack_fwd, _dynamic_unpack_bwd)


def _group_name(dtype: Any) -> str:
    return jnp.dtype(dtype).name


def _check_multiple(multiple_of: Any, what: str) -> int:
    if isinstance(multiple_of, bool) or not isinstance(multiple_of, int | np.integer):
        raise JoptError(f"{what} must be a positive integer, got {multiple_of!r}")
    if multiple_of < 1:
        raise JoptError(f"{what} must be a positive integer, got {multiple_of}")
    return int(multiple_of)


def pack_layout(tree: Any, *, multiple_of: int = 1) -> PackLayout:
    """The :class:`PackLayout` of ``tree``: leaves grouped by dtype, in tree order.

    Only shapes and dtypes are read, so ``tree`` may hold ``jax.ShapeDtypeStruct`` or tracers.
    ``multiple_of=N`` pads each buffer with zeros to a multiple of ``N`` elements (so it splits
    evenly over ``N`` devices).

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> layout = jopt.pack_layout({"w": jnp.ones((2, 3)), "b": jnp.zeros(3)})
        >>> packed = layout.pack({"w": jnp.ones((2, 3)), "b": jnp.zeros(3)})
        >>> packed["float32"].shape
        (9,)
    """
    multiple_of = _check_multiple(multiple_of, "multiple_of")
    leaves, treedef = jax.tree.flatten(tree)
    offsets: dict[str, int] = {}
    slots = []
    for leaf in leaves:
        if not hasattr(leaf, "shape") or not hasattr(leaf, "dtype"):
            leaf = jnp.asarray(leaf)
        group = _group_name(leaf.dtype)
        shape = tuple(int(d) for d in leaf.shape)
        size = math.prod(shape)
        off = offsets.get(group, 0)
        slots.append(LeafSlot(group=group, offset=off, size=size, shape=shape))
        offsets[group] = off + size
    sizes = tuple(sorted((g, -(-n // multiple_of) * multiple_of) for g, n in offsets.items()))
    return PackLayout(treedef=treedef, slots=tuple(slots), sizes=sizes, multiple_of=multiple_of)


def pack(tree: Any, *, multiple_of: int = 1) -> tuple[dict[str, jax.Array], PackLayout]:
    """Pack ``tree`` into ``({dtype: buffer}, layout)``; ``layout.unpack`` inverts it.

    ``multiple_of`` pads each buffer with zeros, as in :func:`pack_layout`.
    """
    layout = pack_layout(tree, multiple_of=multiple_of)
    return layout.pack(tree), layout

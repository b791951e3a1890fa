"""Packing a pytree of arrays into a few flat buffers, one per (dtype, class), and back.

A :class:`PackLayout` is static (hashable Python data, never traced): the tree structure and,
for every leaf, the buffer it lives in, its offset, size, shape and dtype. Packing concatenates
the raveled leaves of each buffer; unpacking slices them back out. Both are pure ``jnp`` code,
so they run under ``jit``, ``grad`` and ``vmap``.

The packed form of a tree is a ``dict`` ``{buffer name: 1-D buffer}``, itself a pytree, so any
transform that treats its input as a tree of independent arrays runs on it unchanged. Leaves
are grouped by dtype and, when ``classes`` are given, by class too (one class per combination
of the labels an optimizer gives a leaf: its parameter group, its weight-decay mask...). A dtype
with one class names its buffer by the dtype (``"float32"``); several classes are
``"float32.0"``, ``"float32.1"``... in order of their first leaf.

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

# Fewer leaves than this always get dynamic views (see PackLayout.dynamic_views).
STATIC_VIEWS_MIN_LEAVES = 256


@dataclasses.dataclass(frozen=True)
class LeafSlot:
    """Where one leaf lives in the packed buffers."""

    group: str
    offset: int
    size: int
    shape: tuple[int, ...]
    dtype: str = ""


@dataclasses.dataclass(frozen=True)
class PackLayout:
    """How a tree maps onto its packed buffers (one per dtype and class).

    Attributes:
        treedef: the structure of the original tree (``None`` leaves stay ``None``).
        slots: one :class:`LeafSlot` per array leaf, in ``jax.tree.leaves`` order.
        sizes: ``{buffer: length}``, buffers named by dtype (``"float32"``, or
            ``"float32.0"``... when a dtype has several classes): the elements of its leaves,
            plus the zero padding up to a multiple of ``multiple_of``.
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

    @property
    def dynamic_views(self) -> bool:
        """Whether a train step should cut the model's leaves out of the buffers as dynamic
        slices at runtime offsets (:meth:`offsets`) rather than one static split per buffer.

        ``False`` only for many leaves (at least :data:`STATIC_VIEWS_MIN_LEAVES`) none of which
        repeats a shape of two or more dimensions. Such leaves fuse into a few kernels that are
        distinct anyway, and every dynamic slice fused into a kernel adds index arithmetic
        that LLVM optimizes slice by slice: 2000 leaves of shape ``(4,)`` compile in 5 s
        static, 30 s dynamic. Repeated layers (a matrix shape held twice) keep dynamic slices:
        XLA:CPU compiles one kernel per *distinct* fused computation, and a static slice fused
        into a layer's kernel makes it distinct (50 blocks: 464 kernels instead of 23). Small
        models keep them too (quickstart: 7900 steps/s dynamic, 6800 static). Both give the
        same values.
        """
        if len(self.slots) < STATIC_VIEWS_MIN_LEAVES:
            return True
        seen: set = set()
        for s in self.slots:
            if len(s.shape) >= 2:
                if s.shape in seen:
                    return True
                seen.add(s.shape)
        return False

    def view_offsets(self, offsets: Any) -> Any:
        """What a train step cuts the model's views with: ``offsets`` (one per leaf, from
        :meth:`offsets`) when :attr:`dynamic_views`, else ``None`` (static splits)."""
        return offsets if len(offsets) == self.num_leaves and self.dynamic_views else None

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
            parts[slot.group].append(flat.astype(slot.dtype) if cast else flat)
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
        missing = set(self.groups) - {g for g, v in packed.items() if v is not None}
        if missing:
            raise JoptError(
                f"packed buffers are missing groups {sorted(missing)}; expected {list(self.groups)}"
            )
        return jax.tree.unflatten(self.treedef, self.unpack_leaves(packed, offsets))

    def unpack_leaves(self, packed: dict[str, Any], offsets: Any = None) -> list[Any]:
        """The leaves (``jax.tree.leaves`` order) of the buffers in ``packed``; ``None`` for
        the leaves of buffers that ``packed`` lacks or holds as ``None``."""
        present = tuple(g for g in self.groups if packed.get(g) is not None)
        if offsets is not None and len(offsets) > 0:
            if len(offsets) != len(self.slots):
                raise JoptError(
                    f"got {len(offsets)} offsets for a layout of {len(self.slots)} leaves"
                )
            sub = {g: packed[g] for g in present}
            mine = tuple(o for o, s in zip(offsets, self.slots, strict=True) if s.group in present)
            got = iter(_dynamic_unpack(self, present, sub, mine))
            return [next(got) if s.group in present else None for s in self.slots]
        # One ``split`` per buffer, not one ``slice`` per leaf: the transpose of ``split`` is a
        # single concatenation, whereas each ``slice`` transposes to a full-size ``pad`` that
        # the backward pass then sums (quadratic in the leaf count; seconds per step).
        pieces: dict[str, list[jax.Array]] = {}
        for g in present:
            bounds = [s.offset for s in self.slots if s.group == g][1:]
            if self.padding(g):
                bounds.append(self.used(g))  # the last piece is the padding, never read
            buf = packed[g]
            pieces[g] = [buf] if not bounds else jnp.split(buf, bounds)
        taken = dict.fromkeys(present, 0)
        leaves: list[Any] = []
        for slot in self.slots:
            if slot.group not in present:
                leaves.append(None)
                continue
            leaves.append(pieces[slot.group][taken[slot.group]].reshape(slot.shape))
            taken[slot.group] += 1
        return leaves

    def pack_leaves(self, leaves: list[Any], groups: Any) -> dict[str, jax.Array]:
        """Buffers ``groups`` from ``leaves`` (``jax.tree.leaves`` order, ``None`` elsewhere).

        The leaves keep their dtype (state slots may be wider than their parameters); the
        padding is zeros.
        """
        out = {}
        for g in groups:
            parts = [jnp.ravel(x) for x, s in zip(leaves, self.slots, strict=True) if s.group == g]
            dtype = parts[0].dtype if parts else jnp.dtype(self.dtype_of(g))
            if self.padding(g):
                parts.append(jnp.zeros((self.padding(g),), dtype))
            out[g] = parts[0] if len(parts) == 1 else jnp.concatenate(parts)
        return out

    def unpack_partial(self, packed: dict[str, Any]) -> Any:
        """:meth:`unpack` of some buffers: ``None`` for the leaves of the others."""
        return jax.tree.unflatten(self.treedef, self.unpack_leaves(packed))

    def pack_partial(self, tree: Any, like: dict[str, Any]) -> dict[str, Any]:
        """Inverse of :meth:`unpack_partial`: the buffers ``like`` holds (``None`` elsewhere).

        ``tree`` has the structure of ``unpack_partial(like)``; its leaves keep their dtype.
        """
        present = [g for g, v in like.items() if v is not None]
        it = iter(jax.tree.leaves(tree))
        leaves = [next(it) if s.group in present else None for s in self.slots]
        packed = self.pack_leaves(leaves, present)
        return {g: packed.get(g) for g in like}

    def dtype_of(self, group: str) -> str:
        """The dtype (name) of buffer ``group``'s leaves."""
        for s in self.slots:
            if s.group == group:
                return s.dtype or s.group
        return group.split(".")[0]

    def leaf_view(self, groups: Any = None) -> Any:
        """The tree as ``jax.ShapeDtypeStruct`` leaves; ``None`` for leaves outside ``groups``."""
        keep = set(self.groups if groups is None else groups)
        return jax.tree.unflatten(
            self.treedef,
            [
                jax.ShapeDtypeStruct(s.shape, jnp.dtype(s.dtype or s.group))
                if s.group in keep
                else None
                for s in self.slots
            ],
        )

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
        return sum(n * jnp.dtype(self.dtype_of(g)).itemsize for g, n in self.sizes)


def _slice_leaves(layout: PackLayout, groups, packed, offsets):
    slots = [s for s in layout.slots if s.group in groups]
    return [
        jax.lax.dynamic_slice_in_dim(packed[s.group], off, s.size).reshape(s.shape)
        for s, off in zip(slots, offsets, strict=True)
    ]


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _dynamic_unpack(layout: PackLayout, groups: tuple, packed, offsets):
    return _slice_leaves(layout, groups, packed, offsets)


def _dynamic_unpack_fwd(layout, groups, packed, offsets):
    return _slice_leaves(layout, groups, packed, offsets), offsets


def _dynamic_unpack_bwd(layout, groups, offsets, cts):
    # The leaves tile each buffer in order, so the cotangent of the buffer is the
    # concatenation of the leaves' cotangents (the transpose of ``dynamic_slice`` would be a
    # buffer-sized ``dynamic_update_slice`` of zeros per leaf).
    it = iter(cts)
    leaves = [next(it) if s.group in groups else None for s in layout.slots]
    grads = layout.pack_leaves(leaves, groups)
    grads = {g: grads[g].astype(layout.dtype_of(g)) for g in groups}
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


def pack_layout(tree: Any, *, multiple_of: int = 1, classes: Any = None) -> PackLayout:
    """The :class:`PackLayout` of ``tree``: leaves grouped by dtype (and class), in tree order.

    Only shapes and dtypes are read, so ``tree`` may hold ``jax.ShapeDtypeStruct`` or tracers.
    ``multiple_of=N`` pads each buffer with zeros to a multiple of ``N`` elements (so it splits
    evenly over ``N`` devices). ``classes`` is one hashable per leaf (``jax.tree.leaves``
    order): leaves of one dtype but different classes go to different buffers.
    :func:`jopt.fused.packed_layout` finds the classes an optimizer needs.

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> layout = jopt.pack_layout({"w": jnp.ones((2, 3)), "b": jnp.zeros(3)})
        >>> packed = layout.pack({"w": jnp.ones((2, 3)), "b": jnp.zeros(3)})
        >>> packed["float32"].shape
        (9,)
    """
    multiple_of = _check_multiple(multiple_of, "multiple_of")
    leaves, treedef = jax.tree.flatten(tree)
    if classes is None:
        classes = [None] * len(leaves)
    classes = list(classes)
    if len(classes) != len(leaves):
        raise JoptError(f"pack_layout: got {len(classes)} classes for {len(leaves)} leaves")
    infos = []
    for leaf in leaves:
        if not hasattr(leaf, "shape") or not hasattr(leaf, "dtype"):
            leaf = jnp.asarray(leaf)
        infos.append((_group_name(leaf.dtype), tuple(int(d) for d in leaf.shape)))
    # Classes of each dtype, in order of their first leaf; one class keeps the dtype's name.
    per_dtype: dict[str, list] = {}
    for (dt, _), c in zip(infos, classes, strict=True):
        seen = per_dtype.setdefault(dt, [])
        if c not in seen:
            seen.append(c)

    def buffer_of(dt: str, c: Any) -> str:
        kinds = per_dtype[dt]
        return dt if len(kinds) == 1 else f"{dt}.{kinds.index(c)}"

    offsets: dict[str, int] = {}
    slots = []
    for (dt, shape), c in zip(infos, classes, strict=True):
        group = buffer_of(dt, c)
        size = math.prod(shape)
        off = offsets.get(group, 0)
        slots.append(LeafSlot(group=group, offset=off, size=size, shape=shape, dtype=dt))
        offsets[group] = off + size
    sizes = tuple(sorted((g, -(-n // multiple_of) * multiple_of) for g, n in offsets.items()))
    return PackLayout(treedef=treedef, slots=tuple(slots), sizes=sizes, multiple_of=multiple_of)


def pack(tree: Any, *, multiple_of: int = 1) -> tuple[dict[str, jax.Array], PackLayout]:
    """Pack ``tree`` into ``({dtype: buffer}, layout)``; ``layout.unpack`` inverts it.

    ``multiple_of`` pads each buffer with zeros, as in :func:`pack_layout`.
    """
    layout = pack_layout(tree, multiple_of=multiple_of)
    return layout.pack(tree), layout

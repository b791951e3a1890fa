"""Fused execution: run a gradient transformation over packed buffers.

``fused(tx)`` packs the updates (and parameters) into one flat buffer per dtype, runs ``tx`` on
the ``{dtype: buffer}`` dict as if it were the parameter tree, and slices the result back. The
state of ``tx`` is created on the packed buffers, so it *stays packed* across steps: Adam's
``mu`` and ``nu`` are one buffer each, not one array per leaf. Per step the work is one
concatenation of the gradients, the transform's maths on a handful of buffers, and one slice per
leaf of the result (which XLA fuses into the consumer, usually ``apply_updates``). The number of
distinct kernels the optimizer compiles to no longer grows with the number of leaves.

Which transforms are exact under packing:

- elementwise maths (everything written with ``jopt.core.map_elementwise`` or ``jax.tree.map``,
  jopt's and optax's alike: Adam, AdamW, SGD with momentum, RMSProp, sign, scaling, weight decay);
- global reductions (global-norm clipping, a global gradient norm): the sum of squares over a
  concatenation equals the sum over the leaves.

Transforms that need per-leaf structure (a per-leaf norm as in LAMB/LARS trust ratios, factored
moments that read a leaf's shape) are *not* exact on a packed buffer. Wrap them in
:func:`per_leaf` inside the fused chain: that piece then unpacks, runs leaf by leaf, and repacks.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
from collections.abc import Iterator
from typing import Any, NamedTuple

import jax

from jopt.core import GradientTransformation, JoptError, call_update
from jopt.fused._layout import PackLayout, _check_multiple, pack_layout

# The layout of the packed tree currently being processed by a fused transform. It is set only
# while ``fused`` calls its inner ``init``/``update`` (at trace time, it is static Python data),
# so that :func:`per_leaf` pieces inside the chain can unpack and repack.
_CURRENT_LAYOUT: contextvars.ContextVar[PackLayout | None] = contextvars.ContextVar(
    "jopt_fused_layout", default=None
)


# A padding multiple that wrappers around a fused transform ask for (``jopt.distributed.zero1``
# asks for its data-axis size, so the packed buffers split evenly over the devices). Read when
# ``fused`` builds its layout, at trace time.
_PAD_REQUEST: contextvars.ContextVar[int] = contextvars.ContextVar("jopt_fused_pad", default=1)


@contextlib.contextmanager
def pad_scope(multiple_of: int) -> Iterator[None]:
    """Inside this scope, every :func:`fused` transform pads its buffers to a multiple of
    ``multiple_of`` (the least common multiple with its own ``pad_to`` and any outer scope).

    ``jopt.distributed.zero1`` calls its inner ``init`` and ``update`` in
    ``pad_scope(data-axis size)``. Use the same scope for ``init`` and ``update``: the padding
    is part of the state's shapes.
    """
    n = _check_multiple(multiple_of, "pad_scope's multiple_of")
    token = _PAD_REQUEST.set(math.lcm(_PAD_REQUEST.get(), n))
    try:
        yield
    finally:
        _PAD_REQUEST.reset(token)


@contextlib.contextmanager
def _layout_scope(layout: PackLayout | None) -> Iterator[None]:
    token = _CURRENT_LAYOUT.set(layout)
    try:
        yield
    finally:
        _CURRENT_LAYOUT.reset(token)


class FusedState(NamedTuple):
    """State of :func:`fused`.

    Attributes:
        inner: the wrapped transform's state, created on the packed buffers, so its per-parameter
            slots are ``{dtype name: 1-D buffer}`` dicts (one buffer per dtype).
        offsets: one int32 scalar per leaf, where it starts in its buffer. They never change;
            they live in the state so that XLA sees them as data, compiles one slicing kernel
            per leaf *size* instead of one per leaf (see ``PackLayout.offsets``).
    """

    inner: Any
    offsets: tuple = ()


def fused(tx: Any, *, dynamic_offsets: bool = True, pad_to: int = 1) -> GradientTransformation:
    """Run ``tx`` over packed buffers (one per dtype); same results as ``tx``.

    .. math::

        u = \\mathrm{unpack}(\\mathrm{tx.update}(\\mathrm{pack}(g), s, \\mathrm{pack}(\\theta)))

    where ``pack`` concatenates the raveled leaves of each dtype into one buffer and ``unpack``
    slices them back (at offsets kept in the state as data, so XLA compiles one slicing kernel
    per distinct leaf size). The state ``s`` is created on packed buffers and stays packed.

    ``tx`` may be a jopt or an optax transform (``fused(optax.adam(1e-3))`` works). It must be
    elementwise or use only global reductions; wrap per-leaf pieces (trust ratios, factored
    moments) in :func:`per_leaf`. Extra arguments (``value=``...) are forwarded.

    ``dynamic_offsets`` (default) keeps the leaf offsets in the state as data: compile time then
    grows with the number of distinct leaf *sizes*, but each leaf is its own small kernel at run
    time. ``False`` slices at constant offsets: XLA may fuse the slices into their consumers
    (faster steps for thousands of tiny leaves) but compiles a kernel per leaf (slow compiles on
    XLA:CPU). benchmarks/README.md has the figures.

    ``pad_to=N`` pads each buffer (and so each packed state slot) with zeros to a multiple of
    ``N`` elements, so that ZeRO-1 can split it over ``N`` devices (``jopt.distributed.zero1``
    asks for its device count by itself, see :func:`pad_scope`). The padding holds zero
    gradients and zero parameters; elementwise maths gives it zero updates and it adds nothing
    to global norms, and unpacking never reads it, so results equal the unpadded ones. The
    padded length is in the state, and ``update`` keeps the length of the state it is given: a
    state padded for 8 devices goes on under 4, 2 or 1 (e.g. restored from a checkpoint).

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> tx = jopt.fused(jopt.adam(1e-3))
        >>> params = {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}
        >>> state = tx.init(params)
        >>> updates, state = tx.update(params, state, params)
        >>> state.inner[0].mu["float32"].shape
        (9,)
    """
    if not (hasattr(tx, "init") and hasattr(tx, "update")):
        raise JoptError(f"fused expects a gradient transformation (init, update), got {tx!r}")
    pad_to = _check_multiple(pad_to, "fused's pad_to")

    def layout_of(tree):
        return pack_layout(tree, multiple_of=math.lcm(pad_to, _PAD_REQUEST.get()))

    def init_fn(params):
        layout = layout_of(params)
        with _layout_scope(layout):
            offsets = layout.offsets() if dynamic_offsets else ()
            return FusedState(inner=tx.init(layout.pack(params)), offsets=offsets)

    def update_fn(updates, state, params=None, **extra_args):
        # The state's own buffer lengths win over the requested padding, so a state padded for
        # 8 devices (e.g. restored from a checkpoint) keeps working on 4, on 1, or unwrapped.
        layout = _match_state(layout_of(updates), state.inner)
        packed_updates = layout.pack(updates)
        # Under jit an unused packed copy of the parameters is dead code and costs nothing.
        packed_params = None if params is None else layout.pack(params, cast=False)
        with _layout_scope(layout):
            new_updates, inner = call_update(
                tx, packed_updates, state.inner, packed_params, **extra_args
            )
        offsets = state.offsets if len(state.offsets) == layout.num_leaves else None
        return layout.unpack(new_updates, offsets), FusedState(inner, state.offsets)

    return GradientTransformation(init_fn, update_fn)


def _match_state(layout: PackLayout, inner: Any) -> PackLayout:
    """``layout`` with each buffer as long as the packed slots of ``inner`` (padding included).

    Packed slots are the 1-D arrays under a dict key named like a buffer (``mu["float32"]``).
    """
    found: dict[str, set[int]] = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(inner)[0]:
        key = path[-1] if path else None
        is_slot = isinstance(key, jax.tree_util.DictKey) and key.key in layout.groups
        if is_slot and len(getattr(leaf, "shape", ())) == 1:
            found.setdefault(key.key, set()).add(int(leaf.shape[0]))
    sizes = dict(layout.sizes)
    changed = False
    for group, lengths in found.items():
        if len(lengths) != 1:
            continue  # ambiguous: keep the requested layout
        (length,) = lengths
        if length < layout.used(group):
            raise JoptError(
                f"fused state buffer {group!r} has {length} elements but the updates need "
                f"{layout.used(group)}; pass the state made by this transform's init for these "
                "parameters"
            )
        if length != sizes[group]:
            sizes[group], changed = length, True
    if not changed:
        return layout
    return dataclasses.replace(layout, sizes=tuple(sorted(sizes.items())))


def per_leaf(tx: Any) -> GradientTransformation:
    """Mark ``tx`` as needing the real leaves: inside :func:`fused` it unpacks and repacks.

    Use it for the pieces of a fused chain that are not elementwise, for example a LAMB trust
    ratio (a per-leaf norm)::

        jopt.fused(jopt.chain(scale_by_adam(), per_leaf(scale_by_trust_ratio()), scale(-lr)))

    Outside a fused transform it is ``tx`` itself. Its state is per leaf (not packed).
    """
    if not (hasattr(tx, "init") and hasattr(tx, "update")):
        raise JoptError(f"per_leaf expects a gradient transformation (init, update), got {tx!r}")

    def init_fn(params):
        layout = _CURRENT_LAYOUT.get()
        if layout is None:
            return tx.init(params)
        with _layout_scope(None):  # nested fused pieces pack again from scratch
            return tx.init(layout.unpack(params))

    def update_fn(updates, state, params=None, **extra_args):
        layout = _CURRENT_LAYOUT.get()
        if layout is None:
            return call_update(tx, updates, state, params, **extra_args)
        leaves_params = None
        if params is not None:
            leaves_params = layout.unpack(params)
        with _layout_scope(None):
            new_updates, state = call_update(
                tx, layout.unpack(updates), state, leaves_params, **extra_args
            )
        return layout.pack(new_updates), state

    return GradientTransformation(init_fn, update_fn)

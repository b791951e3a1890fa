"""Tree-form fused execution: ``fuse(tx)`` keeps ``tx``'s state packed, the parameters a tree.

``fuse(tx)`` packs the updates (and parameters) into flat buffers, runs ``tx`` on the
``{buffer: array}`` dict as if it were the parameter tree, and slices the result back. The
state of ``tx`` is created on the packed buffers, so it *stays packed* across steps: Adam's
``mu`` and ``nu`` are one buffer each, not one array per leaf. It is a drop-in transform for a
train step that holds an ordinary parameter tree (the runner's, optax's, a user's); when the
step can hold packed parameters too, :func:`jopt.fused.packed_train_step` is faster.

Buffers are split by dtype and by every per-leaf choice ``tx`` declares
(``jopt.core.leaf_labels``: groups, masks), so those stay exact; per-leaf norms
(``jopt.core.leaf_norms``: the LAMB trust ratio) are segment sums. Elementwise maths and global
reductions are exact anyway. A foreign transform that reads a leaf's own shape or norm without
those hooks (an optax ``masked`` with a shape-reading mask, an optax trust ratio) must be
wrapped in :func:`per_leaf`, which unpacks around it.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
from collections.abc import Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jopt.core import (
    GradientTransformation,
    JoptError,
    call_update,
    current_packed_context,
    probe_labels,
)
from jopt.fused._classes import LayoutContext, layout_scope, packed_layout
from jopt.fused._layout import PackLayout, _check_multiple

# A padding multiple that wrappers around a fused transform ask for (``jopt.distributed.zero1``
# asks for its data-axis size, so the packed buffers split evenly over the devices). Read when
# ``fused`` builds its layout, at trace time.
_PAD_REQUEST: contextvars.ContextVar[int] = contextvars.ContextVar("jopt_fused_pad", default=1)


@contextlib.contextmanager
def pad_scope(multiple_of: int) -> Iterator[None]:
    """Inside this scope, every :func:`fuse` transform pads its buffers to a multiple of
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


def _current_layout() -> PackLayout | None:
    ctx = current_packed_context()
    return ctx.layout if isinstance(ctx, LayoutContext) else None


class FusedState(NamedTuple):
    """State of :func:`fuse` (and of :func:`jopt.fused.packed_train_step`'s optimizer).

    Attributes:
        inner: the wrapped transform's state, created on the packed buffers, so its per-parameter
            slots are ``{buffer name: 1-D buffer}`` dicts (one per dtype and leaf class).
        offsets: one int32 scalar per leaf, where it starts in its buffer. They never change;
            they live in the state so that XLA sees them as data, compiles one slicing kernel
            per leaf *size* instead of one per leaf (see ``PackLayout.offsets``).
    """

    inner: Any
    offsets: tuple = ()


def fuse(tx: Any, *, dynamic_offsets: bool = True, pad_to: int = 1) -> FusedTransformation:
    """Run ``tx`` with its state on packed buffers; the same results as ``tx``.

    .. math::

        u = \\mathrm{unpack}(\\mathrm{tx.update}(\\mathrm{pack}(g), s, \\mathrm{pack}(\\theta)))

    where ``pack`` concatenates the raveled leaves of each buffer (one per dtype and leaf
    class, :func:`jopt.fused.packed_layout`) and ``unpack``
    slices them back (at offsets kept in the state as data, so XLA compiles one slicing kernel
    per distinct leaf size). The state ``s`` is created on packed buffers and stays packed.

    ``tx`` may be a jopt or an optax transform (``fuse(optax.adam(1e-3))`` works). jopt's
    groups, masks and trust ratios are exact (see the module docstring); wrap foreign per-leaf
    pieces (optax trust ratios, factored moments) in :func:`per_leaf`. Extra arguments
    (``value=``...) are forwarded.

    Why it exists beside :func:`jopt.fused.packed_train_step`: it changes nothing that the
    train step holds (the parameters stay a tree), so it drops into any existing step, at the
    price of one concatenation of the gradients and one slice per leaf of the updates per step.

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
        >>> tx = jopt.fuse(jopt.adam(1e-3))
        >>> params = {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}
        >>> state = tx.init(params)
        >>> updates, state = tx.update(params, state, params)
        >>> state.inner[0].mu["float32"].shape
        (9,)
    """
    if not (hasattr(tx, "init") and hasattr(tx, "update")):
        raise JoptError(f"fuse expects a gradient transformation (init, update), got {tx!r}")
    pad_to = _check_multiple(pad_to, "fuse's pad_to")
    cache: dict[Any, PackLayout] = {}

    def layout_of(tree):
        multiple = math.lcm(pad_to, _PAD_REQUEST.get())
        leaves, treedef = jax.tree.flatten(tree)
        key = (treedef, tuple((jnp.shape(x), jnp.result_type(x)) for x in leaves), multiple)
        if key not in cache:
            cache[key] = packed_layout(tx, tree, multiple_of=multiple)
        return cache[key]

    def init_fn(params):
        layout = layout_of(params)
        with layout_scope(layout):
            offsets = layout.offsets() if dynamic_offsets else ()
            return FusedState(inner=tx.init(layout.pack(params)), offsets=offsets)

    def update_fn(updates, state, params=None, **extra_args):
        # The state's own buffer lengths win over the requested padding, so a state padded for
        # 8 devices (e.g. restored from a checkpoint) keeps working on 4, on 1, or unwrapped.
        layout = _match_state(layout_of(updates), state.inner)
        packed_updates = layout.pack(updates)
        # Under jit an unused packed copy of the parameters is dead code and costs nothing.
        packed_params = None if params is None else layout.pack(params, cast=False)
        with layout_scope(layout):
            new_updates, inner = call_update(
                tx, packed_updates, state.inner, packed_params, **extra_args
            )
        offsets = state.offsets if len(state.offsets) == layout.num_leaves else None
        return layout.unpack(new_updates, offsets), FusedState(inner, state.offsets)

    out = FusedTransformation(init_fn, update_fn)
    out.layout_for = layout_of
    return out


class FusedTransformation(GradientTransformation):
    """What :func:`fuse` returns: a transform, plus ``layout_for(params)`` (the
    :class:`PackLayout` its state uses for ``params``; read by ``jopt.memory_report``)."""

    # No __slots__: instances carry ``layout_for`` in a __dict__.


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
    """Mark ``tx`` as needing the real leaves: inside packed execution it unpacks and repacks.

    Use it for the pieces of a fused chain that are not elementwise, for example a LAMB trust
    ratio (a per-leaf norm)::

        jopt.fuse(optax.chain(optax.scale_by_adam(), per_leaf(optax.scale_by_trust_ratio())))

    (jopt's own ``scale_by_trust_ratio`` needs no marking: it reduces per leaf with segment
    sums.) Outside packed execution it is ``tx`` itself. Its state is per leaf (not packed).
    """
    if not (hasattr(tx, "init") and hasattr(tx, "update")):
        raise JoptError(f"per_leaf expects a gradient transformation (init, update), got {tx!r}")

    def init_fn(params):
        layout = _current_layout()
        if layout is None:
            with probe_labels():  # runs on the real leaves: nothing to split or refuse
                return tx.init(params)
        with layout_scope(None):  # nested fused pieces pack again from scratch
            return tx.init(layout.unpack_partial(params))

    def update_fn(updates, state, params=None, **extra_args):
        layout = _current_layout()
        if layout is None:
            with probe_labels():
                return call_update(tx, updates, state, params, **extra_args)
        leaves_params = None
        if params is not None:
            leaves_params = layout.unpack_partial(params)
        with layout_scope(None):
            new_updates, state = call_update(
                tx, layout.unpack_partial(updates), state, leaves_params, **extra_args
            )
        return layout.pack_partial(new_updates, updates), state

    return GradientTransformation(init_fn, update_fn)

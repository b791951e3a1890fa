"""How a transform that treats leaves differently stays exact on packed buffers.

Packed execution (``jopt.fused``) runs a transform on a tree whose leaves are flat buffers,
each holding many parameter arrays. Elementwise maths and global reductions need nothing more.
A transform whose maths depends on *which* leaf it is at declares it through one of two
functions, and nothing else:

- :func:`leaf_labels` for per-leaf *choices* (a weight-decay mask, a parameter group, an L1/L2
  mask): ``labels = leaf_labels(tree, fn)`` where ``fn(per_leaf_tree)`` returns a tree of
  hashable labels (bools, group names). On an ordinary tree it is just ``fn(tree)``. On packed
  buffers ``fn`` sees the per-leaf tree (as ``jax.ShapeDtypeStruct`` leaves, so shape-reading
  masks work) and each buffer gets the one label its leaves share. The packer builds the
  buffers so they always share one: before packing it runs the transform once abstractly
  (:func:`probe_labels`) and splits the buffers by every label any call returned.
- :func:`leaf_norms` for per-leaf *reductions* (LAMB/LARS trust ratios, per-leaf clipping): the
  L2 norm of each leaf, as a scalar per leaf on a tree, and as a segment reduction over each
  buffer (the norm of the element's own leaf, per element) when packed.

A transform that cannot be exact on buffers at all (random numbers drawn per leaf) calls
:func:`layout_dependent` with a one-line reason, and packed execution refuses it. State whose
shapes follow each leaf's shape (factored or per-axis statistics, a scalar per leaf) is found
without help: the packer compares the per-leaf and packed states' shapes.

The packer sets a :class:`PackedContext` while it runs the transform; this module only defines
the hook, so the lower layers never import the fused executor.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import jax
import jax.numpy as jnp


class PackedContext(Protocol):
    """What the packer provides while a transform runs on its buffers (see ``jopt.fused``)."""

    def leaf_view(self, packed: Any) -> Any:
        """The per-leaf tree (``ShapeDtypeStruct`` leaves; ``None`` where ``packed`` has no
        buffer) that the packed tree ``packed`` stands for."""

    def buffer_labels(self, packed: Any, labels: Any) -> Any:
        """Per-leaf ``labels`` (structure of ``leaf_view(packed)``) as one label per buffer."""

    def leaf_norms(self, packed: Any) -> Any:
        """Per element of each buffer, the L2 norm of the leaf it belongs to."""


_PACKED: contextvars.ContextVar[PackedContext | None] = contextvars.ContextVar(
    "jopt_packed_context", default=None
)
_PROBE: contextvars.ContextVar[list | None] = contextvars.ContextVar("jopt_probe", default=None)


@contextlib.contextmanager
def packed_context(ctx: PackedContext | None) -> Iterator[None]:
    """Run the body with ``ctx`` as the packed context (``None``: ordinary trees)."""
    token = _PACKED.set(ctx)
    try:
        yield
    finally:
        _PACKED.reset(token)


def current_packed_context() -> PackedContext | None:
    """The packed context in force, or ``None`` when transforms see ordinary trees."""
    return _PACKED.get()


@contextlib.contextmanager
def probe_labels() -> Iterator[list]:
    """Record every :func:`leaf_labels` call made in the body (on ordinary trees).

    Yields a list that fills with ``{leaf path: label}`` dicts, one per call, and with the
    reason strings of :func:`layout_dependent` calls; the packer reads it to split its buffers
    so that every label is constant within a buffer (or to refuse).
    """
    records: list = []
    token = _PROBE.set(records)
    with packed_context(None):
        try:
            yield records
        finally:
            _PROBE.reset(token)


def leaf_labels(tree: Any, fn: Callable[[Any], Any]) -> Any:
    """``fn(tree)``: a tree of hashable per-leaf labels, exact on ordinary and packed trees.

    ``fn`` maps a per-leaf tree to a tree of labels with the same structure (a mask of bools, a
    group name per leaf). On packed buffers the result has one label per buffer (see the module
    docstring); the packer guarantees that a buffer's leaves share it.
    """
    ctx = _PACKED.get()
    if ctx is not None:
        view = ctx.leaf_view(tree)
        return ctx.buffer_labels(tree, fn(view))
    labels = fn(tree)
    records = _PROBE.get()
    if records is not None:
        flat = jax.tree_util.tree_flatten_with_path(tree)[0]
        values = jax.tree.structure(tree).flatten_up_to(labels)
        records.append({path: v for (path, _), v in zip(flat, values, strict=True)})
    return labels


def layout_dependent(reason: str) -> None:
    """Declare that the calling transform cannot run exactly on packed buffers.

    Call it from ``init`` or ``update`` (for example where noise is drawn leaf by leaf);
    packed execution then refuses the optimizer with ``reason`` as its one line. A no-op
    outside the packer's probe.
    """
    records = _PROBE.get()
    if records is not None:
        records.append(str(reason))


def leaf_norms(tree: Any) -> Any:
    """The L2 norm of every leaf of ``tree`` (float32 or wider), exact when packed.

    On an ordinary tree: one scalar per leaf. On packed buffers: an array per buffer, holding at
    each element the norm of the leaf that element belongs to (a segment reduction), so
    ``u * c / leaf_norms(u)`` broadcasts the same way in both cases.
    """
    ctx = _PACKED.get()
    if ctx is not None:
        return ctx.leaf_norms(tree)

    def norm(x):
        a = jnp.abs(jnp.asarray(x))  # real, so complex leaves get |x|^2
        dt = a.dtype if a.dtype.itemsize >= 4 else jnp.dtype(jnp.float32)
        return jnp.sqrt(jnp.sum(jnp.square(a.astype(dt))))

    return jax.tree.map(norm, tree)

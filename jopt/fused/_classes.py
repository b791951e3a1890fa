"""Homogeneous buffers: split the packed buffers by everything an optimizer treats differently.

A transform whose maths depends on which leaf it is at (a weight-decay mask, a parameter group,
an L1/L2 mask) says so through ``jopt.core.leaf_labels``. :func:`packed_layout` runs the
transform once abstractly on the real parameter tree (``jax.eval_shape``: nothing is computed)
while recording those labels, and packs one buffer per (dtype, combination of labels). Inside
packed execution, :class:`LayoutContext` answers the transforms' questions: each buffer gets
the one label its leaves share, so masks and groups are exact by construction. Per-leaf
reductions (``jopt.core.leaf_norms``) are segment sums over each buffer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp

from jopt.core import JoptError, call_update, packed_context, probe_labels
from jopt.fused._layout import PackLayout, pack_layout

_ABSENT = "<absent>"


def _probe(tx: Any, params: Any) -> tuple[list[tuple], list[str]]:
    def spec(x):
        return jax.ShapeDtypeStruct(jnp.shape(x), getattr(x, "dtype", None) or jnp.result_type(x))

    abstract = jax.tree.map(spec, params)

    def run(p):
        state = tx.init(p)

        # the extra arguments jopt.train's step passes (lbfgs, sophia and sam use them)
        def f(q, **_):
            sq = [jnp.vdot(x, x).real.astype(jnp.float32) for x in jax.tree.leaves(q)]
            return sum(sq, jnp.zeros((), jnp.float32))

        extra = dict(grad=p, value_fn=f, obj_fn=f, grad_fn=lambda q, i: q)
        return call_update(tx, p, state, p, value=jnp.zeros((), jnp.float32), **extra)

    with probe_labels() as records:
        try:
            jax.eval_shape(run, abstract)
        except JoptError:
            raise
        except Exception as e:  # one line, not a trace-time traceback
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise JoptError(
                f"packed execution could not trace the optimizer on these parameters: {first}"
            ) from None
    labels = [r for r in records if isinstance(r, dict)]
    reasons = [r for r in records if isinstance(r, str)]
    paths = [path for path, _ in jax.tree_util.tree_flatten_with_path(abstract)[0]]
    return [tuple(rec.get(path, _ABSENT) for rec in labels) for path in paths], reasons


def leaf_classes(tx: Any, params: Any) -> list[tuple]:
    """One class per leaf of ``params`` (``jax.tree.leaves`` order): the labels that every
    ``leaf_labels`` call of ``tx.init`` and ``tx.update`` gave it, as a tuple.

    Leaves with equal classes are treated alike by ``tx``, so they may share a buffer.
    """
    return _probe(tx, params)[0]


def is_slot(layout: PackLayout):
    """A predicate: is a state node a packed slot (a dict keyed by ``layout``'s buffers)?"""
    groups = set(layout.groups)

    def check(x: Any) -> bool:
        return isinstance(x, dict) and bool(x) and set(x) <= groups

    return check


def packed_state_shapes(tx: Any, layout: PackLayout) -> tuple[Any, list[tuple]]:
    """``tx``'s abstract state on ``layout``'s buffers, and the per-leaf shapes it unpacks to."""
    packed = {g: jax.ShapeDtypeStruct((n,), jnp.dtype(layout.dtype_of(g))) for g, n in layout.sizes}
    with layout_scope(layout):
        state = jax.eval_shape(tx.init, packed)
    slot = is_slot(layout)
    shapes: list[tuple] = []
    for item in jax.tree.leaves(state, is_leaf=slot):
        if slot(item):
            present = {g for g, v in item.items() if v is not None}
            shapes += [s.shape for s in layout.slots if s.group in present]
        else:
            shapes.append(tuple(item.shape))
    return state, shapes


def packed_layout(tx: Any, params: Any, *, multiple_of: int = 1) -> PackLayout:
    """The layout that packs ``params`` for ``tx``: one buffer per (dtype, leaf class).

    Every mask, group and other per-leaf choice ``tx`` makes (through ``jopt.core.leaf_labels``)
    is constant within a buffer, so ``tx`` on these buffers equals ``tx`` leaf by leaf.

    Raises:
        JoptError: (one line) when ``tx`` cannot be exact on packed buffers: it declared so
            (``jopt.core.layout_dependent``: noise drawn per leaf), or its state has shapes that
            follow each leaf's shape (factored or per-axis statistics, a scalar per leaf).

    Example:
        >>> import jax.numpy as jnp, jopt
        >>> params = {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}
        >>> tx = jopt.adamw(1e-3, mask={"w": True, "b": False})
        >>> jopt.fused.packed_layout(tx, params).groups
        ('float32.0', 'float32.1')
    """
    classes, reasons = _probe(tx, params)
    if reasons:
        raise JoptError(
            f"packed execution cannot run this optimizer exactly: {reasons[0]}; train it leaf "
            "by leaf, or wrap that part in jopt.fused.per_leaf(...)"
        )
    layout = pack_layout(params, multiple_of=multiple_of, classes=classes)
    per_leaf_state = jax.eval_shape(tx.init, layout.leaf_view())
    per_leaf = [tuple(x.shape) for x in jax.tree.leaves(per_leaf_state)]
    try:
        packed = packed_state_shapes(tx, layout)[1]
    except Exception as e:  # e.g. an init that insists on matrices
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise JoptError(
            f"packed execution cannot run this optimizer: it fails on flat buffers ({first}); "
            "train it leaf by leaf, or wrap that part in jopt.fused.per_leaf(...)"
        ) from None
    if packed != per_leaf:
        raise JoptError(
            "packed execution cannot run this optimizer exactly: its state has shapes that "
            "follow each parameter's shape (factored or per-axis statistics, one value per "
            "leaf); train it leaf by leaf, or wrap that part in jopt.fused.per_leaf(...)"
        )
    return layout


def _present(layout: PackLayout, packed: Any) -> set[str]:
    if not isinstance(packed, dict) or not set(packed) <= set(layout.groups):
        raise JoptError(
            "a per-leaf transform inside packed execution got a tree that is not the packed "
            f"buffers ({type(packed).__name__}); wrap it in jopt.fused.per_leaf(...)"
        )
    return {g for g, v in packed.items() if v is not None}


class LayoutContext:
    """The ``jopt.core`` packed context for one layout (see ``jopt.core._leafwise``)."""

    def __init__(self, layout: PackLayout):
        self.layout = layout

    def leaf_view(self, packed: Any) -> Any:
        return self.layout.leaf_view(_present(self.layout, packed))

    def buffer_labels(self, packed: Any, labels: Any) -> Any:
        present = _present(self.layout, packed)
        view = self.layout.leaf_view(present)
        values = iter(jax.tree.structure(view).flatten_up_to(labels))
        seen: dict[str, set] = {}
        for slot in self.layout.slots:
            if slot.group in present:
                seen.setdefault(slot.group, set()).add(next(values))
        for g, labs in seen.items():
            if len(labs) > 1:
                raise JoptError(
                    f"packed buffer {g!r} holds leaves that the optimizer treats differently "
                    f"({sorted(map(repr, labs))}); build the layout with "
                    "jopt.fused.packed_layout(tx, params)"
                )
        out = {}
        for g, v in packed.items():
            out[g] = None if v is None else (next(iter(seen[g])) if g in seen else True)
        return out

    def leaf_norms(self, packed: Any) -> Any:
        present = _present(self.layout, packed)
        out = {}
        for g, buf in packed.items():
            if g not in present:
                out[g] = None
                continue
            ids, n = _segment_ids(self.layout, g, buf.shape[0])
            a = jnp.abs(buf)
            a = a.astype(a.dtype if a.dtype.itemsize >= 4 else jnp.float32)
            sums = jax.ops.segment_sum(jnp.square(a), ids, num_segments=n)
            out[g] = jnp.sqrt(sums)[ids]
        return out


def _segment_ids(layout: PackLayout, group: str, length: int) -> tuple[jax.Array, int]:
    """Per element of buffer ``group``, the index of its leaf within the buffer (built in the
    graph from a few marks and a cumulative sum, not stored as a buffer-sized constant)."""
    starts = [s.offset for s in layout.slots if s.group == group and s.size > 0]
    marks = starts[1:] + ([layout.used(group)] if length > layout.used(group) else [])
    n = len(marks) + 1
    if not marks:
        return jnp.zeros((length,), jnp.int32), n
    steps = jnp.zeros((length,), jnp.int32).at[jnp.asarray(marks, jnp.int32)].add(1)
    return jnp.cumsum(steps), n


@contextlib.contextmanager
def layout_scope(layout: PackLayout | None) -> Iterator[None]:
    """Transforms run on ``layout``'s buffers in the body (``None``: on ordinary trees)."""
    with packed_context(None if layout is None else LayoutContext(layout)):
        yield

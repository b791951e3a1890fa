"""One call for user code: ``(loss_fn, params, tx)`` -> a packed, jittable train step.

::

    state, step, unpack = jopt.fused.packed_train_step(loss_fn, params, tx)
    step = jax.jit(step, donate_argnums=0)
    for batch in batches:
        state, loss = step(state, *batch)
    params = unpack(state)

``loss_fn(params, *batch)`` takes the ordinary parameter tree (a flax ``params`` dict, an NNX
``nnx.State``, the array part of an equinox module). Parameters, gradients and optimizer state
live in packed buffers, one per (dtype, leaf class) (:func:`jopt.fused.packed_layout`); the
model reads its leaves as views of them, and the gradient arrives packed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jopt.combinators import update_and_apply
from jopt.core import call_update, unread_inputs
from jopt.fused._classes import layout_scope, packed_layout
from jopt.fused._convert import state_to_packed, state_to_per_leaf
from jopt.fused._fused import FusedState
from jopt.fused._layout import PackLayout
from jopt.fused._step import packed_init


class PackedState(NamedTuple):
    """What :func:`packed_train_step`'s step carries.

    Attributes:
        params: ``{buffer name: 1-D array}``, the packed parameters.
        opt_state: the optimizer's :class:`FusedState` on those buffers.
    """

    params: dict
    opt_state: FusedState


class Unpacker:
    """Gets trees back from a :class:`PackedState` (the third value of
    :func:`packed_train_step`).

    ``unpack(state)`` is the parameter tree; :meth:`opt_state` the optimizer state as
    ``tx.init(params)`` would have it; :meth:`pack` goes the other way, so a packed run resumes
    leaf by leaf and a per-leaf run resumes packed.

    Attributes:
        layout: the :class:`PackLayout`.
        tx: the optimizer.
        no_grad: the buffers whose gradient the optimizer never reads (frozen groups): the
            loss closes over their views instead of differentiating them, so the backward
            pass computes no gradient for them.
    """

    def __init__(self, tx: Any, layout: PackLayout, no_grad: frozenset, dynamic: bool):
        self.tx, self.layout, self.no_grad, self._dynamic = tx, layout, no_grad, dynamic

    def __call__(self, state: PackedState) -> Any:
        return self.layout.unpack(state.params)

    def opt_state(self, state: PackedState) -> Any:
        """The per-leaf optimizer state (the structure of ``tx.init(params)``)."""
        return state_to_per_leaf(self.tx, self.layout, state.opt_state)

    def pack(self, params: Any, opt_state: Any = None) -> PackedState:
        """A :class:`PackedState` from a parameter tree and a per-leaf optimizer state
        (``None``: a fresh ``tx.init``)."""
        packed = self.layout.pack(params)
        if opt_state is None:
            opt = packed_init(self.tx, self.layout, packed, dynamic_offsets=self._dynamic)
        else:
            opt = state_to_packed(self.tx, self.layout, opt_state, offsets=self._dynamic)
        return PackedState(packed, opt)


def _unread_gradients(tx: Any, params: Any, layout: PackLayout | None) -> list[bool] | None:
    """Per leaf of ``params`` (abstract): ``True`` when no output of ``tx.update`` reads its
    gradient. ``None`` when the analysis is unavailable."""

    def value_fn(q, **_):
        return sum((jnp.sum(jnp.abs(v)) for v in jax.tree.leaves(q)), jnp.zeros((), jnp.float32))

    def update(grads, params):
        with layout_scope(layout):  # None: ordinary trees
            inner = tx.init(params)
            extra = dict(grad=grads, value_fn=value_fn, obj_fn=value_fn, grad_fn=lambda q, i: q)
            return call_update(tx, grads, inner, params, value=jnp.zeros((), jnp.float32), **extra)

    unread = unread_inputs(update, params, params)
    return None if unread is None else unread[: len(jax.tree.leaves(params))]


def unread_buffers(tx: Any, layout: PackLayout) -> frozenset:
    """The buffers of ``layout`` whose gradient no output of ``tx.update`` depends on.

    Frozen parameter groups (``jopt.groups(..., freeze=True)``, ``jopt.freeze``) land in buffers
    of their own (:func:`jopt.fused.packed_layout`), and ``tx`` never reads their gradient: a
    packed step may then cut their views out of a ``lax.stop_gradient`` of the buffer, so the
    backward pass computes nothing for them (their gradient is zeros). Found by dead-code
    elimination of ``tx.update``'s jaxpr on abstract buffers (nothing is computed); empty when
    the analysis is unavailable, so every gradient is taken then. :func:`unread_leaves` is the
    same for a per-leaf tree.
    """
    packed = {g: jax.ShapeDtypeStruct((n,), jnp.dtype(layout.dtype_of(g))) for g, n in layout.sizes}
    unread = _unread_gradients(tx, packed, layout)
    if unread is None:
        return frozenset()
    return frozenset(n for n, cut in zip(sorted(packed), unread, strict=True) if cut)


def unread_leaves(tx: Any, params: Any) -> tuple[bool, ...]:
    """Per leaf of ``params`` (``jax.tree.leaves`` order): ``True`` when no output of
    ``tx.update`` depends on its gradient (a frozen leaf), as :func:`unread_buffers` finds for
    buffers. ``params`` may be arrays, ``jax.ShapeDtypeStruct`` or tracers; nothing is
    computed. All ``False`` when the analysis is unavailable."""
    unread = _unread_gradients(tx, params, None)
    n = len(jax.tree.leaves(params))
    return tuple(unread) if unread is not None else (False,) * n


def packed_train_step(
    loss_fn: Callable[..., Any],
    params: Any,
    tx: Any,
    *,
    has_aux: bool = False,
    multiple_of: int = 1,
    dynamic_offsets: bool = True,
) -> tuple[PackedState, Callable[..., Any], Unpacker]:
    """Pack ``params`` for ``tx`` and build a pure train step over the packed buffers.

    Returns ``(state, step, unpack)``: ``step(state, *batch) -> (state, loss)`` (``(state,
    (loss, aux))`` with ``has_aux``) is un-jitted (jit it and donate ``state``); ``unpack(state)``
    is the parameter tree, ``unpack.opt_state(state)`` the per-leaf optimizer state and
    ``unpack.pack(params, opt_state)`` converts back. One step is

    .. math::

        g = \\nabla_b\\, L(\\mathrm{views}(b), \\mathrm{batch}), \\quad
        (u, s) = \\mathrm{tx.update}(g, s, b), \\quad b \\leftarrow b + u

    on the buffers ``b`` of :func:`jopt.fused.packed_layout` (one per dtype and leaf class, so
    groups, masks and trust ratios are exact). The results equal ``tx`` leaf by leaf
    (``tests/test_packed_equivalence.py``). Buffers whose gradient ``tx`` never reads (frozen
    groups) are closed over instead of differentiated, so no gradient is computed for them.
    The loss value reaches ``tx`` as ``value=``.

    Example:
        >>> import jax, jax.numpy as jnp, jopt
        >>> def loss_fn(p, x):
        ...     return jnp.sum((p["w"] * x - 1.0) ** 2) + jnp.sum(p["b"] ** 2)
        >>> params = {"w": jnp.zeros(3), "b": jnp.ones(2)}
        >>> state, step, unpack = jopt.fused.packed_train_step(loss_fn, params, jopt.adam(0.1))
        >>> step = jax.jit(step, donate_argnums=0)
        >>> for _ in range(100):
        ...     state, loss = step(state, jnp.ones(3))
        >>> round(float(unpack(state)["w"][0]), 2)
        1.0
    """
    layout = packed_layout(tx, params, multiple_of=multiple_of)
    packed = layout.pack(params)
    opt = packed_init(tx, layout, packed, dynamic_offsets=dynamic_offsets)
    no_grad = unread_buffers(tx, layout)

    def step(state: PackedState, *batch: Any):
        p, s = state.params, state.opt_state
        offsets = layout.view_offsets(s.offsets)
        live = {g: v for g, v in p.items() if g not in no_grad}
        fixed = layout.unpack_leaves({g: v for g, v in p.items() if g in no_grad}, offsets)

        def packed_loss(live):
            # Views: a dynamic slice per leaf (offsets as data) or one split per buffer, whose
            # gradient is one concatenation per buffer; closed-over buffers are never
            # differentiated.
            mine = layout.unpack_leaves(live, offsets)
            leaves = [a if a is not None else b for a, b in zip(mine, fixed, strict=True)]
            return loss_fn(jax.tree.unflatten(layout.treedef, leaves), *batch)

        out, g = jax.value_and_grad(packed_loss, has_aux=has_aux)(live)
        grads = {name: g[name] if name in g else jnp.zeros_like(v) for name, v in p.items()}
        loss = out[0] if has_aux else out
        with layout_scope(layout):  # a non-finite guard goes around the update and p + u
            p, inner = update_and_apply(tx, grads, s.inner, p, value=loss)
        return PackedState(p, FusedState(inner, s.offsets)), out

    return PackedState(packed, opt), step, Unpacker(tx, layout, no_grad, dynamic_offsets)

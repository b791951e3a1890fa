"""Low-level pieces of a train step on persistently packed parameters.

:func:`jopt.fused.packed_train_step` builds the whole step in one call; these are its parts,
for steps written by hand. ``jopt.fuse(tx)`` keeps only the optimizer state packed: every
step still concatenates the gradients and slices the updates back. When you write the train
step yourself you can go further and keep the *parameters* packed too. The model then sees
the leaves through ``layout.unpack`` (a slice per leaf), the gradient arrives already packed
(one concatenation), and the whole optimizer update plus ``apply_updates`` runs on a handful
of buffers::

    tx = jopt.adam(1e-3)                      # used as is on the packed buffers
    layout = jopt.fused.packed_layout(tx, params)   # buffers split by groups and masks
    packed = layout.pack(params)
    state = jopt.fused.packed_init(tx, layout, packed)
    step = jax.jit(jopt.fused.packed_step(loss_fn, tx, layout), donate_argnums=(0, 1))
    for x, y in batches:
        packed, state, loss = step(packed, state, x, y)
    params = layout.unpack(packed)

``loss_fn(params, *batch)`` takes the ordinary parameter tree. The state is a
:class:`FusedState`, exactly what ``jopt.fuse(tx).init(params)`` returns (the packed state of
``tx`` and the leaf offsets as data), and :func:`per_leaf` pieces work here too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from jopt.combinators import update_and_apply
from jopt.core import GradientTransformation, call_update
from jopt.fused._classes import layout_scope
from jopt.fused._fused import FusedState
from jopt.fused._layout import PackLayout


def packed_init(
    tx: Any, layout: PackLayout, packed: dict[str, jax.Array], *, dynamic_offsets: bool = True
) -> FusedState:
    """``FusedState(tx.init(packed), layout.offsets())``, for :func:`packed_step`.

    ``dynamic_offsets=False`` stores no offsets, so the model's leaves are cut at constant
    offsets (see :func:`jopt.fused` for the trade-off).
    """
    with layout_scope(layout):
        offsets = layout.offsets() if dynamic_offsets else ()
        return FusedState(inner=tx.init(packed), offsets=offsets)


def packed_step(
    loss_fn: Callable[..., Any], tx: Any, layout: PackLayout, *, has_aux: bool = False
) -> Callable[..., Any]:
    """A pure, un-jitted ``step(packed, state, *batch) -> (packed, state, loss)``.

    ``state`` comes from :func:`packed_init`.
    With ``has_aux=True``, ``loss_fn`` returns ``(loss, aux)`` and the step returns
    ``(packed, state, (loss, aux))``. The loss value is forwarded to ``tx`` as ``value=`` (for
    loss-aware transforms). The caller owns ``jit`` (donate ``packed`` and ``state``).
    """

    def step(packed, state, *batch):
        offsets = layout.view_offsets(state.offsets)  # dynamic slices or static splits

        def packed_loss(p):
            # Views: dynamic slices at offsets passed as data (one kernel per leaf size) or one
            # split per buffer (PackLayout.dynamic_views); the gradient of either is one
            # concatenation per buffer (see ``PackLayout.unpack``).
            return loss_fn(layout.unpack(p, offsets), *batch)

        out, grads = jax.value_and_grad(packed_loss, has_aux=has_aux)(packed)
        loss = out[0] if has_aux else out
        with layout_scope(layout):  # a non-finite guard goes around the update and p + u
            packed, inner = update_and_apply(tx, grads, state.inner, packed, value=loss)
        return packed, FusedState(inner, state.offsets), out

    return step


def on_buffers(tx: Any, layout: PackLayout) -> GradientTransformation:
    """``tx`` for trees that *are* ``layout``'s packed buffers (``{buffer: 1-D array}``).

    Its ``init`` and ``update`` run ``tx`` with the layout in force, so masks, groups and
    per-leaf norms act per buffer exactly as they would per leaf. Use it when the caller holds
    packed parameters and gradients itself (``jopt bench update``'s ``packed`` case).
    """

    def init_fn(packed):
        with layout_scope(layout):
            return tx.init(packed)

    def update_fn(updates, state, params=None, **extra_args):
        with layout_scope(layout):
            return call_update(tx, updates, state, params, **extra_args)

    return GradientTransformation(init_fn, update_fn)

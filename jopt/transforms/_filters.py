"""optax's small gradient filters: masking, adaptive clipping, centralisation, NaN zeroing and
non-negative parameters, under optax's names and signatures."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import jax.typing

from jopt.core import (
    EmptyState,
    GradientTransformation,
    abs_sq,
    inexact,
    layout_dependent,
    map_elementwise,
    scalar_as,
)


def _empty(params):
    del params
    return EmptyState()


class MaskedState(NamedTuple):
    """State of :func:`masked`.

    Attributes:
        inner_state: the inner transformation's state, built on the masked tree (unmasked
            leaves are ``None``).
    """

    inner_state: Any


def _apply_mask(tree: Any, mask_tree: Any) -> Any:
    # mask_tree is a tree of bools, or a prefix of ``tree``: a bool covers a whole subtree.
    return jax.tree.map(lambda m, sub: sub if m else None, mask_tree, tree)


def masked(
    inner: GradientTransformation,
    mask: Any | Callable[[Any], Any],
    *,
    mask_compatible_extra_args: bool = False,
) -> GradientTransformation:
    """Apply ``inner`` only to the leaves where ``mask`` is ``True`` (as ``optax.masked``).

    The other leaves keep their incoming updates unchanged, and ``inner``'s state covers only
    the masked leaves (the others are ``None`` in the tree it sees). ``mask`` is a tree of
    bools with the structure of the parameters (or a prefix of it), or a function of the
    updates returning one. With ``mask_compatible_extra_args=True``, extra arguments shaped
    like the updates are masked too.
    """

    def mask_of(tree):
        return mask(tree) if callable(mask) else mask

    def init_fn(params):
        return MaskedState(inner.init(_apply_mask(params, mask_of(params))))

    def update_fn(updates, state, params=None, **extra_args):
        layout_dependent("masked reads a per-leaf mask tree; use jopt.groups for packed runs")
        mask_tree = mask_of(updates)
        if mask_compatible_extra_args:
            structure = jax.tree.structure(updates)
            extra_args = {
                k: _apply_mask(v, mask_tree) if jax.tree.structure(v) == structure else v
                for k, v in extra_args.items()
            }
        sub_params = None if params is None else _apply_mask(params, mask_tree)
        new, inner_state = inner.update(
            _apply_mask(updates, mask_tree), state.inner_state, sub_params, **extra_args
        )
        out = jax.tree.map(
            lambda m, n, o: n if m else o,
            mask_tree,
            new,
            updates,
            is_leaf=lambda x: x is None,
        )
        return out, MaskedState(inner_state)

    return GradientTransformation(init_fn, update_fn)


def _unitwise_norm(x: jax.Array, axis: int | tuple[int, ...] | None) -> jax.Array:
    if axis is not None:
        sq = jnp.sum(abs_sq(x), axis=axis, keepdims=True)
    elif jnp.squeeze(x).ndim <= 1:
        sq = jnp.sum(abs_sq(x), keepdims=True)
    elif x.ndim in (2, 3):
        sq = jnp.sum(abs_sq(x), axis=0, keepdims=True)
    elif x.ndim in (4, 5):
        sq = jnp.sum(abs_sq(x), axis=tuple(range(x.ndim - 1)), keepdims=True)
    else:
        raise ValueError(
            f"adaptive_grad_clip: parameter of shape {x.shape} has no default unit; pass axis="
        )
    return jnp.broadcast_to(jnp.sqrt(sq), x.shape)


def adaptive_grad_clip(
    clipping: jax.typing.ArrayLike,
    eps: jax.typing.ArrayLike = 1e-3,
    axis: int | tuple[int, ...] | None = None,
) -> GradientTransformation:
    """Adaptive gradient clipping, unit-wise (Brock et al. 2021), as
    ``optax.adaptive_grad_clip``.

    .. math::

        g_u \\leftarrow \\begin{cases} g_u & \\lVert g_u\\rVert < \\lambda \\max(\\lVert
            w_u\\rVert, \\epsilon) \\\\ g_u \\,\\lambda \\max(\\lVert w_u\\rVert,
            \\epsilon) / \\lVert g_u \\rVert & \\text{else} \\end{cases}

    per unit :math:`u` (a column of a matrix, an output channel of a conv kernel, the whole of
    a vector; or the slices along ``axis``). Per-unit norms: not packable.

    Reference: Brock et al. 2021, "High-Performance Large-Scale Image Recognition Without
    Normalization".
    """

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError("adaptive_grad_clip needs params: call update(updates, state, params)")
        layout_dependent("adaptive_grad_clip takes unit-wise norms of each parameter array")

        def fn(g, p):
            g, p = inexact(g), inexact(p)
            g_norm = _unitwise_norm(g, axis)
            p_norm = _unitwise_norm(p.astype(g.dtype), axis)
            max_norm = scalar_as(clipping, g_norm) * jnp.maximum(p_norm, scalar_as(eps, p_norm))
            clipped = g * (max_norm / jnp.maximum(g_norm, scalar_as(1e-6, g_norm)))
            return jnp.where(g_norm < max_norm, g, clipped)

        return jax.tree.map(fn, updates, params), state

    return GradientTransformation(_empty, update_fn)


def centralize() -> GradientTransformation:
    """Gradient centralisation (Yong et al. 2020): subtract from every array of rank > 1 its
    mean over all axes but the first. Per-leaf means: not packable.

    .. math::

        g \\leftarrow g - \\mathrm{mean}_{\\text{axes} \\ge 1}(g)
    """

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args

        layout_dependent("centralize takes means over the axes of each parameter array")

        def fn(g):
            g = inexact(g)
            if g.ndim > 1:
                return g - g.mean(tuple(range(1, g.ndim)), keepdims=True)
            return g

        return jax.tree.map(fn, updates), state

    return GradientTransformation(_empty, update_fn)


class ZeroNansState(NamedTuple):
    """State of :func:`zero_nans`.

    Attributes:
        found_nan: per parameter, a bool: whether the last incoming update held a NaN.
    """

    found_nan: Any


def zero_nans() -> GradientTransformation:
    """Replace NaNs in the updates by 0 and record, per leaf, whether there were any (as
    ``optax.zero_nans``). Elementwise except the per-leaf flag."""

    def init_fn(params):
        return ZeroNansState(jax.tree.map(lambda _: jnp.array(False), params))

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        layout_dependent("zero_nans keeps one found-NaN flag per parameter array")
        found = jax.tree.map(lambda u: jnp.any(jnp.isnan(u)), updates)
        updates = map_elementwise(lambda u: jnp.where(jnp.isnan(u), jnp.zeros_like(u), u), updates)
        return updates, ZeroNansState(found)

    return GradientTransformation(init_fn, update_fn)


def keep_params_nonnegative() -> GradientTransformation:
    """Clip updates so that no parameter becomes negative (as ``optax.keep_params_nonnegative``).

    .. math::

        u \\leftarrow \\begin{cases} -w & w + u < 0 \\\\ u & \\text{else} \\end{cases}

    Put it last in the chain (it sees the final step). Elementwise (packable).
    """

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError(
                "keep_params_nonnegative needs params: call update(updates, state, params)"
            )

        def fn(u, p):
            u = inexact(u)
            p = inexact(p).astype(u.dtype)
            return jnp.where((p + u) < 0.0, -p, u)

        return map_elementwise(fn, updates, params), state

    return GradientTransformation(_empty, update_fn)

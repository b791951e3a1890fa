"""Clipping by value and by global norm, and LAMB's layer-wise trust ratio."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import jax.typing

from jopt.core import (
    EmptyState,
    GradientTransformation,
    global_norm,
    inexact,
    inexact_dtype,
    leaf_norms,
    map_elementwise,
    real_dtype,
    scalar_as,
    state_dtype,
)


def _empty(params):
    del params
    return EmptyState()


def clip(max_delta: jax.typing.ArrayLike) -> GradientTransformation:
    """Clip every element of the updates to ``[-max_delta, max_delta]``."""

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args

        def fn(u):
            u = inexact(u)
            d = scalar_as(max_delta, u)
            return jnp.clip(u, -d, d)

        return map_elementwise(fn, updates), state

    return GradientTransformation(_empty, update_fn)


def clip_by_global_norm(max_norm: jax.typing.ArrayLike) -> GradientTransformation:
    """Rescale the updates so that their global L2 norm is at most ``max_norm`` (Pascanu et al.
    2013).

    .. math::

        u \\leftarrow u \\cdot \\min(1, \\text{max\\_norm} / \\lVert u \\rVert_2)

    The norm is taken over all leaves together. A zero update stays exactly zero (no NaN),
    also with ``max_norm = 0``.
    """

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        g_norm = global_norm(updates)
        limit = jnp.asarray(max_norm, g_norm.dtype)
        keep = g_norm <= limit
        # The division only happens on the branch where g_norm > limit >= 0, so the
        # denominator we guard here is never used at zero.
        safe_norm = jnp.where(keep, jnp.ones_like(g_norm), g_norm)

        def fn(u):
            u = inexact(u)
            clipped = (u / safe_norm.astype(u.dtype)) * limit.astype(u.dtype)
            return jnp.where(keep, u, clipped)

        return map_elementwise(fn, updates), state

    return GradientTransformation(_empty, update_fn)


def scale_by_trust_ratio(
    min_norm: jax.typing.ArrayLike = 0.0,
    trust_coefficient: jax.typing.ArrayLike = 1.0,
    eps: jax.typing.ArrayLike = 0.0,
) -> GradientTransformation:
    """Scale each parameter's update by its layer-wise trust ratio (LARS/LAMB, You et al. 2020).

    .. math::

        u_\\ell \\leftarrow u_\\ell \\cdot
        \\frac{c\\,\\lVert w_\\ell \\rVert}{\\lVert u_\\ell \\rVert + \\epsilon}

    per parameter array :math:`\\ell`, with the ratio set to 1 when either norm is zero and
    both norms floored at ``min_norm``. This is a per-leaf reduction, not elementwise maths:
    the norms come from ``jopt.core.leaf_norms``, which packed execution computes with a
    segment sum per buffer (exact, and still packed).
    """

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError(
                "scale_by_trust_ratio needs params: call update(updates, state, params)"
            )

        # Per-leaf norms: a scalar per leaf, or a segment reduction per packed buffer
        # (``jopt.core.leaf_norms``), so the trust ratio is exact on packed buffers too.
        u_norms, p_norms = leaf_norms(updates), leaf_norms(params)

        def fn(u, un, pn):
            u32 = inexact(u).astype(state_dtype(u))
            floor = jnp.asarray(min_norm).astype(real_dtype(u32.dtype))
            p_norm = jnp.where(pn <= floor, floor, pn.astype(floor.dtype))
            u_norm = jnp.where(un <= floor, floor, un.astype(floor.dtype))
            ratio = scalar_as(trust_coefficient, floor) * p_norm / (u_norm + scalar_as(eps, floor))
            ratio = jnp.where((p_norm == 0.0) | (u_norm == 0.0), jnp.ones_like(ratio), ratio)
            return (u32 * ratio.astype(u32.dtype)).astype(inexact_dtype(u))

        # Per leaf of the *updates* (structure from the input).
        treedef = jax.tree.structure(updates)
        cols = (treedef.flatten_up_to(t) for t in (updates, u_norms, p_norms))
        leaves = [fn(u, un, pn) for u, un, pn in zip(*cols, strict=True)]
        return treedef.unflatten(leaves), state

    return GradientTransformation(_empty, update_fn)

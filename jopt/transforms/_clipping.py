"""Clipping by value and by global norm, and LAMB's layer-wise trust ratio."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import jax.typing

from jopt.core import (
    EmptyState,
    GradientTransformation,
    global_norm,
    map_elementwise,
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
            clipped = (u / safe_norm.astype(u.dtype)) * limit.astype(u.dtype)
            return jnp.where(keep, u, clipped)

        return map_elementwise(fn, updates), state

    return GradientTransformation(_empty, update_fn)


def _safe_norm(x: jax.Array, min_norm: jax.Array) -> jax.Array:
    # max(||x||, min_norm) with a finite gradient at x = 0 (optax.safe_norm).
    norm = jnp.linalg.norm(x)
    masked = jnp.where(norm <= min_norm, jnp.ones_like(x), x)
    return jnp.where(norm <= min_norm, min_norm, jnp.linalg.norm(masked))


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
    both norms floored at ``min_norm``. This is a per-leaf reduction, not elementwise maths,
    so it maps with ``jax.tree.map``: a fused executor must run it per original leaf.
    """

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError(
                "scale_by_trust_ratio needs params: call update(updates, state, params)"
            )

        def fn(u, p):
            u32 = u.astype(state_dtype(u))
            p32 = p.astype(u32.dtype)
            floor = scalar_as(min_norm, u32)
            p_norm, u_norm = _safe_norm(p32, floor), _safe_norm(u32, floor)
            ratio = scalar_as(trust_coefficient, u32) * p_norm / (u_norm + scalar_as(eps, u32))
            ratio = jnp.where((p_norm == 0.0) | (u_norm == 0.0), jnp.ones_like(ratio), ratio)
            return (u32 * ratio).astype(u.dtype)

        return jax.tree.map(fn, updates, params), state

    return GradientTransformation(_empty, update_fn)

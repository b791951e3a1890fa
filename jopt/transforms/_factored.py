"""Adafactor's factored second moments: row and column statistics per matrix.

Not elementwise: the state follows each array's shape, so this cannot be packed as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import jax.typing
import numpy as np

from jopt.core import (
    GradientTransformation,
    abs_sq,
    inexact,
    layout_dependent,
    safe_increment,
    scalar_as,
    state_dtype,
)


def _need_params(name: str, params: Any) -> None:
    if params is None:
        raise ValueError(f"{name} needs params: call update(updates, state, params)")


class FactoredState(NamedTuple):
    """State of :func:`scale_by_factored_rms` (optax's ``FactoredState``).

    Attributes:
        count: int32 number of updates (saturating).
        v_row: per factored parameter, the row statistics (the array with its
            second-largest axis ``d1`` kept and the largest ``d0`` averaged out); ``(1,)`` zeros
            for unfactored ones.
        v_col: the column statistics (``d1`` averaged out); ``(1,)`` zeros when unfactored.
        v: the full second moment for unfactored parameters; ``(1,)`` zeros when factored.
    """

    count: jax.Array
    v_row: Any
    v_col: Any
    v: Any


def _decay_rate_pow(i: jax.Array, exponent: jax.typing.ArrayLike = 0.8) -> jax.Array:
    """Adafactor's second-moment decay :math:`\\hat\\beta_{2,t} = 1 - (t+1)^{-c}`."""
    t = jnp.asarray(i + 1, jnp.float32)
    return 1.0 - t ** (-jnp.asarray(exponent, jnp.float32))


def _factored_dims(shape: tuple[int, ...], factored: bool, min_dim: int):
    if not factored or len(shape) < 2:
        return None
    order = np.argsort(shape)
    if shape[order[-2]] < min_dim:
        return None
    return int(order[-2]), int(order[-1])


def scale_by_factored_rms(
    factored: bool = True,
    decay_rate: jax.typing.ArrayLike = 0.8,
    step_offset: jax.typing.ArrayLike = 0,
    min_dim_size_to_factor: int = 128,
    epsilon: jax.typing.ArrayLike = 1e-30,
    decay_rate_fn: Callable[[Any, Any], Any] = _decay_rate_pow,
) -> GradientTransformation:
    """Scale by a factored estimate of the gradient RMS (Adafactor; Shazeer & Stern 2018).

    For a matrix (the two largest axes of an array, when both are
    ``>= min_dim_size_to_factor``), with :math:`\\hat\\beta_t` = ``decay_rate_fn(t - offset,
    decay_rate)`` and :math:`G = |g_t|^2 + \\epsilon`:

    .. math::

        R_t = \\hat\\beta_t R_{t-1} + (1-\\hat\\beta_t)\\,\\mathrm{mean}_{cols} G, \\quad
        C_t = \\hat\\beta_t C_{t-1} + (1-\\hat\\beta_t)\\,\\mathrm{mean}_{rows} G,

        u_t = g_t \\,/\\, \\sqrt{R_t C_t^\\top / \\mathrm{mean}(R_t)}

    and for other arrays the unfactored :math:`v_t = \\hat\\beta_t v_{t-1} +
    (1-\\hat\\beta_t) G`, :math:`u_t = g_t / \\sqrt{v_t}`. Row/column statistics: not
    packable. Same arguments as ``optax.scale_by_factored_rms``.

    Reference: Shazeer & Stern 2018, "Adafactor: Adaptive Learning Rates with Sublinear Memory
    Cost".
    """

    def init_fn(params):
        def one(p):
            dt = state_dtype(p)
            dims = _factored_dims(jnp.shape(p), factored, min_dim_size_to_factor)
            if dims is None:  # separate zeros: a donated state must not hold one buffer twice
                return jnp.zeros((1,), dt), jnp.zeros((1,), dt), jnp.zeros(jnp.shape(p), dt)
            d1, d0 = dims
            shape = list(jnp.shape(p))
            row = jnp.zeros([n for i, n in enumerate(shape) if i != d0], dt)
            col = jnp.zeros([n for i, n in enumerate(shape) if i != d1], dt)
            return row, col, jnp.zeros((1,), dt)

        return _split(jnp.zeros([], jnp.int32), params, jax.tree.map(one, params))

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        _need_params("scale_by_factored_rms", params)
        layout_dependent("scale_by_factored_rms keeps row/column statistics per matrix")
        beta = decay_rate_fn(state.count - step_offset, decay_rate)

        def one(g, row, col, v):
            g = inexact(g)
            dt = v.dtype
            b = jnp.asarray(beta).astype(dt)
            gw = g.astype(dt) if not jnp.iscomplexobj(g) else g
            g2 = abs_sq(gw).astype(dt) + scalar_as(epsilon, v)
            dims = _factored_dims(g.shape, factored, min_dim_size_to_factor)
            if dims is None:
                v = b * v + (1 - b) * g2
                return (gw * v**-0.5).astype(g.dtype), row, col, v
            d1, d0 = dims
            row = b * row + (1 - b) * jnp.mean(g2, axis=d0)
            col = b * col + (1 - b) * jnp.mean(g2, axis=d1)
            reduced_d1 = d1 - 1 if d1 > d0 else d1
            row_factor = (row / jnp.mean(row, axis=reduced_d1, keepdims=True)) ** -0.5
            u = gw * jnp.expand_dims(row_factor, d0) * jnp.expand_dims(col**-0.5, d1)
            return u.astype(g.dtype), row, col, v

        treedef = jax.tree.structure(updates)
        outs = [
            one(*a)
            for a in zip(
                treedef.flatten_up_to(updates),
                treedef.flatten_up_to(state.v_row),
                treedef.flatten_up_to(state.v_col),
                treedef.flatten_up_to(state.v),
                strict=True,
            )
        ]
        new_updates = treedef.unflatten([o[0] for o in outs])
        cols = [treedef.unflatten([o[i] for o in outs]) for i in (1, 2, 3)]
        return new_updates, FactoredState(safe_increment(state.count), *cols)

    return GradientTransformation(init_fn, update_fn)


def _split(count, params, triples):
    treedef = jax.tree.structure(params)
    flat = treedef.flatten_up_to(triples)
    return FactoredState(count, *(treedef.unflatten([t[i] for t in flat]) for i in range(3)))

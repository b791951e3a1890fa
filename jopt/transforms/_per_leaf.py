"""Building blocks whose maths reduces over a whole parameter array (or over axes of it).

None of these is elementwise: NovoGrad keeps one scalar per leaf, SM3 one accumulator per
axis, the factored RMS (Adafactor) row and column statistics, and the block-RMS/-norm
scalings and adaptive clipping a norm per leaf or per unit. They map with ``jax.tree.map``
over the original leaves and cannot be run on packed buffers as they are.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import jax.typing
import numpy as np

from jopt.core import (
    EmptyState,
    GradientTransformation,
    JoptError,
    abs_sq,
    inexact,
    inexact_dtype,
    layout_dependent,
    real_dtype,
    safe_increment,
    scalar_as,
    squared_norm,
    state_dtype,
)


def _empty(params):
    del params
    return EmptyState()


def _need_params(name: str, params: Any) -> None:
    if params is None:
        raise ValueError(f"{name} needs params: call update(updates, state, params)")


def _rms(x: jax.Array, floor: jax.Array) -> jax.Array:
    # max(sqrt(mean|x|^2), floor), with a finite gradient at 0 (optax.safe_root_mean_squares).
    rms = jnp.sqrt(jnp.mean(abs_sq(x)))
    x = jnp.where(rms <= floor, jnp.ones_like(x), x)
    return jnp.where(rms <= floor, floor, jnp.sqrt(jnp.mean(abs_sq(x))))


def _norm(x: jax.Array, floor: jax.Array) -> jax.Array:
    norm = jnp.sqrt(jnp.sum(abs_sq(x)))
    x = jnp.where(norm <= floor, jnp.ones_like(x), x)
    return jnp.where(norm <= floor, floor, jnp.sqrt(jnp.sum(abs_sq(x))))


class ScaleByNovogradState(NamedTuple):
    """State of :func:`scale_by_novograd`.

    Attributes:
        count: int32 number of updates (saturating).
        mu: the momentum buffer ``m``, one array per parameter.
        nu: the EMA of the squared gradient *norm*, one scalar per parameter array.
    """

    count: jax.Array
    mu: Any
    nu: Any


def scale_by_novograd(
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.25,
    eps: jax.typing.ArrayLike = 1e-8,
    eps_root: jax.typing.ArrayLike = 0.0,
    weight_decay: jax.typing.ArrayLike = 0.0,
    mu_dtype: Any = None,
) -> GradientTransformation:
    """NovoGrad's layer-wise normalised momentum (Ginsburg et al. 2019).

    .. math::

        v_t = \\beta_2 v_{t-1} + (1-\\beta_2) \\lVert g_t \\rVert^2 \\;(v_1 = \\lVert g_1
            \\rVert^2), \\quad
        m_t = \\beta_1 m_{t-1} + \\frac{g_t}{\\sqrt{v_t + \\epsilon_{root}} + \\epsilon} +
            \\lambda w_t \\;(m_0 = 0)

    per parameter array; the output is :math:`m_t`. Per-leaf (one norm per array): not
    packable. Same arguments as ``optax.scale_by_novograd``.

    Reference: Ginsburg et al. 2019, "Stochastic Gradient Methods with Layer-wise Adaptive
    Moments for Training of Deep Networks".
    """

    def init_fn(params):
        mu = jax.tree.map(lambda p: jnp.zeros(jnp.shape(p), state_dtype(p, mu_dtype)), params)
        nu = jax.tree.map(lambda p: jnp.zeros([], state_dtype(jnp.real(p))), params)
        return ScaleByNovogradState(jnp.zeros([], jnp.int32), mu, nu)

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        _need_params("scale_by_novograd", params)
        layout_dependent("scale_by_novograd keeps one gradient norm per parameter array")
        count = safe_increment(state.count)
        first = count == 1

        def step(g, p, m, v):
            gw, p = inexact(g).astype(m.dtype), inexact(p)
            # ||g||^2 through the norm, as optax computes it (same rounding).
            sq = (jnp.linalg.norm(gw) ** 2).astype(v.dtype)
            v = jnp.where(first, sq, scalar_as(1 - b2, v) * sq + scalar_as(b2, v) * v)
            denom = (jnp.sqrt(v + scalar_as(eps_root, v)) + scalar_as(eps, v)).astype(m.dtype)
            add = gw / denom + scalar_as(weight_decay, m) * p.astype(m.dtype)
            m = jnp.where(first, add, scalar_as(b1, m) * m + add)
            return m, v

        out = jax.tree.map(step, updates, params, state.mu, state.nu)
        treedef = jax.tree.structure(updates)
        mu = treedef.unflatten([o[0] for o in treedef.flatten_up_to(out)])
        nu = treedef.unflatten([o[1] for o in treedef.flatten_up_to(out)])
        new_updates = jax.tree.map(lambda m, g: m.astype(inexact_dtype(g)), mu, updates)
        return new_updates, ScaleByNovogradState(count, mu, nu)

    return GradientTransformation(init_fn, update_fn)


class ScaleBySM3State(NamedTuple):
    """State of :func:`scale_by_sm3`.

    Attributes:
        mu: per parameter, a list with one accumulator per axis (shape ``(n_i,)``); a vector
            keeps one full accumulator, a scalar one of shape ``()``.
        nu: the momentum of the preconditioned updates.
    """

    mu: Any
    nu: Any


def scale_by_sm3(
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 1.0,
    eps: jax.typing.ArrayLike = 1e-8,
) -> GradientTransformation:
    """SM3's memory-efficient adaptive scaling (Anil et al. 2019), as ``optax.scale_by_sm3``.

    For an array with axes :math:`i = 1..k` and one accumulator :math:`\\mu_i` per axis:

    .. math::

        a_t = c\\, g_t^2 + \\beta_2 \\min_i \\mu_{i,t-1} \\;(c = 1-\\beta_2,\\ 1 \\text{ if }
            \\beta_2 = 1), \\quad
        \\mu_{i,t} = \\max_{\\text{axes} \\ne i} a_t,

        n_t = \\beta_1 n_{t-1} + (1-\\beta_1)\\, g_t / \\sqrt{a_t + \\epsilon}
            \\;(0 \\text{ where } a_t = 0)

    and the output is :math:`n_t`. Arrays of rank < 2 keep a full accumulator. A scalar
    parameter is treated as a 1-vector (optax 0.2.8 fails on scalars), and a complex one
    accumulates :math:`|g|^2` (optax refuses complex). Per-axis reductions: not packable.

    Reference: Anil et al. 2019, "Memory-Efficient Adaptive Optimization".
    """

    def init_fn(params):
        def accumulators(p):
            dt = real_dtype(state_dtype(p))  # accumulators hold |g|^2: real
            if jnp.ndim(p) == 0:
                return [jnp.zeros([], dt)]
            return [jnp.zeros((n,), dt) for n in jnp.shape(p)]

        mu = jax.tree.map(accumulators, params)
        nu = jax.tree.map(lambda p: jnp.zeros(jnp.shape(p), state_dtype(p)), params)
        return ScaleBySM3State(mu, nu)

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        layout_dependent("scale_by_sm3 keeps one accumulator per axis of each parameter array")
        treedef = jax.tree.structure(updates)
        mus = treedef.flatten_up_to(state.mu)
        new_mu, new_nu, out = [], [], []
        nus = treedef.flatten_up_to(state.nu)
        for g, acc, n in zip(treedef.flatten_up_to(updates), mus, nus, strict=True):
            gw = inexact(g).astype(n.dtype)
            c = 1.0 if (isinstance(b2, float | int) and b2 == 1.0) else 1.0 - b2
            if gw.ndim < 2:
                prior = acc[0]
            else:
                shapes = [[1] * i + [gw.shape[i]] + [1] * (gw.ndim - i - 1) for i in range(gw.ndim)]
                prior = functools.reduce(
                    jnp.minimum, [jnp.reshape(a, s) for a, s in zip(acc, shapes, strict=True)]
                )
            g2 = abs_sq(gw)
            a = scalar_as(c, g2) * g2 + scalar_as(b2, g2) * prior
            inv = jnp.where(a > 0, jax.lax.rsqrt(a + scalar_as(eps, a)), jnp.zeros_like(a))
            n = scalar_as(1 - b1, n) * (gw * inv.astype(gw.dtype)) + scalar_as(b1, n) * n
            if gw.ndim < 2:
                new_mu.append([a])
            else:
                axes = range(gw.ndim)
                new_mu.append([jnp.max(a, axis=tuple(j for j in axes if j != i)) for i in axes])
            new_nu.append(n)
            out.append(n.astype(inexact_dtype(g)))
        return treedef.unflatten(out), ScaleBySM3State(
            treedef.unflatten(new_mu), treedef.unflatten(new_nu)
        )

    return GradientTransformation(init_fn, update_fn)


def clip_by_block_rms(threshold: jax.typing.ArrayLike) -> GradientTransformation:
    """Clip each array's update to RMS at most ``threshold`` (as ``optax.clip_by_block_rms``).

    .. math::

        u_\\ell \\leftarrow u_\\ell / \\max(1, \\mathrm{rms}(u_\\ell) / \\tau)

    Per-leaf (one RMS per array): not packable.
    """

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args

        layout_dependent("clip_by_block_rms takes the RMS of each parameter array")

        def fn(u):
            u = inexact(u)
            rms = jnp.sqrt(jnp.mean(abs_sq(u)))
            denom = jnp.maximum(jnp.ones([], rms.dtype), rms / scalar_as(threshold, rms))
            return u / denom.astype(u.dtype)

        return jax.tree.map(fn, updates), state

    return GradientTransformation(_empty, update_fn)


def scale_by_param_block_rms(min_scale: jax.typing.ArrayLike = 1e-3) -> GradientTransformation:
    """``u_l <- u_l * max(rms(w_l), min_scale)`` per parameter array (Adafactor's relative
    step). Per-leaf: not packable."""

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        _need_params("scale_by_param_block_rms", params)
        layout_dependent("scale_by_param_block_rms takes the RMS of each parameter array")

        def fn(u, p):
            u, p = inexact(u), inexact(p)
            return u * _rms(p.astype(u.dtype), scalar_as(min_scale, jnp.real(u))).astype(u.dtype)

        return jax.tree.map(fn, updates, params), state

    return GradientTransformation(_empty, update_fn)


def scale_by_param_block_norm(min_scale: jax.typing.ArrayLike = 1e-3) -> GradientTransformation:
    """``u_l <- u_l * max(||w_l||, min_scale)`` per parameter array. Per-leaf: not packable."""

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        _need_params("scale_by_param_block_norm", params)
        layout_dependent("scale_by_param_block_norm takes the norm of each parameter array")

        def fn(u, p):
            u, p = inexact(u), inexact(p)
            return u * _norm(p.astype(u.dtype), scalar_as(min_scale, jnp.real(u))).astype(u.dtype)

        return jax.tree.map(fn, updates, params), state

    return GradientTransformation(_empty, update_fn)


def scale_by_polyak(
    f_min: jax.typing.ArrayLike = 0.0,
    max_learning_rate: jax.typing.ArrayLike = 1.0,
    eps: jax.typing.ArrayLike = 0.0,
    variant: str = "sps",
) -> GradientTransformation:
    """The Polyak step size (Loizou et al. 2021), as ``optax.scale_by_polyak``.

    .. math::

        u_t \\leftarrow \\min\\left(\\frac{f(w_t) - f^*}{\\lVert u_t \\rVert^2 + \\epsilon},
            \\eta_{max}\\right) u_t

    (0 when :math:`\\lVert u_t\\rVert^2 + \\epsilon` is below float64's epsilon; ``"sps+"``
    clips the gap at 0). Needs the loss: ``update(..., value=loss)``. Global norm: not
    packable as is.

    Reference: Loizou et al. 2021, "Stochastic Polyak Step-size for SGD: An Adaptive Learning
    Rate for Fast Convergence".
    """
    if variant not in ("sps", "sps+"):
        raise JoptError(f"scale_by_polyak: variant must be 'sps' or 'sps+', got {variant!r}")

    def update_fn(updates, state, params=None, **extra_args):
        del params
        if "value" not in extra_args:
            raise JoptError("scale_by_polyak needs the loss: call update(..., value=loss)")
        sq = squared_norm(updates)
        gap = (jnp.asarray(extra_args["value"]) - jnp.asarray(f_min)).astype(sq.dtype)
        if variant == "sps+":
            gap = jnp.maximum(gap, 0)
        denom = sq + scalar_as(eps, sq)
        step = jnp.where(
            denom <= float(np.finfo(float).eps),
            jnp.zeros_like(sq),
            jnp.minimum(gap / denom, scalar_as(max_learning_rate, sq)),
        )
        return jax.tree.map(lambda u: scalar_as(step, u) * inexact(u), updates), state

    return GradientTransformation(_empty, update_fn)

"""The L-BFGS direction (two-loop recursion), as ``optax.scale_by_lbfgs``."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jopt.core import (
    GradientTransformation,
    JoptError,
    inexact_dtype,
    map_elementwise,
    safe_increment,
    state_dtype,
)


class ScaleByLBFGSState(NamedTuple):
    """State of :func:`scale_by_lbfgs` (optax's fields).

    Attributes:
        count: int32 steps taken (saturating).
        params: the parameters of the previous step :math:`x_{k-1}`.
        updates: the gradient of the previous step :math:`g_{k-1}`.
        diff_params_memory: the last ``memory_size`` :math:`s_i = x_{i+1} - x_i`, stacked on
            a leading axis (a ring buffer).
        diff_updates_memory: the matching :math:`y_i = g_{i+1} - g_i`.
        weights_memory: float32 :math:`\\rho_i = 1/\\langle y_i, s_i\\rangle` (0 when undefined).
    """

    count: jax.Array
    params: Any
    updates: Any
    diff_params_memory: Any
    diff_updates_memory: Any
    weights_memory: jax.Array


def _vdot(a: Any, b: Any) -> jax.Array:
    dot = lambda x, y: jnp.real(jnp.vdot(x, y)).astype(jnp.float32)  # noqa: E731
    parts = jax.tree.leaves(map_elementwise(dot, a, b))
    return sum(parts, jnp.zeros([], jnp.float32))


def _at(tree: Any, i: jax.Array) -> Any:
    return jax.tree.map(lambda x: x[i], tree)


def scale_by_lbfgs(
    memory_size: int = 10, scale_init_precond: bool = True
) -> GradientTransformation:
    """Precondition the gradient by the L-BFGS inverse-Hessian approximation (Nocedal 1980;
    Liu & Nocedal 1989; Nocedal & Wright 2006, Alg. 7.4).

    With the last :math:`m` pairs :math:`s_i = x_{i+1}-x_i`, :math:`y_i = g_{i+1}-g_i`,
    :math:`\\rho_i = 1/\\langle y_i, s_i\\rangle`, the two-loop recursion computes
    :math:`H_k g_k`:

    .. math::

        q \\leftarrow g_k;\\quad \\alpha_i = \\rho_i \\langle s_i, q\\rangle,\\;
        q \\leftarrow q - \\alpha_i y_i \\;(i = k-1 \\dots k-m);\\quad
        r \\leftarrow \\gamma_k q;\\quad
        \\beta_i = \\rho_i \\langle y_i, r\\rangle,\\; r \\leftarrow r + (\\alpha_i - \\beta_i)
            s_i \\;(i = k-m \\dots k-1)

    with :math:`\\gamma_k = \\langle s_{k-1}, y_{k-1}\\rangle / \\lVert y_{k-1}\\rVert^2`
    (``scale_init_precond``; :math:`\\min(1, 1/\\lVert g_0\\rVert)` at the first step, 1 when
    off). The result is a descent direction *before* the sign flip: chain it with
    ``scale(-1)`` or a learning rate, and usually a line search (:func:`jopt.lbfgs`).
    ``params`` are required. The structure is global (inner products over the whole tree,
    ``memory_size`` copies of the parameters in the state).
    """
    if int(memory_size) < 1:
        raise JoptError(f"scale_by_lbfgs: memory_size must be >= 1, got {memory_size}")

    def init_fn(params):
        def stack(p):
            return jnp.zeros((memory_size, *jnp.shape(p)), state_dtype(p))

        zeros = map_elementwise(lambda p: jnp.zeros(jnp.shape(p), state_dtype(p)), params)
        return ScaleByLBFGSState(
            count=jnp.zeros([], jnp.int32),
            params=zeros,
            updates=jax.tree.map(jnp.zeros_like, zeros),
            diff_params_memory=map_elementwise(stack, params),
            diff_updates_memory=map_elementwise(stack, params),
            weights_memory=jnp.zeros([memory_size], jnp.float32),
        )

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        if params is None:
            raise JoptError("scale_by_lbfgs: update needs params")
        p = map_elementwise(lambda x, ref: x.astype(ref.dtype), params, state.params)
        g = map_elementwise(lambda x, ref: x.astype(ref.dtype), updates, state.updates)
        idx = state.count % memory_size
        prev = (state.count - 1) % memory_size
        first = state.count == 0
        ds = map_elementwise(
            lambda a, b: jnp.where(first, 0, a - b).astype(a.dtype), p, state.params
        )
        dy = map_elementwise(
            lambda a, b: jnp.where(first, 0, a - b).astype(a.dtype), g, state.updates
        )
        sy = _vdot(dy, ds)
        rho = jnp.where(sy == 0.0, 0.0, 1.0 / sy)
        mem_s = map_elementwise(lambda m, x: m.at[prev].set(x), state.diff_params_memory, ds)
        mem_y = map_elementwise(lambda m, x: m.at[prev].set(x), state.diff_updates_memory, dy)
        rhos = state.weights_memory.at[prev].set(jnp.where(first, 0.0, rho))
        if scale_init_precond:
            yy = _vdot(dy, dy)
            gamma = jnp.where(yy > 0.0, sy / yy, 1.0)
            gnorm = jnp.sqrt(_vdot(g, g))
            gamma = jnp.where(first, jnp.minimum(1.0, 1.0 / gnorm), gamma)
        else:
            gamma = jnp.ones([], jnp.float32)
        order = (idx + jnp.arange(memory_size)) % memory_size

        def right(q, i):
            alpha = rhos[i] * _vdot(_at(mem_s, i), q)
            q = map_elementwise(lambda a, y: a - alpha.astype(a.dtype) * y, q, _at(mem_y, i))
            return q, alpha

        q, alphas = jax.lax.scan(right, g, order, reverse=True)
        r = map_elementwise(lambda a: gamma.astype(a.dtype) * a, q)

        def left(r, ia):
            i, alpha = ia
            beta = rhos[i] * _vdot(_at(mem_y, i), r)
            r = map_elementwise(
                lambda a, s: a + (alpha - beta).astype(a.dtype) * s, r, _at(mem_s, i)
            )
            return r, beta

        r, _ = jax.lax.scan(left, r, (order, alphas))
        out = map_elementwise(lambda a, u: a.astype(inexact_dtype(u)), r, updates)
        return out, ScaleByLBFGSState(safe_increment(state.count), p, g, mem_s, mem_y, rhos)

    return GradientTransformation(init_fn, update_fn)

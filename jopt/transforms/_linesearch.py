"""Line searches: backtracking (Armijo) and zoom (strong Wolfe), with optax's API.

Both are the last transform of a chain: they receive a descent direction ``d`` as updates and
return ``eta * d``. ``update`` takes the extra arguments ``value`` (f at ``params``), ``grad``
(its gradient) and ``value_fn`` (``params -> f``); further extra arguments are passed on to
``value_fn``. They store the value (and gradient) at the accepted point, so the next step can
reuse them through :func:`value_and_grad_from_state`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import jax.typing

from jopt.core import (
    GradientTransformation,
    JoptError,
    inexact,
    inexact_dtype,
    map_elementwise,
    state_dtype,
)


def _vdot(a: Any, b: Any) -> jax.Array:
    # float32 whatever the leaves (float64 under x64 too): the search's carry and state keep
    # one dtype (optax's LBFGSTest state-dtype stability).
    dot = lambda x, y: jnp.real(jnp.vdot(y, x)).astype(jnp.float32)  # noqa: E731
    parts = jax.tree.leaves(map_elementwise(dot, a, b))
    return sum(parts, jnp.zeros([], jnp.float32))


def _axpy(params: Any, step: jax.Array, d: Any) -> Any:
    def axpy(p, u):
        p = inexact(p)
        return p + step.astype(p.dtype) * u.astype(p.dtype)

    return map_elementwise(axpy, params, d)


def _zeros(params: Any) -> Any:
    return map_elementwise(lambda p: jnp.zeros(p.shape, state_dtype(p)), params)


class LinesearchInfo(NamedTuple):
    """Diagnostics of the last search: ``num_linesearch_steps`` (function evaluations) and
    ``decrease_error`` (how far the accepted step is from sufficient decrease; 0 = met)."""

    num_linesearch_steps: jax.Array
    decrease_error: jax.Array


class ScaleByLinesearchState(NamedTuple):
    """State of both line searches (optax's field names).

    Attributes:
        learning_rate: float32 last accepted step size.
        value: float32 f at the accepted point (``inf`` before the first step).
        grad: the gradient at the accepted point (zeros before the first step); ``None`` for a
            backtracking search with ``store_grad=False``.
        info: :class:`LinesearchInfo`.
    """

    learning_rate: jax.Array
    value: jax.Array
    grad: Any
    info: LinesearchInfo


def _init(params: Any, with_grad: bool) -> ScaleByLinesearchState:
    return ScaleByLinesearchState(
        learning_rate=jnp.ones([], jnp.float32),
        value=jnp.full([], jnp.inf, jnp.float32),
        grad=_zeros(params) if with_grad else None,
        info=LinesearchInfo(jnp.zeros([], jnp.int32), jnp.full([], jnp.inf, jnp.float32)),
    )


def _need(value, grad, value_fn, name):
    if value is None or grad is None or value_fn is None:
        raise JoptError(f"{name}: update needs the extra arguments value=, grad= and value_fn=")


def _no_verbose(verbose: bool, name: str) -> None:
    if verbose:
        raise JoptError(f"{name}: verbose printing is not supported (verbose=False)")


def scale_by_backtracking_linesearch(
    max_backtracking_steps: int,
    slope_rtol: jax.typing.ArrayLike = 1e-4,
    decrease_factor: jax.typing.ArrayLike = 0.8,
    increase_factor: jax.typing.ArrayLike = 1.5,
    max_learning_rate: jax.typing.ArrayLike = 1.0,
    atol: jax.typing.ArrayLike = 0.0,
    rtol: jax.typing.ArrayLike = 0.0,
    store_grad: bool = False,
    verbose: bool = False,
) -> GradientTransformation:
    """Backtracking line search with the Armijo condition (Armijo 1966; Nocedal & Wright 2006,
    Alg. 3.1), as ``optax.scale_by_backtracking_linesearch``.

    Starting from :math:`\\eta_0 = \\min(\\text{increase\\_factor}\\cdot\\eta_{prev},
    \\eta_{max})`, :math:`\\eta \\leftarrow \\text{decrease\\_factor}\\cdot\\eta` until

    .. math::

        f(x + \\eta d) \\le (1 + \\text{rtol}) f(x) + \\eta\\,\\text{slope\\_rtol}\\,
            \\langle d, \\nabla f(x)\\rangle + \\text{atol}

    or ``max_backtracking_steps`` decreases were tried; a non-finite final value gives
    :math:`\\eta = 0`. ``store_grad=True`` also keeps :math:`\\nabla f` at the accepted point
    (for :func:`value_and_grad_from_state`). optax's debug printing (``verbose=True``) is
    refused in one line.
    """
    _no_verbose(verbose, "scale_by_backtracking_linesearch")

    def init_fn(params):
        return _init(params, store_grad)

    def update_fn(updates, state, params=None, *, value=None, grad=None, value_fn=None, **extra):
        _need(value, grad, value_fn, "scale_by_backtracking_linesearch")
        value = jnp.asarray(value, jnp.float32)
        slope = _vdot(updates, grad)

        def error(eta, new_value):
            e = new_value - (1.0 + rtol) * value - eta * slope_rtol * slope
            return jnp.maximum(jnp.where(jnp.isnan(e), jnp.inf, e), 0.0)

        def cond(c):
            return ~(c[2] <= atol) & (c[3] <= max_backtracking_steps)

        def body(c):
            eta, _, _, i, g = c
            eta = jnp.where(i > 0, decrease_factor * eta, eta)
            trial = _axpy(params, eta, updates)
            if store_grad:
                v, g_new = jax.value_and_grad(lambda p: value_fn(p, **extra))(trial)
                g = map_elementwise(lambda a, b: a.astype(b.dtype), g_new, g)
            else:
                v = value_fn(trial, **extra)
            v = jnp.asarray(v, jnp.float32)
            return eta, v, error(eta, v), i + 1, g

        eta0 = jnp.minimum(increase_factor * state.learning_rate, max_learning_rate)
        g0 = _zeros(params) if store_grad else None
        c0 = (eta0.astype(jnp.float32), value, jnp.full([], jnp.inf, jnp.float32), 0, g0)
        eta, v, err, steps, g = jax.lax.while_loop(cond, body, c0)
        eta = jnp.where(jnp.isinf(err), 0.0, eta).astype(jnp.float32)
        out = map_elementwise(lambda u: eta.astype(inexact_dtype(u)) * inexact(u), updates)
        info = LinesearchInfo(jnp.asarray(steps, jnp.int32), err)
        return out, ScaleByLinesearchState(eta, v, g, info)

    return GradientTransformation(init_fn, update_fn)


def _cubic_min(a, fa, da, b, fb, db):
    # Minimiser of the cubic through (a, fa, da), (b, fb, db) (Nocedal & Wright eq. 3.59).
    d1 = da + db - 3.0 * (fa - fb) / (a - b)
    d2 = jnp.sign(b - a) * jnp.sqrt(jnp.maximum(d1 * d1 - da * db, 0.0))
    return b - (b - a) * (db + d2 - d1) / (db - da + 2.0 * d2)


def scale_by_zoom_linesearch(
    max_linesearch_steps: int,
    max_learning_rate: jax.typing.ArrayLike | None = None,
    tol: jax.typing.ArrayLike = 0.0,
    increase_factor: jax.typing.ArrayLike = 2.0,
    slope_rtol: jax.typing.ArrayLike = 1e-4,
    curv_rtol: jax.typing.ArrayLike = 0.9,
    approx_dec_rtol: jax.typing.ArrayLike | None = 1e-6,
    stepsize_precision: jax.typing.ArrayLike = 1e-5,
    initial_guess_strategy: str = "keep",
    verbose: bool = False,
) -> GradientTransformation:
    """Zoom line search for the strong Wolfe conditions (Nocedal & Wright 2006, Alg. 3.5-3.6),
    with optax's argument names.

    Finds :math:`\\eta` with, for :math:`\\phi(\\eta) = f(x + \\eta d)`,

    .. math::

        \\phi(\\eta) \\le \\phi(0) + c_1 \\eta \\phi'(0) + \\text{tol}, \\qquad
        |\\phi'(\\eta)| \\le c_2 |\\phi'(0)|

    (:math:`c_1` = ``slope_rtol``, :math:`c_2` = ``curv_rtol``). A bracketing phase grows
    :math:`\\eta` by ``increase_factor`` until an interval holds such a point; the zoom phase
    then shrinks it with safeguarded cubic interpolation (bisection when the cubic step falls
    outside the middle 80 %). At most ``max_linesearch_steps`` evaluations of
    ``value_and_grad``; if none satisfies both conditions the best point found with
    sufficient decrease is taken (step 0 if none). The first guess is 1
    (``initial_guess_strategy="one"``) or the last accepted step (``"keep"``), capped at
    ``max_learning_rate``. The value and gradient at the accepted point are stored for
    :func:`value_and_grad_from_state`.

    Near a minimum the sufficient decrease may instead be the approximate one of Hager & Zhang
    (2006, eq. 23): :math:`\\phi'(\\eta) \\le (2c_1 - 1)\\phi'(0)` and
    :math:`\\phi(\\eta) \\le \\phi(0) + \\text{approx\\_dec\\_rtol}\\,|\\phi(0)|` (``None``: off);
    the zoom stops when the interval is shorter than ``stepsize_precision``. The bracketing and
    interpolation differ from optax's, so the step sizes can differ while both satisfy the same
    conditions (tested in ``tests/test_lbfgs.py``). ``verbose=True`` is refused in one line.
    """
    _no_verbose(verbose, "scale_by_zoom_linesearch")
    if initial_guess_strategy not in ("one", "keep"):
        raise JoptError(
            f"scale_by_zoom_linesearch: initial_guess_strategy must be 'one' or 'keep', got "
            f"{initial_guess_strategy!r}"
        )
    eta_max = jnp.inf if max_learning_rate is None else max_learning_rate

    def init_fn(params):
        return _init(params, True)

    def update_fn(updates, state, params=None, *, value=None, grad=None, value_fn=None, **extra):
        _need(value, grad, value_fn, "scale_by_zoom_linesearch")
        f0 = jnp.asarray(value, jnp.float32)
        d0 = _vdot(updates, grad)
        vg = jax.value_and_grad(lambda p: value_fn(p, **extra))
        g_grad = map_elementwise(lambda g: g.astype(state_dtype(g)), grad)
        guess = 1.0 if initial_guess_strategy == "one" else state.learning_rate
        eta0 = jnp.minimum(jnp.asarray(guess, jnp.float32), eta_max)
        f32 = jnp.float32
        zero = jnp.zeros([], f32)
        # carry: done, zoom, i, trial, (lo, f_lo, d_lo, g_lo), (hi, f_hi, d_hi), acc (eta, f, g)
        carry0 = (
            jnp.asarray(False), jnp.asarray(False), jnp.zeros([], jnp.int32), eta0,
            (zero, f0, d0, g_grad), (zero, f0, d0), (zero, f0, g_grad),
        )  # fmt: skip

        def cond(c):
            # stop on acceptance, on the budget, or on a zoom interval below stepsize_precision
            tiny = c[1] & (jnp.abs(c[5][0] - c[4][0]) <= stepsize_precision)
            return ~c[0] & ~tiny & (c[2] < max_linesearch_steps)

        def body(c):
            done, zoom, i, trial, (lo, f_lo, d_lo, g_lo), (hi, f_hi, d_hi), acc = c
            width = hi - lo
            cubic = _cubic_min(lo, f_lo, d_lo, hi, f_hi, d_hi)
            a_min, a_max = jnp.minimum(lo, hi), jnp.maximum(lo, hi)
            margin = 0.1 * jnp.abs(width)
            ok = jnp.isfinite(cubic) & (cubic > a_min + margin) & (cubic < a_max - margin)
            zt = jnp.where(ok, cubic, lo + 0.5 * width)
            t = jnp.where(zoom, zt, trial)
            f_t, g_t = vg(_axpy(params, t, updates))
            f_t = jnp.asarray(f_t, f32)
            g_t = map_elementwise(lambda a, b: a.astype(b.dtype), g_t, g_grad)
            d_t = _vdot(updates, g_t)
            armijo = jnp.isfinite(f_t) & (f_t <= f0 + slope_rtol * t * d0 + tol)
            if approx_dec_rtol is not None:
                approx = (d_t <= (2 * slope_rtol - 1.0) * d0) & (
                    f_t <= f0 + approx_dec_rtol * jnp.abs(f0)
                )
                armijo = armijo | (jnp.isfinite(f_t) & approx)
            curv = jnp.abs(d_t) <= curv_rtol * jnp.abs(d0)
            worse = ~armijo | (f_t >= f_lo) & (i > 0)
            accept = ~worse & curv
            # Bracketing: [lo, t] brackets when t is worse; [t, lo] when the slope turned up.
            # Zoom: t replaces hi when worse; else t becomes lo (and hi flips to the old lo
            # when the slope points past it).
            flip = ~worse & (d_t * jnp.where(zoom, width, 1.0) >= 0)
            new_hi = jnp.where(worse, t, jnp.where(flip, lo, hi))
            new_fhi = jnp.where(worse, f_t, jnp.where(flip, f_lo, f_hi))
            new_dhi = jnp.where(worse, d_t, jnp.where(flip, d_lo, d_hi))
            take = ~worse
            lo2 = jnp.where(take, t, lo)
            f_lo2, d_lo2 = jnp.where(take, f_t, f_lo), jnp.where(take, d_t, d_lo)
            g_lo2 = jax.tree.map(lambda a, b: jnp.where(take, a, b), g_t, g_lo)
            new_zoom = zoom | worse | flip
            grow = jnp.minimum(increase_factor * t, eta_max)
            acc = jax.tree.map(lambda a, b: jnp.where(accept, a, b), (t, f_t, g_t), acc)
            return (
                done | accept, new_zoom, i + 1, jnp.where(new_zoom, trial, grow),
                (lo2, f_lo2, d_lo2, g_lo2), (new_hi, new_fhi, new_dhi), acc,
            )  # fmt: skip

        done, _, steps, _, (lo, f_lo, _, g_lo), _, acc = jax.lax.while_loop(cond, body, carry0)
        # No strong-Wolfe point within the budget: the best sufficient-decrease point (lo).
        eta, f_new, g_new = jax.tree.map(lambda a, b: jnp.where(done, a, b), acc, (lo, f_lo, g_lo))
        err = jnp.maximum(f_new - f0 - slope_rtol * eta * d0, 0.0)
        out = map_elementwise(lambda u: eta.astype(inexact_dtype(u)) * inexact(u), updates)
        info = LinesearchInfo(steps, err)
        return out, ScaleByLinesearchState(eta, f_new, g_new, info)

    return GradientTransformation(init_fn, update_fn)


def value_and_grad_from_state(
    value_fn: Callable[..., jax.Array],
) -> Callable[..., tuple[jax.Array, Any]]:
    """``value_and_grad(value_fn)`` that reuses the value and gradient a line search stored.

    Returns ``f(params, *args, state, **kwargs) -> (value, grad)``: when ``state`` holds a
    :class:`ScaleByLinesearchState` with a finite stored value (every step after the first),
    those are returned without evaluating ``value_fn`` again; otherwise they are computed. As
    ``optax.value_and_grad_from_state``.
    """

    def fn(params, *args, state, **kwargs):
        found = [
            s
            for s in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, ScaleByLinesearchState))
            if isinstance(s, ScaleByLinesearchState)
        ]
        if len(found) != 1 or found[0].grad is None:
            raise JoptError(
                "value_and_grad_from_state: the state must hold one line search that stores "
                "its gradient (zoom, or backtracking with store_grad=True)"
            )
        ls = found[0]

        def compute(_):
            v, g = jax.value_and_grad(value_fn)(params, *args, **kwargs)
            return jnp.asarray(v, jnp.float32), map_elementwise(
                lambda a, b: a.astype(b.dtype), g, ls.grad
            )

        return jax.lax.cond(jnp.isfinite(ls.value), lambda _: (ls.value, ls.grad), compute, None)

    return fn

"""L-BFGS and its line searches: scipy's iteration count, optax parity, the Wolfe conditions."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jopt
from jopt.numerics import get_problem

ROSEN = get_problem("rosenbrock")  # from (-1.2, 1), the classical start


def _run(tx, f, x0, steps, vg_from_state=jopt.value_and_grad_from_state, keep=False):
    vg = vg_from_state(f)

    @jax.jit
    def step(x, s):
        v, g = vg(x, state=s)
        u, s = tx.update(g, s, x, value=v, grad=g, value_fn=f)
        return optax.apply_updates(x, u), s, u, g

    x, s = x0, tx.init(x0)
    xs, extra = [], []
    for _ in range(steps):
        x_old = x
        x, s, u, g = step(x, s)
        xs.append(np.asarray(x))
        if keep:
            extra.append((x_old, u, g, s))
    return np.array(xs), extra


def _iters_to(xs, x_star, tol=1e-6):
    dist = np.linalg.norm(xs - x_star, axis=1)
    hits = np.nonzero(dist < tol)[0]
    return int(hits[0]) + 1 if hits.size else None


def test_rosenbrock_iterations_within_1_5x_scipy():
    scipy_optimize = pytest.importorskip("scipy.optimize")
    f = ROSEN.fn
    x0 = jnp.asarray(ROSEN.x0)

    def fun(x):
        return float(f(jnp.asarray(x, jnp.float32)))

    def jac(x):
        return np.asarray(jax.grad(f)(jnp.asarray(x, jnp.float32)), np.float64)

    # scipy's own iterates, recorded, counted to the same 1e-6 criterion.
    path = []
    scipy_optimize.minimize(
        fun,
        np.asarray(ROSEN.x0, np.float64),
        jac=jac,
        method="L-BFGS-B",
        callback=lambda xk: path.append(np.array(xk)),
        options=dict(gtol=1e-12, ftol=1e-15, maxiter=200),
    )
    scipy_iters = _iters_to(np.array(path), ROSEN.x_star)
    xs, _ = _run(jopt.lbfgs(), f, x0, 80)
    ours = _iters_to(xs, ROSEN.x_star)
    print(f"iterations to ||x - x*|| < 1e-6: jopt {ours}, scipy L-BFGS-B {scipy_iters}")
    assert scipy_iters is not None and ours is not None
    assert ours <= 1.5 * scipy_iters, (ours, scipy_iters)


def test_backtracking_lbfgs_matches_optax():
    f, x0 = ROSEN.fn, jnp.asarray(ROSEN.x0)
    ours, _ = _run(
        jopt.lbfgs(linesearch=jopt.scale_by_backtracking_linesearch(30, store_grad=True)),
        f,
        x0,
        12,
    )
    with jax.numpy_dtype_promotion("standard"):
        theirs, _ = _run(
            optax.lbfgs(linesearch=optax.scale_by_backtracking_linesearch(30, store_grad=True)),
            f,
            x0,
            12,
            optax.value_and_grad_from_state,
        )
    assert np.linalg.norm(theirs[-1] - np.asarray(x0)) > 0.1, "vacuous: optax barely moved"
    err = np.linalg.norm(ours - theirs, axis=1) / np.linalg.norm(theirs, axis=1)
    assert err.max() <= 1e-6, err


@pytest.mark.parametrize("name", ["rosenbrock", "beale", "himmelblau"])
def test_zoom_steps_satisfy_strong_wolfe(name):
    prob = get_problem(name)
    f, x0 = prob.fn, jnp.asarray(prob.x0)
    _, steps = _run(jopt.lbfgs(), f, x0, 15, keep=True)
    checked = 0
    for x, u, g, s in steps:
        ls = s[-1]
        eta = float(ls.learning_rate)
        if eta == 0.0 or float(jnp.linalg.norm(g)) < 1e-2:
            continue  # converged: the conditions are at rounding level
        d = u / eta
        f0, slope = float(f(x)), float(jnp.vdot(g, d))
        f1, g1 = float(f(x + u)), jax.grad(f)(x + u)
        assert slope < 0, "not a descent direction"
        assert f1 <= f0 + 1e-4 * eta * slope + 1e-6 * abs(f0), "sufficient decrease fails"
        assert abs(float(jnp.vdot(g1, d))) <= 0.9 * abs(slope) * (1 + 1e-4), "curvature fails"
        np.testing.assert_allclose(float(ls.value), f1, rtol=1e-5, atol=1e-6)
        assert float(jnp.linalg.norm(ls.grad - g1)) <= 1e-3 * float(jnp.linalg.norm(g1)) + 1e-4
        checked += 1
    assert checked >= 3


def _two_loop(g, pairs):
    # Nocedal & Wright 2006, Algorithm 7.4, written out with numpy.
    q, alphas = g.copy(), []
    for s_i, y_i in reversed(pairs):
        alpha = (s_i @ q) / (y_i @ s_i)
        q = q - alpha * y_i
        alphas.append(alpha)
    s_k, y_k = pairs[-1]
    r = (s_k @ y_k) / (y_k @ y_k) * q
    for (s_i, y_i), alpha in zip(pairs, reversed(alphas), strict=True):
        beta = (y_i @ r) / (y_i @ s_i)
        r = r + (alpha - beta) * s_i
    return r


def test_scale_by_lbfgs_is_the_two_loop_recursion():
    a = np.diag([1.0, 3.0, 10.0]) + 0.5

    def f(x):
        return 0.5 * x @ jnp.asarray(a, jnp.float32) @ x + jnp.sum(jnp.sin(x))

    tx = jopt.scale_by_lbfgs(memory_size=3)
    x, s = jnp.asarray([1.0, -1.0, 0.5]), tx.init(jnp.zeros(3))
    xs, gs = [], []
    for _ in range(5):
        g = jax.grad(f)(x)
        xs.append(np.asarray(x, np.float64))
        gs.append(np.asarray(g, np.float64))
        d, s = tx.update(g, s, x)
        x = x - 0.05 * d
    pairs = [(xs[i + 1] - xs[i], gs[i + 1] - gs[i]) for i in range(len(xs) - 1)][-3:]
    np.testing.assert_allclose(d, _two_loop(gs[-1], pairs), rtol=1e-4)


def test_missing_extra_arguments_refused():
    tx = jopt.lbfgs()
    x = jnp.zeros(2)
    with pytest.raises(jopt.JoptError):
        tx.update(x, tx.init(x), x)
    with pytest.raises(jopt.JoptError):
        jopt.scale_by_zoom_linesearch(10, initial_guess_strategy="bad")

"""Regularization: coupled L2, L1 proximal vs subgradient, decoupled vs coupled decay."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.linear_model import Lasso

import jopt


def _scan(tx, loss, params, steps):
    def step(carry, _):
        p, s = carry
        u, s = tx.update(jax.grad(loss)(p), s, p)
        return (jopt.apply_updates(p, u), s), None

    return jax.lax.scan(step, (params, tx.init(params)), None, length=steps)[0][0]


def test_add_l2_is_the_gradient_of_the_half_squared_norm_penalty():
    key = jax.random.key(5)
    print("PRNG key: jax.random.key(5)")
    k1, k2, k3 = jax.random.split(key, 3)
    params = {"w": jax.random.normal(k1, (4, 3)), "b": jax.random.normal(k2, (3,))}
    x = jax.random.normal(k3, (8, 4))
    lam = 0.3

    def loss(p):
        return jnp.mean(jnp.sin(x @ p["w"] + p["b"]) ** 2)

    def penalised(p):
        return loss(p) + 0.5 * lam * sum(jnp.sum(v**2) for v in jax.tree.leaves(p))

    tx = jopt.add_l2(lam)
    u, _ = tx.update(jax.grad(loss)(params), tx.init(params), params)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
        u,
        jax.grad(penalised)(params),
    )
    # Over a whole run: SGD on loss + add_l2 equals SGD on the penalised loss.
    ours = jax.jit(lambda p: _scan(jopt.chain(jopt.add_l2(lam), jopt.sgd(0.1)), loss, p, 50))
    ref = jax.jit(lambda p: _scan(jopt.sgd(0.1), penalised, p, 50))
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
        ours(params),
        ref(params),
    )
    # The mask leaves the unselected leaves' gradient untouched.
    g = jax.tree.map(jnp.ones_like, params)
    tx = jopt.add_l2(lam, mask={"w": True, "b": False})
    u, _ = tx.update(g, tx.init(params), params)
    np.testing.assert_array_equal(u["b"], g["b"])
    np.testing.assert_allclose(u["w"], 1 + lam * params["w"], rtol=1e-6)


@pytest.fixture(scope="module")
def lasso():
    """A sparse least-squares problem: 60 samples, 20 features, 4 of them active."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(60, 20)).astype(np.float32)
    x_true = np.zeros(20, np.float32)
    x_true[[1, 5, 11, 17]] = [2.0, -1.5, 1.0, 3.0]
    b = (a @ x_true + 0.1 * rng.normal(size=60)).astype(np.float32)
    return jnp.asarray(a), jnp.asarray(b), x_true


LAM, LR, STEPS = 0.1, 0.05, 1500


def _objectives(a, b):
    def smooth(p):  # sklearn Lasso's data term: 1/(2n) ||Ax - b||^2
        r = a @ p["x"] - b
        return 0.5 * jnp.mean(r * r)

    def full(p):
        return smooth(p) + LAM * jnp.sum(jnp.abs(p["x"]))

    return smooth, full


def test_l1_proximal_gives_exact_zeros_and_beats_the_subgradient(lasso):
    a, b, x_true = lasso
    smooth, full = _objectives(a, b)
    p0 = {"x": jnp.zeros(20)}
    ista = jopt.chain(jopt.sgd(LR), jopt.l1_proximal(LAM, LR))  # proximal gradient (ISTA)
    subgrad = jopt.chain(jopt.add_l1(LAM), jopt.sgd(LR))

    @jax.jit
    def both():
        return _scan(ista, smooth, p0, STEPS), _scan(subgrad, smooth, p0, STEPS)

    prox, sub = both()
    x_prox, x_sub = np.asarray(prox["x"]), np.asarray(sub["x"])
    # Exact zeros: every inactive feature of the proximal solution is 0.0, not just small.
    assert np.all(x_prox[x_true == 0] == 0.0)
    assert np.all(x_prox[x_true != 0] != 0.0)
    # The subgradient method oscillates around zero and never lands on it.
    assert np.count_nonzero(x_sub == 0.0) == 0
    f_prox, f_sub = float(full(prox)), float(full(sub))
    assert f_prox < f_sub, (f_prox, f_sub)
    # And the proximal iterate is the Lasso solution (scikit-learn's coordinate descent).
    ref = Lasso(alpha=LAM, fit_intercept=False, tol=1e-10, max_iter=100_000)
    ref.fit(np.asarray(a, np.float64), np.asarray(b, np.float64))
    np.testing.assert_allclose(x_prox, ref.coef_, atol=1e-4)


def test_l1_proximal_with_a_schedule_thresholds_by_the_current_rate():
    p = {"x": jnp.array([0.05, -0.3, 1.0])}
    sched = jopt.schedules.piecewise_constant(1.0, {1: 0.1})
    tx = jopt.l1_proximal(0.1, sched)
    state = tx.init(p)
    zero = {"x": jnp.zeros(3)}
    u, state = tx.update(zero, state, p)  # threshold 1.0 * 0.1
    np.testing.assert_allclose(jopt.apply_updates(p, u)["x"], [0.0, -0.2, 0.9], atol=1e-7)
    u, state = tx.update(zero, state, p)  # threshold 0.1 * 0.1
    np.testing.assert_allclose(jopt.apply_updates(p, u)["x"], [0.04, -0.29, 0.99], atol=1e-7)


def test_decoupled_decay_differs_from_l2_under_adam():
    """Loshchilov & Hutter 2019: under Adam an L2 term is divided by sqrt(v), so a weight with a
    large gradient history is barely decayed while one with no gradient is decayed at the full
    normalised step; decoupled decay shrinks both by the same factor (1 - lr*lambda) per step."""
    lr, lam, steps = 0.01, 0.1, 200
    w0 = {"noisy": jnp.ones(()), "quiet": jnp.ones(())}

    def grads(t):  # zero-mean +-10 gradient for "noisy", none for "quiet"
        sign = jnp.where(t % 2 == 0, 1.0, -1.0)
        return {"noisy": 10.0 * sign, "quiet": jnp.zeros(())}

    def run(tx):
        def step(carry, t):
            p, s = carry
            u, s = tx.update(grads(t), s, p)
            return (jopt.apply_updates(p, u), s), None

        return jax.lax.scan(step, (w0, tx.init(w0)), jnp.arange(steps))[0][0]

    decoupled, coupled = jax.jit(
        lambda: (
            run(jopt.adamw(lr, weight_decay=lam)),
            run(jopt.chain(jopt.add_l2(lam), jopt.adam(lr))),
        )
    )()
    shrink_dec = {k: 1.0 - float(v) for k, v in decoupled.items()}
    shrink_l2 = {k: 1.0 - float(v) for k, v in coupled.items()}
    # Decoupled: the quiet weight follows the closed form exactly, the noisy one nearly so.
    expected = 1.0 - (1.0 - lr * lam) ** steps  # 0.181
    assert shrink_dec["quiet"] == pytest.approx(expected, rel=1e-4)
    assert shrink_dec["noisy"] == pytest.approx(expected, rel=0.1)
    # Coupled L2 under Adam: the quiet weight's decay is normalised to ~lr per step (it is
    # driven to ~0), the noisy weight's decay is divided by sqrt(v) ~ 10 and almost vanishes.
    assert shrink_l2["quiet"] > 0.9
    assert shrink_l2["noisy"] < 0.2 * shrink_dec["noisy"]

"""SAM: optax.contrib.sam's trajectories, and the SAM definition through an ordinary train step."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib
import pytest

import jopt

RHO, LR = 0.05, 0.1
A = jnp.asarray([1.0, 4.0, 9.0])


def loss(p):
    return 0.5 * jnp.sum(A * (p - 1.0) ** 2) + 0.1 * jnp.sum(jnp.sin(3 * p))


def _jopt_sam(**kw):
    return jopt.sam(jopt.sgd(LR), jopt.chain(jopt.normalize(), jopt.sgd(RHO)), **kw)


def _optax_sam(**kw):
    return optax.contrib.sam(
        optax.sgd(LR), optax.chain(optax.contrib.normalize(), optax.sgd(RHO)), **kw
    )


@pytest.mark.parametrize("kw", [dict(), dict(sync_period=3, reset_state=False)], ids=str)
def test_transparent_matches_optax(kw):
    p0 = jnp.asarray([0.3, -0.5, 2.0])

    def run(tx):
        def step(c, _):
            p, s = c
            u, s = tx.update(jax.grad(loss)(p), s, p)
            p = optax.apply_updates(p, u)
            return (p, s), p

        return jax.lax.scan(step, (p0, tx.init(p0)), None, length=60)[1]

    ours = run(_jopt_sam(**kw))
    with jax.numpy_dtype_promotion("standard"):
        theirs = run(_optax_sam(**kw))
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-7)


def test_transparent_is_sam_through_the_train_step():
    # Two ordinary train steps (one gradient each) make one SAM step:
    # p_adv = p + rho g/|g|, p <- p - lr grad(p_adv).
    tx = _jopt_sam()
    p, s = jnp.asarray([0.3, -0.5, 2.0]), None
    s = tx.init(p)
    ref = p
    step = jax.jit(lambda p, s: tx.update(jax.grad(loss)(p), s, p))
    for _ in range(10):
        for _ in range(2):
            u, s = step(p, s)
            p = jopt.apply_updates(p, u)
        g = jax.grad(loss)(ref)
        ref = ref - LR * jax.grad(loss)(ref + RHO * g / jnp.linalg.norm(g))
        np.testing.assert_allclose(p, ref, rtol=1e-5, atol=1e-6)


def test_opaque_mode_takes_grad_fn():
    tx = _jopt_sam(opaque_mode=True)
    p = jnp.asarray([0.3, -0.5, 2.0])
    s = tx.init(p)
    u, s = tx.update(jax.grad(loss)(p), s, p, grad_fn=lambda q, i: jax.grad(loss)(q))
    g = jax.grad(loss)(p)
    want = -LR * jax.grad(loss)(p + RHO * g / jnp.linalg.norm(g))
    np.testing.assert_allclose(u, want, rtol=1e-5, atol=1e-7)
    with pytest.raises(jopt.JoptError):
        tx.update(g, s, p)


def test_normalize_keeps_zero_gradients_finite():
    u, _ = jopt.normalize().update({"w": jnp.zeros(3)}, jopt.EmptyState())
    assert bool(jnp.all(u["w"] == 0.0))

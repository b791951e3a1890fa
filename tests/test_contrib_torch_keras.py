"""ASGD and Rprop against torch.optim; FTRL against Keras's update rule written out in numpy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jopt

STEPS = 12


def _data():
    rng = np.random.default_rng(15)
    p0 = rng.normal(size=(5,)).astype(np.float32)
    grads = rng.normal(size=(STEPS, 5)).astype(np.float32)
    return p0, grads


def _jopt_path(tx, p0, grads):
    p, s, path = jnp.asarray(p0), tx.init(jnp.asarray(p0)), []
    for g in grads:
        u, s = tx.update(jnp.asarray(g), s, p)
        p = jopt.apply_updates(p, u)
        path.append(np.asarray(p))
    return np.array(path), s


def _torch_path(make_opt, p0, grads):
    torch = pytest.importorskip("torch")
    w = torch.nn.Parameter(torch.tensor(p0))
    opt, path = make_opt([w]), []
    for g in grads:
        w.grad = torch.tensor(g)
        opt.step()
        path.append(w.detach().numpy().copy())
    return np.array(path), opt, w


@pytest.mark.parametrize(
    "kw",
    [dict(), dict(learning_rate=0.1, lambd=0.05, alpha=0.6, t0=3, weight_decay=0.1)],
    ids=["defaults", "averaging"],
)
def test_asgd_matches_torch(kw):
    torch = pytest.importorskip("torch")
    p0, grads = _data()
    tkw = {("lr" if k == "learning_rate" else k): v for k, v in kw.items()}
    theirs, opt, w = _torch_path(lambda ps: torch.optim.ASGD(ps, **tkw), p0, grads)
    ours, state = _jopt_path(jopt.asgd(**kw), p0, grads)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    ax = opt.state[w]["ax"].numpy()
    np.testing.assert_allclose(jopt.asgd_averaged_params(state), ax, rtol=1e-5, atol=1e-6)


def test_torch_rprop_matches_torch():
    # torch's first step moves by lr * sign(g); optax's rprop (jopt.rprop) makes no move, so
    # jopt.rprop is not torch's: jopt.torch_rprop is.
    torch = pytest.importorskip("torch")
    p0, grads = _data()
    grads[3] = grads[2]  # same signs twice: the step grows
    grads[5] = -grads[4]  # a sign flip: the step shrinks and that coordinate pauses
    theirs, _, _ = _torch_path(lambda ps: torch.optim.Rprop(ps, lr=0.01), p0, grads)
    ours, _ = _jopt_path(jopt.torch_rprop(0.01), p0, grads)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    optax_style, _ = _jopt_path(jopt.rprop(0.01), p0, grads)
    assert np.abs(optax_style - theirs).max() > 1e-3, "they differ: that is why both exist"


def _keras_ftrl(p0, grads, lr, power, init_acc, l1, l2, shrink, beta):
    # keras.optimizers.Ftrl.update_step, line by line (Keras 3).
    var = p0.astype(np.float64)
    accum, linear = np.full_like(var, init_acc), np.zeros_like(var)
    path = []
    for g in grads.astype(np.float64):
        lr_power, l2_reg = power, l2 + beta / (2.0 * lr)
        grad_to_use = g + 2.0 * shrink * var
        new_accum = accum + g**2
        linear = linear + grad_to_use - (new_accum ** (-lr_power) - accum ** (-lr_power)) / lr * var
        quadratic = new_accum ** (-lr_power) / lr + 2.0 * l2_reg
        linear_clipped = np.clip(linear, -l1, l1)
        var = (linear_clipped - linear) / quadratic
        accum = new_accum
        path.append(var.copy())
    return np.array(path)


@pytest.mark.parametrize(
    "kw",
    [
        dict(),
        dict(learning_rate=0.1, l1_regularization_strength=5.0),
        dict(
            learning_rate=0.05,
            learning_rate_power=-0.3,
            initial_accumulator_value=0.5,
            l1_regularization_strength=0.01,
            l2_regularization_strength=0.1,
            l2_shrinkage_regularization_strength=0.02,
            beta=0.3,
        ),
    ],
    ids=["defaults", "l1", "all"],
)
def test_ftrl_matches_keras_rule(kw):
    p0, grads = _data()
    full = dict(
        learning_rate=0.001,
        learning_rate_power=-0.5,
        initial_accumulator_value=0.1,
        l1_regularization_strength=0.0,
        l2_regularization_strength=0.0,
        l2_shrinkage_regularization_strength=0.0,
        beta=0.0,
    )
    full.update(kw)
    ref = _keras_ftrl(p0, grads, *full.values())
    ours, _ = _jopt_path(jopt.ftrl(**kw), p0, grads)
    np.testing.assert_allclose(ours, ref, rtol=2e-5, atol=1e-6)
    if full["l1_regularization_strength"] >= 0.5:
        assert np.any(ours[-1] == 0.0), "L1 should zero some coordinates exactly"


def test_asgd_and_ftrl_jit_and_bf16():
    params = {"w": jnp.ones(4, jnp.bfloat16), "b": jnp.zeros((), jnp.float32)}
    for tx in (jopt.asgd(0.1), jopt.ftrl(0.1), jopt.torch_rprop()):
        state = tx.init(params)
        u, state = jax.jit(tx.update)(params, state, params)
        assert [x.dtype for x in jax.tree.leaves(u)] == [jnp.float32, jnp.bfloat16]
        assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(state))


def test_refusals():
    with pytest.raises(jopt.JoptError):
        jopt.ftrl(learning_rate_power=0.5)
    with pytest.raises(jopt.JoptError):
        jopt.ftrl().init({"z": jnp.ones(2, jnp.complex64)})
    with pytest.raises(jopt.JoptError):
        jopt.asgd().update({"w": jnp.ones(2)}, jopt.asgd().init({"w": jnp.ones(2)}))

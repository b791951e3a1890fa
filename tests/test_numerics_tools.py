"""grad_check, the 2/λ_max stability bound, landscapes and the learning-rate finder."""

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jopt
from jopt import numerics as nm

# --- grad_check ---------------------------------------------------------------------------


@jax.custom_vjp
def _bad_sin(x):
    return jnp.sin(x)


def _bad_sin_fwd(x):
    return jnp.sin(x), x


def _bad_sin_bwd(x, g):
    return (g * jnp.cos(x) * 1.05,)  # 5 % too large: a plausible, subtle bug


_bad_sin.defvjp(_bad_sin_fwd, _bad_sin_bwd)


def _loss(p, x):
    return jnp.mean((jnp.tanh(x @ p["w"]) + p["b"]) ** 2) + jnp.sum(jnp.sin(p["v"]))


def _bad_loss(p, x):
    return jnp.mean((jnp.tanh(x @ p["w"]) + p["b"]) ** 2) + jnp.sum(_bad_sin(p["v"]))


@pytest.fixture(scope="module")
def gc_inputs():
    k1, k2, k3 = jax.random.split(jax.random.key(10), 3)
    params = {
        "w": jax.random.normal(k1, (3, 2)),
        "b": jnp.zeros(2),
        "v": jax.random.normal(k2, (4,)),
        "step": jnp.array(3),
    }
    return params, jax.random.normal(k3, (8, 3))


def test_grad_check_passes_a_right_gradient(gc_inputs):
    params, x = gc_inputs
    r = nm.grad_check(_loss, params, x, key=jax.random.key(0))
    assert r.ok and r.dtype == "float64"
    assert r.max_error < 1e-6  # float64 central differences are far below the tolerance
    assert set(r.leaf_errors) == {"['b']", "['v']", "['w']"}  # the int leaf is skipped


def test_grad_check_flags_a_wrong_custom_vjp(gc_inputs):
    params, x = gc_inputs
    r = nm.grad_check(_bad_loss, params, x, key=jax.random.key(0))
    assert not r.ok
    assert r.max_error > 1e-2
    # Per-leaf checks localise the bug to the leaf that goes through the bad vjp.
    assert r.leaf_errors["['v']"] > 1e-2
    assert r.leaf_errors["['w']"] < 1e-6 and r.leaf_errors["['b']"] < 1e-6


def test_grad_check_falls_back_to_float32_for_float32_closures():
    data = jnp.linspace(0.0, 1.0, 5)  # float32 constant: float64 params would mix dtypes
    r = nm.grad_check(lambda p: jnp.sum(jnp.exp(p * data)), jnp.ones(5), key=jax.random.key(1))
    assert r.ok and r.dtype == "float32"
    r_bad = nm.grad_check(
        lambda p: jnp.sum(_bad_sin(p * data)), jnp.ones(5) * 0.3, key=jax.random.key(1)
    )
    assert not r_bad.ok


def test_grad_check_bad_input():
    with pytest.raises(jopt.JoptError, match="num_directions"):
        nm.grad_check(jnp.sum, jnp.ones(2), key=jax.random.key(0), num_directions=0)
    with pytest.raises(jopt.JoptError, match="floating-point"):
        nm.grad_check(lambda p: 0.0, jnp.arange(3), key=jax.random.key(0))


# --- stability ----------------------------------------------------------------------------


def test_gd_converges_below_2_over_lambda_max_and_diverges_above():
    # A rotated quadratic with spectrum log-spaced in [1, 10]: every mode contracts by at
    # most max(|1 - 1.9 λ/λ_max|) = 0.9 per step at lr = 1.9/λ_max; at 2.1/λ_max the top
    # mode grows by 1.1 per step.
    p = nm.get_problem("ill_conditioned_quadratic", dim=20, condition_number=10.0, seed=5)
    sharp = jax.jit(lambda x, k: nm.sharpness(p.fn, x, key=k, num_iters=20))
    lam = float(sharp(jnp.ones(20), jax.random.key(0)))
    exact = np.linalg.eigvalsh(p.hessian.astype(np.float64))
    assert lam == pytest.approx(exact[-1], rel=1e-5)
    lr_max = float(nm.max_stable_lr(lam))
    assert lr_max == pytest.approx(2 / exact[-1], rel=1e-5)
    f0 = float(p.fn(jnp.ones(20)))
    ends = {}

    @jax.jit
    def gd(lr):  # one compile for both learning rates: lr is traced
        tx = jopt.sgd(lr)

        def body(carry, _):
            x, s = carry
            u, s = tx.update(jax.grad(p.fn)(x), s, x)
            return (jopt.apply_updates(x, u), s), None

        x0 = jnp.ones(20)
        return p.fn(jax.lax.scan(body, (x0, tx.init(x0)), None, 200)[0][0])

    for factor in (1.9, 2.1):
        lr = factor / 2 * lr_max
        assert (float(nm.gd_contraction(lr, jnp.asarray(exact, jnp.float32))) < 1) == (factor < 2)
        ends[factor] = float(gd(jnp.float32(lr)))
    assert ends[1.9] < 1e-12 * f0  # 0.9^400 ≈ 5e-19
    assert ends[2.1] > 1e12 * f0  # 1.1^400 ≈ 4e16 along the top mode
    np.testing.assert_allclose(nm.stability_bound(0.01), 200.0)
    with pytest.raises(jopt.JoptError, match="learning_rate"):
        nm.stability_bound(0.0)


# --- landscapes ---------------------------------------------------------------------------


class _Net(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        del train
        return nn.Dense(2)(nn.relu(nn.Dense(5)(x)))


def test_filter_normalized_direction():
    k0, k1 = jax.random.split(jax.random.key(0))  # flax Dense layout: kernel [in, out]
    params = {
        "Dense_0": {"kernel": jax.random.normal(k0, (3, 5)), "bias": jnp.ones(5)},
        "Dense_1": {"kernel": jax.random.normal(k1, (5, 2)), "bias": jnp.ones(2)},
    }
    d = nm.filter_normalized_direction(jax.random.key(1), params)
    for layer in ("Dense_0", "Dense_1"):
        k, dk = params[layer]["kernel"], d[layer]["kernel"]
        np.testing.assert_allclose(np.linalg.norm(dk, axis=0), np.linalg.norm(k, axis=0), rtol=1e-5)
        assert not np.allclose(dk, k)
        np.testing.assert_array_equal(d[layer]["bias"], 0.0)  # "ignore biasbn"


def test_landscapes_write_pngs(tmp_path):
    x = jax.random.normal(jax.random.key(2), (32, 3))
    y = (x[:, 0] > 0).astype(jnp.int32)
    model = _Net()
    loss_fn = nm.flax_loss_fn(model, "cross_entropy")
    p0 = model.init(jax.random.key(3), x[:1])["params"]
    tx = jopt.sgd(0.5)

    @jax.jit
    def train(p):
        def body(carry, _):
            p, s = carry
            u, s = tx.update(jax.grad(loss_fn)(p, (x, y)), s, p)
            return (jopt.apply_updates(p, u), s), None

        return jax.lax.scan(body, (p, tx.init(p)), None, 30)[0][0]

    p1 = train(p0)
    batches = nm.stack_batches(x, y, batch_size=16)
    full_loss = jax.jit(lambda q: nm.dataset_loss(loss_fn, q, batches))
    alphas, losses = jax.jit(lambda a, b: nm.interpolate_1d(loss_fn, a, b, batches, num=9))(p0, p1)
    i0, i1 = np.argmin(np.abs(alphas)), np.argmin(np.abs(alphas - 1))
    np.testing.assert_allclose(losses[i0], full_loss(p0), rtol=1e-5)
    np.testing.assert_allclose(losses[i1], full_loss(p1), rtol=1e-5)
    assert losses[i1] < losses[i0]
    a, b, z = jax.jit(lambda q, k: nm.surface_2d(loss_fn, q, batches, key=k, num=7, span=1.0))(
        p1, jax.random.key(4)
    )
    assert z.shape == (7, 7) and np.all(np.isfinite(z))
    np.testing.assert_allclose(z[3, 3], full_loss(p1), rtol=1e-5)
    assert z.min() >= z[3, 3] - 0.05  # trained point sits near the bottom of the bowl
    f1, f2 = tmp_path / "interp.png", tmp_path / "surface.png"
    nm.plot_interpolation(alphas, losses, str(f1))
    nm.plot_surface(a, b, z, str(f2))
    assert f1.stat().st_size > 5000 and f2.stat().st_size > 5000
    with pytest.raises(jopt.JoptError, match="key"):
        nm.surface_2d(loss_fn, p1, batches, num=7)
    with pytest.raises(jopt.JoptError, match="num"):
        nm.surface_2d(loss_fn, p1, batches, key=jax.random.key(4), num=1)


# --- learning-rate finder -----------------------------------------------------------------


def test_lr_find_on_a_quadratic(tmp_path):
    # GD on 0.5 * sum(h_i x_i^2) diverges for lr > 2/max(h) = 0.2; it makes progress only
    # once lr is a sizeable fraction of 1/max(h): the suggestion must sit in that window.
    h = jnp.linspace(1.0, 10.0, 20)
    r = nm.lr_find(
        lambda p: 0.5 * jnp.sum(h * p**2),
        jnp.ones(20),
        lambda lr: jopt.sgd(lr),
        min_lr=1e-4,
        max_lr=10.0,
        num_steps=120,
    )
    assert r.diverged_at is not None and r.lrs[-1] < 5.0  # stopped once it blew up
    assert 5e-3 < r.suggestion < 0.2
    assert r.suggestion <= r.min_loss_lr
    path = nm.write_lr_find(r, str(tmp_path))
    assert os.path.exists(path) and (tmp_path / "plots" / "lr_find.png").stat().st_size > 5000


def test_analyse_lr_curve_picks_steepest_descent_before_minimum():
    lrs = np.geomspace(1e-5, 1.0, 101)
    t = np.log10(lrs)
    # Flat, then a sigmoid drop centred at 1e-3, minimum near 1e-1, then a blow-up.
    losses = 2.0 - 1.5 / (1 + np.exp(-(t + 3) * 4)) + np.where(t > -1, 50 * (t + 1) ** 2, 0)
    r = nm.analyse_lr_curve(lrs, losses, beta=0.0)
    assert r.suggestion == pytest.approx(1e-3, rel=0.15)
    assert r.diverged_at is not None
    with pytest.raises(jopt.JoptError, match="min_lr"):
        nm.lr_find(jnp.sum, jnp.ones(2), jopt.sgd, min_lr=1.0, max_lr=0.1)


# --- diagnostic plots ---------------------------------------------------------------------


def test_sharpness_and_spectrum_plots(tmp_path):
    p = nm.get_problem("ill_conditioned_quadratic", eigenvalues=[0.5, 1.0, 2.0, 8.0], seed=0)
    sd = jax.jit(lambda x, k: nm.spectral_density(p.fn, x, key=k, num_probes=2))(
        jnp.ones(4), jax.random.key(0)
    )
    f1, f2 = tmp_path / "spec.png", tmp_path / "sharp.png"
    nm.plot_spectral_density(sd, str(f1), sigma=0.1)
    steps = np.arange(0, 100, 10)
    nm.plot_sharpness(steps, 5 + 5 * (1 - np.exp(-steps / 30)), 0.2, str(f2), label="η=0.2")
    assert f1.stat().st_size > 5000 and f2.stat().st_size > 5000
    # The 4-d quadratic is resolved exactly: nodes are its eigenvalues.
    np.testing.assert_allclose(np.sort(np.asarray(sd.nodes[0])), [0.5, 1, 2, 8], rtol=1e-4)

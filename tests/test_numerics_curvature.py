"""Curvature tools against closed forms: quadratics with known spectra and an explicit Hessian."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import jopt
from jopt import numerics as nm


@pytest.fixture(autouse=True, scope="module")
def _highest_matmul_precision():
    """These tests compare mathematically equal computations (Lanczos and
    Hutchinson against eigh and closed forms). On GPU/TPU float32 matmuls default
    to TF32/bfloat16 passes (errors ~1e-3); ask for full float32 here. On CPU nothing changes."""
    with jax.default_matmul_precision("highest"):
        yield


@pytest.fixture(scope="module")
def deep():
    """DeepOBS quadratic_deep (d=100, 90 eigenvalues in (0,1), 10 in (30,60)), rotated."""
    p = nm.get_problem("quadratic_deep")
    eig = np.sort(np.linalg.eigvalsh(p.hessian.astype(np.float64)))[::-1]
    return p, eig


def test_hvp_matches_hessian_matrix():
    a = jnp.array([[2.0, 1.0], [1.0, 3.0]])
    loss = lambda p: 0.5 * jnp.vdot(p["w"], a @ p["w"]) + jnp.sum(p["b"] ** 3)  # noqa: E731
    params = {"w": jnp.array([1.0, -1.0]), "b": jnp.array([0.5])}
    v = {"w": jnp.array([0.3, 0.7]), "b": jnp.array([2.0])}
    out = nm.hvp(loss, params, v)
    np.testing.assert_allclose(out["w"], a @ v["w"], rtol=1e-6)
    np.testing.assert_allclose(out["b"], 6 * params["b"] * v["b"], rtol=1e-6)


def test_top_eigenvalues_quadratic_deep(deep):
    p, eig = deep
    # 40 Lanczos steps in a 100-d space: convergence, not exhaustion.
    f = jax.jit(lambda x, k: nm.top_eigenvalues(p.fn, x, key=k, k=5, num_iters=40))
    pairs = f(jnp.ones(100), jax.random.key(0))
    rel = np.abs(np.asarray(pairs.eigenvalues, np.float64) - eig[:5]) / eig[:5]
    assert rel.max() <= 1e-4, rel
    # Eigenvectors: H v = λ v.
    h = p.hessian
    for lam, vec in zip(pairs.eigenvalues, pairs.eigenvectors, strict=True):
        np.testing.assert_allclose(h @ np.asarray(vec), lam * np.asarray(vec), atol=1e-3 * eig[0])
        assert abs(np.linalg.norm(vec) - 1) < 1e-4


def test_lanczos_survives_krylov_breakdown():
    # Only 3 distinct eigenvalues in 12 dims: the Krylov space is exhausted after 3 steps.
    eig = np.repeat([1.0, 4.0, 9.0], 4)
    p = nm.get_problem("ill_conditioned_quadratic", eigenvalues=eig.tolist(), rotate=True)
    pairs = jax.jit(lambda x, k: nm.top_eigenvalues(p.fn, x, key=k, k=5, num_iters=12))(
        jnp.ones(12), jax.random.key(1)
    )
    assert np.all(np.isfinite(pairs.eigenvalues))
    np.testing.assert_allclose(pairs.eigenvalues, [9, 9, 9, 9, 4], rtol=1e-4)


def test_hutchinson_trace_within_5_percent():
    # Rotated spectrum uniform in [1, 10]: off-diagonal mass makes the estimator noisy
    # (per-probe sd ≈ 90 against a trace of 550); 200 probes give a standard error ≈ 1 %.
    eig = np.linspace(1.0, 10.0, 100)
    p = nm.get_problem("ill_conditioned_quadratic", eigenvalues=eig.tolist(), seed=3)
    est = jax.jit(lambda x, k: nm.hutchinson_trace(p.fn, x, key=k, num_probes=200))(
        jnp.ones(100), jax.random.key(2)
    )
    assert abs(float(est.trace) - eig.sum()) / eig.sum() < 0.05
    assert 0 < float(est.stderr) < 0.05 * eig.sum()


def test_spectral_density_mass_where_eigenvalues_are(deep):
    p, eig = deep
    sd = jax.jit(lambda x, k: nm.spectral_density(p.fn, x, key=k, num_probes=8, num_iters=40))(
        jnp.ones(100), jax.random.key(3)
    )
    np.testing.assert_allclose(np.sum(sd.weights, axis=1), 1.0, atol=1e-5)
    low = float(nm.density_mass(sd, eig.min() - 0.05, 1.0 + 0.05))
    high = float(nm.density_mass(sd, 30.0 - 0.5, 60.0 + 0.5))
    assert abs(low - 0.9) < 0.05 and abs(high - 0.1) < 0.05, (low, high)
    assert low + high > 0.999  # nothing in the gap (1, 30)
    grid = np.linspace(-5, 65, 1401, dtype=np.float32)
    dens = np.asarray(nm.density_on_grid(sd, grid, sigma=0.5))
    assert abs(np.trapezoid(dens, grid) - 1.0) < 0.02
    assert dens[(grid > 10) & (grid < 25)].max() < 1e-3 * dens.max()


class _TinyMLP(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        del train
        x = nn.tanh(nn.Dense(6)(x))
        return nn.Dense(3)(x)


def test_top_eigenvalue_flax_mlp_matches_explicit_hessian():
    kx, ky, kp = jax.random.split(jax.random.key(4), 3)
    x = jax.random.normal(kx, (64, 4))
    y = jax.random.randint(ky, (64,), 0, 3)
    model = _TinyMLP()
    params = model.init(kp, x[:1])["params"]
    loss_fn = nm.flax_loss_fn(model, "cross_entropy", train=False)
    batches = nm.stack_batches(x, y, batch_size=16)  # 4 batches, scanned
    flat, unravel = ravel_pytree(params)
    full = lambda f: loss_fn(unravel(f), (x, y))  # noqa: E731
    h = np.asarray(jax.jit(jax.hessian(full))(flat), np.float64)
    exact = np.linalg.eigvalsh((h + h.T) / 2)[::-1]
    # The batched dataset loss equals the full-batch loss (equal batch sizes).
    np.testing.assert_allclose(nm.dataset_loss(loss_fn, params, batches), full(flat), rtol=1e-5)
    f = jax.jit(lambda p, b, k: nm.top_eigenvalues(loss_fn, p, b, key=k, k=2, num_iters=30))
    pairs = f(params, batches, jax.random.key(5))
    np.testing.assert_allclose(pairs.eigenvalues, exact[:2], rtol=1e-3)


def test_mixed_dtype_params_bfloat16_beside_float32():
    # Strict promotion forbids mixing bfloat16 and float32; Lanczos runs in float32 anyway.
    params = {"w": jnp.ones(3, jnp.bfloat16), "b": jnp.ones(2, jnp.float32)}
    scale = jnp.array([1.0, 2.0, 3.0])

    def loss(p):
        return jnp.sum(scale * p["w"].astype(jnp.float32) ** 2) + 2.5 * jnp.sum(p["b"] ** 2)

    pairs = jax.jit(lambda p, k: nm.top_eigenvalues(loss, p, key=k, k=2))(params, jax.random.key(0))
    np.testing.assert_allclose(pairs.eigenvalues, [6.0, 5.0], rtol=1e-2)  # bf16 HVP rounding
    assert pairs.eigenvectors["w"].dtype == jnp.bfloat16
    assert pairs.eigenvectors["b"].dtype == jnp.float32


def test_curvature_bad_input():
    loss = lambda p: jnp.sum(p**2)  # noqa: E731
    with pytest.raises(jopt.JoptError, match="k must be"):
        nm.top_eigenvalues(loss, jnp.ones(3), key=jax.random.key(0), k=5)
    with pytest.raises(jopt.JoptError, match="num_iters"):
        nm.top_eigenvalues(loss, jnp.ones(3), key=jax.random.key(0), num_iters=0)
    with pytest.raises(jopt.JoptError, match="num_probes"):
        nm.hutchinson_trace(loss, jnp.ones(3), key=jax.random.key(0), num_probes=1)
    with pytest.raises(jopt.JoptError, match="batch_size"):
        nm.stack_batches(np.ones((4, 2)), batch_size=5)
    with pytest.raises(jopt.JoptError, match="unknown loss"):
        nm.flax_loss_fn(_TinyMLP(), "hinge")

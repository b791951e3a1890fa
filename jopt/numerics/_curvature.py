"""Hessian spectrum: top eigenpairs (Lanczos), trace (Hutchinson), density (SLQ).

The Hessian is never formed. Everything is built on :func:`jopt.numerics.hvp` over the
flattened parameters, so it works for any loss and any flax model, and the whole computation
is one traceable function (wrap it in ``jax.jit``; ``num_iters``/``k``/``num_probes`` are
Python ints and so static).

References: Lanczos (1950); Golub & Meurant, *Matrices, Moments and Quadrature* (2010) for
stochastic Lanczos quadrature; Hutchinson (1989); Yao et al. 2020, "PyHessian"; Ghorbani et
al. 2019, "An Investigation into Neural Net Optimization via Hessian Eigenvalue Density".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jopt.core.errors import JoptError
from jopt.numerics._batches import LossFn, hvp


class Eigenpairs(NamedTuple):
    """Top Hessian eigenpairs.

    Attributes:
        eigenvalues: ``[k]``, largest (algebraic) first.
        eigenvectors: a pytree like ``params`` with a leading ``[k]`` axis; unit norm overall.
    """

    eigenvalues: jax.Array
    eigenvectors: Any


class TraceEstimate(NamedTuple):
    """Hutchinson's trace estimate: ``trace`` is the probe mean, ``stderr`` its standard error."""

    trace: jax.Array
    stderr: jax.Array


class SpectralDensity(NamedTuple):
    """Gauss quadrature of the Hessian's spectral measure, one rule per probe.

    ``nodes[p, i]`` are Ritz values of probe ``p`` and ``weights[p, i]`` their quadrature
    weights (each row sums to 1). The density is ``mean_p Σ_i weights[p,i] δ(λ - nodes[p,i])``;
    see :func:`density_on_grid` for a smoothed curve.
    """

    nodes: jax.Array
    weights: jax.Array


def flatten_params(params: Any) -> tuple[jax.Array, Any]:
    """``(flat, unravel)`` with ``flat`` in a working dtype of at least float32.

    Unlike ``jax.flatten_util.ravel_pytree`` this accepts mixed leaf dtypes under strict
    promotion (bfloat16 weights beside float32 norms): every leaf is cast to the widest
    dtype present (float64 if any leaf is, else float32), so Lanczos never runs in bfloat16;
    ``unravel`` casts each slice back to its leaf's dtype.
    """
    leaves, treedef = jax.tree.flatten(params)
    wide = any(jnp.asarray(x).dtype == jnp.float64 for x in leaves)
    dtype = jnp.float64 if wide else jnp.float32
    shapes = [jnp.shape(x) for x in leaves]
    dtypes = [jnp.asarray(x).dtype for x in leaves]
    sizes = [int(np.prod(s)) for s in shapes]
    flat = (
        jnp.concatenate([jnp.ravel(x).astype(dtype) for x in leaves])
        if leaves
        else jnp.zeros((0,), dtype)
    )
    offsets = np.cumsum([0, *sizes])

    def unravel(v: jax.Array) -> Any:
        parts = [
            v[offsets[i] : offsets[i + 1]].reshape(shapes[i]).astype(dtypes[i])
            for i in range(len(leaves))
        ]
        return jax.tree.unflatten(treedef, parts)

    return flat, unravel


def _flat_matvec(loss_fn: LossFn, params: Any, batches: Any):
    flat, unravel = flatten_params(params)

    def matvec(v: jax.Array) -> jax.Array:
        return flatten_params(hvp(loss_fn, params, unravel(v), batches))[0].astype(flat.dtype)

    return flat, unravel, matvec


def lanczos(
    matvec: Callable[[jax.Array], jax.Array], v0: jax.Array, num_iters: int, key: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``num_iters`` Lanczos steps with full reorthogonalisation.

    Returns ``(alphas [m], betas [m-1], V [m, n])`` with ``V A V^T ≈ T = tridiag(betas,
    alphas, betas)``. Each new vector is orthogonalised twice against all previous ones
    ("twice is enough", Parlett), which keeps Ritz values free of ghost copies in float32.
    On breakdown (the Krylov space is exhausted: ``beta ≈ 0``) the next vector is a fresh
    random vector orthogonal to ``V`` and the coupling is set to exactly zero, so ``T``
    splits into exact blocks instead of dividing by zero.
    """
    n = v0.shape[0]
    dtype = v0.dtype
    V = jnp.zeros((num_iters + 1, n), dtype)
    V = V.at[0].set(v0 / jnp.linalg.norm(v0))
    tiny = jnp.sqrt(jnp.finfo(dtype).eps)

    def orth(w: jax.Array, V: jax.Array) -> jax.Array:
        w = w - V.T @ (V @ w)
        return w - V.T @ (V @ w)

    def body(j, carry):
        V, alphas, betas, scale = carry
        v = V[j]
        w = matvec(v)
        alpha = jnp.vdot(v, w)
        w = orth(w, V)  # rows > j are zero, so this projects out exactly v_0..v_j
        beta = jnp.linalg.norm(w)
        scale = jnp.maximum(scale, jnp.abs(alpha) + beta)
        ok = beta > tiny * scale
        r = orth(jax.random.normal(jax.random.fold_in(key, j), (n,), dtype), V)
        nxt = jnp.where(ok, w / jnp.where(ok, beta, 1.0), r / jnp.linalg.norm(r))
        V = V.at[j + 1].set(nxt)
        return V, alphas.at[j].set(alpha), betas.at[j].set(jnp.where(ok, beta, 0.0)), scale

    init = (V, jnp.zeros(num_iters, dtype), jnp.zeros(num_iters, dtype), jnp.zeros((), dtype))
    V, alphas, betas, _ = jax.lax.fori_loop(0, num_iters, body, init)
    return alphas, betas[:-1], V[:num_iters]


def _tridiag_eigh(alphas: jax.Array, betas: jax.Array):
    T = jnp.diag(alphas) + jnp.diag(betas, 1) + jnp.diag(betas, -1)
    return jnp.linalg.eigh(T)


def _check_iters(num_iters: int, n: int, name: str = "num_iters") -> int:
    if not isinstance(num_iters, int) or num_iters < 1:
        raise JoptError(f"{name} must be a positive integer, got {num_iters!r}")
    return min(num_iters, n)


def top_eigenvalues(
    loss_fn: LossFn,
    params: Any,
    batches: Any = None,
    *,
    key: jax.Array,
    k: int = 1,
    num_iters: int = 30,
) -> Eigenpairs:
    """The ``k`` largest Hessian eigenvalues and their eigenvectors, by Lanczos.

    Runs ``m = min(num_iters, n)`` Lanczos steps from a random start and returns the top
    ``k`` Ritz pairs. Extreme, well-separated eigenvalues converge first, so ``m`` of a few
    tens is plenty for the top few of a network Hessian; ``m = n`` is exact. Memory is
    ``(m+1) · n`` floats for the Lanczos basis.

    Example:
        >>> import jax, jax.numpy as jnp, jopt
        >>> loss = lambda p: 0.5 * jnp.sum(jnp.array([1.0, 2.0, 5.0]) * p**2)
        >>> pairs = jopt.numerics.top_eigenvalues(loss, jnp.zeros(3), key=jax.random.key(0))
        >>> round(float(pairs.eigenvalues[0]), 4)
        5.0
    """
    flat, unravel, matvec = _flat_matvec(loss_fn, params, batches)
    n = flat.shape[0]
    m = _check_iters(num_iters, n)
    if not isinstance(k, int) or not 1 <= k <= m:
        raise JoptError(f"k must be an integer in [1, {m}] (min(num_iters, n_params)), got {k!r}")
    k0, k1 = jax.random.split(key)
    v0 = jax.random.normal(k0, (n,), flat.dtype)
    alphas, betas, V = lanczos(matvec, v0, m, k1)
    theta, S = _tridiag_eigh(alphas, betas)
    idx = jnp.argsort(-theta)[:k]
    vecs = (V.T @ S[:, idx]).T  # [k, n]
    return Eigenpairs(theta[idx], jax.vmap(unravel)(vecs))


def sharpness(
    loss_fn: LossFn, params: Any, batches: Any = None, *, key: jax.Array, num_iters: int = 20
) -> jax.Array:
    """``λ_max`` of the loss Hessian: the number to log beside ``2 / lr`` during training.

    Gradient descent with learning rate ``η`` is stable along an eigendirection only while
    ``λ ≤ 2/η`` (see :func:`stability_bound`); Cohen et al. 2021 find that full-batch GD
    drives the sharpness up to that bound ("edge of stability").
    """
    return top_eigenvalues(loss_fn, params, batches, key=key, k=1, num_iters=num_iters)[0][0]


def _rademacher(key: jax.Array, shape: tuple[int, ...], dtype: Any) -> jax.Array:
    return jax.random.rademacher(key, shape, jnp.int32).astype(dtype)


def hutchinson_trace(
    loss_fn: LossFn,
    params: Any,
    batches: Any = None,
    *,
    key: jax.Array,
    num_probes: int = 100,
    probe_batch: int = 10,
) -> TraceEstimate:
    """Hutchinson's estimate of ``tr H``: the mean of ``zᵀ H z`` over Rademacher probes ``z``.

    ``E[zᵀ H z] = tr H`` because ``E[z zᵀ] = I``; the variance is ``2 Σ_{i≠j} H_ij²``
    (Hutchinson 1989). ``probe_batch`` probes are pushed through ``hvp`` at once (vmapped).
    """
    if not isinstance(num_probes, int) or num_probes < 2:
        raise JoptError(f"num_probes must be an integer >= 2, got {num_probes!r}")
    flat, _, matvec = _flat_matvec(loss_fn, params, batches)
    Z = _rademacher(key, (num_probes, flat.shape[0]), flat.dtype)
    samples = jax.lax.map(lambda z: jnp.vdot(z, matvec(z)), Z, batch_size=probe_batch)
    stderr = jnp.std(samples, ddof=1) / jnp.sqrt(jnp.asarray(num_probes, samples.dtype))
    return TraceEstimate(jnp.mean(samples), stderr)


def spectral_density(
    loss_fn: LossFn,
    params: Any,
    batches: Any = None,
    *,
    key: jax.Array,
    num_probes: int = 4,
    num_iters: int = 40,
) -> SpectralDensity:
    """Stochastic Lanczos quadrature of the Hessian eigenvalue density.

    For each Rademacher probe ``z`` (normalised), ``m`` Lanczos steps give ``T = S Θ Sᵀ``;
    the Gauss rule with nodes ``Θ`` and weights ``S[0, :]²`` integrates ``f`` against the
    measure ``zᵀ f(H) z / ‖z‖²``, whose expectation is the eigenvalue distribution
    ``(1/n) Σ_i δ(λ - λ_i)`` (Golub & Meurant 2010; Ghorbani et al. 2019).
    """
    if not isinstance(num_probes, int) or num_probes < 1:
        raise JoptError(f"num_probes must be a positive integer, got {num_probes!r}")
    flat, _, matvec = _flat_matvec(loss_fn, params, batches)
    m = _check_iters(num_iters, flat.shape[0])
    keys = jax.random.split(key, num_probes)

    def one(k: jax.Array):
        k0, k1 = jax.random.split(k)
        alphas, betas, _ = lanczos(matvec, _rademacher(k0, flat.shape, flat.dtype), m, k1)
        theta, S = _tridiag_eigh(alphas, betas)
        return theta, S[0] ** 2

    nodes, weights = jax.lax.map(one, keys)
    return SpectralDensity(nodes, weights)


def density_on_grid(
    density: SpectralDensity, grid: jax.typing.ArrayLike, sigma: float | None = None
) -> jax.Array:
    """The SLQ density smoothed by a Gaussian of width ``sigma``, evaluated on ``grid``.

    ``sigma`` defaults to 1 % of the node range. The curve integrates to about 1.
    """
    grid = jnp.asarray(grid, density.nodes.dtype)
    if sigma is None:
        span = jnp.max(density.nodes) - jnp.min(density.nodes)
        sigma = jnp.maximum(0.01 * span, 1e-6)
    sigma = jnp.asarray(sigma, grid.dtype)
    d = (grid[:, None, None] - density.nodes[None]) / sigma
    g = jnp.exp(-0.5 * d**2) / (sigma * jnp.sqrt(2.0 * jnp.pi))
    return jnp.mean(jnp.sum(density.weights[None] * g, axis=-1), axis=-1)


def density_mass(density: SpectralDensity, lo: float, hi: float) -> jax.Array:
    """The fraction of the (unsmoothed) spectral mass with eigenvalues in ``[lo, hi]``."""
    inside = (density.nodes >= lo) & (density.nodes <= hi)
    return jnp.mean(jnp.sum(jnp.where(inside, density.weights, 0.0), axis=-1))

"""Muon's orthogonalised momentum (matrix structure), as ``optax.contrib.scale_by_muon``."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import jax.typing
import numpy as np

from jopt.core import (
    EmptyState,
    GradientTransformation,
    JoptError,
    inexact,
    map_elementwise,
    safe_increment,
    zeros_like,
)

DEFAULT_NS_COEFFS = (3.4445, -4.775, 2.0315)


def orthogonalize_via_newton_schulz(
    x: jax.Array, ns_coeffs: jax.Array, ns_steps: int = 5, eps: jax.typing.ArrayLike = 1e-8
) -> jax.Array:
    """Approximate the orthogonal factor :math:`U V^T` of :math:`x = U \\Sigma V^T` by
    ``ns_steps`` quintic Newton-Schulz iterations on :math:`x/\\lVert x\\rVert_F`:

    .. math::

        A = X X^T, \\quad X \\leftarrow a X + (b A + c A^2) X

    (Jordan et al. 2024; coefficients ``ns_coeffs = (a, b, c)``). ``x`` must be 2-D; the
    iteration runs on the wide orientation.
    """
    if x.ndim != 2:
        raise JoptError(f"muon: needs 2-D (matrix) parameters, got shape {x.shape}")
    transposed = x.shape[0] > x.shape[1]
    if transposed:
        x = x.T
    x = x / (jnp.linalg.norm(x, ord="fro") + eps)
    a, b, c = (jnp.asarray(k).astype(x.dtype) for k in ns_coeffs)
    for _ in range(ns_steps):
        gram = x @ x.T.conj()
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if transposed else x


class MuonState(NamedTuple):
    """State of :func:`scale_by_muon` (``optax.contrib.MuonState``'s fields).

    Attributes:
        count: int32 steps taken (saturating), for the bias correction.
        mu: the momentum (one matrix per parameter).
        ns_coeffs: the Newton-Schulz coefficients ``(a, b, c)`` as an array.
    """

    count: jax.Array
    mu: Any
    ns_coeffs: jax.Array


def check_muon_options(preconditioning: str, weight_dimension_numbers: Any, name: str) -> None:
    """Refuse (one line) the optax Muon options jopt does not implement."""
    if preconditioning != "frobenius":
        raise JoptError(
            f"{name}: only preconditioning='frobenius' (optax's default) is implemented, got "
            f"{preconditioning!r}"
        )
    if weight_dimension_numbers is not None:
        raise JoptError(
            f"{name}: weight_dimension_numbers is not supported (every leaf is a matrix; "
            "jopt.muon routes the others to AdamW)"
        )


def _bias_corrected(x: jax.Array, beta: Any, count: jax.Array) -> jax.Array:
    # x / (1 - beta^t) with an integer power, as optax.tree.bias_correction computes it.
    with jax.numpy_dtype_promotion("standard"):
        corr = 1 - jnp.asarray(beta, jnp.float32) ** count
    return x / corr.astype(x.dtype)


def scale_by_muon(
    ns_coeffs: tuple[float, float, float] = DEFAULT_NS_COEFFS,
    ns_steps: int = 5,
    beta: jax.typing.ArrayLike = 0.95,
    eps: jax.typing.ArrayLike = 1e-8,
    mu_dtype: Any = None,
    *,
    nesterov: bool = True,
    adaptive: bool = False,
    preconditioning: str = "frobenius",
    weight_dimension_numbers: Any = None,
) -> GradientTransformation:
    """Muon's direction (Jordan et al. 2024, "Muon: An optimizer for hidden layers in neural
    networks"): bias-corrected (Nesterov) momentum, orthogonalised by Newton-Schulz.

    .. math::

        m_t = \\beta m_{t-1} + (1-\\beta) g_t, \\quad
        \\hat m_t = \\beta \\frac{m_t}{1-\\beta^{t+1}} + (1-\\beta)\\frac{g_t}{1-\\beta^t},
        \\quad u_t = \\mathrm{NS}(\\hat m_t)

    (``nesterov=False``: :math:`\\hat m_t = m_t/(1-\\beta^t)`; ``adaptive=True`` scales
    :math:`u_t` by :math:`\\langle \\hat m_t, u_t\\rangle`). Every parameter must be a
    matrix (the structure is per-matrix, not packable); :func:`jopt.muon` routes the others
    to AdamW. Same arguments as ``optax.contrib.scale_by_muon``; only its default
    ``preconditioning="frobenius"`` and ``weight_dimension_numbers=None`` (every leaf a matrix)
    are implemented, other values are refused.
    """
    check_muon_options(preconditioning, weight_dimension_numbers, "scale_by_muon")
    if np.shape(ns_coeffs) != (3,):
        raise JoptError(f"scale_by_muon: ns_coeffs must be 3 numbers (a, b, c), got {ns_coeffs!r}")

    def init_fn(params):
        for p in jax.tree.leaves(params):
            if jnp.ndim(p) != 2:
                raise JoptError(f"scale_by_muon: needs 2-D parameters, got shape {jnp.shape(p)}")
        return MuonState(
            count=jnp.zeros([], jnp.int32),
            mu=zeros_like(params, mu_dtype),
            ns_coeffs=jnp.asarray(ns_coeffs, jnp.float32),
        )

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        count = safe_increment(state.count)

        def step(g, m):
            out_dtype = inexact(g).dtype
            g = inexact(g).astype(m.dtype)
            m = (1 - beta) * g + beta * m
            if nesterov:
                m_hat = beta * _bias_corrected(m, beta, safe_increment(count)) + (
                    1 - beta
                ) * _bias_corrected(g, beta, count)
            else:
                m_hat = _bias_corrected(m, beta, count)
            u = orthogonalize_via_newton_schulz(m_hat, state.ns_coeffs, ns_steps, eps)
            if adaptive:
                u = jnp.sum(m_hat.conj() * u) * u
            return u.astype(out_dtype), m

        out, mu = map_elementwise(step, updates, state.mu, n_out=2)
        return out, MuonState(count=count, mu=mu, ns_coeffs=state.ns_coeffs)

    return GradientTransformation(init_fn, update_fn)


def scale_by_shape() -> GradientTransformation:
    """Scale each matrix update by :math:`\\sqrt{\\max(1, n_{out}/n_{in})}` (shape ``(n_in,
    n_out)``), Muon's width transfer (optax.contrib's ``scale_by_shape`` default)."""

    def init_fn(params):
        del params
        return EmptyState()

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args

        def scale(u):
            fan_in, fan_out = u.shape
            return jnp.sqrt(jnp.maximum(1.0, fan_out / fan_in)).astype(u.dtype) * u

        return map_elementwise(scale, updates), state

    return GradientTransformation(init_fn, update_fn)

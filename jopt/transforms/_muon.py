"""Muon's orthogonalised momentum (matrix structure), as ``optax.contrib.scale_by_muon``."""

from __future__ import annotations

import math
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


PRECONDITIONINGS = ("frobenius", "spectral", "aol", "schatten")


class MuonDimensionNumbers(NamedTuple):
    """Which axes of a parameter form Muon's matrix (``optax.contrib.MuonDimensionNumbers``).

    The parameter is read as ``x W = y``: ``reduction_axis`` (an axis or axes) is the input,
    ``output_axis`` the output; every other axis is a batch axis, each slice orthogonalised
    on its own. A 2-D parameter is always ``(reduction, output) = (0, 1)``.

    Attributes:
        reduction_axis: the input axis or axes (default 0).
        output_axis: the output axis or axes (default 1).
    """

    reduction_axis: Any = 0
    output_axis: Any = 1


class _Dims:
    """One leaf's dimension numbers (or ``None``), boxed so that a tree of them keeps the
    parameters' structure."""

    def __init__(self, value: MuonDimensionNumbers | None):
        self.value = value


def _is_dims_leaf(x: Any) -> bool:
    return x is None or isinstance(x, MuonDimensionNumbers)


def resolve_dimension_numbers(dims: Any, tree: Any) -> Any:
    """A tree like ``tree`` holding, per array leaf, a box with its
    :class:`MuonDimensionNumbers` or ``None`` (a leaf Muon does not treat). ``dims``: ``None``
    (every leaf 2-D, default axes), one :class:`MuonDimensionNumbers` for all, a tree with
    ``tree``'s structure as a prefix (``None`` where Muon does not apply), or a function of
    ``tree`` returning one of those."""
    if callable(dims) and not isinstance(dims, MuonDimensionNumbers):
        dims = dims(tree)
    if dims is None:
        return jax.tree.map(lambda x: _Dims(None), tree)
    if isinstance(dims, MuonDimensionNumbers):
        return jax.tree.map(lambda x: _Dims(dims), tree)
    try:
        return jax.tree.map(
            lambda d, sub: jax.tree.map(lambda x: _Dims(d), sub), dims, tree, is_leaf=_is_dims_leaf
        )
    except (ValueError, TypeError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise JoptError(
            f"muon: weight_dimension_numbers must be a prefix of the parameters' tree ({first})"
        ) from None


def _axes(x: jax.Array, dims: MuonDimensionNumbers) -> tuple[tuple[int, ...], tuple[int, ...]]:
    def norm(axes):
        return tuple(a % x.ndim for a in ((axes,) if isinstance(axes, int) else axes))

    red, out = norm(dims.reduction_axis), norm(dims.output_axis)
    if set(red) & set(out):
        raise JoptError(f"muon: reduction and output axes overlap: {red} and {out}")
    return red, out


def matrix_fans(x: jax.Array, dims: MuonDimensionNumbers | None) -> tuple[int, int]:
    """``(fan_in, fan_out)``: the sizes of the reduction and output axes of ``x``."""
    if x.ndim == 2 or dims is None:
        if x.ndim != 2:
            raise JoptError(f"muon: needs 2-D (matrix) parameters, got shape {x.shape}")
        return x.shape[0], x.shape[1]
    red, out = _axes(x, dims)
    return math.prod(x.shape[a] for a in red), math.prod(x.shape[a] for a in out)


def _first_step(x: jax.Array, coeffs: jax.Array, preconditioning: str, eps: Any) -> jax.Array:
    """The first iteration with AOL or Schatten-4 rescaling (Boissin et al. 2025)."""
    if preconditioning == "aol":
        gram = x @ x.T.conj()
        s = jax.lax.rsqrt(jnp.clip(jnp.abs(gram).sum(axis=-1), min=eps))[:, None]
        x, gram = x * s, gram * s * s.T
    else:  # schatten (optax uses x @ x.T here, without conj)
        gram = x @ x.T
        s = jax.lax.rsqrt(jnp.clip(jnp.linalg.norm(gram, ord="fro"), min=eps))
        x, gram = x * s, gram * s**2
    return coeffs[0] * x + (coeffs[1] * gram + coeffs[2] * gram @ gram) @ x


def orthogonalize_via_newton_schulz(
    x: jax.Array,
    ns_coeffs: jax.Array,
    ns_steps: int = 5,
    preconditioning: str = "frobenius",
    eps: jax.typing.ArrayLike = 1e-8,
    dimension_numbers: Any = None,
) -> jax.Array:
    """Approximate the orthogonal factor :math:`U V^T` of :math:`x = U \\Sigma V^T` by quintic
    Newton-Schulz iterations:

    .. math::

        A = X X^T, \\quad X \\leftarrow a X + (b A + c A^2) X

    (Jordan et al. 2024). ``ns_coeffs``: ``(a, b, c)`` for ``ns_steps`` steps, or an
    ``(n, 3)`` array, one row per step (``ns_steps`` then ignored). ``preconditioning``:
    ``frobenius`` (start from :math:`X/\\lVert X\\rVert_F`), ``spectral``
    (:math:`X/\\lVert X\\rVert_2`), ``aol`` or ``schatten`` (the first step rescales;
    Boissin et al. 2025). The iteration runs on the wide orientation of a 2-D ``x``; a
    higher-rank ``x`` needs ``dimension_numbers`` (:class:`MuonDimensionNumbers`): its batch
    slices are orthogonalised one by one. Same arguments as
    ``optax.contrib.orthogonalize_via_newton_schulz``.
    """
    if preconditioning not in PRECONDITIONINGS:
        raise JoptError(
            f"muon: unknown preconditioning {preconditioning!r} "
            f"(allowed: {', '.join(PRECONDITIONINGS)})"
        )
    coeffs = jnp.asarray(ns_coeffs)
    if coeffs.ndim not in (1, 2) or coeffs.shape[-1] != 3:
        raise JoptError(f"muon: ns_coeffs must have shape (3,) or (n, 3), got {coeffs.shape}")
    if x.ndim == 2:
        return _newton_schulz_2d(x, coeffs, ns_steps, preconditioning, eps)
    if dimension_numbers is None:
        raise JoptError(
            f"muon: a parameter of shape {x.shape} needs weight_dimension_numbers "
            "(which axes form the matrix)"
        )
    red, out = _axes(x, dimension_numbers)
    batch = tuple(a for a in range(x.ndim) if a not in red + out)
    order = batch + red + out
    sizes = [math.prod(x.shape[a] for a in axes) for axes in (batch, red, out)]
    flat = jnp.transpose(x, order).reshape(sizes)
    done = jax.vmap(lambda m: _newton_schulz_2d(m, coeffs, ns_steps, preconditioning, eps))(flat)
    done = done.reshape(tuple(x.shape[a] for a in order))
    return jnp.transpose(done, np.argsort(order))


def _newton_schulz_2d(x, coeffs, ns_steps, preconditioning, eps):
    transposed = x.shape[0] > x.shape[1]
    if transposed:
        x = x.T
    if preconditioning == "frobenius":
        x = x / (jnp.linalg.norm(x, ord="fro") + eps)
    elif preconditioning == "spectral":
        x = x / (jnp.linalg.norm(x, ord=2) + eps)
    coeffs = coeffs.astype(x.dtype)
    rows = [coeffs] * ns_steps if coeffs.ndim == 1 else list(coeffs)
    for i, (a, b, c) in enumerate(rows):
        if i == 0 and preconditioning in ("aol", "schatten"):
            x = _first_step(x, jnp.stack([a, b, c]), preconditioning, eps)
            continue
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
    """Refuse (one line) a preconditioning jopt does not know."""
    del weight_dimension_numbers
    if preconditioning not in PRECONDITIONINGS:
        raise JoptError(
            f"{name}: unknown preconditioning {preconditioning!r} "
            f"(allowed: {', '.join(PRECONDITIONINGS)})"
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
    to AdamW. Same arguments as ``optax.contrib.scale_by_muon``: ``ns_coeffs`` ``(a, b, c)``
    or up to ``ns_steps`` rows of them (the last ``ns_steps`` are used, one per step), all four
    ``preconditioning`` methods (see :func:`orthogonalize_via_newton_schulz`) and
    ``weight_dimension_numbers`` (:class:`MuonDimensionNumbers` per leaf, a prefix tree of
    them or a function of the parameters: how a higher-rank leaf forms its matrices).
    """
    check_muon_options(preconditioning, weight_dimension_numbers, "scale_by_muon")
    shape = np.shape(ns_coeffs)
    if not (shape == (3,) or (len(shape) == 2 and shape[1] == 3 and 0 < shape[0] <= ns_steps)):
        raise JoptError(
            "scale_by_muon: ns_coeffs must be (a, b, c) or at most ns_steps rows of them, got "
            f"shape {shape} with ns_steps={ns_steps}"
        )
    coeffs = np.asarray(ns_coeffs, np.float32)
    coeffs = coeffs if coeffs.ndim == 1 else coeffs[-ns_steps:]

    def init_fn(params):
        boxes = jax.tree.leaves(resolve_dimension_numbers(weight_dimension_numbers, params))
        for p, box in zip(jax.tree.leaves(params), boxes, strict=True):
            if jnp.ndim(p) != 2 and (box.value is None or jnp.ndim(p) < 2):
                raise JoptError(
                    f"scale_by_muon: needs 2-D parameters (or weight_dimension_numbers for "
                    f"higher ranks), got shape {jnp.shape(p)}"
                )
        return MuonState(
            count=jnp.zeros([], jnp.int32),
            mu=zeros_like(params, mu_dtype),
            ns_coeffs=jnp.asarray(coeffs),
        )

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        count = safe_increment(state.count)

        dims = resolve_dimension_numbers(weight_dimension_numbers, updates)

        def step(g, m, box):
            out_dtype = inexact(g).dtype
            g = inexact(g).astype(m.dtype)
            m = (1 - beta) * g + beta * m
            if nesterov:
                m_hat = beta * _bias_corrected(m, beta, safe_increment(count)) + (
                    1 - beta
                ) * _bias_corrected(g, beta, count)
            else:
                m_hat = _bias_corrected(m, beta, count)
            u = orthogonalize_via_newton_schulz(
                m_hat, state.ns_coeffs, ns_steps, preconditioning, eps, box.value
            )
            if adaptive:
                u = jnp.sum(m_hat.conj() * u) * u
            return u.astype(out_dtype), m

        out, mu = map_elementwise(step, updates, state.mu, dims, n_out=2)
        return out, MuonState(count=count, mu=mu, ns_coeffs=state.ns_coeffs)

    return GradientTransformation(init_fn, update_fn)


def scale_by_shape(
    weight_dimension_numbers: Any = None, consistent_rms: jax.typing.ArrayLike | None = None
) -> GradientTransformation:
    """Scale each matrix update (shape ``(n_in, n_out)``) by Muon's width transfer
    :math:`\\sqrt{\\max(1, n_{out}/n_{in})}`, or with ``consistent_rms`` :math:`r` by
    :math:`r\\sqrt{\\max(n_{in}, n_{out})}` (Liu et al. 2025, consistent update RMS). Same
    arguments as ``optax.contrib.scale_by_shape`` (fans of higher-rank leaves from
    ``weight_dimension_numbers``, see :func:`scale_by_muon`)."""

    def init_fn(params):
        del params
        return EmptyState()

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        dims = resolve_dimension_numbers(weight_dimension_numbers, updates)

        def scale(u, box):
            fan_in, fan_out = matrix_fans(u, box.value)
            if consistent_rms is None:
                factor = jnp.sqrt(jnp.maximum(1.0, fan_out / fan_in))
            else:
                factor = jnp.sqrt(float(max(fan_in, fan_out))) * consistent_rms
            return jnp.asarray(factor).astype(u.dtype) * u

        return map_elementwise(scale, updates, dims), state

    return GradientTransformation(init_fn, update_fn)

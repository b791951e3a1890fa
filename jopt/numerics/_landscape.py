"""Loss landscapes: 1-D interpolation and 2-D filter-normalized surfaces.

- 1-D (Goodfellow et al. 2015): ``L((1 − α) θ_a + α θ_b)`` for ``α`` in a range that extends
  past both ends, e.g. from the initial to the trained parameters.
- 2-D (Li et al. 2018, "Visualizing the Loss Landscape of Neural Nets"):
  ``L(θ + a δ + b η)`` on a grid, with random directions ``δ, η`` *filter-normalized*: each
  filter ``d_f`` of a random Gaussian direction is rescaled to ``d_f ‖θ_f‖ / ‖d_f‖``, so that
  the plot is not distorted by the scale invariance of ReLU networks. A "filter" is a slice
  along the last (output) axis of a kernel (flax ``Dense``: ``[in, out]``; ``Conv``:
  ``[h, w, in, out]``). 1-D leaves (biases, norm scales) get a zero direction, as in the
  paper's ``ignore biasbn`` setting, unless ``include_1d=True``.

The grid evaluations are pure; the caller may jit them.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jopt.core.errors import JoptError
from jopt.numerics._batches import LossFn, dataset_loss


def filter_normalized_direction(key: jax.Array, params: Any, include_1d: bool = False) -> Any:
    """A random direction like ``params`` whose every filter has the norm of ``params``'s."""
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, max(len(leaves), 1))

    def one(k: jax.Array, p: jax.Array) -> jax.Array:
        p = jnp.asarray(p)
        d = jax.random.normal(k, p.shape, p.dtype)
        if p.ndim <= 1:
            if not include_1d:
                return jnp.zeros_like(p)
            return d * jnp.linalg.norm(p) / (jnp.linalg.norm(d) + 1e-12)
        axes = tuple(range(p.ndim - 1))  # norms per output filter
        pn = jnp.sqrt(jnp.sum(p**2, axis=axes, keepdims=True))
        dn = jnp.sqrt(jnp.sum(d**2, axis=axes, keepdims=True))
        return d * pn / (dn + 1e-12)

    return jax.tree.unflatten(treedef, [one(k, p) for k, p in zip(keys, leaves, strict=False)])


def _combine(params: Any, coeffs: jax.Array, *directions: Any) -> Any:
    def leaf(p: jax.Array, *ds: jax.Array) -> jax.Array:
        out = p
        for c, d in zip(coeffs, ds, strict=True):
            out = out + c.astype(p.dtype) * d
        return out

    return jax.tree.map(leaf, params, *directions)


def interpolate_1d(
    loss_fn: LossFn,
    params_a: Any,
    params_b: Any,
    batches: Any = None,
    *,
    num: int = 41,
    alpha_range: tuple[float, float] = (-0.5, 1.5),
) -> tuple[jax.Array, jax.Array]:
    """``(alphas, losses)`` along ``θ(α) = θ_a + α (θ_b − θ_a)``; ``α = 0`` is ``θ_a``."""
    if not isinstance(num, int) or num < 2:
        raise JoptError(f"num must be an integer >= 2, got {num!r}")
    alphas = jnp.linspace(alpha_range[0], alpha_range[1], num, dtype=jnp.float32)
    delta = jax.tree.map(lambda a, b: b - a, params_a, params_b)
    losses = jax.lax.map(
        lambda a: dataset_loss(loss_fn, _combine(params_a, a[None], delta), batches), alphas
    )
    return alphas, losses


def surface_2d(
    loss_fn: LossFn,
    params: Any,
    batches: Any = None,
    *,
    key: jax.Array | None = None,
    num: int = 21,
    span: float = 1.0,
    directions: tuple[Any, Any] | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(a, b, losses[num, num])`` for ``L(θ + a δ + b η)``, ``a, b ∈ [−span, span]``.

    ``δ, η`` are two independent filter-normalized random directions unless given.
    ``losses[i, j]`` is at ``(a[j], b[i])`` (matplotlib's ``contour(a, b, losses)`` order).
    """
    if not isinstance(num, int) or num < 2:
        raise JoptError(f"num must be an integer >= 2, got {num!r}")
    if not span > 0:
        raise JoptError(f"span must be > 0, got {span!r}")
    if directions is None:
        if key is None:
            raise JoptError("surface_2d needs key= (for random directions) or directions=")
        k1, k2 = jax.random.split(key)
        directions = (
            filter_normalized_direction(k1, params),
            filter_normalized_direction(k2, params),
        )
    a = jnp.linspace(-span, span, num, dtype=jnp.float32)
    grid = jnp.stack(jnp.meshgrid(a, a), -1).reshape(-1, 2)  # row-major over (b, a)
    losses = jax.lax.map(
        lambda c: dataset_loss(loss_fn, _combine(params, c, *directions), batches), grid
    )
    return a, a, losses.reshape(num, num)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_interpolation(
    alphas: Any,
    losses: Any,
    file: str | None = None,
    *,
    labels: tuple[str, str] = ("θ_a", "θ_b"),
    title: str | None = None,
) -> Any:
    """Plot a 1-D interpolation (log scale when all losses are positive); save if ``file``."""
    plt = _plt()
    alphas, losses = np.asarray(alphas), np.asarray(losses)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(alphas, losses, "-o", ms=3)
    for x, lab in zip((0.0, 1.0), labels, strict=True):
        ax.axvline(x, color="gray", ls=":", lw=1)
        box = {"boxstyle": "round", "fc": "white", "ec": "0.7", "alpha": 0.9}
        ax.annotate(
            lab,
            (x, 0.97),
            xycoords=("data", "axes fraction"),
            ha="center",
            va="top",
            fontsize=8,
            bbox=box,
        )
    if np.all(losses > 0):
        ax.set_yscale("log")
    ax.set_xlabel("α  (θ = (1−α) θ_a + α θ_b)")
    ax.set_ylabel("loss")
    ax.set_title(title or "1-D linear interpolation")
    if file is not None:
        fig.savefig(file, dpi=120, bbox_inches="tight")
    return fig


def plot_surface(
    a: Any,
    b: Any,
    losses: Any,
    file: str | None = None,
    *,
    title: str | None = None,
    log: bool = True,
) -> Any:
    """Contour plot of a 2-D surface (``log10`` of the loss by default); save if ``file``."""
    plt = _plt()
    z = np.asarray(losses, np.float64)
    if log:
        z = np.log10(np.maximum(z, 1e-12))
    fig, ax = plt.subplots(figsize=(5.5, 4.8))
    cs = ax.contourf(np.asarray(a), np.asarray(b), z, levels=30, cmap="viridis")
    ax.contour(np.asarray(a), np.asarray(b), z, levels=15, colors="k", linewidths=0.4)
    fig.colorbar(cs, ax=ax, label="log10 loss" if log else "loss")
    ax.plot(0, 0, "r*", ms=10)
    ax.set_xlabel("δ (filter-normalized)")
    ax.set_ylabel("η (filter-normalized)")
    ax.set_title(title or "loss surface (Li et al. 2018)")
    if file is not None:
        fig.savefig(file, dpi=120, bbox_inches="tight")
    return fig

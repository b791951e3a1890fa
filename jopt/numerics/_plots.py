"""Plots for the curvature diagnostics: sharpness against ``2/lr``, and spectral densities."""

from __future__ import annotations

from typing import Any

import numpy as np

from jopt.numerics._curvature import SpectralDensity, density_on_grid


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_sharpness(
    steps: Any,
    sharpness: Any,
    learning_rate: Any,
    file: str | None = None,
    *,
    label: str | None = None,
    ax: Any = None,
    title: str | None = None,
) -> Any:
    """Sharpness ``λ_max`` over training, with the stability bound ``2/lr`` dashed.

    ``learning_rate`` is a float or one value per entry of ``steps`` (a schedule). This is
    the plot for ``diagnostics.sharpness_every`` (``metrics.jsonl`` keys ``sharpness`` and
    ``stability_bound``). Returns the figure; saves a PNG if ``file``.
    """
    plt = _plt()
    steps = np.asarray(steps)
    lam = np.asarray(sharpness, np.float64)
    bound = 2.0 / np.broadcast_to(np.asarray(learning_rate, np.float64), steps.shape)
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.5, 4))
    else:
        fig = ax.figure
    line = ax.plot(steps, lam, "-", lw=1.6, label=label or "sharpness λ_max")[0]
    ax.plot(
        steps,
        bound,
        "--",
        color=line.get_color(),
        lw=1,
        label=f"2/lr{f' ({label})' if label else ''}",
    )
    ax.set_xlabel("step")
    ax.set_ylabel("λ_max of the loss Hessian")
    ax.set_title(title or "sharpness against the stability bound 2/lr")
    ax.legend(fontsize=8)
    if file is not None:
        fig.savefig(file, dpi=120, bbox_inches="tight")
    return fig


def plot_spectral_density(
    density: SpectralDensity,
    file: str | None = None,
    *,
    sigma: float | None = None,
    num: int = 600,
    title: str | None = None,
) -> Any:
    """The smoothed SLQ density on a log-scale y axis (as in PyHessian's figures)."""
    plt = _plt()
    nodes = np.asarray(density.nodes)
    lo, hi = float(nodes.min()), float(nodes.max())
    pad = 0.05 * (hi - lo + 1e-12)
    grid = np.linspace(lo - pad, hi + pad, num, dtype=np.float32)
    dens = np.asarray(density_on_grid(density, grid, sigma))
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.semilogy(grid, np.maximum(dens, 1e-8))
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density")
    ax.set_title(title or "Hessian eigenvalue density (SLQ)")
    if file is not None:
        fig.savefig(file, dpi=120, bbox_inches="tight")
    return fig

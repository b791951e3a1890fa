"""Landscapes and Hessian spectra of the edge-of-stability network, before and after training.

Trains the network of ``run.py`` (digits subset, tanh MLP 64-64, MSE, full-batch GD) at one
learning rate, then draws with ``jopt.numerics``:

- ``interpolation.png``: the loss along θ(α) = θ_0 + α (θ_T − θ_0), α ∈ [−0.5, 1.5];
- ``surface.png``: the loss on a filter-normalized 2-D slice around θ_T (Li et al. 2018);
- ``spectrum.png``: the Hessian eigenvalue density (SLQ) at θ_0 and θ_T, with λ_max (Lanczos)
  and Hutchinson's trace in the legend.

    python experiments/edge_of_stability/landscape.py      # ~1 min of CPU
"""

from __future__ import annotations

import argparse
import json
import os

import jax
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from run import HERE, setup

import jopt
from jopt import numerics as nm


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--lr", type=float, default=0.2)
    ap.add_argument("--steps", type=int, default=1500)
    args = ap.parse_args()
    _, p0, loss_fn, batch = setup(args.n, 0)
    batches = jax.tree.map(lambda a: a[None], batch)
    tx = jopt.sgd(args.lr)
    p, s = p0, tx.init(p0)
    step = jax.jit(lambda p, s: _gd_step(loss_fn, tx, p, s, batch))
    for _ in range(args.steps):
        p, s = step(p, s)

    alphas, losses = jax.jit(lambda a, b: nm.interpolate_1d(loss_fn, a, b, batches, num=41))(p0, p)
    fig = nm.plot_interpolation(
        alphas,
        losses,
        os.path.join(HERE, "interpolation.png"),
        labels=("init", f"GD η={args.lr:g}, {args.steps} steps"),
        title="loss along the line from init to the trained weights",
    )
    plt.close(fig)
    a, b, z = jax.jit(lambda q, k: nm.surface_2d(loss_fn, q, batches, key=k, num=25, span=1.0))(
        p, jax.random.key(7)
    )
    fig = nm.plot_surface(
        a,
        b,
        z,
        os.path.join(HERE, "surface.png"),
        title="filter-normalized slice around the trained weights",
    )
    plt.close(fig)

    key = jax.random.key(3)
    stats = {}
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, q in (("init", p0), (f"trained (η={args.lr:g})", p)):
        dens = jax.jit(
            lambda q, k: nm.spectral_density(loss_fn, q, batches, key=k, num_probes=8, num_iters=60)
        )(q, key)
        lam = float(nm.sharpness(loss_fn, q, batches, key=key, num_iters=40))
        tr = nm.hutchinson_trace(loss_fn, q, batches, key=key, num_probes=100)
        grid = np.linspace(-2.0, 14.0, 800, dtype=np.float32)
        curve = np.asarray(nm.density_on_grid(dens, grid, sigma=0.1))
        ax.semilogy(
            grid,
            np.maximum(curve, 1e-6),
            label=f"{name}: λ_max={lam:.2f}, trace={float(tr.trace):.1f}±{float(tr.stderr):.1f}",
        )
        stats[name] = {
            "lambda_max": lam,
            "trace": float(tr.trace),
            "trace_stderr": float(tr.stderr),
            "mass_below_0": float(nm.density_mass(dens, -1e9, 0.0)),
            "mass_above_1": float(nm.density_mass(dens, 1.0, 1e9)),
            "loss": float(nm.dataset_loss(loss_fn, q, batches)),
        }
    ax.axvline(2 / args.lr, color="gray", ls="--", lw=1, label=f"2/η = {2 / args.lr:g}")
    ax.set_xlabel("Hessian eigenvalue")
    ax.set_ylabel("density (SLQ, σ = 0.1)")
    ax.set_title("Hessian eigenvalue density of the training loss")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(HERE, "spectrum.png"), dpi=120)
    plt.close(fig)
    stats["interpolation"] = {
        "alpha": np.asarray(alphas).tolist(),
        "loss": np.asarray(losses).tolist(),
    }
    with open(os.path.join(HERE, "landscape.json"), "w") as f:
        json.dump(stats, f, indent=1)
    for k, v in stats.items():
        if k != "interpolation":
            print(k, {kk: round(vv, 4) for kk, vv in v.items()})


def _gd_step(loss_fn, tx, p, s, batch):
    g = jax.grad(loss_fn)(p, batch)
    u, s = tx.update(g, s, p)
    return jopt.apply_updates(p, u), s


if __name__ == "__main__":
    main()

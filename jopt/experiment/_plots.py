"""Matplotlib figures for runs, comparisons and sweeps (Agg backend, PNG files)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator


def _save(fig, path: str) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    for ax in fig.axes:  # epochs are whole numbers: no 1.25 ticks on a short run
        if ax.get_xlabel() == "epoch":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    tmp = f"{path}.{os.getpid()}.tmp.png"
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    return path


def _series(rows: list[dict], key: str, x_key: str = "epoch") -> tuple[np.ndarray, np.ndarray]:
    pts = [(r[x_key], r[key]) for r in rows if r.get(key) is not None and r.get(x_key) is not None]
    if not pts:
        return np.zeros(0), np.zeros(0)
    x, y = zip(*pts, strict=True)
    return np.asarray(x, float), np.asarray(y, float)


def _mark_divergence(ax, diverged: dict | None) -> bool:
    """A red dashed line at the epoch where the run diverged (``summary["diverged"]``)."""
    if not diverged:
        return False
    ax.axvline(
        diverged["epoch"],
        color="tab:red",
        ls="--",
        label=f"diverged (step {diverged['step']}: {diverged['quantity']})",
    )
    return True


def plot_run(
    rows: list[dict], plot_dir: str, title: str = "", diverged: dict | None = None
) -> list[str]:
    """``loss.png``, ``accuracy.png`` (train and validation), ``learning_rate.png`` and, when
    sharpness was logged, ``sharpness.png`` (``lambda_max`` against the bound ``2/lr``).

    Only finite values are drawn; a diverged run (``diverged``: the summary's record) gets a
    marked line at its divergence, and its loss plot is drawn even with no finite point."""
    written = []
    for metric, log in (("loss", True), ("accuracy", False)):
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        drawn = False
        for split in ("train", "val"):
            x, y = _series(rows, f"{split}_{metric}")
            if len(x):
                ax.plot(x, y, marker="." if len(x) < 30 else None, label=split)
                drawn = True
        if not drawn and not (metric == "loss" and diverged):
            plt.close(fig)
            continue
        _mark_divergence(ax, diverged)
        if (
            log
            and drawn
            and all(
                v > 0
                for r in rows
                for k, v in r.items()
                if k.endswith("_loss") and isinstance(v, (int, float))
            )
        ):
            ax.set_yscale("log")
        ax.set(xlabel="epoch", ylabel=metric, title=f"{title} {metric}".strip())
        ax.grid(alpha=0.3)
        ax.legend()
        written.append(_save(fig, os.path.join(plot_dir, f"{metric}.png")))
    x, y = _series(rows, "learning_rate")
    if len(x):
        fig, ax = plt.subplots(figsize=(5.5, 3.0))
        ax.plot(x, y, marker="." if len(x) < 30 else None)
        ax.set(xlabel="epoch", ylabel="learning rate (end of epoch)", title=title)
        ax.grid(alpha=0.3)
        written.append(_save(fig, os.path.join(plot_dir, "learning_rate.png")))
    x, y = _series(rows, "sharpness")
    if len(x):  # diagnostics.sharpness_every: lambda_max beside the stability bound 2/lr
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        ax.plot(x, y, marker="o" if len(x) < 30 else None, label="sharpness $\\lambda_{max}$")
        bx, by = _series(rows, "stability_bound")
        if len(bx):
            ax.plot(bx, by, "--", color="k", label="2 / lr")
        ax.set(xlabel="epoch", ylabel="top Hessian eigenvalue", title=f"{title} sharpness".strip())
        ax.grid(alpha=0.3)
        ax.legend()
        written.append(_save(fig, os.path.join(plot_dir, "sharpness.png")))
    return written


def plot_overlay(
    runs: dict[str, list[dict]], metric: str, path: str, x_key: str = "epoch", title: str = ""
) -> str | None:
    """One curve per run for ``metric`` against ``x_key`` (``epoch`` or ``time``)."""
    many = len(runs) > 10
    fig, ax = plt.subplots(figsize=(9.5 if many else 6.5, 4.0))
    if many:  # tab10 would repeat colours; vary the line style too
        colors = plt.get_cmap("tab20").colors
    drawn = 0
    for label, rows in runs.items():
        x, y = _series(rows, metric, x_key)
        if len(x):
            style = {"color": colors[drawn % 20], "ls": "-" if drawn < 20 else "--"} if many else {}
            ax.plot(x, y, label=label, **style)
            drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    if metric.endswith("loss") and all(
        v > 0 for rows in runs.values() for v in _series(rows, metric, x_key)[1]
    ):
        ax.set_yscale("log")
    ax.set(xlabel="wall time (s)" if x_key == "time" else x_key, ylabel=metric, title=title)
    ax.grid(alpha=0.3)
    if many:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        ax.legend(fontsize=7)
    return _save(fig, path)


def plot_sensitivity(
    groups: dict[str, dict[float, Sequence[float]]], metric: str, path: str, title: str = ""
) -> str | None:
    """``metric`` (mean ± std over seeds) against learning rate, one line per group."""
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    drawn = 0
    for label, by_lr in groups.items():
        lrs = sorted(by_lr)
        vals = [np.asarray([v for v in by_lr[lr] if v is not None], float) for lr in lrs]
        keep = [i for i, v in enumerate(vals) if len(v)]
        if not keep:
            continue
        x = np.asarray([lrs[i] for i in keep])
        mean = np.asarray([vals[i].mean() for i in keep])
        std = np.asarray([vals[i].std() for i in keep])
        ax.plot(x, mean, marker="o", label=label)
        ax.fill_between(x, mean - std, mean + std, alpha=0.2)
        drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xscale("log")
    ax.set(xlabel="learning rate", ylabel=metric, title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)

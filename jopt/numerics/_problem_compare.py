"""Overlaying several optimizers' paths on one test problem (``jopt compare`` draws these).

The paths come from the caller: :func:`jopt.experiment.plot_problem_runs` recomputes them from
run directories and passes them here.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from jopt.core.errors import JoptError
from jopt.numerics.problems import Problem, plot_paths

__all__ = ["plot_problem_paths"]


def plot_problem_paths(problem: Problem, paths: dict[str, Any], plot_dir: str) -> list[str]:
    """Overlay ``paths`` (label -> ``[T+1, dim]`` iterates) on ``problem``.

    Writes ``paths.png`` (2-D problems with bounds: the contour with every path) and
    ``gaps.png`` (f − f* against the step, log scale) into ``plot_dir``; returns the PNG paths.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not paths:
        raise JoptError("plot_problem_paths needs at least one path")
    os.makedirs(plot_dir, exist_ok=True)
    written = []
    title = f"{problem.name}: {len(paths)} runs"
    if problem.dim == 2 and problem.bounds is not None:
        out = os.path.join(plot_dir, "paths.png")
        plt.close(plot_paths(problem, paths, out, title=title))
        written.append(out)
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (label, path) in enumerate(paths.items()):
        gap = np.asarray(problem.values(path), np.float64) - problem.f_star
        ax.semilogy(np.maximum(gap, 1e-30), ("-", "--", "-.", ":")[i % 4], label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("f − f*")
    ax.set_title(title)
    ax.legend(fontsize=8)
    out = os.path.join(plot_dir, "gaps.png")
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)
    written.append(out)
    return written

"""Overlaying several test-problem runs on one contour, for ``jopt compare``.

``jopt run`` on a config with ``data.name: rosenbrock`` (``jopt.experiment``) writes one run
directory per optimizer. A run is a pure function of its ``config.yaml``, so the paths are
recomputed from the configs (the optimizer is rebuilt exactly as the runner builds it, with
``jopt.experiment._build.build_optimizer``) instead of being stored: one jitted scan per run,
identical to the original path.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np

from jopt.core.errors import JoptError
from jopt.numerics.problems import get_problem, plot_paths, run_problem


def problem_path_from_config(config: Any) -> tuple[Any, np.ndarray]:
    """``(problem, path)`` for a test-problem config, as ``jopt run`` computes it."""
    from jopt.experiment._build import build_optimizer

    problem = get_problem(config.data.name, **dict(config.data.options))
    steps = int(config.train.steps or config.train.epochs)
    tx, _ = build_optimizer(config, steps, 1)
    key = jax.random.key(config.seed) if problem.sample is not None else None
    return problem, np.asarray(run_problem(problem, tx, steps, key=key))


def plot_problem_runs(run_dirs: list[str], plot_dir: str) -> list[str]:
    """Overlay the paths of several test-problem runs: ``paths.png`` (2-D problems: the
    contour with every path) and ``gaps.png`` (f − f* against the step, log scale).

    Every run must be on the same problem with the same options; otherwise ``JoptError``.
    Returns the PNG paths written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jopt.experiment._load import load_config

    if not run_dirs:
        raise JoptError("plot_problem_runs needs at least one run directory")
    problem, ident, paths = None, None, {}
    for d in run_dirs:
        cfg_file = os.path.join(d, "config.yaml")
        if not os.path.exists(cfg_file):
            raise JoptError(f"{d} is not a run directory (no config.yaml)")
        config = load_config(cfg_file)
        this = (config.data.name, sorted((k, repr(v)) for k, v in config.data.options.items()))
        if ident is not None and this != ident:
            raise JoptError(
                f"cannot overlay paths of different problems: {ident[0]} {dict(ident[1])} and "
                f"{this[0]} {dict(this[1])}"
            )
        ident = this
        problem, path = problem_path_from_config(config)
        label = f"{config.name}: {config.optimizer.name} lr={config.optimizer.learning_rate:g}"
        paths[label] = path
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

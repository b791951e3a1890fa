"""Test-problem runs side by side: paths recomputed from run directories, for ``jopt compare``.

A run is a pure function of its ``config.yaml``, so the paths are recomputed from the configs
(the optimizer is rebuilt exactly as the runner builds it) instead of being stored: one jitted
scan per run, identical to the original path.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np

from jopt.core import JoptError
from jopt.experiment._build import build_optimizer
from jopt.experiment._load import load_config
from jopt.numerics import get_problem, plot_problem_paths, run_problem

__all__ = ["plot_problem_runs", "problem_path_from_config"]


def problem_path_from_config(config: Any) -> tuple[Any, np.ndarray]:
    """``(problem, path)`` for a test-problem config, as ``jopt run`` computes it."""
    problem = get_problem(config.problem.name, **dict(config.problem.options))
    steps = int(config.train.steps or config.train.epochs)
    tx = build_optimizer(config, steps_per_epoch=1, total_steps=steps)
    key = jax.random.key(config.seed) if problem.sample is not None else None
    return problem, np.asarray(run_problem(problem, tx, steps, key=key))


def plot_problem_runs(run_dirs: list[str], plot_dir: str) -> list[str]:
    """Overlay the paths of several test-problem runs: ``paths.png`` (2-D problems: the
    contour with every path) and ``gaps.png`` (f − f* against the step, log scale).

    Every run must be on the same problem with the same options; otherwise ``JoptError``.
    Returns the PNG paths written.
    """
    if not run_dirs:
        raise JoptError("plot_problem_runs needs at least one run directory")
    problem, ident, paths = None, None, {}
    for d in run_dirs:
        cfg_file = os.path.join(d, "config.yaml")
        if not os.path.exists(cfg_file):
            raise JoptError(f"{d} is not a run directory (no config.yaml)")
        config = load_config(cfg_file)
        options = config.problem.options
        this = (config.problem.name, sorted((k, repr(v)) for k, v in options.items()))
        if ident is not None and this != ident:
            raise JoptError(
                f"cannot overlay paths of different problems: {ident[0]} {dict(ident[1])} and "
                f"{this[0]} {dict(this[1])}"
            )
        ident = this
        problem, path = problem_path_from_config(config)
        label = f"{config.name}: {config.optimizer.name} lr={config.optimizer.learning_rate:g}"
        paths[label] = path
    return plot_problem_paths(problem, paths, plot_dir)

"""Test problems as configured runs: what ``jopt run`` and ``jopt compare`` call for
``data.name: rosenbrock`` (or any name in :data:`jopt.numerics.PROBLEMS`).

A test problem has no data set and no model: the "parameters" are the point ``x`` and one
step is one epoch. The optimizer is built exactly as for a model run
(``jopt.experiment._build.build_optimizer``: the configured optimizer, its chain, schedule and
weight decay), so a problem config differs from a model config only in its ``data`` section.
``data.options`` holds the problem's options (e.g. ``dim`` for Rosenbrock) plus an optional
``x0`` start point.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np

from jopt.core.errors import JoptError
from jopt.numerics.problems import (
    get_problem,
    path_rows,
    plot_paths,
    problem_summary,
    run_problem,
)


def _problem_and_x0(config: Any):
    options = dict(config.data.options)
    x0 = options.pop("x0", None)
    problem = get_problem(config.data.name, **options)
    if x0 is not None and np.shape(x0) != (problem.dim,):
        raise JoptError(f"data.options.x0 must be a list of {problem.dim} numbers, got {x0!r}")
    return problem, x0


def run_problem_config(config: Any, *, runs_dir: str | None = None) -> str:
    """Run a test-problem config and write its run directory; return the directory's path.

    Steps: ``train.steps`` if set, else ``train.epochs``. Writes ``config.yaml``,
    ``metrics.jsonl`` (``epoch``/``step``, ``train_loss``, ``gap`` = f − f*, ``x``; at most
    ~1000 rows), ``summary.json`` (:func:`problem_summary` plus the ``final``/``best``/
    ``epochs_run`` fields ``jopt compare`` reads) and, for 2-D problems, ``plots/path.png``
    (the path on the contour) and ``plots/loss.png`` (f − f* against the step, log scale).
    """
    from jopt.experiment import _artifacts as art
    from jopt.experiment._build import build_optimizer
    from jopt.experiment._load import dump_config

    problem, x0 = _problem_and_x0(config)
    steps = int(config.train.steps if config.train.steps is not None else config.train.epochs)
    if steps < 1:
        raise JoptError(f"a test-problem run needs train.steps (or train.epochs) >= 1, got {steps}")
    tx, _ = build_optimizer(config, steps, 1)
    path = run_problem(problem, tx, steps, x0, key=jax.random.key(config.seed))
    rows = [
        {
            "epoch": r["step"],
            "step": r["step"],
            "train_loss": r["loss"],
            "gap": r["gap"],
            "x": r["x"],
        }
        for r in path_rows(problem, path, every=max(1, steps // 1000))
    ]
    summary = problem_summary(problem, path)
    best = min(rows, key=lambda r: r["train_loss"] if np.isfinite(r["train_loss"]) else np.inf)
    summary.update(
        optimizer=config.optimizer.name,
        learning_rate=float(config.optimizer.learning_rate),
        epochs_run=steps,
        final={"train_loss": summary["final_loss"]},
        best={"train_loss": best["train_loss"], "epoch": best["epoch"]},
    )
    run_dir = art.make_run_dir(runs_dir or config.output.runs_dir, config.name)
    art.atomic_write(os.path.join(run_dir, "config.yaml"), dump_config(config))
    art.write_jsonl(os.path.join(run_dir, "metrics.jsonl"), rows)
    art.write_json(os.path.join(run_dir, "summary.json"), summary)
    if config.output.plots:
        _plots(
            problem,
            {f"{config.optimizer.name} lr={config.optimizer.learning_rate:g}": path},
            os.path.join(run_dir, "plots"),
            config.name,
        )
    return run_dir


def _plots(
    problem, paths: dict[str, Any], plot_dir: str, title: str, steps: dict | None = None
) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(plot_dir, exist_ok=True)
    written = []
    if problem.dim == 2 and problem.bounds is not None:
        fig = plot_paths(problem, paths, os.path.join(plot_dir, "path.png"), title=title)
        plt.close(fig)
        written.append(os.path.join(plot_dir, "path.png"))
    fig, ax = plt.subplots(figsize=(6, 4))
    styles = ("-", "--", "-.", ":")
    for i, (label, path) in enumerate(paths.items()):
        gap = np.asarray(problem.values(path), np.float64) - problem.f_star
        x = np.arange(len(gap)) if steps is None else np.asarray(steps[label])
        ax.semilogy(x, np.maximum(gap, 1e-30), styles[i % 4], label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("f − f*")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.savefig(os.path.join(plot_dir, "loss.png"), dpi=120, bbox_inches="tight")
    plt.close(fig)
    written.append(os.path.join(plot_dir, "loss.png"))
    return written


def plot_problem_runs(run_dirs: list[str], plot_dir: str) -> list[str]:
    """Overlay the paths of several test-problem runs (one contour, one loss plot).

    For ``jopt compare``: every run must be on the same problem with the same options. Paths
    are read back from ``metrics.jsonl`` (its ``x`` column). Returns the PNGs written.
    """
    from jopt.experiment import _artifacts as art
    from jopt.experiment._load import load_config

    if not run_dirs:
        raise JoptError("plot_problem_runs needs at least one run directory")
    problem, key, paths, steps = None, None, {}, {}
    for d in run_dirs:
        config = load_config(os.path.join(d, "config.yaml"))
        this = (
            config.data.name,
            sorted((k, str(v)) for k, v in config.data.options.items() if k != "x0"),
        )
        if key is not None and this != key:
            raise JoptError(f"cannot overlay paths of different problems: {key[0]} and {this[0]}")
        key = this
        problem = problem or _problem_and_x0(config)[0]
        rows = art.read_jsonl(os.path.join(d, "metrics.jsonl"))
        if not rows or "x" not in rows[0]:
            raise JoptError(f"{d} is not a test-problem run (no x in metrics.jsonl)")
        label = f"{config.name}: {config.optimizer.name} lr={config.optimizer.learning_rate:g}"
        paths[label] = np.asarray([r["x"] for r in rows], np.float32)
        steps[label] = [r["step"] for r in rows]
    return _plots(problem, paths, plot_dir, f"{problem.name}: {len(paths)} runs", steps)

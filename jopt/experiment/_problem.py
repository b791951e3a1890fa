"""Configs whose objective is a classical test problem from ``jopt.numerics``.

``problem: {name: rosenbrock}`` runs the configured optimizer (and schedule) on the problem with
``jopt.numerics.run_problem`` for ``train.steps`` (default ``train.epochs``) steps; there is no
model or data set. ``problem.options`` go to ``jopt.numerics.get_problem``. The run directory
has the usual layout; each ``metrics.jsonl`` line is one step.
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from jopt.experiment import _artifacts as art
from jopt.experiment._build import build_optimizer, schedule_multiplier
from jopt.experiment._load import dump_config
from jopt.experiment._plots import plot_run
from jopt.experiment._schema import Config


def is_problem(config: Config) -> bool:
    """Whether the config's objective is a test problem (its ``problem`` section is set)."""
    return config.problem.name is not None


def get_config_problem(config: Config):
    """The ``jopt.numerics`` problem named by ``config.problem``."""
    import jopt.numerics as jn

    return jn.get_problem(config.problem.name, **dict(config.problem.options))


def run_problem_config(config: Config, quiet: bool = True) -> str:
    """Run a test-problem config and return its run directory."""
    import jopt.numerics as jn

    t0 = time.perf_counter()
    problem = get_config_problem(config)
    steps = int(config.train.steps or config.train.epochs)
    tx = build_optimizer(config, steps_per_epoch=1, total_steps=steps)
    mult = schedule_multiplier(config, steps, 1)
    key = jax.random.key(config.seed) if problem.sample is not None else None
    run_dir = art.make_run_dir(config.output.runs_dir, config.name)
    art.atomic_write(os.path.join(run_dir, "config.yaml"), dump_config(config))
    path = np.asarray(jn.run_problem(problem, tx, steps, key=key))
    values = np.asarray(jax.vmap(problem.fn)(jnp.asarray(path)))
    lr = config.optimizer.learning_rate
    factors = np.ones(len(values))
    if mult is not None:
        factors = np.asarray(jax.vmap(mult)(jnp.arange(len(values), dtype=jnp.int32)))
    rows = [
        {
            "epoch": t,
            "step": t,
            "train_loss": float(v),
            "gap_to_optimum": float(v - problem.f_star),
            "learning_rate": lr * float(f),
        }
        for t, (v, f) in enumerate(zip(values, factors, strict=True))
    ]
    art.write_jsonl(os.path.join(run_dir, "metrics.jsonl"), rows)
    summary = {
        "name": config.name,
        "status": "completed",
        "problem": problem.name,
        "steps": steps,
        "final": rows[-1],
        "best": min(rows, key=lambda r: r["train_loss"]),
        "x_final": path[-1].tolist(),
        "f_star": problem.f_star,
        "wall_time": time.perf_counter() - t0,
    }
    art.write_json(os.path.join(run_dir, "summary.json"), summary)
    if config.output.plots:
        plot_run(rows, os.path.join(run_dir, "plots"), config.name)
        if problem.dim == 2 and problem.bounds is not None:
            jn.plot_paths(
                problem,
                {config.optimizer.name: path},
                os.path.join(run_dir, "plots", "path.png"),
                title=config.name,
            )
    if not quiet:
        print(
            f"problem {problem.name}: f(x_T) = {rows[-1]['train_loss']:.6g} after {steps} "
            f"steps (f* = {problem.f_star:g})\n  results in {run_dir}"
        )
    return run_dir

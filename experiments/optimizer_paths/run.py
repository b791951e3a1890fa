"""Optimizer paths on Rosenbrock and Beale: SGD, momentum, RMSprop and Adam.

For each optimizer, a small learning-rate grid is run from the classical start point; the
learning rate that gets ``f − f*`` below ``1e-8`` *and keeps it there* in the fewest steps
(else the lowest final value) is kept, and its path is drawn on the contour. Everything is
jopt: the optimizers, ``jopt.numerics.run_problem`` (one jitted ``lax.scan`` per run)
and ``plot_paths``.

    python experiments/optimizer_paths/run.py      # ~1 min on 2 CPU cores

Writes ``rosenbrock_paths.png``, ``beale_paths.png`` and ``results.json`` next to this file
and prints the table of the README.
"""

from __future__ import annotations

import json
import os

import jax
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

import jopt
from jopt import numerics as nm

HERE = os.path.dirname(os.path.abspath(__file__))
STEPS = 30_000
THRESHOLD = 1e-8
GRID = [1e-4, 3e-4, 1e-3, 2e-3, 3e-3, 1e-2, 3e-2, 1e-1]
OPTIMIZERS = {
    "SGD": lambda lr: jopt.sgd(lr),
    "momentum 0.9": lambda lr: jopt.sgd(lr, momentum=0.9),
    "RMSprop": lambda lr: jopt.rmsprop(lr),
    "Adam": lambda lr: jopt.adam(lr),
}


def best_run(problem: nm.Problem, make):
    runs = []
    for lr in GRID:
        path = nm.run_problem(problem, make(lr), STEPS)
        final = float(problem.fn(path[-1])) - problem.f_star
        hit = nm.steps_to_reach(problem, path, THRESHOLD, stay=True)
        runs.append({"lr": lr, "steps_to_1e-8": hit, "final_gap": final, "path": path})
    reached = [r for r in runs if r["steps_to_1e-8"] is not None]
    finite = [r for r in runs if r["final_gap"] == r["final_gap"]]  # drop NaN
    best = (
        min(reached, key=lambda r: r["steps_to_1e-8"])
        if reached
        else min(finite, key=lambda r: r["final_gap"])
    )
    return best, runs


def main() -> None:
    results = {}
    for name in ("rosenbrock", "beale"):
        problem = nm.get_problem(name)
        paths, rows = {}, {}
        for opt, make in OPTIMIZERS.items():
            best, runs = best_run(problem, make)
            label = f"{opt} lr={best['lr']:g}"
            paths[label] = best["path"]
            rows[opt] = {
                "best_lr": best["lr"],
                "steps_to_1e-8": best["steps_to_1e-8"],
                "final_gap": best["final_gap"],
                "grid": [{k: r[k] for k in ("lr", "steps_to_1e-8", "final_gap")} for r in runs],
            }
            print(
                f"{name:10s} {opt:13s} best lr {best['lr']:<7g} steps to 1e-8: "
                f"{best['steps_to_1e-8']}  final gap {best['final_gap']:.2e}",
                flush=True,
            )
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5.5))
        nm.plot_paths(problem, paths, ax=ax1, title=f"{name}: best lr per optimizer")
        for i, (label, path) in enumerate(paths.items()):
            gap = np.asarray(problem.values(path)) - problem.f_star
            ax2.semilogy(np.maximum(gap, 1e-16), ("-", "--", "-.", ":")[i % 4], label=label)
        ax2.axhline(THRESHOLD, color="gray", lw=0.8)
        ax2.set_xlabel("step")
        ax2.set_ylabel("f − f*")
        ax2.set_title(f"{name}: suboptimality over {STEPS} steps")
        ax2.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(HERE, f"{name}_paths.png"), dpi=110)
        plt.close(fig)
        results[name] = {"x0": [float(v) for v in problem.x0], "steps": STEPS, "rows": rows}
    with open(os.path.join(HERE, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    print("\n| problem | optimizer | best lr | steps until f−f* stays < 1e-8 | f−f* at the end |")
    print("|---|---|---|---|---|")
    for name, res in results.items():
        for opt, r in res["rows"].items():
            print(
                f"| {name} | {opt} | {r['best_lr']:g} | {r['steps_to_1e-8'] or 'never'} | "
                f"{r['final_gap']:.1e} |"
            )


if __name__ == "__main__":
    jax.config.update("jax_numpy_dtype_promotion", "strict")
    main()

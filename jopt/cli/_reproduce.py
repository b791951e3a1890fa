"""``jopt reproduce RECIPE [--seeds ...]``: the training engine's reference accuracies.

The recipes are :data:`jopt.train.RECIPES`; see :func:`jopt.train.run_recipe`.
"""

from __future__ import annotations

import argparse
import statistics

from jopt.train import RECIPES, run_recipe

__all__ = ["add_arguments", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", choices=[*RECIPES, "all"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--progress", action="store_true")


def main(args: argparse.Namespace) -> int:
    names = list(RECIPES) if args.recipe == "all" else [args.recipe]
    rows = []
    for name in names:
        for seed in args.seeds:
            row = run_recipe(name, seed, args.progress)
            rows.append(row)
            print(
                f"{name:8s} seed {seed}: test acc {row['test_accuracy']:.4f} "
                f"(val {row['val_accuracy']:.4f}, best epoch {row['best_epoch']}/"
                f"{row['epochs_run']}, {row['steps_per_s']:.0f} steps/s)",
                flush=True,
            )
        accs = [r["test_accuracy"] for r in rows if r["recipe"] == name]
        print(f"{name:8s} test accuracy: mean {statistics.mean(accs):.4f}, min {min(accs):.4f}")
    return 0

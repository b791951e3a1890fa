"""``jopt lr-find CONFIG [KEY=VALUE ...]``: the learning-rate range test for a configured run.

The curve is :func:`jopt.experiment.lr_find_losses` (the configured optimizer with an
exponentially growing learning rate); :func:`jopt.numerics.analyse_lr_curve` picks the
suggestion. Writes ``config.yaml``, ``lr_find.json`` and ``plots/lr_find.png`` to a
fresh run directory under ``output.runs_dir`` and prints the suggestion.
"""

from __future__ import annotations

import argparse
import math
import os

from jopt.core import JoptError

__all__ = ["add_arguments", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML config file")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="dotted overrides, e.g. optimizer.name=sgd",
    )
    parser.add_argument("--min-lr", type=float, default=1e-6, help="first learning rate")
    parser.add_argument("--max-lr", type=float, default=10.0, help="last learning rate")
    parser.add_argument("--steps", type=int, default=100, help="number of steps of the sweep")
    parser.add_argument(
        "--diverge",
        type=float,
        default=4.0,
        help="stop once the smoothed loss exceeds this multiple of its minimum",
    )
    parser.add_argument(
        "--runs-dir",
        default=None,
        help="parent of the run directory (default: output.runs_dir of the config)",
    )


def main(args: argparse.Namespace) -> int:
    from jopt.experiment import (
        atomic_write,
        check_output_dir,
        dump_config,
        load_config,
        lr_find_losses,
        make_run_dir,
    )
    from jopt.numerics import analyse_lr_curve, exponential_lrs, write_lr_find

    if "=" in args.config:
        raise JoptError(f"expected a config file first, got the override {args.config!r}")
    if not args.diverge > 1 or not math.isfinite(args.diverge):
        raise JoptError(f"--diverge must be a finite number > 1, got {args.diverge}")
    if not (math.isfinite(args.min_lr) and math.isfinite(args.max_lr)):
        raise JoptError(f"--min-lr and --max-lr must be finite, got {args.min_lr}, {args.max_lr}")
    lrs = exponential_lrs(args.min_lr, args.max_lr, args.steps)  # checks order and count
    config = load_config(args.config, args.overrides)  # checks output.runs_dir and data files
    if args.runs_dir is not None:
        check_output_dir("--runs-dir", args.runs_dir)
    losses = lr_find_losses(config, lrs)
    result = analyse_lr_curve(lrs, losses, diverge=args.diverge)
    run_dir = make_run_dir(args.runs_dir or config.output.runs_dir, f"{config.name}-lr-find")
    atomic_write(os.path.join(run_dir, "config.yaml"), dump_config(config))
    write_lr_find(result, run_dir, title=f"{config.name}: {config.optimizer.name} range test")
    end = f"diverged at step {result.diverged_at}" if result.diverged_at else "no divergence"
    print(
        f"suggested learning rate: {result.suggestion:.3g} "
        f"(loss minimum at {result.min_loss_lr:.3g}; {end})"
    )
    print(f"wrote {run_dir}")
    return 0

"""``jopt run CONFIG [KEY=VALUE ...]`` and ``jopt run --resume RUN_DIR [--epochs N]``.

Exit codes: 0 the run finished (or stopped by ``stop_after``), 2 a bad input (one line, nothing
trained), 3 the run diverged (``train.nonfinite``: its summary says ``diverged`` and one line on
stderr says at which step and in which quantity), 130 interrupted.
"""

from __future__ import annotations

import argparse
import os

from jopt.cli._args import add_config_arguments, split_flags
from jopt.core import JoptError

__all__ = ["EXIT_DIVERGED", "add_arguments", "main"]

EXIT_DIVERGED = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, "YAML config file", "optimizer.learning_rate=3e-3", optional=True)
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped run")
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        metavar="N",
        help="with --resume: extend the run to N epochs (recorded in its config.yaml)",
    )


def main(args: argparse.Namespace) -> int:
    split_flags(args, {"--no-progress": "no_progress"})
    from jopt.experiment import load_config, resume, run, start_distributed

    progress = False if args.no_progress else None
    if args.resume:
        if args.config or args.overrides:
            raise JoptError("--resume takes only the run directory (its config.yaml is used)")
        return _exit(resume(args.resume, progress=progress, quiet=False, epochs=args.epochs))
    if args.epochs is not None:
        raise JoptError("--epochs extends a run: use it with --resume RUN_DIR")
    if not args.config:
        raise JoptError("no config file given; usage: jopt run CONFIG.yaml [KEY=VALUE ...]")
    if "=" in args.config:
        raise JoptError(f"expected a config file first, got the override {args.config!r}")
    config = load_config(args.config, args.overrides, validate=False)  # run() validates
    start_distributed(config)  # before validation, which already starts JAX (jopt.distributed)
    return _exit(run(config, progress=progress, quiet=False))


def _exit(run_dir: str) -> int:
    """3 when the run's summary says it diverged (its one line is already on stderr)."""
    from jopt.experiment import read_json

    path = os.path.join(run_dir, "summary.json")
    if os.path.exists(path) and read_json(path).get("status") == "diverged":
        return EXIT_DIVERGED
    return 0

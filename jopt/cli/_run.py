"""``jopt run CONFIG [KEY=VALUE ...]`` and ``jopt run --resume RUN_DIR``."""

from __future__ import annotations

import argparse

from jopt.cli._args import split_flags
from jopt.core import JoptError

__all__ = ["add_arguments", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", help="YAML config file")
    parser.add_argument(
        "overrides",
        nargs=argparse.REMAINDER,
        metavar="KEY=VALUE",
        help="dotted overrides, e.g. optimizer.learning_rate=3e-3",
    )
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped run")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def main(args: argparse.Namespace) -> int:
    split_flags(args, {"--no-progress": "no_progress"})
    from jopt.experiment import load_config, resume, run, start_distributed

    progress = False if args.no_progress else None
    if args.resume:
        if args.config or args.overrides:
            raise JoptError("--resume takes only the run directory (its config.yaml is used)")
        resume(args.resume, progress=progress, quiet=False)
        return 0
    if not args.config:
        raise JoptError("no config file given; usage: jopt run CONFIG.yaml [KEY=VALUE ...]")
    if "=" in args.config:
        raise JoptError(f"expected a config file first, got the override {args.config!r}")
    config = load_config(args.config, args.overrides, validate=False)  # run() validates
    start_distributed(config)  # before validation, which already starts JAX (jopt.distributed)
    run(config, progress=progress, quiet=False)
    return 0

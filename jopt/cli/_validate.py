"""``jopt validate CONFIG [KEY=VALUE ...]``: check a config without running it."""

from __future__ import annotations

import argparse

from jopt.core import JoptError
from jopt.experiment import load_config

__all__ = ["add_arguments", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "items",
        nargs="+",
        metavar="CONFIG_OR_KEY=VALUE",
        help="YAML config file(s), then dotted overrides applied to each",
    )
    parser.add_argument("--quiet", action="store_true", help="print nothing on success")


def main(args: argparse.Namespace) -> int:
    overrides = [a for a in args.items if "=" in a]
    paths = [a for a in args.items if "=" not in a]
    if not paths:
        raise JoptError("no config file given; usage: jopt validate CONFIG.yaml [KEY=VALUE ...]")
    for path in paths:
        config = load_config(path, overrides)
        if not args.quiet:
            print(
                f"{path}: ok ({config.name}: {config.data.name} / {config.model.name} / "
                f"{config.optimizer.name})"
            )
    return 0

"""``jopt validate CONFIG [KEY=VALUE ...]``: check a config without running it.

Everything ``jopt run`` checks before it trains: the config (names, types, ranges,
combinations), the output directory and data files, and the data itself (loaded: it is cheap)
with what depends on it (the loss and metrics fit the task, group patterns match parameters).
A config with a ``sweep.grid`` has every member checked the same way.
"""

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
    from jopt.experiment import check_members, expand, is_problem, setup

    overrides = [a for a in args.items if "=" in a]
    paths = [a for a in args.items if "=" not in a]
    if not paths:
        raise JoptError("no config file given; usage: jopt validate CONFIG.yaml [KEY=VALUE ...]")
    for path in paths:
        config = load_config(path, overrides)
        members = ""
        if not is_problem(config):
            if config.sweep.grid:
                configs = [c for _, c in expand(config)]
                check_members(configs)
                members = f", {len(configs)} sweep members"
            else:
                setup(config)  # loads the data: the data checks and those that need it
        if not args.quiet:
            print(
                f"{path}: ok ({config.name}: {config.data.name} / {config.model.name} / "
                f"{config.optimizer.name}{members})"
            )
    return 0

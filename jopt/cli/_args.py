"""Argument helpers shared by the commands."""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

from jopt.core import JoptError

__all__ = ["OneLineParser", "add_config_arguments", "split_flags"]


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr (exit code 2), like every
    other jopt error; ``--help`` still prints the full usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_config_arguments(
    parser: argparse.ArgumentParser, config_help: str, example: str, *, optional: bool = False
) -> None:
    """The arguments of a command that runs a config: ``CONFIG``, the ``KEY=VALUE`` overrides
    after it (sorted by :func:`split_flags`) and ``--no-progress``. ``optional``: the config may
    be left out (``jopt run --resume``)."""
    parser.add_argument("config", nargs="?" if optional else None, help=config_help)
    parser.add_argument(
        "overrides",
        nargs=argparse.REMAINDER,
        metavar="KEY=VALUE",
        help=f"dotted overrides, e.g. {example}",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def split_flags(args: Any, flags: dict[str, str]) -> None:
    """Move ``--flag`` items that came after the overrides onto ``args``.

    argparse stops matching options once a positional list has begun, so
    ``jopt run cfg.yaml --no-progress a=b`` would otherwise fail; the commands collect the
    tail with ``argparse.REMAINDER`` and sort it here. ``flags`` maps ``--flag`` to the
    attribute set to True.
    """
    rest = []
    for item in args.overrides:
        if item.startswith("--"):
            if item not in flags:
                raise JoptError(f"unknown option {item!r}; allowed: {', '.join(flags)}")
            setattr(args, flags[item], True)
        else:
            rest.append(item)
    args.overrides = rest

"""``jopt list``: the optimizers, schedules, datasets, models and activations a config may name."""

from __future__ import annotations

import argparse
import textwrap

from jopt.core import JoptError
from jopt.experiment import listing

__all__ = ["add_arguments", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "what",
        nargs="?",
        default=None,
        help="one category (optimizers, schedules, datasets, models, ...)",
    )


def main(args: argparse.Namespace) -> int:
    everything = listing()
    if args.what is not None:
        matches = [k for k in everything if k.startswith(args.what.lower())]
        if not matches:
            raise JoptError(
                f"unknown category {args.what!r}; allowed: "
                f"{', '.join(k.split()[0] for k in everything)}"
            )
        everything = {k: everything[k] for k in matches}
    for category, names in everything.items():
        body = ", ".join(names) if names else "(none available yet)"
        print(f"{category}:")
        print(textwrap.fill(body, width=96, initial_indent="  ", subsequent_indent="  "))
    return 0

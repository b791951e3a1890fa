"""Argument helpers shared by the commands."""

from __future__ import annotations

from typing import Any

from jopt.core import JoptError

__all__ = ["split_flags"]


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

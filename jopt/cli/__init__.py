"""The commands layer: every ``jopt`` command, and nothing else.

Each command is a module here with ``add_arguments(parser)`` and ``main(args) -> int``: it
parses its arguments and calls public library functions. No library package holds a command.
Only the chosen module is imported, so ``jopt --help`` is fast. A :class:`jopt.JoptError`
anywhere becomes one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import importlib
import sys

__all__ = ["COMMANDS", "main"]

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("jopt.cli._run", "train one configured experiment"),
    "validate": ("jopt.cli._validate", "check a config without running it"),
    "sweep": ("jopt.cli._sweep", "run a grid of configs (vmapped where possible)"),
    "compare": ("jopt.cli._compare", "tabulate and plot runs or sweeps side by side"),
    "list": ("jopt.cli._list", "list optimizers, schedules, datasets, models"),
    "bench": ("jopt.cli._bench", "benchmark updates, train steps and data parallelism"),
    "lr-find": ("jopt.cli._lr_find", "find a learning rate by an exponential sweep"),
    "reproduce": ("jopt.cli._reproduce", "reproduce the reference accuracies of jopt.train"),
}


def _usage() -> str:
    lines = ["usage: jopt COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run 'jopt COMMAND --help' for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run ``jopt COMMAND ARGS...``; returns the exit code (2 for a :class:`JoptError`)."""
    from jopt.core import JoptError

    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(
            f"jopt: error: unknown command {name!r}; choose from {', '.join(COMMANDS)}",
            file=sys.stderr,
        )
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    from jopt.cli._args import OneLineParser

    parser = OneLineParser(prog=f"jopt {name}", description=COMMANDS[name][1])
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    try:
        return int(module.main(args) or 0)
    except JoptError as e:
        print(f"jopt {name}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"jopt {name}: interrupted", file=sys.stderr)
        return 130

"""The ``jopt`` command. A thin dispatcher: each subcommand lives in its own module.

A subcommand module provides ``add_arguments(parser)`` and ``main(args) -> int``. Only the
chosen module is imported, so ``jopt --help`` is fast. A :class:`jopt.JoptError` anywhere
becomes one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("jopt.experiment.cmd_run", "train one configured experiment"),
    "validate": ("jopt.experiment.cmd_validate", "check a config without running it"),
    "sweep": ("jopt.experiment.cmd_sweep", "run a grid of configs (vmapped where possible)"),
    "compare": ("jopt.experiment.cmd_compare", "tabulate and plot runs or sweeps side by side"),
    "list": ("jopt.experiment.cmd_list", "list optimizers, schedules, datasets, models"),
    "bench": ("jopt.bench.cmd_bench", "benchmark updates and train steps against optax"),
    "lr-find": ("jopt.numerics.cmd_lr_find", "find a learning rate by an exponential sweep"),
}


def _usage() -> str:
    lines = ["usage: jopt COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run 'jopt COMMAND --help' for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from jopt.core.errors import JoptError

    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"jopt: error: unknown command {name!r}; choose from {', '.join(COMMANDS)}",
              file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"jopt {name}", description=COMMANDS[name][1])
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


if __name__ == "__main__":
    sys.exit(main())

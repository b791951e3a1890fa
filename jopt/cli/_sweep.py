"""``jopt sweep CONFIG [KEY=VALUE ...] [--protocol]``: a grid × seeds, vmapped where possible."""

from __future__ import annotations

import argparse
import os

from jopt.cli._args import add_config_arguments, split_flags

__all__ = ["add_arguments", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(
        parser, "YAML config file with a sweep section", "sweep.seeds=3 train.epochs=5"
    )
    parser.add_argument(
        "--protocol",
        action="store_true",
        help="tune on the grid with one seed, then re-run the best setting "
        "with sweep.protocol.seeds seeds (mean ± std)",
    )
    parser.add_argument(
        "--sequential",
        action="store_true",
        help="run every member on its own instead of vmapping groups",
    )


def main(args: argparse.Namespace) -> int:
    split_flags(
        args,
        {"--no-progress": "no_progress", "--protocol": "protocol", "--sequential": "sequential"},
    )
    from jopt.experiment import load_config, protocol, read_json, sweep

    config = load_config(args.config, args.overrides)
    progress = config.output.progress and not args.no_progress
    if args.protocol:
        directory, _ = protocol(config, progress=progress)
        with open(os.path.join(directory, "protocol.md"), encoding="utf-8") as f:
            print(f.read())
    else:
        directory = sweep(config, progress=progress, vmap=not args.sequential)
        info = read_json(os.path.join(directory, "sweep.json"))
        with open(os.path.join(directory, "results.md"), encoding="utf-8") as f:
            print(f.read())
        print(
            f"{len(info['members'])} runs in {info['num_compiled_groups']} compiled group(s), "
            f"wall {info['wall_time']:.1f} s"
        )
    print(f"results in {directory}")
    return 0

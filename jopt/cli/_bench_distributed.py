"""``jopt bench distributed [--devices 1 2 4 8] [--zero 1] [--execution packed|per_leaf]``.

Requests enough host devices before JAX starts (so it runs on a laptop), then prints a table of
data-parallel steps per second per device count (:func:`jopt.distributed.bench_data_parallel`).
"""

from __future__ import annotations

import argparse
import json

__all__ = ["add_distributed_arguments", "run_distributed"]


def add_distributed_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--hidden", type=int, nargs="+", default=[128])
    parser.add_argument("--zero", type=int, default=0, choices=(0, 1))
    parser.add_argument(
        "--execution",
        default="packed",
        choices=("packed", "per_leaf"),
        help="packed buffers, as jopt run trains (default), or leaf by leaf",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None, help="also write the report to this file")


def run_distributed(args: argparse.Namespace) -> int:
    from jopt.distributed import bench_data_parallel, request_cpu_devices

    request_cpu_devices(max(args.devices))
    report = bench_data_parallel(
        args.devices,
        dataset=args.dataset,
        hidden=args.hidden,
        batch_size=args.batch_size,
        zero=args.zero,
        repeats=args.repeats,
        execution=args.execution,
    )
    print(
        f"{report['platform']} ({report['device_kind']}), {report['dataset']}, "
        f"batch {report['batch_size']}, {report['steps_per_epoch']} steps/epoch, "
        f"zero={report['zero']}, {report['execution']}"
    )
    print(f"{'devices':>8} {'steps/s':>10} {'vs first':>9} {'compile s':>10}")
    for r in report["results"]:
        print(
            f"{r['devices']:>8} {r['steps_per_s']:>10.1f} {r['speedup_vs_first']:>9.2f} "
            f"{r['compile_s']:>10.2f}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0

"""``jopt bench``: benchmark optimizer updates, train steps and data-parallel epochs.

    jopt bench update --optimizer adam --params 10M --leaves 1,100,1000
    jopt bench train --config cfg.yaml [--devices 1,2,4,8]
    jopt bench distributed [--devices 1 2 4 8] [--zero 1]

Each prints a table and, with ``--json PATH``, writes the report whose fields are documented in
``benchmarks/README.md``. The timing lives in :mod:`jopt.bench` (``update_report``,
``run_train``) and :func:`jopt.distributed.bench_data_parallel`; this module parses the options
and loads the config.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from jopt.cli._bench_distributed import add_distributed_arguments, run_distributed
from jopt.core import JoptError

__all__ = ["add_arguments", "main", "parse_devices"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench_command", metavar="{update,train,distributed}")
    up = sub.add_parser("update", help="one optimizer update: jopt, fused and optax vs roofline")
    up.add_argument(
        "--optimizer", default="adam", help="comma-separated: adam, adamw, sgd (momentum 0.9)"
    )
    up.add_argument("--params", default="1M", help="parameter count, e.g. 1000, 10K, 10M")
    up.add_argument(
        "--leaves",
        default="1,100,1000",
        help="comma-separated leaf counts to spread the parameters over",
    )
    _common(up, impls="optax,jopt,fused,packed")
    tr = sub.add_parser("train", help="whole train steps and scan-fused epochs from a config")
    tr.add_argument("--config", required=True, help="an experiment YAML file")
    tr.add_argument("overrides", nargs="*", help="config overrides, e.g. train.epochs=1")
    tr.add_argument(
        "--devices",
        default=None,
        help="also measure data-parallel epochs on these device counts, e.g. 2 or 1,2,4,8 "
        "(on CPU, jopt asks JAX for that many host devices)",
    )
    _common(tr, impls="optax,jopt,per_leaf,fused,grad_packed")
    dp = sub.add_parser("distributed", help="data-parallel steps per second per device count")
    add_distributed_arguments(dp)


def _common(p: argparse.ArgumentParser, impls: str) -> None:
    p.add_argument(
        "--impl", default=impls, help=f"comma-separated implementations: {impls.replace(',', ', ')}"
    )
    p.add_argument("--steps", type=int, default=20, help="timed steps per case (after warm-up)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls before timing")
    p.add_argument(
        "--min-time",
        type=float,
        default=0.0,
        help="keep timing each case until this many seconds have been timed",
    )
    p.add_argument("--json", default=None, help="write the JSON report to this path")


def _write_json(path: str | None, report: dict[str, Any]) -> None:
    if not path:
        return
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(report, f, indent=2)
    os.replace(tmp, path)  # atomic: a reader never sees half a report
    print(f"wrote {path}")


def parse_devices(text: str | None) -> list[int]:
    """``"1,2,4"`` -> ``[1, 2, 4]``; positive, distinct counts, else a one-line JoptError."""
    if text is None:
        return []
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    try:
        counts = [int(t) for t in items]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1 or len(set(counts)) != len(counts):
        raise JoptError(
            f"--devices must be distinct positive device counts such as 2 or 1,2,4,8, got {text!r}"
        )
    return counts


def _update(args: argparse.Namespace) -> dict[str, Any]:
    from jopt.bench import parse_count, parse_list, update_report

    return update_report(
        parse_list(args.optimizer, "--optimizer"),
        parse_list(args.impl, "--impl"),
        parse_count(args.params),
        [parse_count(x) for x in parse_list(args.leaves, "--leaves")],
        steps=args.steps,
        warmup=args.warmup,
        min_time=args.min_time,
    )


def _train(args: argparse.Namespace) -> dict[str, Any]:
    devices = parse_devices(getattr(args, "devices", None))
    if devices and max(devices) > 1:
        # before any JAX work: on CPU, JAX creates its host devices once, when it starts
        from jopt.distributed import request_cpu_devices

        request_cpu_devices(max(devices))
    from jopt.bench import run_train, train_impls
    from jopt.experiment import bench_optimizers, load_config, setup

    impls = train_impls(args.impl)
    config = load_config(args.config, list(args.overrides))
    s = setup(config)
    _check_devices(devices, s)
    txs = bench_optimizers(config, impls, s.steps_per_epoch)
    import jax

    from jopt.experiment import config_precision

    policy = config_precision(config)  # train.precision: setup's model and the optimizer follow
    with jax.default_matmul_precision(policy.matmul):  # traced inside: fixed in the programs
        timed = run_train(
            s,
            txs,
            batch_size=config.batching.batch_size,
            seed=config.seed,
            steps=args.steps,
            warmup=args.warmup,
            min_time=args.min_time,
        )
    report = {k: timed[k] for k in ("schema", "kind", "environment")}
    report["config"] = {
        "path": str(args.config),
        "overrides": list(args.overrides),
        "name": config.name,
        "optimizer": config.optimizer.name,
        "learning_rate": float(config.optimizer.learning_rate),
        "impls": impls,
        "steps": args.steps,
        "warmup": args.warmup,
        # the resolved train.precision / matmul precision the timed programs ran under
        "precision": policy.describe(),
    }
    report.update({k: v for k, v in timed.items() if k not in report})
    with jax.default_matmul_precision(policy.matmul):
        report["data_parallel"] = _data_parallel(args, config, s, devices) if devices else None
    return report


def _check_devices(devices: list[int], s: Any) -> None:
    """Fail before any timing: enough devices, and the batch splits over each count."""
    if not devices:
        return
    import jax

    from jopt.distributed import check_batching

    have = len(jax.devices())
    if max(devices) > have:
        raise JoptError(
            f"--devices {max(devices)}: only {have} {jax.devices()[0].platform} device(s) exist "
            "(on CPU jopt asks for host devices only when JAX has not started yet)"
        )
    for n in devices:
        check_batching(s.batching, len(s.data.y_train), n)


def _data_parallel(args: argparse.Namespace, config: Any, s: Any, devices: list[int]) -> dict:
    """Data-parallel epochs of the configured optimizer (plain jopt) on each device count."""
    from jopt.bench import format_table
    from jopt.distributed import bench_data_parallel
    from jopt.experiment import bench_optimizers

    rep = bench_data_parallel(
        devices=tuple(devices),
        data=s.data,
        model=s.model,
        tx=bench_optimizers(config, ["jopt"], s.steps_per_epoch)["jopt"],
        batching=s.batching,
        spec=s.spec,
        repeats=max(args.steps // 4, 3),
        seed=config.seed,
    )
    print(
        f"\ndata-parallel epochs (jopt {config.optimizer.name}, batch {rep['batch_size']}, "
        f"{rep['steps_per_epoch']} steps/epoch, {rep['platform']}):"
    )
    print(
        format_table(
            ["devices", "steps/s", "vs first", "compile s"],
            [
                [r["devices"], r["steps_per_s"], r["speedup_vs_first"], r["compile_s"]]
                for r in rep["results"]
            ],
        )
    )
    return rep


def main(args: argparse.Namespace) -> int:
    if args.bench_command is None:
        raise JoptError("choose a benchmark: 'jopt bench update ...' or 'jopt bench train ...'")
    if getattr(args, "json", None) is not None:  # before the benchmark runs, not after
        from jopt.experiment import check_output_file

        check_output_file("--json", args.json)
    if args.bench_command == "distributed":
        return run_distributed(args)
    if args.steps < 1 or args.warmup < 0:
        raise JoptError(f"--steps must be >= 1 and --warmup >= 0, got {args.steps}, {args.warmup}")
    report = _update(args) if args.bench_command == "update" else _train(args)
    _write_json(args.json, report)
    return 0

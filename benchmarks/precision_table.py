"""Precision table (issue 17): steps/s and final metrics in float32, float32 + TF32 matmuls and
bf16_mixed, for three models trained with :func:`jopt.train.fit` (public APIs only).

Models (built-in ``jopt.models``, so the policy reaches them as ``dtype``/``param_dtype``):

- ``mlp50``: the 50-block MLP (50 x [Dense 64 -> LayerNorm -> ReLU], then a head) on digits;
- ``cnn``: the MNIST-1D CNN of ``configs/mnist1d_cnn.yaml`` (3 x 25 channels, kernel 5);
- ``wide``: a 4096-wide MLP (two hidden layers) on MNIST-1D, batch 256.

Modes: ``float32`` (matmuls at ``highest``), ``float32_tf32`` (``matmul_precision: default``:
TF32 on Ampere+ GPUs, the same as float32 on CPU) and ``bf16_mixed``. Each run is compiled
ahead of time (``compile_s``, reported apart) and ``steps_per_s`` excludes compilation. The
first epoch is a warm-up and is not counted in ``steps_per_s``.

Usage::

    python benchmarks/precision_table.py                 # the full table (meant for a GPU)
    python benchmarks/precision_table.py --small         # seconds on a CPU (smoke test)
    python benchmarks/precision_table.py --json out.json --models cnn,wide

Prints a markdown table (for benchmarks/README.md) and optionally writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys

import jax

import jopt
from jopt.data import Batching, load_dataset
from jopt.models import make_model, precision_policy
from jopt.train import fit, precision_optimizer

MODES = {
    "float32": ("float32", None),
    "float32_tf32": ("float32", "default"),
    "bf16_mixed": ("bf16_mixed", None),
}


def model_specs(small: bool) -> dict[str, dict]:
    """name -> data set, model options, optimizer, batch size and epochs."""
    return {
        "mlp50": {
            "data": "digits",
            "model": "mlp",
            "opts": {"hidden": (16 if small else 64,) * (5 if small else 50), "norm": "layer"},
            "lr": 1e-3,
            "batch": 32,
            "epochs": 2 if small else 20,
        },
        "cnn": {
            "data": "mnist1d",
            "model": "cnn",
            "opts": {
                "channels": (8, 8) if small else (25, 25, 25),
                "kernel_size": 5,
                "dense": 0,
                "pool": 2,
            },
            "lr": 1e-2,
            "batch": 100,
            "epochs": 2 if small else 50,
        },
        "wide": {
            "data": "mnist1d",
            "model": "mlp",
            "opts": {"hidden": (256 if small else 4096,) * 2},
            "lr": 1e-3,
            "batch": 256,
            "epochs": 2 if small else 30,
        },
    }


def run_one(spec: dict, data, mode: str, seed: int) -> dict:
    policy = precision_policy(*MODES[mode])
    model = make_model(
        spec["model"], num_outputs=data.num_classes, precision=policy, **spec["opts"]
    )
    tx = precision_optimizer(jopt.adam(spec["lr"]), policy)
    times: list[float] = []

    def on_epoch(epoch, rec, state):
        del state
        times.append(rec["epoch_time"])

    with jax.default_matmul_precision(policy.matmul):
        r = fit(
            model,
            tx,
            data,
            epochs=spec["epochs"],
            key=seed,
            batching=Batching("minibatch", spec["batch"]),
            eval_splits=("test",),
            on_epoch=on_epoch,
        )
    timed = times[1:] or times  # the first epoch warms caches up
    last = r.history[-1]
    return {
        "mode": mode,
        **policy.describe(),
        "steps_per_s": r.steps_per_epoch * len(timed) / max(sum(timed), 1e-12),
        "compile_s": r.timings["compile_s"],
        "epochs": len(r.history),
        "test_accuracy": last.get("test_accuracy"),
        "test_loss": last.get("test_loss"),
        "train_loss": last.get("train_loss"),
    }


def markdown(rows: list[dict]) -> str:
    out = [
        "| model | mode | steps/s | compile s | test acc | test loss |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['model']} | {r['mode']} | {r['steps_per_s']:.1f} | {r['compile_s']:.2f} | "
            f"{100 * r['test_accuracy']:.2f} | {r['test_loss']:.4f} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="tiny models and 2 epochs (CPU smoke)")
    ap.add_argument("--models", default="mlp50,cnn,wide")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--epochs", type=int, default=None, help="override every model's epochs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="write the rows here")
    args = ap.parse_args(argv)
    specs = model_specs(args.small)
    names = [m for m in args.models.split(",") if m]
    modes = [m for m in args.modes.split(",") if m]
    bad = [m for m in names if m not in specs] + [m for m in modes if m not in MODES]
    if bad:
        print(f"error: unknown model or mode {bad}; models: {list(specs)}, modes: {list(MODES)}")
        return 2
    rows = []
    datasets: dict[str, object] = {}
    for name in names:
        spec = dict(specs[name])
        if args.epochs is not None:
            spec["epochs"] = args.epochs
        if spec["data"] not in datasets:
            datasets[spec["data"]] = load_dataset(spec["data"], seed=args.seed)
        for mode in modes:
            row = {"model": name, **run_one(spec, datasets[spec["data"]], mode, args.seed)}
            rows.append(row)
            print(
                f"{name:6s} {mode:13s} {row['steps_per_s']:9.1f} steps/s  "
                f"acc {100 * row['test_accuracy']:.2f}",
                file=sys.stderr,
                flush=True,
            )
    device = jax.devices()[0]
    print(f"device: {device.platform} ({device.device_kind}), jax {jax.__version__}\n")
    print(markdown(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": device.device_kind, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

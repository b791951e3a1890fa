"""Benchmark (not a test): a K-member learning-rate sweep as one vmapped program vs K runs.

    python experiments/sweep_benchmark/bench.py [--k 16] [--epochs 5] [--out results.json]

Both arms run the same K configs end to end through ``jopt.experiment._sweep.sweep``
(``vmap=True``: one group, compiled once; ``vmap=False``: K separate runs, each compiled),
in the same process, one after the other. Reports wall time, compile time and train time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import jax
import numpy as np

from jopt.experiment import config_from_dict, read_json, sweep


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    lrs = [float(x) for x in np.logspace(-4, -1, a.k)]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        cfg = config_from_dict(
            {
                "name": "bench",
                "data": {"name": "digits"},
                "model": {"name": "mlp", "hidden": [64]},
                "optimizer": {"name": "adam", "learning_rate": 1e-3},
                "batching": {"batch_size": 32},
                "train": {"epochs": a.epochs},
                "output": {
                    "runs_dir": tmp,
                    "progress": False,
                    "plots": False,
                    "checkpoints": False,
                },
                "sweep": {"grid": {"optimizer.learning_rate": lrs}, "seeds": 1},
            }
        )
        for arm, vmap in (("vmapped", True), ("sequential", False)):
            t = time.perf_counter()
            d = sweep(cfg, vmap=vmap)
            wall = time.perf_counter() - t
            info = read_json(os.path.join(d, "sweep.json"))
            results[arm] = {
                "wall_s": wall,
                "groups": info["num_compiled_groups"],
                "compile_s": sum(g["compile_time"] for g in info["groups"]),
                "train_s": sum(g["train_time"] for g in info["groups"]),
                "val_loss": [r["val_loss"] for r in info["results"]],
            }
    v, s = results["vmapped"], results["sequential"]
    diff = float(np.max(np.abs(np.asarray(v["val_loss"]) - np.asarray(s["val_loss"]))))
    report = {
        "k": a.k,
        "epochs": a.epochs,
        "device": str(jax.devices()[0]),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_avg_1min": os.getloadavg()[0],
        "vmapped": v,
        "sequential": s,
        "wall_ratio_vmapped_over_sequential": v["wall_s"] / s["wall_s"],
        "train_ratio": v["train_s"] / s["train_s"],
        "compile_ratio": v["compile_s"] / s["compile_s"],
        "max_abs_val_loss_diff": diff,
    }
    for arm in ("vmapped", "sequential"):
        r = results[arm]
        print(
            f"{arm:>10}: wall {r['wall_s']:7.1f} s  compile {r['compile_s']:6.1f} s  "
            f"train {r['train_s']:6.2f} s  ({r['groups']} compiled programs)"
        )
    print(
        f"wall ratio vmapped/sequential = {report['wall_ratio_vmapped_over_sequential']:.3f} "
        f"(train {report['train_ratio']:.2f}, compile {report['compile_ratio']:.3f}); "
        f"max |val_loss diff| = {diff:.2e}; load avg {report['load_avg_1min']:.1f}"
    )
    if a.out:
        with open(a.out, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()

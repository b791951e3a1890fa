"""Issue 13's goals, every row measured side by side in one process (no timing assertions).

    python benchmarks/packed_goals.py          # -> benchmarks/results/packed_goals.{json,md}

1. The default ``jopt run`` path against the per-leaf gradient alone, through ``jopt bench
   train``'s engine (``jopt.bench.run_train``: ``make_train_step`` / ``make_train_epoch``,
   jitted once, state donated) on two configs:
   - ``benchmarks/configs/mlp50_layernorm.yaml``: the 50-block flax MLP (202 leaves). Goals:
     ``jopt`` step <= 1.0x and step compile <= 1.2x the gradient alone.
   - ``benchmarks/configs/leaves2000.yaml``: 2000 leaves of shape (4,). Goals: step and step
     compile <= 1.1x.
   Implementations: ``grad`` (the reference), ``optax``, ``jopt`` (the default: packed, with
   the leaf offsets as runtime arguments), ``per_leaf`` and ``grad_packed`` (the gradient
   through packed parameters alone). Each config runs ``--repeats`` times; every ratio is
   taken within one repeat and the table shows the median over repeats.
2. The Adam update alone (``jopt.bench.bench_update``, optax vs jopt vs packed), against XLA's
   best elementwise kernel and the device copy bandwidth (arrays beyond the last-level cache):
   - 2000 leaves of shape (4,): goal packed <= 1 ms per step and <= 1 s to compile;
   - 1M parameters in 1000 leaves: goal packed <= 1.5x the XLA bound (CPU).
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

from jopt.bench import (
    bench_update,
    environment,
    make_params,
    measure_bandwidth,
    measure_copy_bound,
    run_train,
)
from jopt.experiment import bench_optimizers, load_config, setup

HERE = os.path.dirname(os.path.abspath(__file__))
IMPLS = ["grad", "optax", "jopt", "per_leaf", "grad_packed"]
CONFIGS = {
    "mlp50": (os.path.join(HERE, "configs", "mlp50_layernorm.yaml"), 1.0, 1.2),
    "leaves2000": (os.path.join(HERE, "configs", "leaves2000.yaml"), 1.1, 1.1),
}


def train_goals(name: str, path: str, repeats: int, steps: int) -> dict:
    config = load_config(path)
    s = setup(config)
    reports = []
    for r in range(repeats):
        print(f"\n== {name}, repeat {r + 1}/{repeats}", flush=True)
        txs = bench_optimizers(config, IMPLS, s.steps_per_epoch)
        reports.append(
            run_train(s, txs, batch_size=config.batching.batch_size, seed=config.seed, steps=steps)
        )
    fields = ("step_ratio", "step_compile_ratio", "epoch_ratio", "epoch_compile_ratio")
    median = {}
    for impl in IMPLS[1:]:
        rows = [next(q for q in rep["ratios"] if q["impl"] == impl) for rep in reports]
        median[impl] = {f: float(np.median([q[f] for q in rows])) for f in fields}
    grad = [rep["results"][0] for rep in reports]
    median["grad"] = {
        "step_ms": float(np.median([g["step_s"]["median"] for g in grad])) * 1e3,
        "step_compile_s": float(np.median([g["step_compile_s"] for g in grad])),
        "epoch_ms": float(np.median([g["epoch_s"]["median"] for g in grad])) * 1e3,
    }
    return {"config": path, "shapes": reports[0]["shapes"], "median": median, "runs": reports}


def update_goals(n_params: int, leaves: int, steps: int, copy_bound) -> dict:
    params, grads = make_params(n_params, leaves)
    bw = measure_bandwidth(max(n_params, 1 << 20), steps=max(steps, 5))
    rows = {}
    for impl in ("optax", "jopt", "packed"):
        r = bench_update("adam", impl, params, grads, bw, steps=steps, copy_bound=copy_bound)
        rows[impl] = r.as_dict()
    return {"params": n_params, "leaves": leaves, "bandwidth": bw.as_dict(), "results": rows}


def slim(x):
    """The report without per-leaf memory rows (thousands of them at 2000 leaves); the
    totals and per-slot sums stay. ``jopt bench train --json`` keeps the full rows."""
    if isinstance(x, dict):
        return {k: slim(v) for k, v in x.items() if k not in ("rows", "per_group")}
    if isinstance(x, list):
        return [slim(v) for v in x]
    return x


def markdown(report: dict) -> str:
    env = report["environment"]
    lines = [
        f"Issue 13 goals: {env['device_kind']} ({env['platform']}), jax {env['jax']}, "
        f"load avg {env['load_avg']}, {env['created']}",
        "",
        "| goal | target | measured (median of repeats) | met? |",
        "|---|---|---|---|",
    ]
    for name, (_, step_goal, compile_goal) in CONFIGS.items():
        m = report["train"][name]["median"]
        j = m["jopt"]
        lines.append(
            f"| {name}: default path step / grad | <= {step_goal} | {j['step_ratio']:.2f} "
            f"(optax {m['optax']['step_ratio']:.2f}, per_leaf {m['per_leaf']['step_ratio']:.2f}) "
            f"| {'yes' if j['step_ratio'] <= step_goal else 'no'} |"
        )
        lines.append(
            f"| {name}: default path step compile / grad | <= {compile_goal} | "
            f"{j['step_compile_ratio']:.2f} (optax {m['optax']['step_compile_ratio']:.2f}, "
            f"per_leaf {m['per_leaf']['step_compile_ratio']:.2f}) | "
            f"{'yes' if j['step_compile_ratio'] <= compile_goal else 'no'} |"
        )
        lines.append(
            f"| {name}: scan epoch / grad (compile) | - | {j['epoch_ratio']:.2f} "
            f"({j['epoch_compile_ratio']:.2f}); optax {m['optax']['epoch_ratio']:.2f} "
            f"({m['optax']['epoch_compile_ratio']:.2f}) | - |"
        )
    for key, label, check in (
        ("leaves2000", "2000 leaves, Adam update alone", "ms_s"),
        ("1M_1000", "1M params in 1000 leaves, Adam update", "bound"),
    ):
        u = report["update"][key]
        p, o = u["results"]["packed"], u["results"]["optax"]
        step_ms = p["step_s"]["median"] * 1e3
        if check == "ms_s":
            ok = step_ms <= 1.0 and p["compile_s"] <= 1.0
            lines.append(
                f"| {label}: packed step / compile | <= 1 ms / <= 1 s | {step_ms:.3f} ms / "
                f"{p['compile_s']:.2f} s (optax {o['step_s']['median'] * 1e3:.1f} ms / "
                f"{o['compile_s']:.1f} s) | {'yes' if ok else 'no'} |"
            )
        else:
            lines.append(
                f"| {label}: packed x XLA bound (x copy bound) | <= 1.5 | {p['x_bound']:.2f} "
                f"({p['x_copy']:.2f}); optax {o['x_bound']:.2f} | "
                f"{'yes' if p['x_bound'] <= 1.5 else 'no'} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--only", default="mlp50,leaves2000,update", help="comma-separated parts")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "packed_goals"))
    a = ap.parse_args()
    only = a.only.split(",")
    report: dict = {"environment": environment(), "train": {}, "update": {}}
    for name, (path, _, _) in CONFIGS.items():
        if name in only:
            report["train"][name] = train_goals(name, path, a.repeats, a.steps)
    if "update" in only:
        cb = measure_copy_bound(steps=5)
        report["copy_bound"] = cb.as_dict()
        report["update"]["leaves2000"] = update_goals(8000, 2000, a.steps, cb)
        report["update"]["1M_1000"] = update_goals(1_000_000, 1000, a.steps, cb)
    with open(a.out + ".json", "w") as f:
        json.dump(slim(report), f, indent=2)
    if set(only) >= {"mlp50", "leaves2000", "update"}:
        table = markdown(report)
        with open(a.out + ".md", "w") as f:
            f.write(table)
        print("\n" + table)
    print(f"wrote {a.out}.json")


if __name__ == "__main__":
    main()

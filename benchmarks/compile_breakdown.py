"""Where the packed path's compile time goes: lowering vs XLA compile, and the HLO behind it.

    python benchmarks/compile_breakdown.py --config benchmarks/configs/mlp50_layernorm.yaml \
        --repeats 3 --json benchmarks/results/compile_breakdown_mlp50.json

For the train step and the scan-fused epoch of a config (``jopt bench train``'s engine:
``jopt.train.make_train_step`` / ``make_train_epoch``), side by side in one process:

- ``grad``: the per-leaf gradient alone (identity optimizer), the reference;
- ``grad_packed_static`` / ``grad_packed``: the gradient through packed parameters, the leaves
  cut by one static split per buffer / by dynamic slices at offsets passed as arguments;
- ``per_leaf``, ``packed_static``, ``packed``: the configured optimizer (what ``jopt run``
  builds) leaf by leaf, and packed both ways (``packed`` is the default path).

Per variant: ``jit(...).lower(...)`` and ``.compile()`` timed apart, in wall-clock *and*
process CPU seconds (CPU time barely moves when other processes share the cores, wall time
does), the HLO instruction count before optimization, and after it the number of fusions and
of *distinct* fused computations (XLA:CPU compiles a kernel per distinct computation: equal
per-layer kernels compile once, while a slice at a constant offset makes each one different).
Runs are timed in process CPU seconds too. Ratios are to ``grad`` from the same repeat; the
table shows the median over repeats. No assertions: a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections import Counter

import jax
import jax.numpy as jnp
import numpy as np

from jopt.bench import environment
from jopt.experiment import bench_optimizers, load_config, setup
from jopt.fused import packed_layout
from jopt.train import (
    init_train_state,
    make_train_epoch,
    make_train_step,
    pack_train_state,
    with_offsets_argument,
)

VARIANTS = ("grad", "grad_packed_static", "grad_packed", "per_leaf", "packed_static", "packed")


def hlo_counts(lowered, compiled) -> dict:
    pre = lowered.as_text(dialect="hlo")
    post = compiled.as_text()
    ops = Counter(re.findall(r"= \S+ ([a-z][a-z0-9-]*)\(", post))
    bodies = re.findall(r"\n%fused[\w.\-]* \([^\n]*\{\n(.*?)\n\}", post, re.S)
    canon = {re.sub(r"%[\w.\-]+", "%", re.sub(r", metadata=\{[^}]*\}", "", b)) for b in bodies}
    return {
        "hlo_ops_before": len(re.findall(r"\n\s+%?\S+ = ", pre)),
        "fusions": ops["fusion"],
        "distinct_fused_computations": len(canon),
        "slices": ops["slice"],
        "dynamic_slices": ops["dynamic-slice"],
    }


def compile_parts(fn, *args) -> tuple:
    jitted = jax.jit(fn, donate_argnums=(0,))
    w0, c0 = time.perf_counter(), time.process_time()
    lowered = jitted.lower(*args)
    w1, c1 = time.perf_counter(), time.process_time()
    compiled = lowered.compile()
    w2, c2 = time.perf_counter(), time.process_time()
    parts = {"lower_s": w1 - w0, "lower_cpu_s": c1 - c0, "compile_s": w2 - w1}
    parts["compile_cpu_s"] = c2 - c1
    parts["total_cpu_s"] = c2 - c0
    parts.update(hlo_counts(lowered, compiled))
    return compiled, parts


def run_cpu(compiled, carry, *consts, calls: int) -> float:
    carry = compiled(carry, *consts)[0]
    jax.block_until_ready(carry)
    times = []
    for _ in range(calls):
        c0 = time.process_time()
        carry = compiled(carry, *consts)[0]
        jax.block_until_ready(carry)
        times.append(time.process_time() - c0)
    return float(np.median(times))


def one_repeat(s, txs, steps: int, variants=VARIANTS) -> dict:
    x = jnp.asarray(s.data.x_train, jnp.float32)
    y = jnp.asarray(s.data.y_train)
    bs = min(s.batching.batch_size or len(x), len(x))
    xb, yb, wb = x[None, :bs], y[None, :bs], jnp.ones((1, bs), jnp.float32)
    key = jax.random.key(0)
    out = {}
    for name in variants:
        tx = txs["grad" if name.startswith("grad") else "jopt"]
        state = init_train_state(s.model, tx, x[:1], key)
        layout = None if name in ("grad", "per_leaf") else packed_layout(tx, state.params)
        dynamic = layout is not None and not name.endswith("_static")
        offsets = layout.offsets() if dynamic else ()
        step = with_offsets_argument(
            make_train_step(s.model, tx, s.spec, augment=s.augment, kind=s.data.kind, layout=layout)
        )
        st = state if layout is None else pack_train_state(state, tx, layout)

        def step_fn(st, offsets, xb, yb, wb, k, step=step):
            return step(st, offsets, xb, yb, wb, k)[:1]

        st = jax.tree.map(jnp.copy, st)
        c_step, step_parts = compile_parts(step_fn, st, offsets, xb, yb, wb, key)
        step_parts["run_cpu_s"] = run_cpu(c_step, st, offsets, xb, yb, wb, key, calls=steps)
        epoch = make_train_epoch(
            s.model, tx, s.spec, s.batching, augment=s.augment, kind=s.data.kind, layout=layout
        )

        def epoch_fn(st, offsets, x, y, epoch=epoch):
            return (epoch(st, x, y, offsets) if offsets else epoch(st, x, y))[:1]

        st = jax.tree.map(jnp.copy, state)
        c_epoch, epoch_parts = compile_parts(epoch_fn, st, offsets, x, y)
        epoch_parts["run_cpu_s"] = run_cpu(c_epoch, st, offsets, x, y, calls=max(steps // 5, 3))
        out[name] = {"step": step_parts, "epoch": epoch_parts}
        print(
            f"  {name:<19} step: lower {step_parts['lower_cpu_s']:5.2f} + compile "
            f"{step_parts['compile_cpu_s']:6.2f} cpu s, distinct kernels "
            f"{step_parts['distinct_fused_computations']:5d}   epoch: lower "
            f"{epoch_parts['lower_cpu_s']:5.2f} + compile "
            f"{epoch_parts['compile_cpu_s']:6.2f} cpu s",
            flush=True,
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="benchmarks/configs/mlp50_layernorm.yaml")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--variants", default=",".join(VARIANTS), help="grad is always first")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    variants = ["grad"] + [v for v in a.variants.split(",") if v in VARIANTS and v != "grad"]
    config = load_config(a.config)
    s = setup(config)
    txs = bench_optimizers(config, ["grad", "jopt"], s.steps_per_epoch)
    runs = []
    for r in range(a.repeats):
        print(f"repeat {r + 1}/{a.repeats}", flush=True)
        runs.append(one_repeat(s, txs, a.steps, variants))
    fields = ("lower_cpu_s", "compile_cpu_s", "total_cpu_s", "run_cpu_s", "lower_s", "compile_s")
    table = {}
    for name in variants:
        table[name] = {}
        for part in ("step", "epoch"):
            row = {f: float(np.median([r[name][part][f] for r in runs])) for f in fields}
            for f in ("total_cpu_s", "run_cpu_s"):
                row[f + "_x_grad"] = float(
                    np.median([r[name][part][f] / r["grad"][part][f] for r in runs])
                )
            for f in ("hlo_ops_before", "fusions", "distinct_fused_computations"):
                row[f] = runs[-1][name][part][f]
            table[name][part] = row
    print(f"\n{a.config}: median of {a.repeats} repeats, CPU seconds, ratios to grad")
    print(
        f"{'variant':<19} {'part':<6} {'lower':>6} {'compile':>8} {'x grad':>7} "
        f"{'run x grad':>10} {'HLO ops':>8} {'kernels':>8}"
    )
    for name, parts in table.items():
        for part, r in parts.items():
            print(
                f"{name:<19} {part:<6} {r['lower_cpu_s']:>6.2f} {r['compile_cpu_s']:>8.2f} "
                f"{r['total_cpu_s_x_grad']:>7.2f} {r['run_cpu_s_x_grad']:>10.2f} "
                f"{r['hlo_ops_before']:>8d} {r['distinct_fused_computations']:>8d}"
            )
    if a.json:
        report = {"environment": environment(), "config": a.config, "median": table, "runs": runs}
        with open(a.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()

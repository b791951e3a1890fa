"""The goals of issue 13, measured side by side in one process (no timing assertions).

    python benchmarks/packed_goals.py --json benchmarks/results/packed_goals.json

1. The 50-block flax MLP (202 leaves) and a model of 2000 leaves of shape (4,): per step and per
   compile, relative to the per-leaf gradient alone,
   - ``grad``: the per-leaf gradient alone (the reference);
   - ``optax``: gradient + ``optax.adam`` leaf by leaf;
   - ``packed``: the default packed path, ``jopt.fused.packed_train_step(loss, params,
     jopt.adam)`` (parameters, gradients and state packed);
   - ``packed_grad``: the gradient alone taken through the packed views (what packing costs
     the gradient itself).
   Goals: MLP ``packed`` <= 1.0x step and <= 1.2x compile; 2000 leaves ``packed`` <= 1.1x both;
   the 2000-leaf update alone <= 1 ms and <= 1 s to compile.
2. The Adam update alone on 1M parameters in 1000 leaves, optax vs jopt vs packed, against both
   bounds (XLA's best elementwise kernel, and the device copy bandwidth beyond the cache).
   Goal: packed <= 1.5x the XLA bound on CPU.

Every variant is jitted once with its carry donated; compile time is ``lower + compile``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _mlp import make_loss, make_problem
from fused_alternatives import make_many_leaf_problem

import jopt
from jopt.bench import (
    bench_update,
    compile_fn,
    environment,
    make_params,
    measure_bandwidth,
    measure_copy_bound,
    time_steps,
)


def step_variants(loss_fn, params, lr=1e-3):
    """name -> (step(carry0, carry1, *batch) -> (carry0, carry1), initial carry)."""
    grad_fn = jax.grad(loss_fn)
    out = {}

    def grad(p, s, x, y):
        return grad_fn(p, x, y), s

    out["grad"] = (grad, (params, jnp.zeros((), jnp.float32)))

    tx = optax.adam(lr)

    def optax_step(p, s, x, y):
        u, s = tx.update(grad_fn(p, x, y), s, p)
        return optax.apply_updates(p, u), s

    out["optax"] = (optax_step, (params, tx.init(params)))

    state, step, unpack = jopt.fused.packed_train_step(loss_fn, params, jopt.adam(lr))

    def packed(p, s, x, y):
        new, _ = step(jopt.fused.PackedState(p, s), x, y)
        return new.params, new.opt_state

    out["packed"] = (packed, (state.params, state.opt_state))

    layout, offsets = unpack.layout, state.opt_state.offsets

    def packed_grad(flat, o, x, y):
        return jax.grad(lambda f: loss_fn(layout.unpack(f, o), x, y))(flat), o

    out["packed_grad"] = (packed_grad, (state.params, offsets))
    return out


def time_model(loss_fn, params, x, y, steps, only):
    res = {}
    for name, (fn, carry) in step_variants(loss_fn, params).items():
        if name not in only:
            continue
        carry = jax.tree.map(jnp.copy, carry)
        compiled, compile_s = compile_fn(fn, *carry, x, y, donate_argnums=(0, 1))
        stats, _ = time_steps(compiled, carry, x, y, steps=steps, warmup=2)
        res[name] = {
            "compile_s": compile_s,
            "step_ms": stats.median * 1e3,
            "step_min_ms": stats.min * 1e3,
        }
    return res


def update_alone(n_params, leaves, steps):
    params, grads = make_params(n_params, leaves)
    bw = measure_bandwidth(max(n_params, 1 << 20), jnp.float32, steps=max(steps, 5))
    cb = measure_copy_bound(steps=5)
    rows = {}
    for impl in ("optax", "jopt", "packed"):
        r = bench_update("adam", impl, params, grads, bw, steps=steps, copy_bound=cb)
        rows[impl] = r.as_dict()
    return {"bandwidth": bw.as_dict(), "copy_bound": cb.as_dict(), "results": rows}


def _print_model(title, res):
    g = res["grad"]
    print(f"\n{title}")
    print(f"{'variant':<12} {'compile s':>10} {'x grad':>7} {'step ms':>9} {'x grad':>7}")
    for k, v in res.items():
        print(
            f"{k:<12} {v['compile_s']:>10.2f} {v['compile_s'] / g['compile_s']:>7.2f} "
            f"{v['step_ms']:>9.3f} {v['step_ms'] / g['step_ms']:>7.2f}"
        )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--blocks", type=int, default=50)
    ap.add_argument("--leaves", type=int, default=2000)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--update-params", type=int, default=1_000_000)
    ap.add_argument("--update-leaves", type=int, default=1000)
    ap.add_argument("--variants", default="grad,optax,packed,packed_grad")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    only = a.variants.split(",")
    report = {"environment": environment(), "models": {}}
    model, params, x, y = make_problem(a.blocks)
    problems = {
        f"mlp{a.blocks}": (make_loss(model), params, x, y),
        f"leaves{a.leaves}": make_many_leaf_problem(a.leaves),
    }
    for name, (loss_fn, p, bx, by) in problems.items():
        runs = [time_model(loss_fn, p, bx, by, a.steps, only) for _ in range(a.repeats)]
        med = {
            k: {f: float(np.median([r[k][f] for r in runs])) for f in runs[0][k]} for k in runs[0]
        }
        report["models"][name] = med
        _print_model(f"{name} ({len(jax.tree.leaves(p))} leaves), median of {a.repeats}", med)
    upd = update_alone(a.update_params, a.update_leaves, a.steps)
    report["update"] = upd
    print(f"\nAdam update, {a.update_params:,} params in {a.update_leaves} leaves")
    bw, cb = upd["bandwidth"]["gbs"], upd["copy_bound"]["gbs"]
    print(f"XLA bound {bw:.2f} GB/s, copy bound {cb:.2f} GB/s")
    for impl, r in upd["results"].items():
        print(
            f"  {impl:<7} compile {r['compile_s']:6.2f} s  "
            f"step {r['step_s']['median'] * 1e3:8.3f} ms  "
            f"x XLA {r['x_bound']:5.2f}  x copy {r['x_copy']:5.2f}"
        )
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()

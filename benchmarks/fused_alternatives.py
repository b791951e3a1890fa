"""Measure the ways of running Adam on a many-leaf flax MLP, side by side in one run.

    python benchmarks/fused_alternatives.py --blocks 50 --repeats 3

Variants (all jitted once, buffers donated, compile time = lower + compile):

- ``grad``: the gradient alone (the reference for every ratio);
- ``optax``: gradient + ``optax.adam`` leaf by leaf;
- ``jopt``: gradient + ``jopt.adam`` leaf by leaf;
- ``fused``: gradient + ``jopt.fuse(jopt.adam)`` (packed state; grads concatenated each step);
- ``fused_optax``: gradient + ``jopt.fuse(optax.adam)``;
- ``packed``: parameters kept packed, the model sees ``layout.unpack`` views, Adam runs on
  the packed buffers (``jopt.fused.packed_step``);
- ``packed_grad``: the gradient alone with packed parameters (the baseline of ``packed``);
- ``fused_static`` / ``packed_static``: the same with ``dynamic_offsets=False`` (leaves cut at
  constant offsets).

``--leaves N`` replaces the MLP by a model of N leaves of shape (4,) (goal P4).
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

import jopt
from jopt.bench import compile_fn, environment, time_steps
from jopt.fused import pack


def variants(loss_fn, params, lr=1e-3):
    grad_fn = jax.grad(loss_fn)

    def grad_only(p, s, x, y):
        g = grad_fn(p, x, y)
        return g, s  # same carry shape as the param tree

    def per_leaf(tx):
        def step(p, s, x, y):
            g = grad_fn(p, x, y)
            u, s = tx.update(g, s, p)
            return optax.apply_updates(p, u), s

        return step, tx

    out = {"grad": (grad_only, None)}
    out["optax"] = per_leaf(optax.adam(lr))
    out["jopt"] = per_leaf(jopt.adam(lr))
    out["fused"] = per_leaf(jopt.fuse(jopt.adam(lr)))
    out["fused_optax"] = per_leaf(jopt.fuse(optax.adam(lr)))
    out["fused_static"] = per_leaf(jopt.fuse(jopt.adam(lr), dynamic_offsets=False))

    _, layout = pack(params)
    tx = jopt.adam(lr)
    step = jopt.fused.packed_step(loss_fn, tx, layout)

    def packed(flat, s, x, y):
        flat, s, _ = step(flat, s, x, y)
        return flat, s

    out["packed"] = (packed, tx)
    out["packed_static"] = (packed, tx)  # same step, state without offsets (constant slices)

    def packed_grad(flat, offsets, x, y):
        # The gradient alone, with the parameters packed (leaf offsets as data, as in
        # ``packed``): the baseline of ``packed``.
        return jax.grad(lambda f: loss_fn(layout.unpack(f, offsets), x, y))(flat), offsets

    out["packed_grad"] = (packed_grad, None)
    return out, layout


def run(blocks: int, width: int, batch: int, steps: int, only: list[str], leaves: int) -> dict:
    if leaves:
        loss_fn, params, x, y = make_many_leaf_problem(leaves)
    else:
        model, params, x, y = make_problem(blocks, width, batch)
        loss_fn = make_loss(model)
    vs, layout = variants(loss_fn, params)
    res = {}
    for name, (fn, tx) in vs.items():
        if name not in only:
            continue
        p = layout.pack(params) if name.startswith("packed") else params
        p = jax.tree.map(jnp.copy, p)
        if name == "packed_grad":
            s = layout.offsets()
        elif tx is None:
            s = jnp.zeros((), jnp.float32)
        elif name in ("packed", "packed_static"):
            s = jopt.fused.packed_init(tx, layout, p, dynamic_offsets=name == "packed")
        else:
            s = tx.init(p)
        compiled, ct = compile_fn(fn, p, s, x, y, donate_argnums=(0, 1))
        stats, _ = time_steps(compiled, (p, s), x, y, steps=steps, warmup=2)
        res[name] = {"compile_s": ct, "step_ms": stats.median * 1e3, "step_min_ms": stats.min * 1e3}
    return res


def make_many_leaf_problem(leaves: int, size: int = 4):
    """``leaves`` parameter arrays of shape ``(size,)`` and a loss touching every one of them.

    The model is a sum of per-leaf least-squares terms, ``sum_i ||w_i * x - y||^2``: the
    forward and backward passes are as cheap as possible, so the optimizer's share shows.
    """
    k = jax.random.split(jax.random.key(0), 3)
    params = {f"w{i:05d}": jnp.full((size,), 0.01 * (i % 7), jnp.float32) for i in range(leaves)}
    x = jax.random.normal(k[0], (size,), jnp.float32)
    y = jax.random.normal(k[1], (size,), jnp.float32)

    def loss_fn(p, x, y):
        return sum(jnp.sum(jnp.square(w * x - y)) for w in jax.tree.leaves(p))

    return loss_fn, params, x, y


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--blocks", type=int, nargs="+", default=[50])
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--json", default=None)
    ap.add_argument("--variants", default="grad,optax,jopt,fused,fused_optax,packed,packed_grad")
    ap.add_argument(
        "--leaves",
        type=int,
        default=0,
        help="instead of the MLP, a model of this many (4,) leaves (P4)",
    )
    a = ap.parse_args()
    report = {"environment": environment(), "width": a.width, "batch": a.batch, "results": {}}
    for b in a.blocks:
        only = a.variants.split(",")
        runs = [run(b, a.width, a.batch, a.steps, only, a.leaves) for _ in range(a.repeats)]
        med = {
            k: {f: float(np.median([r[k][f] for r in runs])) for f in runs[0][k]} for k in runs[0]
        }
        g = med["grad"]
        n_leaves = a.leaves or len(jax.tree.leaves(make_problem(b, a.width)[1]))
        what = f"{a.leaves}-leaf model" if a.leaves else f"{b} blocks"
        print(f"\n{what} ({n_leaves} leaves), median of {a.repeats} runs")
        print(f"{'variant':<12} {'compile s':>10} {'x grad':>7} {'step ms':>9} {'x grad':>7}")
        for k, v in med.items():
            print(
                f"{k:<12} {v['compile_s']:>10.2f} {v['compile_s'] / g['compile_s']:>7.2f} "
                f"{v['step_ms']:>9.3f} {v['step_ms'] / g['step_ms']:>7.2f}"
            )
        report["results"][f"{a.leaves}-leaves" if a.leaves else str(b)] = med
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()

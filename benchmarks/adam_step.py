"""Train step (gradient + Adam + apply) of the 50-block flax MLP: ``jopt.adam`` vs ``optax.adam``.

Both steps are jitted with parameters and state donated, compiled up front, then timed
*interleaved* in the same process: each round runs a block of steps of every implementation
(in alternating order), and the figure per round is the median step of each block. The report
is the median over rounds of each implementation and of the per-round ratio jopt / optax, so
that load from other processes hits both sides alike. ``--hlo`` also checks whether the two
compiled programs are the same (after renaming values and dropping source metadata).

    python benchmarks/adam_step.py --blocks 50 --rounds 15 --steps 30 --hlo
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _mlp import make_loss, make_problem

import jopt


def make_step(loss_fn, tx):
    grad_fn = jax.grad(loss_fn)

    def step(p, s, x, y):
        g = grad_fn(p, x, y)
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s

    return step


def normalized_hlo(text: str) -> list[str]:
    """Compiled HLO with value names and source locations removed (for comparison)."""
    text = re.sub(r", metadata=\{[^}]*\}", "", text)
    text = re.sub(r"%?[\w.-]+\.\d+", "X", text)
    keep = []
    for line in text.splitlines():
        # The trailing debug tables (file names, stack frames) name jopt's or optax's sources.
        if re.match(r'^\s*\d+ ["{]', line) or line.startswith(
            ("FileNames", "FunctionNames", "FileLocations", "StackFrames")
        ):
            continue
        keep.append(line)
    return keep


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--steps", type=int, default=30, help="timed steps per block")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--hlo", action="store_true", help="compare the compiled HLO")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    model, params, x, y = make_problem(args.blocks)
    loss_fn = make_loss(model)
    impls = {"optax": optax.adam(args.lr), "jopt": jopt.adam(args.lr)}

    compiled, carry, compile_s, hlo = {}, {}, {}, {}
    for name, tx in impls.items():
        p = jax.tree.map(jnp.copy, params)
        s = tx.init(p)
        t0 = time.perf_counter()
        c = jax.jit(make_step(loss_fn, tx), donate_argnums=(0, 1)).lower(p, s, x, y).compile()
        compile_s[name] = time.perf_counter() - t0
        compiled[name], carry[name] = c, (p, s)
        if args.hlo:
            hlo[name] = normalized_hlo(c.as_text())
        for _ in range(3):  # warm-up
            carry[name] = c(*carry[name], x, y)
        jax.block_until_ready(carry[name])

    per_round: dict[str, list[float]] = {n: [] for n in impls}
    order = list(impls)
    for r in range(args.rounds):
        for name in order if r % 2 == 0 else order[::-1]:
            c, samples = compiled[name], []
            for _ in range(args.steps):
                t0 = time.perf_counter()
                carry[name] = c(*carry[name], x, y)
                jax.block_until_ready(carry[name])
                samples.append(time.perf_counter() - t0)
            per_round[name].append(float(np.median(samples)))

    ratios = np.asarray(per_round["jopt"]) / np.asarray(per_round["optax"])
    # Same maths, same inputs, same number of steps: the final parameters must agree.
    max_diff = max(
        float(jnp.max(jnp.abs(a - b)))
        for a, b in zip(
            jax.tree.leaves(carry["jopt"][0]), jax.tree.leaves(carry["optax"][0]), strict=True
        )
    )
    report = {
        "blocks": args.blocks,
        "leaves": len(jax.tree.leaves(params)),
        "rounds": args.rounds,
        "steps_per_round": args.steps,
        "load_avg": list(os.getloadavg()),
        "compile_s": compile_s,
        "step_ms_median": {n: float(np.median(v)) * 1e3 for n, v in per_round.items()},
        "step_ms_min": {n: float(np.min(v)) * 1e3 for n, v in per_round.items()},
        "ratio_jopt_optax": {
            "median": float(np.median(ratios)),
            "min": float(ratios.min()),
            "max": float(ratios.max()),
        },
        "final_params_max_abs_diff": max_diff,
    }
    if args.hlo:
        report["hlo_identical"] = hlo["jopt"] == hlo["optax"]
        report["hlo_lines"] = {n: len(v) for n, v in hlo.items()}
    print(json.dumps(report, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()

"""``jopt bench train``: whole train steps and scan-fused epochs of a configured experiment.

The config chooses data, model, loss and batching; the commands layer builds them and the
optimizer (``jopt.experiment.bench_optimizers``: exactly the one ``jopt run`` trains, and
optax's same-named optimizer as a reference); this module times them next to a
*gradient-only* baseline (the per-leaf step with the identity transform: forward, backward and
one ``params + grads``), so each ratio says what the optimizer adds to the step.

Implementations (``--impl``): ``jopt`` is what ``jopt run`` does by default
(``optimizer.execution: auto``: packed where exact, else per leaf; the row's ``execution``
says which); ``per_leaf`` leaf by leaf; ``packed`` parameters, gradients and state packed
(refused where not exact); ``fused`` the tree-form ``jopt.fuse``; ``grad_packed`` the
gradient alone through packed parameters; ``optax`` the reference. Every variant uses the
training engine's own ``make_train_step`` / ``make_train_epoch`` (packed ones with their
``layout``), jitted once with the state donated. A packed step is timed on a packed state;
a packed epoch takes and returns the per-leaf state, as ``jopt run``'s does.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jopt.bench._memory import memory_report
from jopt.bench._report import SCHEMA, environment, format_table, parse_list
from jopt.bench._timing import compile_fn, time_steps
from jopt.core import JoptError

__all__ = ["TRAIN_IMPLS", "run_train", "train_impls"]

TRAIN_IMPLS = ("grad", "optax", "jopt", "per_leaf", "fused", "packed", "grad_packed")
# implementations that pack the parameters: always, or when the optimizer allows it exactly
_PACKED = ("packed", "grad_packed")


def _layout(impl: str, tx: Any, params: Any) -> Any:
    """The packed layout ``impl`` trains with, or None for a per-leaf one."""
    from jopt.fused import packed_layout

    if impl in _PACKED:
        return packed_layout(tx, params)  # refused in one line where not exact
    if impl != "jopt":
        return None
    try:  # the default execution: packed where exact, else per leaf
        return packed_layout(tx, params)
    except JoptError as e:
        print(f"  jopt: training per leaf: {str(e).splitlines()[0]}", flush=True)
        return None


def train_impls(spec: str) -> list[str]:
    """The ``--impl`` list, checked, with the ``grad`` baseline first."""
    impls = parse_list(spec, "--impl")
    for i in impls:
        if i not in TRAIN_IMPLS:
            raise JoptError(f"unknown implementation {i!r}; choose from {', '.join(TRAIN_IMPLS)}")
    if "grad" not in impls:
        impls = ["grad", *impls]  # the baseline every ratio is taken against
    return impls


def run_train(
    setup: Any,
    txs: dict[str, Any],
    *,
    batch_size: int | None,
    seed: int = 0,
    steps: int = 20,
    warmup: int = 2,
    min_time: float = 0.0,
) -> dict[str, Any]:
    """Time ``txs`` (``{impl: transform}``, ``grad`` first) on an experiment's set-up.

    ``setup`` holds ``data``, ``model``, ``spec``, ``batching``, ``augment`` and
    ``steps_per_epoch`` (``jopt.experiment.setup`` builds it, and
    ``jopt.experiment.bench_optimizers`` the transforms; ``jopt bench train`` does both).
    Prints the table and returns the report without its ``config`` and ``data_parallel``
    blocks, which the command adds.
    """
    from jopt.train import (
        init_train_state,
        make_train_epoch,
        make_train_step,
        pack_train_state,
        with_offsets_argument,
    )

    s = setup
    impls = list(txs)
    env = environment()
    print(
        f"device: {env['device_kind']} ({env['platform']}), jax {env['jax']}, "
        f"load avg {env['load_avg']}"
    )

    x = jnp.asarray(s.data.x_train, jnp.float32)
    y = jnp.asarray(s.data.y_train)
    bs = min(batch_size or len(x), len(x))
    xb, yb = x[None, :bs], y[None, :bs]
    wb = jnp.ones((1, bs), jnp.float32)
    key = jax.random.key(seed)

    results, memory = [], {}
    n_leaves = n_params = 0
    for impl in impls:
        tx = txs[impl]
        promotion = "standard" if impl == "optax" else jax.config.jax_numpy_dtype_promotion
        with jax.numpy_dtype_promotion(promotion):
            state = init_train_state(s.model, tx, x[:1], key)
            n_leaves = len(jax.tree.leaves(state.params))
            n_params = sum(p.size for p in jax.tree.leaves(state.params))
            layout = _layout(impl, tx, state.params)
            memory[impl] = memory_report(tx, state.params, layout=layout).as_dict()
            step = with_offsets_argument(
                make_train_step(
                    s.model, tx, s.spec, augment=s.augment, kind=s.data.kind, layout=layout
                )
            )
            # A packed step runs on a packed state, its leaf offsets runtime arguments kept
            # out of the carry (as in jopt run's epoch: passed once, never returned).
            offsets = () if layout is None else layout.offsets()
            packed_state = state if layout is None else pack_train_state(state, tx, layout)

            def step_fn(st, offsets, xb, yb, wb, k, step=step):
                return step(st, offsets, xb, yb, wb, k)[:1]

            st = jax.tree.map(jnp.copy, packed_state)
            c_step, t_step = compile_fn(step_fn, st, offsets, xb, yb, wb, key, donate_argnums=(0,))
            step_stats, _ = time_steps(
                c_step,
                (st,),
                offsets,
                xb,
                yb,
                wb,
                key,
                steps=steps,
                warmup=warmup,
                min_time=min_time,
            )
            epoch = make_train_epoch(
                s.model,
                tx,
                s.spec,
                s.batching,
                augment=s.augment,
                kind=s.data.kind,
                layout=layout,
            )

            def epoch_fn(st, offsets, x, y, epoch=epoch):
                return (epoch(st, x, y, offsets) if offsets else epoch(st, x, y))[:1]

            st = jax.tree.map(jnp.copy, state)
            c_epoch, t_epoch = compile_fn(epoch_fn, st, offsets, x, y, donate_argnums=(0,))
            epoch_stats, _ = time_steps(
                c_epoch,
                (st,),
                offsets,
                x,
                y,
                steps=max(steps // 4, 3),
                warmup=1,
                min_time=min_time,
            )
        results.append(
            {
                "impl": impl,
                "execution": "per_leaf" if layout is None else "packed",
                "step_compile_s": t_step,
                "step_s": step_stats.as_dict(),
                "epoch_compile_s": t_epoch,
                "epoch_s": epoch_stats.as_dict(),
                "steps_per_epoch": s.steps_per_epoch,
                "state_bytes": memory[impl]["total_bytes"],
            }
        )
        print(
            f"  {impl:<6} step: compile {t_step:7.3f} s, {step_stats.median * 1e3:9.4f} ms   "
            f"epoch: compile {t_epoch:7.3f} s, {epoch_stats.median * 1e3:9.3f} ms",
            flush=True,
        )

    base = results[0]
    ratios = [
        {
            "impl": r["impl"],
            "vs": "grad",
            "step_ratio": r["step_s"]["median"] / base["step_s"]["median"],
            "step_compile_ratio": r["step_compile_s"] / base["step_compile_s"],
            "epoch_ratio": r["epoch_s"]["median"] / base["epoch_s"]["median"],
            "epoch_compile_ratio": r["epoch_compile_s"] / base["epoch_compile_s"],
        }
        for r in results[1:]
    ]
    rows = [
        [
            r["impl"],
            r["step_compile_s"],
            r["step_s"]["median"] * 1e3,
            r["epoch_compile_s"],
            r["epoch_s"]["median"] * 1e3,
        ]
        for r in results
    ]
    for row, q in zip(rows[1:], ratios, strict=True):
        row += [q["step_ratio"], q["step_compile_ratio"], q["epoch_ratio"]]
    rows[0] += ["1", "1", "1"]
    print()
    print(
        format_table(
            [
                "impl",
                "step compile s",
                "step ms",
                "epoch compile s",
                "epoch ms",
                "step/grad",
                "compile/grad",
                "epoch/grad",
            ],
            rows,
        )
    )
    print(
        f"\noptimizer state for {n_params:,} params in {n_leaves} leaves "
        "(jax.eval_shape, nothing allocated):"
    )
    for impl, m in memory.items():
        slots = ", ".join(f"{k} {v / 1e6:.3f} MB" for k, v in m["per_slot"].items()) or "none"
        print(f"  {impl:<6} total {m['total_bytes'] / 1e6:.3f} MB ({slots})")
    return {
        "schema": SCHEMA,
        "kind": "train",
        "environment": env,
        "shapes": {
            "params": int(n_params),
            "leaves": n_leaves,
            "batch": [bs, *x.shape[1:]],
            "train_examples": len(x),
            "steps_per_epoch": s.steps_per_epoch,
        },
        "results": results,
        "ratios": ratios,
        "memory": memory,
    }

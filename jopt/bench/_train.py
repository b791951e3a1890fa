"""``jopt bench train``: whole train steps and scan-fused epochs of a configured experiment.

The config chooses data, model, loss and batching; the commands layer builds them and the
optimizer (``jopt.experiment.bench_optimizers``: exactly the one ``jopt run`` trains, plain and
under ``jopt.fused``, and optax's same-named optimizer as a reference); this module times them
next to a *gradient-only* baseline (the same step with the identity transform: forward,
backward and one ``params + grads``), so each ratio says what the optimizer adds to the step.
Every variant uses the training engine's own ``make_train_step`` / ``make_train_epoch``,
jitted once with the state donated.
"""

from __future__ import annotations

import argparse
from typing import Any

import jax
import jax.numpy as jnp

from jopt.bench._memory import memory_report
from jopt.bench._report import SCHEMA, environment, format_table, parse_list
from jopt.bench._timing import compile_fn, time_steps
from jopt.core import JoptError

TRAIN_IMPLS = ("grad", "optax", "jopt", "fused")


def train_impls(spec: str) -> list[str]:
    """The ``--impl`` list, checked, with the ``grad`` baseline first."""
    impls = parse_list(spec, "--impl")
    for i in impls:
        if i not in TRAIN_IMPLS:
            raise JoptError(f"unknown implementation {i!r}; choose from {', '.join(TRAIN_IMPLS)}")
    if "grad" not in impls:
        impls = ["grad", *impls]  # the baseline every ratio is taken against
    return impls


def run_train(args: argparse.Namespace, config: Any, s: Any, txs: dict[str, Any]) -> dict[str, Any]:
    """Time ``txs`` (``{impl: transform}``, ``grad`` first) on the set-up ``s`` of ``config``.

    The commands layer loads the config and builds ``s`` (``jopt.experiment.setup``) and the
    transforms (``jopt.experiment.bench_optimizers``: the optimizer ``jopt run`` trains); this
    library only times them. Data-parallel epochs (``args.devices``) time ``txs["jopt"]``.
    """
    from jopt.train import init_train_state, make_train_epoch, make_train_step

    impls = list(txs)
    devices = list(getattr(args, "devices", None) or [])
    _check_devices(devices, s)
    if devices and "jopt" not in txs:
        raise JoptError("--devices times the jopt implementation; add 'jopt' to --impl")
    env = environment()
    print(
        f"device: {env['device_kind']} ({env['platform']}), jax {env['jax']}, "
        f"load avg {env['load_avg']}"
    )

    x = jnp.asarray(s.data.x_train, jnp.float32)
    y = jnp.asarray(s.data.y_train)
    bs = min(config.batching.batch_size or len(x), len(x))
    xb, yb = x[None, :bs], y[None, :bs]
    wb = jnp.ones((1, bs), jnp.float32)
    key = jax.random.key(config.seed)

    results, memory = [], {}
    n_leaves = n_params = 0
    for impl in impls:
        tx = txs[impl]
        promotion = "standard" if impl == "optax" else jax.config.jax_numpy_dtype_promotion
        with jax.numpy_dtype_promotion(promotion):
            state = init_train_state(s.model, tx, x[:1], key)
            n_leaves = len(jax.tree.leaves(state.params))
            n_params = sum(p.size for p in jax.tree.leaves(state.params))
            memory[impl] = memory_report(tx, state.params).as_dict()
            step = make_train_step(s.model, tx, s.spec, augment=s.augment, kind=s.data.kind)

            def step_fn(st, xb, yb, wb, k, step=step):
                return (step(st, xb, yb, wb, k)[0],)

            st = jax.tree.map(jnp.copy, state)
            c_step, t_step = compile_fn(step_fn, st, xb, yb, wb, key, donate_argnums=(0,))
            step_stats, _ = time_steps(
                c_step,
                (st,),
                xb,
                yb,
                wb,
                key,
                steps=args.steps,
                warmup=args.warmup,
                min_time=args.min_time,
            )
            epoch = make_train_epoch(
                s.model, tx, s.spec, s.batching, augment=s.augment, kind=s.data.kind
            )

            def epoch_fn(st, x, y, epoch=epoch):
                return (epoch(st, x, y)[0],)

            st = jax.tree.map(jnp.copy, state)
            c_epoch, t_epoch = compile_fn(epoch_fn, st, x, y, donate_argnums=(0,))
            epoch_stats, _ = time_steps(
                c_epoch,
                (st,),
                x,
                y,
                steps=max(args.steps // 4, 3),
                warmup=1,
                min_time=args.min_time,
            )
        results.append(
            {
                "impl": impl,
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
    data_parallel = _data_parallel(args, config, s, devices, txs) if devices else None
    return {
        "schema": SCHEMA,
        "kind": "train",
        "environment": env,
        "config": {
            "path": str(args.config),
            "overrides": list(args.overrides),
            "name": config.name,
            "optimizer": config.optimizer.name,
            "learning_rate": float(config.optimizer.learning_rate),
            "impls": impls,
            "steps": args.steps,
            "warmup": args.warmup,
        },
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
        "data_parallel": data_parallel,
    }


def _check_devices(devices: list[int], s: Any) -> None:
    """Fail before any timing: enough devices, and the batch splits over each count."""
    if not devices:
        return
    from jopt.distributed import check_batching

    have = len(jax.devices())
    if max(devices) > have:
        raise JoptError(
            f"--devices {max(devices)}: only {have} {jax.devices()[0].platform} device(s) exist "
            "(on CPU jopt asks for host devices only when JAX has not started yet)"
        )
    for n in devices:
        check_batching(s.batching, len(s.data.y_train), n)


def _data_parallel(
    args: argparse.Namespace, config: Any, s: Any, devices: list[int], txs: dict[str, Any]
) -> dict:
    """Data-parallel epochs of the configured optimizer (plain jopt) on each device count."""
    from jopt.distributed import bench_data_parallel

    tx = txs["jopt"]
    rep = bench_data_parallel(
        devices=tuple(devices),
        data=s.data,
        model=s.model,
        tx=tx,
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

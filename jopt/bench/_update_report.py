"""One optimizer update, timed: cases, roofline, memory, a printed table and the JSON report.

``jopt bench update`` parses its options and calls :func:`update_report`.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import jax
import jax.numpy as jnp

from jopt.bench._memory import memory_report
from jopt.bench._report import SCHEMA, environment, format_table
from jopt.bench._roofline import measure_bandwidth, measure_copy_bound
from jopt.bench._update import IMPLS, OPTIMIZERS, bench_update, make_params, make_tx
from jopt.core import JoptError

__all__ = ["update_report"]


def _leaf_shapes(params: Any) -> list[dict[str, Any]]:
    counts = Counter(tuple(x.shape) for x in jax.tree.leaves(params))
    return [{"shape": list(s), "count": n} for s, n in sorted(counts.items())]


def update_report(
    optimizers: list[str],
    impls: list[str],
    n_params: int,
    leaves: list[int],
    *,
    steps: int = 20,
    warmup: int = 2,
    min_time: float = 0.0,
    copy_bound: bool = True,
) -> dict[str, Any]:
    """Time one update of each optimizer × implementation × leaf count; print and return the
    report (fields in ``benchmarks/README.md``). Bad names or sizes raise one-line JoptErrors
    before anything is measured.

    Each result is set against two bounds: XLA's best elementwise kernel over arrays as large as
    the parameters (``x bound``) and, with ``copy_bound``, the device's copy bandwidth over
    arrays several times its last-level cache (``x copy``)."""
    for o in optimizers:
        if o not in OPTIMIZERS:
            raise JoptError(f"unknown optimizer {o!r}; choose from {', '.join(OPTIMIZERS)}")
    for i in impls:
        if i not in IMPLS:
            raise JoptError(f"unknown implementation {i!r}; choose from {', '.join(IMPLS)}")
    for n in leaves:
        if n > n_params:
            raise JoptError(f"--leaves {n} exceeds --params {n_params}; each leaf needs a value")
    for o in optimizers:  # fail before any measurement if an optimizer is unavailable
        for i in impls:
            make_tx(i, o)

    env = environment()
    print(
        f"device: {env['device_kind']} ({env['platform']}), jax {env['jax']}, "
        f"load avg {env['load_avg']}"
    )
    # The roof: a streaming triad over arrays as large as the parameters (at least 1M values).
    bw = measure_bandwidth(max(n_params, 1 << 20), jnp.float32, steps=max(steps, 5))
    print(
        f"bandwidth bound: {bw.gbs:.2f} GB/s (triad {bw.triad_gbs:.2f}, "
        f"scaled copy {bw.copy_gbs:.2f}) over {bw.elements:,} float32"
    )
    cb = measure_copy_bound(steps=5) if copy_bound else None
    if cb is not None:
        print(
            f"device copy bound: {cb.gbs:.2f} GB/s (plain {cb.plain_gbs:.2f}, scaled "
            f"{cb.scaled_gbs:.2f}) over {cb.elements:,} {cb.dtype} "
            f"(last-level cache {cb.cache_bytes / 2**20:.0f} MiB)"
        )

    results, memory, shapes = [], {}, {}
    for n_leaves in leaves:
        params, grads = make_params(n_params, n_leaves)
        shapes[str(n_leaves)] = _leaf_shapes(params)
        for o in optimizers:
            for i in impls:
                r = bench_update(
                    o,
                    i,
                    params,
                    grads,
                    bw,
                    steps=steps,
                    warmup=warmup,
                    min_time=min_time,
                    copy_bound=cb,
                )
                results.append(r.as_dict())
                print(
                    f"  {o:<6} {i:<6} leaves={n_leaves:<6} compile {r.compile_s:7.3f} s  "
                    f"step {r.step.median * 1e3:9.4f} ms  {r.x_bound:7.2f}x bound (min)",
                    flush=True,
                )
        if n_leaves == leaves[-1]:
            for o in optimizers:
                for i in impls:
                    with jax.numpy_dtype_promotion("standard"):
                        memory[f"{o}/{i}"] = memory_report(make_tx(i, o), params).as_dict()

    ratios = []
    for r in results:
        base = next(
            (
                b
                for b in results
                if b["impl"] == "optax"
                and b["optimizer"] == r["optimizer"]
                and b["leaves"] == r["leaves"]
            ),
            None,
        )
        if base is None or r["impl"] == "optax":
            continue
        ratios.append(
            {
                "optimizer": r["optimizer"],
                "leaves": r["leaves"],
                "impl": r["impl"],
                "vs": "optax",
                "step_ratio": r["step_s"]["median"] / base["step_s"]["median"],
                "compile_ratio": r["compile_s"] / base["compile_s"],
            }
        )

    rows = []
    for r in results:
        ratio = next(
            (
                x
                for x in ratios
                if x["impl"] == r["impl"]
                and x["optimizer"] == r["optimizer"]
                and x["leaves"] == r["leaves"]
            ),
            None,
        )
        s = r["step_s"]
        rows.append(
            [
                r["optimizer"],
                r["impl"],
                r["leaves"],
                r["compile_s"],
                s["min"] * 1e3,
                s["median"] * 1e3,
                s["p90"] * 1e3,
                r["bytes_per_step"] / 1e6,
                r["achieved_gbs"],
                r["x_bound"],
                r["x_bound_median"],
                "-" if r["x_copy"] is None else r["x_copy"],
                "-" if ratio is None else f"{ratio['step_ratio']:.3f}",
                "-" if ratio is None else f"{ratio['compile_ratio']:.3f}",
            ]
        )
    print()
    print(
        format_table(
            [
                "opt",
                "impl",
                "leaves",
                "compile s",
                "min ms",
                "median ms",
                "p90 ms",
                "MB/step",
                "GB/s",
                "x bound (min)",
                "x bound (med)",
                "x copy (min)",
                "step/optax",
                "compile/optax",
            ],
            rows,
        )
    )
    print(
        f"\noptimizer state for {n_params:,} params in {leaves[-1]} leaves "
        "(jax.eval_shape, nothing allocated):"
    )
    for name, m in memory.items():
        slots = ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in m["per_slot"].items())
        print(f"  {name:<14} total {m['total_bytes'] / 1e6:.2f} MB ({slots})")

    return {
        "schema": SCHEMA,
        "kind": "update",
        "environment": env,
        "config": {
            "optimizers": optimizers,
            "impls": impls,
            "params": n_params,
            "leaves": leaves,
            "steps": steps,
            "warmup": warmup,
            "dtype": "float32",
        },
        "shapes": shapes,
        "bandwidth": bw.as_dict(),
        "copy_bound": None if cb is None else cb.as_dict(),
        "results": results,
        "ratios": ratios,
        "memory": memory,
    }

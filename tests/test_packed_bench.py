"""The two roofline bounds, the packed bench case and per-path memory rows of packed state."""

from __future__ import annotations

import jax
import jax.numpy as jnp

import jopt
from jopt.bench._roofline import (
    copy_elements,
    last_level_cache_bytes,
    measure_bandwidth,
    measure_copy_bound,
)
from jopt.bench._update import bench_update, make_params


def test_copy_bound_is_measured_beyond_the_cache():
    assert last_level_cache_bytes() > 0
    # Several times the last-level cache (at least 256 MiB), so nothing comes from cache.
    assert copy_elements(jnp.float32) * 4 >= max(4 * last_level_cache_bytes(), 256 << 20)
    cb = measure_copy_bound(1 << 16, steps=2)
    assert cb.gbs > 0 and cb.gbs == max(cb.plain_gbs, cb.scaled_gbs)
    assert cb.as_dict()["elements"] == 1 << 16


def test_update_result_reports_both_bounds():
    params, grads = make_params(4000, 8)
    bw = measure_bandwidth(1 << 14, steps=2)
    cb = measure_copy_bound(1 << 14, steps=2)
    r = bench_update("adamw", "packed", params, grads, bw, steps=2, warmup=1, copy_bound=cb)
    d = r.as_dict()
    assert d["copy_bound_gbs"] == cb.gbs and d["x_copy"] > 0 and d["x_bound"] > 0
    # Without the copy bound the fields are empty, not NaN (the report is JSON).
    plain = bench_update("adam", "jopt", params, grads, bw, steps=2, warmup=1).as_dict()
    assert plain["copy_bound_gbs"] is None and plain["x_copy"] is None


def test_memory_rows_of_packed_state_are_per_parameter_path():
    params = {"enc": {"w": jnp.ones((10, 10)), "b": jnp.ones(10)}, "head": jnp.ones(5)}
    mask = {"enc": {"w": True, "b": False}, "head": False}
    per_leaf = jopt.memory_report(jopt.adamw(1e-3, mask=mask), params).per_group()
    fused = jopt.memory_report(jopt.fuse(jopt.adamw(1e-3, mask=mask), pad_to=8), params)
    groups = fused.per_group()
    assert groups["enc"] == per_leaf["enc"] and groups["head"] == per_leaf["head"]
    assert groups["(padding)"] > 0 and not any(g.startswith("float32") for g in groups)
    _, _, unpack = jopt.fused.packed_train_step(
        lambda p: jnp.sum(p["head"]), params, jopt.adamw(1e-3, mask=mask)
    )
    packed = jopt.memory_report(jopt.adamw(1e-3, mask=mask), params, layout=unpack.layout)
    assert {k: v for k, v in packed.per_group().items() if k != "-"} == {
        k: v for k, v in per_leaf.items() if k != "-"
    }
    assert sum(r.arrays for r in packed.rows) == len(
        jax.tree.leaves(
            jopt.fused.on_buffers(jopt.adamw(1e-3, mask=mask), unpack.layout).init(
                unpack.layout.pack(params)
            )
        )
    )

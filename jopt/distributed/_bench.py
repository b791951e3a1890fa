"""Data-parallel train-step throughput on 1, 2, 4, ... devices, side by side in one process.

Each device count gets its own mesh over the first ``n`` devices, the same model, data and
batching, and the training engine's epoch function compiled with :meth:`DataParallel.jit_epoch`.
Compile time is measured apart; the step rate is the median over ``repeats`` timed epochs after
a warm-up epoch. On fake CPU devices (``--xla_force_host_platform_device_count``) every "device"
shares the same cores, so the numbers show the partitioning overhead, not a speed-up.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

import jax

from jopt.core.errors import JoptError


def bench_data_parallel(
    devices: Sequence[int] = (1, 2, 4, 8),
    *,
    dataset: str = "digits",
    hidden: Sequence[int] = (128,),
    batch_size: int = 64,
    zero: int = 0,
    repeats: int = 3,
    seed: int = 0,
    data: Any = None,
    model: Any = None,
    tx: Any = None,
    batching: Any = None,
    spec: Any = None,
    execution: str = "packed",
) -> dict[str, Any]:
    """Steps per second of data-parallel training for each device count in ``devices``.

    By default a ``hidden`` MLP with Adam on ``dataset`` in minibatches of ``batch_size``; pass
    ``data`` (a ``jopt.data.Dataset``), ``model``, ``tx``, ``batching`` and ``spec`` (a
    ``jopt.train.LossSpec``) to benchmark an experiment's own set-up instead. ``execution``:
    ``packed`` (what ``jopt run`` trains with: the epoch's steps on buffers from
    ``jopt.fused.packed_layout``, padded to the device count under ZeRO-1; refused in one line
    where not exact) or ``per_leaf``.

    Returns ``{"platform", "device_kind", "dataset", "batch_size", "steps_per_epoch", "zero",
    "results": [{"devices", "steps_per_s", "compile_s", "speedup_vs_first"}]}``.
    """
    from jopt.data import Batching, load_dataset
    from jopt.distributed._data_parallel import DataParallel
    from jopt.distributed._mesh import make_data_mesh
    from jopt.fused import packed_layout
    from jopt.models import make_model
    from jopt.optimizers import adam
    from jopt.train import LossSpec, make_train_epoch

    available = jax.devices()
    if max(devices) > len(available):
        raise JoptError(
            f"bench asks for {max(devices)} devices but {len(available)} exist; on CPU run it "
            "as `jopt bench distributed` (it requests host devices) or set XLA_FLAGS"
        )
    if data is None:
        data = load_dataset(dataset, seed=seed, val_fraction=0.0, test_fraction=0.0)
    model = model or make_model("mlp", num_outputs=data.num_outputs, hidden=list(hidden))
    tx = tx or adam(1e-3)
    batching = batching or Batching("minibatch", batch_size)
    spec = spec or LossSpec(task=data.task, num_classes=data.num_classes)
    if execution not in ("packed", "per_leaf"):
        raise JoptError(f"execution must be 'packed' or 'per_leaf', got {execution!r}")
    rows = []
    for n in devices:
        dp = DataParallel(make_data_mesh(n, available[:n]), zero=zero)
        m, t, d, state = dp.prepare_fit(model, tx, data, key=seed, batching=batching)
        layout = None
        if execution == "packed":  # as jopt run: the layout of the unwrapped optimizer
            layout = packed_layout(tx, state.params, multiple_of=n if zero else 1)
        epoch_fn = make_train_epoch(m, t, spec, batching, layout=layout)
        args = (d.x_train, d.y_train)
        if layout is not None and not zero:  # as jopt run: the leaf offsets as arguments
            args = (*args, tuple(dp.replicate(o) for o in layout.offsets()))
        epoch = dp.jit(epoch_fn, state, num_data_args=0, num_other_args=len(args))
        t0 = time.perf_counter()
        compiled = epoch.jitted.lower(state, *args).compile()
        compile_s = time.perf_counter() - t0
        state, metrics = compiled(state, *args)  # warm-up
        jax.block_until_ready(metrics)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            state, metrics = compiled(state, *args)
            jax.block_until_ready(metrics)
            times.append(time.perf_counter() - t0)
        steps = batching.shape(len(data.y_train))[0]
        rows.append(
            {"devices": n, "steps_per_s": steps / statistics.median(times), "compile_s": compile_s}
        )
    for r in rows:
        r["speedup_vs_first"] = r["steps_per_s"] / rows[0]["steps_per_s"]
    return {
        "platform": available[0].platform,
        "device_kind": available[0].device_kind,
        "dataset": data.name or dataset,
        "batch_size": batching.shape(len(data.y_train))[2],
        "steps_per_epoch": batching.shape(len(data.y_train))[0],
        "zero": zero,
        "execution": execution,
        "results": rows,
    }

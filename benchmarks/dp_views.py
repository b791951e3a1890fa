"""Data-parallel packed epochs: leaf offsets as arguments vs static splits vs per leaf.

    python benchmarks/dp_views.py [--devices 2] [--blocks 50] [--width 64]

On ``--devices`` host devices (requested before JAX starts), a ``--blocks``-block MLP with Adam
on digits: the epoch compile time and steps/s of ``jopt.distributed.bench_data_parallel``
per leaf and packed (what ``jopt run`` does: the leaf offsets as replicated arguments), and
of the packed epoch with static splits (the layout's views cut at constant offsets, what data
parallel runs did before). A benchmark, no assertions.
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=2)
    ap.add_argument("--blocks", type=int, default=50)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    from jopt.distributed import request_cpu_devices

    request_cpu_devices(a.devices)
    import jax

    from jopt.data import Batching, load_dataset
    from jopt.distributed import DataParallel, bench_data_parallel, make_data_mesh
    from jopt.fused import packed_layout
    from jopt.models import make_model
    from jopt.optimizers import adam
    from jopt.train import LossSpec, make_train_epoch

    hidden = [a.width] * a.blocks
    for execution in ("per_leaf", "packed"):
        r = bench_data_parallel([a.devices], hidden=hidden, execution=execution, repeats=a.repeats)
        row = r["results"][0]
        speed = row["steps_per_s"]
        print(f"{execution:<14} compile {row['compile_s']:6.2f} s  {speed:8.1f} steps/s")
    data = load_dataset("digits", seed=0, val_fraction=0.0, test_fraction=0.0)
    model = make_model("mlp", num_outputs=data.num_outputs, hidden=hidden)
    batching, tx = Batching("minibatch", 64), adam(1e-3)
    spec = LossSpec(task=data.task, num_classes=data.num_classes)
    dp = DataParallel(make_data_mesh(a.devices, jax.devices()[: a.devices]), zero=0)
    m, t, d, state = dp.prepare_fit(model, tx, data, key=0, batching=batching)
    layout = packed_layout(tx, state.params)
    epoch = dp.jit_epoch(make_train_epoch(m, t, spec, batching, layout=layout), state)
    t0 = time.perf_counter()
    compiled = epoch.jitted.lower(state, d.x_train, d.y_train).compile()
    compile_s = time.perf_counter() - t0
    state, metrics = compiled(state, d.x_train, d.y_train)
    jax.block_until_ready(metrics)
    times = []
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        state, metrics = compiled(state, d.x_train, d.y_train)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - t0)
    steps = batching.shape(len(data.y_train))[0]
    print(
        f"{'packed static':<14} compile {compile_s:6.2f} s  "
        f"{steps / statistics.median(times):8.1f} steps/s"
    )


if __name__ == "__main__":
    main()

"""Multi-device checks for ``jopt.distributed``, run in subprocesses by ``test_distributed.py``.

JAX fixes its device count when its backend starts, and the pytest process has started it with
one CPU device long before these checks run. So they live in this script, which gets its host
devices *before* touching JAX, runs every check once (compiling each function once) and prints
one ``RESULT {json}`` line of measured numbers for the tests to assert on.

    XLA_FLAGS=--xla_force_host_platform_device_count=8 \\
        python tests/test_distributed_worker.py checks OUT_DIR
    python tests/test_distributed_worker.py process PID NPROC PORT OUT_DIR   # one of NPROC

Everything trains the training engine's own pieces (``jopt.train``, ``jopt.models``,
``jopt.data``) on sklearn's digits. Nothing here is a test function; pytest finds none.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

TRAIN_ROWS = 640  # 20 steps of 32
BATCH = 32
STEPS = TRAIN_ROWS // BATCH


def setup_problem():
    """Digits (640 training rows), a 32-unit MLP, Adam, 32-example minibatches."""
    import jopt
    from jopt.data import Batching, load_dataset
    from jopt.models import make_model

    data = load_dataset("digits", seed=0, val_fraction=0.0, test_fraction=0.25)
    data = dataclasses.replace(
        data, x_train=data.x_train[:TRAIN_ROWS], y_train=data.y_train[:TRAIN_ROWS]
    )
    model = make_model("mlp", num_outputs=10, hidden=[32])
    return data, model, jopt.adam(1e-2), Batching("minibatch", BATCH)


def max_diff(a: Any, b: Any) -> float:
    import jax
    import numpy as np

    diffs = jax.tree.map(
        lambda u, v: float(np.max(np.abs(np.asarray(u) - np.asarray(v)), initial=0.0)), a, b
    )
    return max(jax.tree.leaves(diffs), default=0.0)


def checks(out_dir: str) -> dict:
    import jax

    jax.config.update("jax_numpy_dtype_promotion", "strict")
    import numpy as np

    import jopt
    from jopt import distributed as jd
    from jopt.data import Batching
    from jopt.train import LossSpec, fit, make_train_epoch

    out: dict[str, Any] = {"devices": jax.device_count()}
    data, model, tx, batching = setup_problem()
    fit_kw = dict(epochs=1, key=0, batching=batching, eval_splits=())

    # Single-device reference: the engine's fit, one epoch of 20 steps.
    ref = fit(model, tx, data, **fit_kw)
    out["steps"] = int(ref.state.step)
    out["ref_train_loss"] = ref.history[0]["train_loss"]

    # Data parallel on 8 devices, replicated optimizer state, through the same fit.
    dp = jd.setup({"data": 8})
    m, t, d, s = dp.prepare_fit(model, tx, data, key=0, batching=batching)
    spec = LossSpec(task="classification", num_classes=10)
    epoch = make_train_epoch(m, t, spec, batching)
    hlo = jax.jit(epoch).lower(s, d.x_train, d.y_train).compile().as_text()
    out["dp_has_all_reduce"] = "all-reduce" in hlo
    r8 = fit(m, t, d, state=s, **fit_kw)
    out["dp_param_diff"] = max_diff(ref.state.params, r8.state.params)
    out["dp_opt_diff"] = max_diff(ref.state.opt_state, r8.state.opt_state)
    out["dp_loss_diff"] = abs(ref.history[0]["train_loss"] - r8.history[0]["train_loss"])
    out["dp_params_replicated"] = all(
        x.sharding.is_fully_replicated for x in jax.tree.leaves(r8.state.params)
    )
    xb = dp.shard_batch(data.x_train[:BATCH])
    out["batch_spec"] = str(xb.sharding.spec)
    out["batch_shard_rows"] = sorted({sh.data.shape[0] for sh in xb.addressable_shards})

    # ZeRO-1 on 8 devices.
    z = jd.setup({"data": 8, "zero": 1})
    m, t, d, s = z.prepare_fit(model, tx, data, key=0, batching=batching)
    out["zero_init_opt_bytes"] = sorted(set(jd.bytes_per_device(s.opt_state).values()))
    epoch = make_train_epoch(m, t, spec, batching)
    hlo = jax.jit(epoch).lower(s, d.x_train, d.y_train).compile().as_text()
    out["zero_has_all_gather"] = "all-gather" in hlo
    out["zero_has_reduce_scatter"] = "reduce-scatter" in hlo
    rz = fit(m, t, d, state=s, **fit_kw)
    sz = rz.state
    mu = sz.opt_state[0].mu["dense_0"]["kernel"]  # adam = chain(scale_by_adam, lr)
    out["zero_mu_shape"] = list(mu.shape)
    out["zero_mu_spec"] = str(mu.sharding.spec)
    out["zero_mu_shard_shape"] = list(mu.addressable_shards[0].data.shape)
    out["zero_opt_bytes_per_device"] = sorted(set(jd.bytes_per_device(sz.opt_state).values()))
    out["zero_opt_bytes_total"] = sum(x.nbytes for x in jax.tree.leaves(sz.opt_state))
    out["zero_coverage"] = jd.zero1_coverage(sz.opt_state, z.mesh)
    out["dp_opt_bytes_per_device"] = sorted(set(jd.bytes_per_device(r8.state.opt_state).values()))
    out["zero_params_replicated"] = all(
        x.sharding.is_fully_replicated for x in jax.tree.leaves(sz.params)
    )
    out["zero_param_diff"] = max_diff(ref.state.params, sz.params)
    out["zero_opt_diff"] = max_diff(ref.state.opt_state, sz.opt_state)

    # ZeRO-1 over a fused optimizer: the packed buffers (2410 float32 elements, not a multiple
    # of 8) are padded to 2416 by zero1 and split 8 ways; same parameters as 1 device, unfused.
    from jopt.fused import pack_layout

    m, t, d, s = z.prepare_fit(model, jopt.fuse(tx), data, key=0, batching=batching)
    rf = fit(m, t, d, state=s, **fit_kw)
    fmu = rf.state.opt_state.inner[0].mu["float32"]
    out["fused_unpadded_len"] = dict(pack_layout(rf.state.params).sizes)["float32"]
    out["fused_mu_shape"] = list(fmu.shape)
    out["fused_mu_spec"] = str(fmu.sharding.spec)
    out["fused_mu_shard_shapes"] = sorted({sh.data.shape for sh in fmu.addressable_shards})
    out["fused_mu_devices"] = len(fmu.sharding.device_set)
    out["fused_opt_bytes_per_device"] = sorted(
        set(jd.bytes_per_device(rf.state.opt_state).values())
    )
    out["fused_opt_bytes_total"] = sum(x.nbytes for x in jax.tree.leaves(rf.state.opt_state))
    out["fused_coverage"] = jd.zero1_coverage(rf.state.opt_state, z.mesh)
    out["fused_params_replicated"] = all(
        x.sharding.is_fully_replicated for x in jax.tree.leaves(rf.state.params)
    )
    out["fused_param_diff"] = max_diff(ref.state.params, rf.state.params)
    out["fused_loss_diff"] = abs(ref.history[0]["train_loss"] - rf.history[0]["train_loss"])

    # Checkpoint the ZeRO-1 state on 8 devices; restore on 4 (ZeRO-1) and on 1.
    ckpt = jd.save_checkpoint(Path(out_dir) / "ckpt8", sz)
    like = jax.eval_shape(lambda: sz)
    ref_next = fit(model, tx, data, state=jax.tree.map(jax.numpy.copy, ref.state), **fit_kw)
    for n in (4, 1):
        dn = jd.DataParallel(jd.make_data_mesh(n), zero=1)
        restored = jd.restore_checkpoint(ckpt, like, dn.state_shardings(like))
        r_mu = restored.opt_state[0].mu["dense_0"]["kernel"]
        out[f"restore{n}_diff"] = max_diff(
            (sz.params, sz.opt_state, sz.step), (restored.params, restored.opt_state, restored.step)
        )
        out[f"restore{n}_devices"] = len(r_mu.sharding.device_set)
        out[f"restore{n}_mu_spec"] = str(r_mu.sharding.spec)
        out[f"restore{n}_key_equal"] = bool(
            np.array_equal(jax.random.key_data(restored.key), jax.random.key_data(sz.key))
        )
        if n == 4:  # train on: one more epoch on the new mesh equals one more on one device
            m4, t4, d4, s4 = dn.prepare_fit(model, tx, data, batching=batching, state=restored)
            nxt = fit(m4, t4, d4, state=s4, **fit_kw)
            out["restore4_next_epoch_diff"] = max_diff(ref_next.state.params, nxt.state.params)

    # The fused ZeRO-1 state (padded to 2416 for 8 devices) restores on 4 and trains on: the
    # fused update keeps the state's padded length (2416 = 4 x 604) and matches 1 device.
    fckpt = jd.save_checkpoint(Path(out_dir) / "ckpt8_fused", rf.state)
    flike = jax.eval_shape(lambda: rf.state)
    d4 = jd.DataParallel(jd.make_data_mesh(4), zero=1)
    frestored = jd.restore_checkpoint(fckpt, flike, d4.state_shardings(flike))
    m4, t4, dd4, s4 = d4.prepare_fit(model, jopt.fuse(tx), data, batching=batching, state=frestored)
    fnext = fit(m4, t4, dd4, state=s4, **fit_kw)
    fmu4 = fnext.state.opt_state.inner[0].mu["float32"]
    out["fused_restore4_mu_shape"] = list(fmu4.shape)
    out["fused_restore4_shard_shapes"] = sorted({sh.data.shape for sh in fmu4.addressable_shards})
    out["fused_restore4_next_epoch_diff"] = max_diff(ref_next.state.params, fnext.state.params)

    # The experiment runner (what `jopt run cfg.yaml distributed.data=8` calls): one epoch of the
    # quickstart config on one device, on 8 (packed, the leaf offsets replicated arguments)
    # and on 8 with ZeRO-1 (packed, static splits) give the same logged metrics.
    from jopt.experiment import load_config
    from jopt.experiment._runner import run

    root = Path(__file__).resolve().parents[1]
    logged = {}
    runs = (
        ("one", []),
        ("dp", ["distributed.data=8"]),
        ("eight", ["distributed.data=8", "distributed.zero=1"]),
    )
    for name, extra in runs:
        cfg = load_config(
            root / "configs" / "quickstart.yaml",
            [
                "train.epochs=1",
                f"output.runs_dir={Path(out_dir) / 'runs'}",
                "output.plots=false",
                "output.checkpoints=false",
                "output.progress=false",
                *extra,
            ],
        )
        run_dir = Path(run(cfg))
        logged[name] = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    keys = ("train_loss", "val_loss", "test_loss", "val_accuracy")
    out["runner_metric_diff"] = max(
        abs(logged["one"][k] - logged[n][k]) for k in keys for n in ("dp", "eight")
    )
    out["runner_train_loss"] = logged["eight"]["train_loss"]

    # A batch that does not split over the data axis.
    try:
        dp.prepare_fit(model, tx, data, batching=Batching("minibatch", 30))
        out["indivisible_error"] = None
    except jopt.JoptError as e:
        out["indivisible_error"] = str(e)
    try:
        dp.shard_batch(data.x_train[:30])
        out["indivisible_shard_error"] = None
    except jopt.JoptError as e:
        out["indivisible_shard_error"] = str(e)
    return out


def process(pid: int, nproc: int, port: int, out_dir: str) -> dict:
    """One process of a loopback job (2 CPU devices each): ZeRO-1 steps on process-local rows."""
    import jax

    jax.config.update("jax_numpy_dtype_promotion", "strict")
    import jax.numpy as jnp
    import numpy as np

    from jopt import distributed as jd
    from jopt.train import LossSpec, init_train_state, make_train_step

    dp = jd.setup(
        {
            "data": -1,
            "zero": 1,
            "coordinator_address": f"127.0.0.1:{port}",
            "num_processes": nproc,
            "process_id": pid,
            "local_devices": 2,
        }
    )
    data, model, tx, _ = setup_problem()
    spec = LossSpec(task="classification", num_classes=10)

    def make_step(tx):
        step = make_train_step(model, tx, spec)

        def one(state, xb, yb):  # one micro-batch of the whole (global) batch
            w = jnp.ones((1, xb.shape[0]), jnp.float32)
            return step(state, xb[None], yb[None], w, jax.random.fold_in(state.key, state.step))

        return one

    # Every process builds the same initial state (same key) and places its own shards.
    state = dp.shard_state(init_train_state(model, tx, data.x_train[:1], jax.random.key(0)))
    run = dp.jit(make_step(dp.optimizer(tx)), state)
    for i in range(5):
        xb, yb = (
            data.x_train[i * BATCH : (i + 1) * BATCH],
            data.y_train[i * BATCH : (i + 1) * BATCH],
        )
        rows = dp.local_rows(BATCH)  # this process loads only the rows its devices hold
        state, m = run(state, *dp.shard_batch(xb[rows], yb[rows]))
    # Reference: this process's first device, whole batches, no sharding, plain optimizer.
    dev = jax.local_devices()[0]
    ref = jax.device_put(init_train_state(model, tx, data.x_train[:1], jax.random.key(0)), dev)
    ref_step = jax.jit(make_step(tx))
    for i in range(5):
        xb, yb = (
            data.x_train[i * BATCH : (i + 1) * BATCH],
            data.y_train[i * BATCH : (i + 1) * BATCH],
        )
        ref, _ = ref_step(ref, jax.device_put(xb, dev), jax.device_put(yb, dev))
    local = jax.tree.map(lambda a: np.asarray(a.addressable_shards[0].data), state.params)
    mu = state.opt_state[0].mu["dense_0"]["kernel"]
    ckpt = jd.save_checkpoint(Path(out_dir) / "ckpt_mp", state)
    res = {
        "pid": jax.process_index(),
        "process_count": jax.process_count(),
        "global_devices": jax.device_count(),
        "local_devices": jax.local_device_count(),
        "local_rows": len(dp.local_rows(BATCH)),
        "param_diff": max_diff(jax.tree.map(np.asarray, ref.params), local),
        "mu_spec": str(mu.sharding.spec),
        "mu_local_shards": len(mu.addressable_shards),
        "loss": float(m["loss"]),
        "is_main": dp.is_main,
        "checkpoint_exists": ckpt.is_dir(),
    }
    if dp.is_main:  # only process 0 writes
        (Path(out_dir) / "process0.json").write_text(json.dumps(res))
    jax.distributed.shutdown()
    return res


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "checks":
        print("RESULT " + json.dumps(checks(sys.argv[2])))
    elif mode == "process":
        pid, nproc, port = (int(a) for a in sys.argv[2:5])
        print("RESULT " + json.dumps(process(pid, nproc, port, sys.argv[5])))
    else:
        raise SystemExit(f"unknown mode {mode!r}")

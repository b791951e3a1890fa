"""Multi-device checks for ``jopt.distributed``, run in a subprocess by ``test_distributed.py``.

JAX fixes its device count when its backend starts, and the pytest process has started it with
one CPU device long before this module's tests run. So the 8-device checks live here, in a
script that asks for host devices *before* touching JAX, runs every check once (compiling each
step once) and prints one JSON line of measured numbers for the test to assert on.

    python tests/test_distributed_worker.py checks OUT_DIR        # 8 fake devices
    python tests/test_distributed_worker.py process PID NPROC PORT OUT_DIR   # one of N processes

Nothing here is a test function; pytest imports the module and finds none.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NamedTuple

STEPS = 20
BATCH = 32
SAMPLES = 256


class State(NamedTuple):
    """A minimal train state with the engine's field names."""

    params: Any
    opt_state: Any
    step: Any
    key: Any
    model_state: Any


def problem(tx_name: str = "adam"):
    """A small flax MLP on sklearn's digits, a jopt optimizer and a pure train step."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from sklearn.datasets import load_digits

    import jopt

    x, y = load_digits(return_X_y=True)
    x = (x[:SAMPLES] / 16.0).astype(np.float32)
    y = y[:SAMPLES].astype(np.int32)

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.relu(nn.Dense(64)(x))
            return nn.Dense(16)(x)  # 16 outputs: a width that splits over 8 devices

    model = MLP()
    tx = jopt.adam(1e-2) if tx_name == "adam" else jopt.sgd(0.1, momentum=0.9)

    def init(seed):
        # A fresh key per call: sharding a state may alias its buffers, and the jitted steps
        # donate their input state, so no two states may share an array.
        key = jax.random.key(seed)
        params = model.init(key, jnp.zeros((1, 64), jnp.float32))["params"]
        return State(params, tx.init(params), jnp.zeros((), jnp.int32), key, {})

    def step(state: State, xb, yb):
        def loss_fn(p):
            logits = model.apply({"params": p}, xb)
            return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = jopt.apply_updates(state.params, updates)
        return state._replace(params=params, opt_state=opt_state, step=state.step + 1), {
            "loss": loss
        }

    batches = [
        (
            x[(i * BATCH) % SAMPLES : (i * BATCH) % SAMPLES + BATCH],
            y[(i * BATCH) % SAMPLES : (i * BATCH) % SAMPLES + BATCH],
        )
        for i in range(STEPS)
    ]
    return init, step, batches, x, y


def max_diff(a, b) -> float:
    import jax
    import numpy as np

    diffs = jax.tree.map(
        lambda u, v: float(np.max(np.abs(np.asarray(u) - np.asarray(v)), initial=0.0)), a, b
    )
    return max(jax.tree.leaves(diffs), default=0.0)


def train(run_step, state, batches, shard=lambda *a: a):
    losses = []
    for xb, yb in batches:
        state, m = run_step(state, *shard(xb, yb))
        losses.append(float(m["loss"]))
    return state, losses


def checks(out_dir: str) -> dict:
    import jax

    # The caller sets XLA_FLAGS=--xla_force_host_platform_device_count=8.
    jax.config.update("jax_numpy_dtype_promotion", "strict")
    import numpy as np
    from jax.sharding import PartitionSpec

    import jopt
    from jopt import distributed as jd

    out: dict[str, Any] = {"devices": jax.device_count()}
    init, step, batches, _, _ = problem()

    # Single-device reference: the same pure step under plain jit.
    ref, ref_losses = train(jax.jit(step), init(0), batches)

    # Data parallel on 8 devices, replicated optimizer state.
    dp = jopt.distributed.from_spec(jd.parse_distributed({"data": 8}))
    state = dp.shard_state(init(0))
    dp_step = dp.jit(step, state)
    hlo = dp_step.lower(state, *dp.shard_batch(*batches[0])).compile().as_text()
    out["dp_has_all_reduce"] = "all-reduce" in hlo
    s8, dp_losses = train(dp_step, state, batches, dp.shard_batch)
    out["dp_param_diff"] = max_diff(ref.params, s8.params)
    out["dp_opt_diff"] = max_diff(ref.opt_state, s8.opt_state)
    out["dp_loss_diff"] = float(np.max(np.abs(np.array(ref_losses) - np.array(dp_losses))))
    out["dp_loss_first_last"] = [ref_losses[0], ref_losses[-1]]
    leaf = jax.tree.leaves(s8.params)[0]
    out["dp_params_replicated"] = leaf.sharding.is_fully_replicated
    xb = dp.shard_batch(batches[0][0])
    out["batch_spec"] = str(xb.sharding.spec)
    out["batch_shard_rows"] = sorted({s.data.shape[0] for s in xb.addressable_shards})

    # ZeRO-1 on 8 devices.
    z = jd.DataParallel(dp.mesh, zero=1)
    state = z.init_state(init, 0)  # computed straight into the ZeRO-1 shardings
    mu = state.opt_state[0].mu["Dense_0"]["kernel"]
    out["zero_mu_spec"] = str(mu.sharding.spec)
    out["zero_mu_shard_shape"] = list(mu.addressable_shards[0].data.shape)
    opt_bytes = jd.bytes_per_device(state.opt_state)
    total = sum(x.nbytes for x in jax.tree.leaves(state.opt_state))
    out["zero_opt_bytes_per_device"] = sorted(set(opt_bytes.values()))
    out["zero_opt_bytes_total"] = total
    out["zero_coverage"] = jd.zero1_coverage(state.opt_state, z.mesh)
    out["dp_opt_bytes_per_device"] = sorted(set(jd.bytes_per_device(s8.opt_state).values()))
    z_step = z.jit(step, state)
    hlo = z_step.lower(state, *z.shard_batch(*batches[0])).compile().as_text()
    out["zero_has_all_gather"] = "all-gather" in hlo
    sz, _ = train(z_step, state, batches, z.shard_batch)
    out["zero_param_diff"] = max_diff(ref.params, sz.params)
    out["zero_opt_diff"] = max_diff(ref.opt_state, sz.opt_state)
    out["zero_state_spec_after"] = str(sz.opt_state[0].mu["Dense_0"]["kernel"].sharding.spec)

    # Checkpoint the ZeRO-1 state on 8 devices; restore on 4 (ZeRO-1) and on 1.
    ckpt = jd.save_checkpoint(Path(out_dir) / "ckpt8", sz)
    like = jax.eval_shape(init, 0)
    for n in (4, 1):
        dn = jd.DataParallel(jd.make_data_mesh(n), zero=1)
        restored = jd.restore_checkpoint(ckpt, like, dn.state_shardings(like))
        r_mu = restored.opt_state[0].mu["Dense_0"]["kernel"]
        out[f"restore{n}_diff"] = max_diff(
            (sz.params, sz.opt_state, sz.step), (restored.params, restored.opt_state, restored.step)
        )
        out[f"restore{n}_devices"] = len(r_mu.sharding.device_set)
        out[f"restore{n}_mu_spec"] = str(r_mu.sharding.spec)
        out[f"restore{n}_key_equal"] = bool(
            np.array_equal(jax.random.key_data(restored.key), jax.random.key_data(sz.key))
        )
        # One more step on the new mesh equals one more step of the reference.
        nxt, _ = dn.jit(step, restored)(restored, *dn.shard_batch(*batches[0]))
        ref_nxt, _ = jax.jit(step)(ref, *batches[0])
        out[f"restore{n}_next_step_diff"] = max_diff(ref_nxt.params, nxt.params)

    # A batch that does not split over the data axis.
    try:
        dp_step(dp.shard_state(init(0)), batches[0][0][:30], batches[0][1][:30])
        out["indivisible_error"] = None
    except jopt.JoptError as e:
        out["indivisible_error"] = str(e)
    try:
        dp.shard_batch(batches[0][0][:30])
        out["indivisible_shard_error"] = None
    except jopt.JoptError as e:
        out["indivisible_shard_error"] = str(e)
    out["pspec_replicated"] = str(PartitionSpec())
    return out


def process(pid: int, nproc: int, port: int, out_dir: str) -> dict:
    """One process of a loopback multi-process job: 2 CPU devices per process."""
    import jax

    jax.config.update("jax_numpy_dtype_promotion", "strict")
    import numpy as np

    from jopt import distributed as jd

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
    init, step, batches, _, _ = problem()
    state = dp.shard_state(init(0))
    run = dp.jit(step, state)
    for xb, yb in batches[:5]:
        rows = dp.local_rows(xb.shape[0])  # this process loads only its own rows
        state, m = run(state, *dp.shard_batch(xb[rows], yb[rows]))
    # Reference on this process's first local device, whole batches, no sharding.
    dev = jax.local_devices()[0]
    ref = jax.device_put(init(0), dev)
    ref_step = jax.jit(step)
    for xb, yb in batches[:5]:
        ref, _ = ref_step(ref, jax.device_put(xb, dev), jax.device_put(yb, dev))
    local = jax.tree.map(lambda a: np.asarray(a.addressable_shards[0].data), state.params)
    diff = max_diff(jax.tree.map(np.asarray, ref.params), local)
    ckpt = jd.save_checkpoint(Path(out_dir) / "ckpt_mp", state)
    res = {
        "pid": jax.process_index(),
        "process_count": jax.process_count(),
        "global_devices": jax.device_count(),
        "local_devices": jax.local_device_count(),
        "local_rows": len(dp.local_rows(BATCH)),
        "param_diff": diff,
        "loss": float(m["loss"]),
        "is_main": dp.is_main,
        "checkpoint_exists": ckpt.is_dir(),
    }
    if dp.is_main:  # only process 0 writes results
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

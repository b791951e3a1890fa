"""``jopt.memory_report`` and ``jopt bench``: real bytes, end-to-end runs, JSON fields, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jopt
from jopt.bench._report import parse_count
from jopt.bench._update import leaf_sizes, make_params, update_bytes
from jopt.cli import main as cli_main


def _params():
    return {
        "dense": {"kernel": jnp.ones((8, 4)), "bias": jnp.zeros((4,))},
        "head": {"kernel": jnp.ones((4, 2), jnp.bfloat16)},
    }


def _real_bytes(tree):
    return sum(int(np.asarray(x).nbytes) for x in jax.tree.leaves(tree))


@pytest.mark.parametrize(
    "make",
    [
        lambda: jopt.adam(1e-3),
        lambda: jopt.sgd(1e-2, momentum=0.9),
        lambda: jopt.lamb(1e-3),
        lambda: jopt.fuse(jopt.adam(1e-3)),
        lambda: optax.adamw(1e-3),
    ],
    ids=["adam", "sgd-momentum", "lamb", "fused-adam", "optax-adamw"],
)
def test_memory_report_equals_initialized_state(make):
    tx = make()
    params = _params()
    rep = jopt.memory_report(tx, params)
    state = tx.init(params)
    assert rep.total_bytes == _real_bytes(state)
    assert rep.param_bytes == _real_bytes(params)
    assert sum(r.arrays for r in rep.rows) == len(jax.tree.leaves(state))
    assert sum(rep.per_slot().values()) == rep.total_bytes
    assert sum(rep.per_group().values()) == rep.total_bytes


def test_memory_report_slots_and_groups_for_adam():
    params = _params()
    rep = jopt.memory_report(jopt.adam(1e-3), params)
    state = jopt.adam(1e-3).init(params)
    slots = rep.per_slot()
    assert slots["0.mu"] == _real_bytes(state[0].mu)
    assert slots["0.nu"] == _real_bytes(state[0].nu)
    assert slots["0.count"] == 4
    groups = rep.per_group()
    # dense: 8*4+4 float32 values, for mu and nu; head: bfloat16 params get float32 moments.
    assert groups["dense"] == 2 * 36 * 4
    assert groups["head"] == 2 * 8 * 4
    assert "0.mu" in rep.table()


def test_memory_report_needs_no_allocation():
    abstract = {"w": jax.ShapeDtypeStruct((1000, 1000), jnp.float32)}
    rep = jopt.memory_report(jopt.fuse(jopt.adam(1e-3)), abstract)
    assert rep.per_slot()["inner.0.mu"] == 4_000_000
    # "-": Adam's int32 count and the fused state's one int32 leaf offset.
    assert rep.per_group() == {"-": 8, "w": 8_000_000}  # per parameter path, not per buffer


def test_update_bytes_model():
    params, grads = make_params(1000, 7)
    assert [x.shape[0] for x in jax.tree.leaves(params)] == leaf_sizes(1000, 7)
    assert jax.tree.structure(grads) == jax.tree.structure(params)
    # Adam: read grads, read+write params, read+write mu and nu = 7 param-sized arrays.
    moved, state = update_bytes(jopt.adam(1e-3), params)
    assert (moved, state) == (7 * 4000, 2 * 4000)
    moved, state = update_bytes(jopt.sgd(1e-3, momentum=0.9), params)
    assert (moved, state) == (5 * 4000, 4000)


def test_parse_count():
    assert parse_count("10M") == 10_000_000
    assert parse_count("2.5k") == 2500
    assert parse_count("300") == 300
    for bad in ("abc", "0", "1.5", "-3K"):
        with pytest.raises(jopt.JoptError):
            parse_count(bad)


@pytest.fixture(scope="module")
def update_report(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "update.json"
    argv = [
        "bench",
        "update",
        "--optimizer",
        "adam,sgd",
        "--params",
        "2K",
        "--leaves",
        "1,8",
        "--steps",
        "2",
        "--warmup",
        "1",
        "--json",
        str(path),
    ]
    assert cli_main(argv) == 0
    with open(path) as f:
        return json.load(f)


def test_bench_update_end_to_end(update_report, capsys):
    r = update_report
    assert r["schema"] == "jopt.bench/1" and r["kind"] == "update"
    env = r["environment"]
    for field in (
        "platform",
        "device_kind",
        "device_count",
        "jax",
        "jaxlib",
        "optax",
        "jopt",
        "python",
        "cpu_count",
        "load_avg",
        "created",
    ):
        assert field in env
    assert env["jax"] == jax.__version__
    assert r["config"]["params"] == 2000 and r["config"]["leaves"] == [1, 8]
    assert r["shapes"]["8"] == [{"shape": [250], "count": 8}]
    bw = r["bandwidth"]
    assert bw["gbs"] > 0 and bw["gbs"] == max(bw["triad_gbs"], bw["copy_gbs"])
    # 2 optimizers x 4 implementations x 2 leaf counts, every figure present and positive.
    assert len(r["results"]) == 16
    assert {x["impl"] for x in r["results"]} == {"optax", "jopt", "fused", "packed"}
    for res in r["results"]:
        s = res["step_s"]
        assert res["compile_s"] > 0 and 0 < s["min"] <= s["median"] <= s["p90"]
        assert s["n"] >= 2
        np.testing.assert_allclose(res["achieved_gbs"], res["bytes_per_step"] / s["median"] / 1e9)
        np.testing.assert_allclose(res["x_bound"], s["min"] / res["bound_s"])
        np.testing.assert_allclose(res["x_bound_median"], s["median"] / res["bound_s"])
        assert res["bytes_per_step"] == (7 if res["optimizer"] == "adam" else 5) * 2000 * 4
    assert len(r["ratios"]) == 12
    for q in r["ratios"]:
        assert q["vs"] == "optax" and q["impl"] in ("jopt", "fused", "packed")
        assert q["step_ratio"] > 0 and q["compile_ratio"] > 0
    # mu and nu, Adam's count, and one int32 offset per leaf (8 leaves) in the fused state.
    assert r["memory"]["adam/fused"]["total_bytes"] == 2 * 2000 * 4 + 4 + 8 * 4


@pytest.mark.parametrize(
    "args, message",
    [
        (["update", "--params", "abc"], "cannot read a count"),
        (["update", "--params", "10", "--leaves", "20"], "exceeds"),
        (["update", "--optimizer", "adamz"], "unknown optimizer"),
        (["update", "--impl", "torch"], "unknown implementation"),
        (["update", "--steps", "0"], "--steps"),
        ([], "choose a benchmark"),
    ],
)
def test_bench_bad_input_exits_2(args, message, capsys):
    assert cli_main(["bench", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.fixture
def tiny_config(tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY)
    return cfg


TINY = (
    "name: tiny\nseed: 0\n"
    "data: {name: digits, val_fraction: 0.2, test_fraction: 0.2, preprocess: standardize}\n"
    "model: {name: mlp, hidden: [8], activation: relu}\n"
    "optimizer: {name: adam, learning_rate: 1.0e-3}\n"
    "batching: {strategy: minibatch, batch_size: 256}\n"
    "train: {epochs: 1}\n"
)


def test_bench_train_end_to_end(tiny_config, tmp_path):
    cfg = tiny_config
    path = tmp_path / "train.json"
    argv = [
        "bench",
        "train",
        "--config",
        str(cfg),
        "--impl",
        "fused",
        "--steps",
        "2",
        "--warmup",
        "1",
        "--devices",
        "1",
        "--json",
        str(path),
    ]
    assert cli_main(argv) == 0
    with open(path) as f:
        r = json.load(f)
    assert r["schema"] == "jopt.bench/1" and r["kind"] == "train"
    # --devices 1: the data-parallel path (mesh, shardings, engine epoch) on one device.
    dp = r["data_parallel"]
    assert dp["platform"] == jax.default_backend() and dp["zero"] == 0
    assert dp["batch_size"] == 256 and dp["steps_per_epoch"] == r["shapes"]["steps_per_epoch"]
    (row,) = dp["results"]
    assert row["devices"] == 1 and row["steps_per_s"] > 0 and row["compile_s"] > 0
    assert row["speedup_vs_first"] == 1.0
    assert r["config"]["impls"] == ["grad", "fused"] and r["config"]["optimizer"] == "adam"
    assert r["shapes"]["leaves"] == 4 and r["shapes"]["batch"][0] == 256
    assert [x["impl"] for x in r["results"]] == ["grad", "fused"]
    for res in r["results"]:
        assert res["step_compile_s"] > 0 and res["epoch_compile_s"] > 0
        assert 0 < res["step_s"]["min"] <= res["step_s"]["median"] <= res["step_s"]["p90"]
        assert res["epoch_s"]["median"] > 0 and res["steps_per_epoch"] >= 1
    (q,) = r["ratios"]
    assert q["impl"] == "fused" and q["vs"] == "grad" and q["step_ratio"] > 0
    # The reported bytes are those of the state the timed optimizer really allocates (the
    # optimizer `jopt run` builds, with execution: fused; its wrappers' counters and
    # hyperparameters included), and that state is compact: Adam's two moments the size of the
    # parameters, one int32 offset per leaf, and a few scalars.
    from jopt.experiment import bench_optimizers, load_config, setup
    from jopt.train import init_train_state

    config = load_config(str(cfg), [])
    s = setup(config)
    tx = bench_optimizers(config, ["fused"], s.steps_per_epoch)["fused"]
    x = jnp.asarray(s.data.x_train[:1], jnp.float32)
    state = init_train_state(s.model, tx, x, jax.random.key(0)).opt_state
    real = sum(a.nbytes for a in jax.tree.leaves(state))
    params, leaves = r["shapes"]["params"], r["shapes"]["leaves"]
    assert r["memory"]["fused"]["total_bytes"] == real
    assert 0 <= real - (2 * 4 * params + 4 * leaves) <= 128, real
    assert r["memory"]["grad"]["total_bytes"] == 0


@pytest.mark.parametrize(
    "devices, message",
    [
        ("0", "distinct positive device counts"),
        ("two", "distinct positive device counts"),
        ("1,1", "distinct positive device counts"),
        ("too_many", "device(s) exist"),  # one more than this process's JAX has (cpu or gpu)
    ],
)
def test_bench_train_bad_devices_exits_2(tiny_config, devices, message, capsys):
    if devices == "too_many":
        have = jax.devices()
        devices = str(len(have) + 1)
        message = f"only {len(have)} {have[0].platform} device(s) exist"
    assert cli_main(["bench", "train", "--config", str(tiny_config), "--devices", devices]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_bench_train_devices_2_in_a_fresh_process(tiny_config, tmp_path):
    """On a CPU-only machine with no XLA_FLAGS, jopt asks JAX for the 2 host devices itself."""
    path = tmp_path / "dp.json"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    argv = [sys.executable, "-m", "jopt.cli", "bench", "train", "--config", str(tiny_config)]
    argv += ["--impl", "jopt", "--steps", "2", "--warmup", "1", "--devices", "2"]
    proc = subprocess.run(
        [*argv, "--json", str(path)], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(path.read_text())
    assert r["environment"]["device_count"] == 2
    (row,) = r["data_parallel"]["results"]
    assert row["devices"] == 2 and row["steps_per_s"] > 0
    assert "data-parallel epochs" in proc.stdout


def test_bench_train_bad_config_exits_2(tmp_path, capsys):
    assert cli_main(["bench", "train", "--config", str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1

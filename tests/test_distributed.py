"""Tests for ``jopt.distributed``.

Checks that need several devices run in subprocesses (``test_distributed_worker.py``), because
this pytest process started JAX with one CPU device: one subprocess with 8 fake CPU devices runs
every single-process check once, and two more form a 2-process job on loopback. They start
together (module fixture) and the tests below assert on the numbers they report.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from helpers import free_port, subprocess_env

import jopt
from jopt import distributed as jd

WORKER = Path(__file__).with_name("test_distributed_worker.py")
ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 600


# Every subprocess compiles with XLA's backend (LLVM) optimisations off: compiling is most of
# their cost, and each check compares runs compiled the same way (the reference included). No
# device-count flag: the command-line runs must ask jopt for their devices.
FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"


def _env(xla_flags: str = "", **extra: str) -> dict[str, str]:
    return subprocess_env(f"{xla_flags} {FAST_COMPILE}".strip(), **extra)


def _result(proc: subprocess.Popen) -> dict:
    out, _ = proc.communicate(timeout=TIMEOUT)
    lines = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"worker failed (rc={proc.returncode}):\n{out[-4000:]}"
    return json.loads(lines[-1][len("RESULT ") :])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Start the 8-device checks and the 2-process job together; collect their reports."""
    tmp = tmp_path_factory.mktemp("distributed")
    popen = dict(stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    checks = subprocess.Popen(
        [sys.executable, str(WORKER), "checks", str(tmp / "checks")],
        env=_env("--xla_force_host_platform_device_count=8"),
        **popen,
    )
    # The command line, on this CPU-only machine with no device-count flag: jopt asks for them.
    cli = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jopt.cli",
            "run",
            str(ROOT / "configs" / "quickstart.yaml"),
            "train.epochs=1",
            "distributed.data=4",
            f"output.runs_dir={tmp / 'cli_runs'}",
            "output.plots=false",
            "output.checkpoints=false",
            "--no-progress",
        ],
        env=_env(),
        **popen,
    )
    port = free_port()
    procs, run_procs = [], []
    if port is not None:
        procs = [
            subprocess.Popen(
                [sys.executable, str(WORKER), "process", str(pid), "2", str(port), str(tmp / "mp")],
                env=_env(),
                **popen,
            )
            for pid in range(2)
        ]
        # `jopt run` as a 2-process job (2 host devices each, ZeRO-1): the same config as `cli`.
        run_port = free_port()
        while run_port == port:
            run_port = free_port()
        coord = {"JOPT_COORDINATOR_ADDRESS": f"127.0.0.1:{run_port}", "JOPT_NUM_PROCESSES": "2"}
        run_procs = [
            subprocess.Popen(
                [
                    *(sys.executable, "-m", "jopt.cli", "run"),
                    str(ROOT / "configs" / "quickstart.yaml"),
                    "train.epochs=1",
                    "distributed.data=-1",
                    "distributed.zero=1",
                    "distributed.local_devices=2",
                    f"output.runs_dir={tmp / 'mp_runs'}",
                    "output.plots=false",
                    "--no-progress",
                ],
                env=_env(**coord, JOPT_PROCESS_ID=str(pid)),
                **popen,
            )
            for pid in range(2)
        ]
    try:
        result = {"checks": _result(checks), "tmp": tmp, "port": port}
        result["processes"] = [_result(p) for p in procs]
        out, _ = cli.communicate(timeout=TIMEOUT)
        result["cli"] = (cli.returncode, out)
        outs = [p.communicate(timeout=TIMEOUT)[0] for p in run_procs]
        result["mp_run"] = [(p.returncode, o) for p, o in zip(run_procs, outs, strict=True)]
    finally:
        for p in [checks, cli, *procs, *run_procs]:
            if p.poll() is None:
                p.kill()
    return result


# --- 8 fake devices, one process -----------------------------------------------------------------


def test_data_parallel_matches_single_device(runs):
    c = runs["checks"]
    assert c["devices"] == 8 and c["steps"] == 20
    assert c["dp_param_diff"] <= 1e-5 and c["dp_opt_diff"] <= 1e-5
    assert c["dp_loss_diff"] <= 1e-5
    assert c["ref_train_loss"] < 0.75 * np.log(10)  # it really trains over the 20 steps
    assert c["dp_params_replicated"]
    # The batch is split 8 ways (32 rows -> 4 per device) and XLA averages gradients itself.
    assert c["batch_spec"] == "P('data',)" and c["batch_shard_rows"] == [4]
    assert c["dp_has_all_reduce"]


def test_zero1_state_is_sharded_and_matches(runs):
    c = runs["checks"]
    # Adam's first moment of the (64, 32) kernel: split along its 64 rows, 8 per device.
    assert c["zero_mu_shape"] == [64, 32]
    assert c["zero_mu_spec"].startswith("P('data'")
    assert c["zero_mu_shard_shape"] == [8, 32]
    # Per-device optimizer bytes: about 1/8 (the 10-wide head bias and the step count stay
    # whole), against the full state on every device without ZeRO.
    total = c["zero_opt_bytes_total"]
    assert c["dp_opt_bytes_per_device"] == [total]
    assert c["zero_init_opt_bytes"] == c["zero_opt_bytes_per_device"]  # still sharded after
    (per_device,) = c["zero_opt_bytes_per_device"]
    assert total / 8 <= per_device <= total / 8 + 200
    assert c["zero_coverage"] > 0.99
    assert c["zero_has_all_gather"]  # per-shard updates are gathered into replicated params
    assert c["zero_params_replicated"]
    assert c["zero_param_diff"] <= 1e-5 and c["zero_opt_diff"] <= 1e-5


def test_zero1_shards_fused_packed_state_and_matches(runs):
    c = runs["checks"]
    # The digits MLP packs into 2410 float32 elements, which 8 does not divide: zero1 pads the
    # fused buffers to 2416 and splits them, 302 elements per device.
    assert c["fused_unpadded_len"] == 2410
    assert c["fused_mu_shape"] == [2416]
    assert c["fused_mu_spec"] == "P('data',)" and c["fused_mu_devices"] == 8
    assert c["fused_mu_shard_shapes"] == [[302]]
    total = c["fused_opt_bytes_total"]
    (per_device,) = c["fused_opt_bytes_per_device"]  # the same on every device
    # mu and nu (2 x 2416 x 4 bytes) split 8 ways; the step count and 4 leaf offsets stay whole.
    assert per_device == 2 * 302 * 4 + 4 + 4 * 4
    assert total == 2 * 2416 * 4 + 4 + 4 * 4
    assert c["fused_coverage"] > 0.99
    assert c["fused_params_replicated"]
    # Same parameters as unsharded, unfused single-device training.
    assert c["fused_param_diff"] <= 1e-5 and c["fused_loss_diff"] <= 1e-5
    # Saved on 8 devices, restored on 4: the padded length stays (2416 = 4 x 604) and one more
    # epoch still matches single-device training.
    assert c["fused_restore4_mu_shape"] == [2416]
    assert c["fused_restore4_shard_shapes"] == [[604]]
    assert c["fused_restore4_next_epoch_diff"] <= 1e-5


@pytest.mark.parametrize("n", [4, 1])
def test_checkpoint_saved_on_8_restores_on_fewer(runs, n):
    c = runs["checks"]
    assert c[f"restore{n}_diff"] == 0.0
    assert c[f"restore{n}_key_equal"]
    assert c[f"restore{n}_devices"] == n
    if n > 1:
        assert c[f"restore{n}_mu_spec"].startswith("P('data'")
        assert c["restore4_next_epoch_diff"] <= 1e-5  # and training goes on, matching 1 device
    else:
        assert c[f"restore{n}_mu_spec"] == "P()"


def test_experiment_runner_runs_data_parallel(runs):
    c = runs["checks"]
    assert c["runner_metric_diff"] <= 1e-5
    assert np.isfinite(c["runner_train_loss"])


def test_jopt_run_distributed_from_the_command_line(runs):
    code, out = runs["cli"]
    assert code == 0, out[-3000:]
    (run_dir,) = (runs["tmp"] / "cli_runs").iterdir()
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert rows and np.isfinite(rows[-1]["train_loss"])


def test_indivisible_batch_is_a_clear_error(runs):
    c = runs["checks"]
    for key in ("indivisible_error", "indivisible_shard_error"):
        msg = c[key]
        assert msg is not None and "\n" not in msg
        assert "30" in msg and "data-axis size 8" in msg and "multiple of 8" in msg


# --- two processes on loopback ------------------------------------------------------------------


def test_two_processes_train_on_loopback(runs):
    if runs["port"] is None:
        pytest.skip("cannot bind a localhost TCP port for the coordinator on this platform")
    p0, p1 = sorted(runs["processes"], key=lambda r: r["pid"])
    for r in (p0, p1):
        assert r["process_count"] == 2 and r["global_devices"] == 4 and r["local_devices"] == 2
        assert r["local_rows"] == 16  # each process loads half of each 32-row batch
        assert r["param_diff"] <= 1e-5  # equals single-device training on the whole batches
        assert r["mu_spec"].startswith("P('data'") and r["mu_local_shards"] == 2  # ZeRO-1
        assert r["checkpoint_exists"]
    assert p0["is_main"] and not p1["is_main"]
    assert p0["loss"] == p1["loss"]
    written = json.loads((runs["tmp"] / "mp" / "process0.json").read_text())
    assert written["pid"] == 0  # only process 0 wrote its report
    assert not (runs["tmp"] / "mp" / "process1.json").exists()


def test_jopt_run_two_processes_share_one_run_directory(runs):
    """`jopt run` on 2 processes: one run directory named by process 0, written by process 0
    alone, with a checkpoint both processes saved collectively; metrics equal the 1-process
    4-device run of the same config."""
    if runs["port"] is None:
        pytest.skip("cannot bind a localhost TCP port for the coordinator on this platform")
    (c0, out0), (c1, out1) = runs["mp_run"]
    assert c0 == 0 and c1 == 0, (out0[-3000:], out1[-3000:])
    assert "results in" in out0 and "results in" not in out1  # process 0 alone reports
    (run_dir,) = (runs["tmp"] / "mp_runs").iterdir()
    assert (run_dir / "config.yaml").is_file() and (run_dir / "summary.json").is_file()
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"
    ckpts = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert ckpts == ["epoch_000001", "epoch_000001.json"]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1]
    (cli_dir,) = (runs["tmp"] / "cli_runs").iterdir()
    ref = json.loads((cli_dir / "metrics.jsonl").read_text().splitlines()[-1])
    for k in ("train_loss", "val_loss", "test_loss", "val_accuracy"):
        assert abs(rows[-1][k] - ref[k]) <= 1e-5, k


# --- in-process: config, mesh and sharding rules ------------------------------------------------


def test_parse_defaults_and_env():
    spec = jd.parse_distributed(None, environ={})
    assert spec == jd.DistributedSpec() and not spec.multi_process
    env = {
        jd._config.ENV_COORDINATOR: "10.0.0.1:1234",
        jd._config.ENV_NUM_PROCESSES: "4",
        jd._config.ENV_PROCESS_ID: "3",
    }
    spec = jd.parse_distributed({"data": -1, "zero": 1}, environ=env)
    assert spec.multi_process and spec.num_processes == 4 and spec.process_id == 3
    assert spec.coordinator_address == "10.0.0.1:1234" and spec.zero == 1


@pytest.mark.parametrize(
    ("section", "words"),
    [
        ({"data": 0}, "distributed.data"),
        ({"data": -2}, "distributed.data"),
        ({"data": "many"}, "integer"),
        ({"zero": 3}, "distributed.zero"),
        ({"tensor": 2}, "unknown key"),
        ({"coordinator_address": "nohost"}, "host:port"),
        ({"coordinator_address": "h:1", "num_processes": 2}, "process_id"),
        ({"coordinator_address": "h:1", "num_processes": 2, "process_id": 2}, "0..1"),
        ([1, 2], "mapping"),
    ],
)
def test_parse_rejects_bad_input(section, words):
    with pytest.raises(jopt.JoptError, match=words) as e:
        jd.parse_distributed(section, environ={})
    assert "\n" not in str(e.value)


def test_mesh_needs_enough_devices():
    mesh = jd.make_data_mesh(-1)
    assert mesh.axis_names == ("data",) and mesh.size == jax.device_count()
    with pytest.raises(jopt.JoptError, match=f"only {jax.device_count()} "):
        jd.make_data_mesh(jax.device_count() + 1)


def test_zero1_splits_largest_divisible_axis():
    devices = [jax.devices()[0]] * 1
    mesh = jd.make_data_mesh(1, devices)
    # On one device everything is whole; the axis rule itself is checked on shapes.
    assert jd.zero1_sharding(np.zeros((64, 8)), mesh).spec == jax.sharding.PartitionSpec()
    rule = jd._zero._shard_axis
    assert rule((64, 16), 8) == 0
    assert rule((10, 16), 8) == 1  # 10 does not split 8 ways
    assert rule((3,), 8) is None and rule((), 8) is None
    assert rule((16, 16), 8) == 0  # ties go to the first axis


def test_check_divisible():
    jd.check_divisible(32, 8)
    with pytest.raises(jopt.JoptError, match=r"batch size 33 .* multiple of 8"):
        jd.check_divisible(33, 8)


def test_setup_single_device_and_idempotent():
    dp = jd.setup(None)  # the default (as in a config without a distributed section): 1 device
    assert dp.size == 1 and dp.zero == 0 and dp.is_main
    again = jd.setup({"data": -1, "zero": 1})
    assert again.size == jax.device_count() and again.zero == 1
    assert dp.local_rows(6).tolist() == list(range(6))  # one process loads every row


def test_zero1_wrapper_equals_plain_optimizer_on_one_device():
    mesh = jd.make_data_mesh(1)
    params = {"w": jax.numpy.arange(6.0, dtype=jax.numpy.float32).reshape(2, 3)}
    grads = {"w": jax.numpy.full((2, 3), 0.5, jax.numpy.float32)}
    tx, ztx = jopt.adam(0.1), jd.zero1(jopt.adam(0.1), mesh)
    s, zs = tx.init(params), ztx.init(params)
    for _ in range(3):
        u, s = tx.update(grads, s, params)
        zu, zs = ztx.update(grads, zs, params)
    np.testing.assert_array_equal(np.asarray(u["w"]), np.asarray(zu["w"]))
    assert jax.tree.structure(s) == jax.tree.structure(zs)


def test_sharded_model_keeps_the_module_params():
    from jopt.models import make_model

    model = make_model("mlp", num_outputs=3, hidden=[4])
    wrapped = jd.DataParallel(jd.make_data_mesh(1)).model(model)
    x = jax.numpy.ones((2, 5), jax.numpy.float32)
    variables = wrapped.init(jax.random.key(0), x, train=False)
    direct = model.init(jax.random.key(0), x, train=False)
    assert jax.tree.structure(variables) == jax.tree.structure(direct)
    out = jax.jit(lambda v, x: wrapped.apply(v, x, train=False))(variables, x)
    np.testing.assert_allclose(out, model.apply(direct, x, train=False), rtol=1e-6)


def test_checkpoint_errors(tmp_path):
    with pytest.raises(jopt.JoptError, match="no checkpoint directory"):
        jd.restore_checkpoint(tmp_path / "missing", {"w": np.zeros(2, np.float32)})


def test_check_batching_names_the_strategy():
    from jopt.data import Batching

    jd.check_batching(Batching("minibatch", 32), 100, 8)
    with pytest.raises(jopt.JoptError, match=r"batch size 1 \(stochastic batching\)"):
        jd.check_batching(Batching("stochastic"), 100, 2)

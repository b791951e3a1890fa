"""``data: {name: shards}`` through ``jopt run`` (issue 16.3): Grain-sharded data trained by the
runner's streamed epoch.

- 2 processes on loopback (``jax.distributed`` on CPU, a localhost coordinator) each read a
  disjoint half of the training records (ArrayRecord shards), and together every record exactly
  once per epoch; the run (ZeRO-1 optimizer state) equals one process stepping on the same
  global batches.
- A run killed (SIGKILL) right after a mid-epoch checkpoint and resumed continues at the same
  example: the consumed sequence equals the uninterrupted run's, the metrics and the final
  parameters are bit-exact.
- What cannot be exact on sharded data is refused with one line.

Every record's first feature is its id (/1000), so the processes log what they consumed.
The subprocesses start together in one module fixture.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from helpers import free_port, subprocess_env

from jopt import JoptError
from jopt.experiment import config_from_dict, validate_config

pytest.importorskip("grain")

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 300
N, NVAL, F = 192, 40, 8
EPOCHS, BATCH = 2, 16  # a global batch of 16: 8 rows per process in the 2-process job

# Patches ShardedData.cast to log the ids of every training batch a process consumes (to
# $IDS), optionally kills the process right after the mid-epoch checkpoint of step $KILL_AT,
# then runs the command line (argv[1:]).
SCRIPT = """
import os, signal, sys
import numpy as np
from jopt.data import _sharded
from jopt.experiment import _stream
cast = _sharded.ShardedData.cast
def logged(self, batch):
    if "w" not in batch:  # training batches only (evaluation chunks carry weights)
        with open(os.environ["IDS"], "a") as f:
            f.write(" ".join(str(int(round(v * 1000))) for v in batch["x"][:, 0]) + "\\n")
    return cast(self, batch)
_sharded.ShardedData.cast = logged
kill_at = int(os.environ.get("KILL_AT", "0"))
if kill_at:
    on_step = _stream.ShardedRun._on_step
    def killing(self, state, epoch, position):
        on_step(self, state, epoch, position)
        if (epoch - 1) * self.shards.steps_per_epoch + position == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    _stream.ShardedRun._on_step = killing
from jopt.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _write(d: Path, n: int, start: int, seed: int, array_record: bool = False) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, F)).astype(np.float32)
    x[:, 0] = np.arange(start, start + n, dtype=np.float32) / 1000
    y = (x[:, 1] + 0.5 * x[:, 2] > 0).astype(np.int32)
    d.mkdir(parents=True)
    cut = [0, n // 3, n]
    for i in range(2):
        a, b = cut[i], cut[i + 1]
        if array_record:
            from jopt.data import write_array_record

            write_array_record(str(d / f"part{i}.array_record"), x[a:b], y[a:b])
        else:
            np.savez(d / f"part{i}.npz", x=x[a:b], y=y[a:b])


def _raw(tmp: Path, runs: str, train: str = "train", **train_over) -> dict:
    return {
        "name": "shards",
        "seed": 3,
        "data": {
            "name": "shards",
            "val_fraction": 0,
            "test_fraction": 0,
            "preprocess": "none",
            "options": {"train": str(tmp / train), "val": str(tmp / "val"), "num_classes": 2},
        },
        "model": {"name": "mlp", "hidden": [8]},
        "optimizer": {"name": "adam", "learning_rate": 0.01},
        "batching": {"batch_size": BATCH},
        "train": {"epochs": EPOCHS, **train_over},
        "output": {"runs_dir": str(tmp / runs), "progress": False, "plots": False},
    }


def _popen(cfg: Path, ids: Path, *args: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, "run", str(cfg), "--no-progress", *args],
        env=subprocess_env(None, IDS=str(ids), **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )


def _ids(path: Path) -> list[int]:
    return [int(v) for line in path.read_text().splitlines() for v in line.split()]


class _Logged:
    """Log the ids of the training batches consumed in this process (as SCRIPT does)."""

    def __init__(self) -> None:
        from jopt.data import _sharded

        self.cls, self.orig, self.ids = _sharded.ShardedData, _sharded.ShardedData.cast, []

    def __enter__(self) -> list[int]:
        orig, ids = self.orig, self.ids

        def cast(data, batch):
            if "w" not in batch:
                ids.extend(round(float(v) * 1000) for v in batch["x"][:, 0])
            return orig(data, batch)

        self.cls.cast = cast
        return ids

    def __exit__(self, *exc) -> None:
        self.cls.cast = self.orig


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The killed run and the 2-process job in subprocesses; meanwhile the uninterrupted run in
    this process; then the resume of (a copy of) the killed run."""
    from jopt.experiment import resume, run

    tmp = tmp_path_factory.mktemp("grain_runner")
    pytest.importorskip("array_record")
    _write(tmp / "train", N, 0, 0)
    _write(tmp / "train_ar", N, 0, 0, array_record=True)
    _write(tmp / "val", NVAL, 5000, 1)
    # killed right after the checkpoint of step 15 (epoch 2, 3 of 12 steps in)
    killed_raw = _raw(tmp, "killed", checkpoint_every_steps=5)
    (tmp / "killed.json").write_text(json.dumps(killed_raw))
    procs = {"killed": _popen(tmp / "killed.json", tmp / "killed.ids", KILL_AT="15")}
    port = free_port()
    if port is not None:
        two = _raw(tmp, "two", train="train_ar")
        two["distributed"] = {"data": -1, "zero": 1}  # ZeRO-1: optimizer state split
        (tmp / "two.json").write_text(json.dumps(two))
        coord = {"JOPT_COORDINATOR_ADDRESS": f"127.0.0.1:{port}", "JOPT_NUM_PROCESSES": "2"}
        for pid in range(2):
            procs[f"p{pid}"] = _popen(
                tmp / "two.json", tmp / f"p{pid}.ids", JOPT_PROCESS_ID=str(pid), **coord
            )
    out = {"tmp": tmp, "port": port}
    try:
        with _Logged() as ids:
            out["full_dir"] = Path(
                run(config_from_dict(_raw(tmp, "full", checkpoint_every_steps=5)))
            )
        out["full_ids"] = list(ids)
        for name, p in procs.items():
            text, _ = p.communicate(timeout=TIMEOUT)
            out[name] = (p.returncode, text)
        (killed,) = (tmp / "killed").iterdir()
        out["killed_dir"] = killed
        resumed = tmp / "resumed" / killed.name
        shutil.copytree(killed, resumed)
        with _Logged() as ids:
            resume(str(resumed))
        out["resumed_ids"], out["resumed_dir"] = list(ids), resumed
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.communicate()
    return out


def _final_tree(run_dir: Path) -> dict:
    """The last checkpoint, restored as saved: ``{"state": ..., "best": ...}`` of numpy."""
    import jax
    import orbax.checkpoint as ocp

    from jopt.distributed import list_checkpoints, restore_checkpoint

    _, path = list_checkpoints(run_dir)[-1]

    ckpt = ocp.StandardCheckpointer()
    try:
        meta = ckpt.metadata(path)
    finally:
        ckpt.close()
    tree = getattr(meta, "item_metadata", meta)
    like = jax.tree.map(lambda m: np.zeros(m.shape, m.dtype), dict(tree))
    return jax.tree.map(np.asarray, restore_checkpoint(path, like))


def _final_leaves(run_dir: Path) -> list[np.ndarray]:
    import jax

    return jax.tree.leaves(_final_tree(run_dir))


def _rows(run_dir: Path) -> list[dict]:
    from jopt.experiment._artifacts import read_jsonl, strip_timing

    return strip_timing(read_jsonl(str(run_dir / "metrics.jsonl")))


def test_two_processes_each_read_a_disjoint_half_every_record_once_per_epoch(runs):
    if runs["port"] is None:
        pytest.skip("cannot bind a localhost TCP port for the coordinator on this platform")
    for name in ("p0", "p1"):
        rc, text = runs[name]
        assert rc == 0, text[-3000:]
    assert "results in" in runs["p0"][1] and "results in" not in runs["p1"][1]
    tmp = runs["tmp"]
    per = N // 2  # each process: 96 records, 12 steps of 8 rows per epoch
    got = [_ids(tmp / f"p{pid}.ids") for pid in range(2)]
    assert [len(g) for g in got] == [EPOCHS * per] * 2
    halves = [set(range(0, per)), set(range(per, N))]  # contiguous slices [0, 96), [96, 192)
    for e in range(EPOCHS):
        ep = [g[e * per : (e + 1) * per] for g in got]
        for pid in range(2):
            assert set(ep[pid]) == halves[pid] and len(set(ep[pid])) == per  # once each
        assert sorted(ep[0] + ep[1]) == list(range(N))  # together: every record once
    assert got[0][:per] != got[0][per:]  # a new order in epoch 2
    (run_dir,) = (tmp / "two").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == EPOCHS * 12
    rows = _rows(run_dir)
    assert [r["epoch"] for r in rows] == [1, 2] and all(np.isfinite(r["val_loss"]) for r in rows)
    runs["two_dir"] = run_dir


def test_two_processes_equal_one_process_on_the_same_global_batches(runs):
    """The 2-process parameters equal one process stepping on the concatenated local batches
    (process 0's rows, then process 1's) up to float summation order."""
    if runs["port"] is None:
        pytest.skip("cannot bind a localhost TCP port for the coordinator on this platform")
    import jax
    import jax.numpy as jnp

    from jopt.experiment import build_optimizer, setup
    from jopt.train import init_train_state, make_stream_step

    (run_dir,) = (runs["tmp"] / "two").iterdir()
    config = config_from_dict(json.loads((runs["tmp"] / "two.json").read_text()))
    st = setup(config)
    tx = build_optimizer(config, steps_per_epoch=12, total_steps=EPOCHS * 12)
    state = init_train_state(st.model, tx, st.data.sample, jax.random.key(config.seed))
    step = jax.jit(make_stream_step(st.model, tx, st.spec))
    shards = [
        st.data.train_shards(8, seed=config.seed, process_index=i, process_count=2)
        for i in range(2)
    ]
    for e in range(EPOCHS):
        for b0, b1 in zip(shards[0].epoch(e), shards[1].epoch(e), strict=True):
            x, y = (np.concatenate([b0[k], b1[k]]) for k in ("x", "y"))
            state, _ = step(state, jnp.asarray(x), jnp.asarray(y))
    ref = jax.tree.leaves(jax.device_get(state.params))
    got = jax.tree.leaves(_final_tree(run_dir)["state"]["params"])
    assert len(got) == len(ref) > 0
    for r, g in zip(ref, got, strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6)


def test_kill_mid_epoch_then_resume_continues_at_the_same_example(runs):
    rc, text = runs["killed"]
    assert rc == -signal.SIGKILL, text[-3000:]
    names = sorted(p.name for p in (runs["killed_dir"] / "checkpoints").iterdir())
    assert names[-2:] == ["epoch_000001_step_000000015", "epoch_000001_step_000000015.json"]
    assert not (runs["killed_dir"] / "summary.json").exists()
    from jopt.experiment._artifacts import read_json
    from jopt.experiment._stream import steps_into_epoch

    book = read_json(str(runs["killed_dir"] / "checkpoints" / names[-1]))
    assert book["last_epoch"] == 1 and book["stream"]["data"] == {"epoch": 1, "next_index": 3}
    assert steps_into_epoch(book) == 3  # what --epochs counts as steps taken (15 in all)
    full, resumed = runs["full_ids"], runs["resumed_ids"]
    killed = _ids(runs["tmp"] / "killed.ids")
    assert len(full) == EPOCHS * N and len(killed) == 15 * BATCH
    assert killed + resumed == full  # the same examples in the same order
    assert _rows(runs["full_dir"]) == _rows(runs["resumed_dir"])  # epoch 2's record included
    for a, b in zip(
        _final_leaves(runs["full_dir"]), _final_leaves(runs["resumed_dir"]), strict=True
    ):
        np.testing.assert_array_equal(a, b)


# --- refusals (in-process, no training) -----------------------------------------------------------


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("grain_refusals")
    _write(tmp / "train", 32, 0, 0)
    _write(tmp / "val", 8, 100, 1)
    return tmp


@pytest.mark.parametrize(
    ("over", "match"),
    [
        ({"data.val_fraction": 0.2}, "not split at random"),
        ({"data.preprocess": "standardize"}, "read as stored"),
        ({"batching.strategy": "full"}, "whole set in memory"),
        ({"batching.remainder": "pad"}, "remainder pad"),
        ({"diagnostics.sharpness_every": 1}, "sharpness_every needs an in-memory"),
        ({"data.options.path": "x"}, "not an option of sharded data"),
        ({"data.options.train": "/nonexistent/dir"}, "directory not found"),
    ],
)
def test_refusals_are_one_line(dirs, over, match):
    raw = _raw(dirs, "runs")
    for key, value in over.items():
        node = raw
        *head, last = key.split(".")
        for part in head:
            node = node.setdefault(part, {})
        node[last] = value
    with pytest.raises(JoptError, match=match) as e:
        validate_config(config_from_dict(raw))
    assert "\n" not in str(e.value)


def test_checkpoint_every_steps_needs_sharded_data(dirs):
    raw = {"data": {"name": "digits"}, "train": {"checkpoint_every_steps": 3}}
    with pytest.raises(JoptError, match="needs sharded data"):
        validate_config(config_from_dict(raw), paths=False)


def test_a_vmapped_sweep_group_is_refused(dirs):
    from jopt.experiment._stream import ShardedRun

    with pytest.raises(JoptError, match="one run at a time"):
        ShardedRun(types.SimpleNamespace(K=2), None, None)


def test_in_memory_uses_get_one_line(dirs):
    from jopt.experiment import setup

    st = setup(config_from_dict(_raw(dirs, "runs")))
    assert st.steps_per_epoch == 2 and st.data.num_classes == 2
    with pytest.raises(JoptError, match="not held in memory"):
        st.data.split("val")

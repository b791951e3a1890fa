"""``jopt run``: run directories, artefacts, determinism, bit-exact resume."""

from __future__ import annotations

import itertools
import json
import os

import jax
import numpy as np
import pytest

from jopt import JoptError
from jopt.cli import main as cli
from jopt.distributed import list_checkpoints, restore_checkpoint
from jopt.experiment import config_from_dict
from jopt.experiment._artifacts import make_run_dir, read_json, read_jsonl, strip_timing
from jopt.experiment._runner import resume, run

TINY = {
    "name": "tiny",
    "seed": 3,
    "data": {"name": "digits", "val_fraction": 0.2, "test_fraction": 0.2},
    "model": {"name": "mlp", "hidden": [16]},
    "optimizer": {"name": "adam", "learning_rate": 3e-3},
    "schedule": {"name": "cosine"},
    "regularization": {"dropout": 0.1},  # exercises the dropout key in the state
    "batching": {"strategy": "minibatch", "batch_size": 64},
    "train": {"epochs": 3},
    "output": {"progress": False},
}


def _cfg(tmp, **over):
    raw = json.loads(json.dumps(TINY))
    raw["output"]["runs_dir"] = str(tmp)
    return config_from_dict(raw, [f"{k}={v}" for k, v in over.items()])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One uninterrupted run, and the same config stopped after 2 epochs then resumed."""
    tmp = tmp_path_factory.mktemp("runs")
    full = run(_cfg(tmp))
    stopped = run(_cfg(tmp, **{"output.plots": "false"}), stop_after=2)
    stopped_rows = read_jsonl(os.path.join(stopped, "metrics.jsonl"))
    stopped_summary = read_json(os.path.join(stopped, "summary.json"))
    resumed = resume(stopped)
    return {
        "full": full,
        "resumed": resumed,
        "stopped_rows": stopped_rows,
        "stopped_summary": stopped_summary,
        "tmp": tmp,
    }


def test_run_directory_contents(runs):
    d = runs["full"]
    for name in (
        "config.yaml",
        "metrics.jsonl",
        "summary.json",
        "plots/loss.png",
        "plots/accuracy.png",
        "plots/learning_rate.png",
    ):
        assert os.path.isfile(os.path.join(d, name)), name
    assert not [f for f in os.listdir(d) if f.startswith(".tmp")]  # atomic writes only
    rows = read_jsonl(os.path.join(d, "metrics.jsonl"))
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    for key in (
        "train_loss",
        "val_loss",
        "val_accuracy",
        "test_accuracy",
        "learning_rate",
        "hp/adam/learning_rate",
        "step",
        "time",
    ):
        assert key in rows[-1], key
    # cosine multiplier: the logged learning rate decays from the peak towards 0
    lrs = [r["learning_rate"] for r in rows]
    assert lrs[0] < 3e-3 and all(a > b for a, b in itertools.pairwise(lrs))
    summary = read_json(os.path.join(d, "summary.json"))
    assert summary["status"] == "completed" and summary["epochs_run"] == 3
    for key in ("wall_time", "compile_time", "steps_per_s", "final", "best", "best_epoch"):
        assert summary[key] is not None, key
    assert summary["final"]["val_accuracy"] > 0.5  # it learned something in 3 epochs
    assert [e for e, _ in list_checkpoints(d)] == [3]  # checkpoint_every 0: at the end
    with open(os.path.join(d, "plots/loss.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_same_config_and_seed_give_identical_metrics(runs):
    a = read_jsonl(os.path.join(runs["full"], "metrics.jsonl"))
    b = runs["stopped_rows"]  # a fresh run of the same config, its first two epochs
    assert len(b) == 2
    assert strip_timing(b) == strip_timing(a[:2])
    assert runs["stopped_summary"]["status"] == "stopped"


def test_resume_is_bit_exact(runs):
    full, resumed = runs["full"], runs["resumed"]
    assert resumed == runs["full"].replace(os.path.basename(full), os.path.basename(resumed))
    a = read_jsonl(os.path.join(full, "metrics.jsonl"))
    b = read_jsonl(os.path.join(resumed, "metrics.jsonl"))
    assert strip_timing(a) == strip_timing(b)  # identical apart from timing fields
    (ea, pa), (eb, pb) = list_checkpoints(full)[-1], list_checkpoints(resumed)[-1]
    assert ea == eb == 3
    assert [e for e, _ in list_checkpoints(resumed)] == [2, 3]
    # restore both final checkpoints into the same template and compare every leaf exactly
    template = restore_checkpoint(pa, None)
    other = restore_checkpoint(pb, None)
    leaves_a, leaves_b = jax.tree.leaves(template), jax.tree.leaves(other)
    assert len(leaves_a) == len(leaves_b) > 4
    for x, y in zip(leaves_a, leaves_b, strict=True):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert read_json(os.path.join(resumed, "summary.json"))["status"] == "completed"


def test_resume_errors(runs, tmp_path):
    with pytest.raises(JoptError, match="run directory not found"):
        resume(str(tmp_path / "nope"))
    with pytest.raises(JoptError, match="already finished"):
        resume(runs["full"])


def test_unique_run_dirs(tmp_path):
    names = {make_run_dir(str(tmp_path), "same") for _ in range(20)}
    assert len(names) == 20 and all(os.path.isdir(n) for n in names)


def test_bad_sizes_leave_nothing_behind(tmp_path, capsys):
    # batch larger than the training set: found while setting up, before the directory exists
    cfg = os.path.join(tmp_path, "c.yaml")
    with open(cfg, "w") as f:
        f.write("name: big\ndata: {name: iris}\nbatching: {batch_size: 100000}\n")
    runs_dir = tmp_path / "runs"
    assert cli(["run", cfg, f"output.runs_dir={runs_dir}", "--no-progress"]) == 2
    assert "larger than the training set" in capsys.readouterr().err
    assert not runs_dir.exists() or not os.listdir(runs_dir)


def test_early_stopping_restores_the_best_params(tmp_path):
    # also exercises the hooks into other layers: jopt.fused and jopt.numerics.sharpness
    cfg = config_from_dict(
        {
            "name": "es",
            "data": {"name": "iris", "val_fraction": 0.3, "test_fraction": 0.2},
            "model": {"name": "mlp", "hidden": [8]},
            "optimizer": {"name": "sgd", "learning_rate": 0.5, "execution": "fused"},
            "regularization": {"early_stopping": {"metric": "val_loss", "patience": 2}},
            "batching": {"batch_size": 16},
            "train": {"epochs": 60},
            "diagnostics": {"sharpness_every": 1, "sharpness_iters": 10},
            "output": {"runs_dir": str(tmp_path), "progress": False, "plots": False},
        }
    )
    d = run(cfg)
    summary = read_json(os.path.join(d, "summary.json"))
    rows = read_jsonl(os.path.join(d, "metrics.jsonl"))
    assert summary["stopped_early"] and summary["epochs_run"] < 60
    best = min(rows, key=lambda r: r["val_loss"])
    assert summary["best_epoch"] == best["epoch"] == summary["epochs_run"] - 2
    assert summary["best"]["val_loss"] == best["val_loss"]
    assert all(r["sharpness"] > 0 and r["stability_bound"] == pytest.approx(4.0) for r in rows)
    # the final checkpoint holds the best epoch's parameters
    ((_, path),) = list_checkpoints(d)[-1:]
    tree = restore_checkpoint(path, None)
    for x, y in zip(
        jax.tree.leaves(tree["state"]["params"]), jax.tree.leaves(tree["best"]), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_numerics_test_problem_config(tmp_path):
    cfg = config_from_dict(
        {
            "name": "rosen",
            "problem": {"name": "rosenbrock"},
            "optimizer": {"name": "sgd", "learning_rate": 1e-3, "momentum": 0.9},
            "train": {"steps": 200},
            "output": {"runs_dir": str(tmp_path), "plots": False},
        }
    )
    d = run(cfg)
    rows = read_jsonl(os.path.join(d, "metrics.jsonl"))
    assert len(rows) == 201 and rows[0]["train_loss"] == pytest.approx(24.2)  # f(-1.2, 1)
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert read_json(os.path.join(d, "summary.json"))["problem"] == "rosenbrock"
    # a test problem is an objective of its own, not a data set: the old spelling is refused
    with pytest.raises(JoptError, match=r"write problem: \{name: rosenbrock\}"):
        config_from_dict({"data": {"name": "rosenbrock"}})
    with pytest.raises(JoptError, match="unknown test problem"):
        config_from_dict({"problem": {"name": "rosenbrok"}})

"""``train.nonfinite`` (issue 12): divergence is caught, counted and reported, never "completed".

A data set with one input row of 3e38 (finite, so the loader accepts it) makes exactly the step
whose batch holds it produce a non-finite loss and gradient: one such step per epoch.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

import jopt
from jopt import JoptError
from jopt.cli import main as cli
from jopt.experiment import config_from_dict
from jopt.experiment._artifacts import read_json, read_jsonl
from jopt.experiment._runner import resume, run

EPOCHS = 3


@pytest.fixture(scope="module")
def spike(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("spike")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(192, 8)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    x[5] = 3e38  # its batch overflows to inf logits: NaN loss and gradient
    path = str(tmp / "spike.npz")
    np.savez(path, x=x, y=y)
    return tmp, path


def _raw(tmp, data, **train):
    return {
        "name": "spike",
        "data": {"name": data, "val_fraction": 0.0, "test_fraction": 0.0, "preprocess": "none"},
        "model": {"name": "mlp", "hidden": [8]},
        "optimizer": {"name": "adam", "learning_rate": 1e-2},
        "batching": {"batch_size": 32},  # 192 rows: 6 full steps, the spike in one of them
        "train": {"epochs": EPOCHS, **train},
        "output": {"progress": False, "runs_dir": str(tmp)},
    }


def _summary(d):
    return read_json(os.path.join(d, "summary.json")), read_jsonl(os.path.join(d, "metrics.jsonl"))


def test_occasional_nan_steps_are_skipped_and_counted(spike):
    tmp, data = spike
    d = run(config_from_dict(_raw(tmp, data)))  # default policy: skip
    summary, rows = _summary(d)
    assert summary["status"] == "completed" and summary["diverged"] is None
    assert [r["nonfinite_steps"] for r in rows] == [1] * EPOCHS
    assert [r["opt/skip/total"] for r in rows] == [1.0, 2.0, 3.0]  # logged in metrics.jsonl
    assert all(math.isfinite(r["train_loss"]) for r in rows)  # the mean of the finite steps
    assert all(v is not None for k, v in summary["final"].items())
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]  # it trained through the skips


def test_stop_policy_ends_at_the_first_nonfinite_step(spike, capsys):
    tmp, data = spike
    cfg = tmp / "stop.yaml"
    cfg.write_text(json.dumps(_raw(tmp, data, nonfinite="stop")))
    before = set(os.listdir(tmp))
    assert cli(["run", str(cfg), "--no-progress"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "diverged at step" in err[0] and "non-finite loss" in err[0]
    # this run's directory (names sort by second, so another test's run may sort after it)
    (new,) = [p for p in set(os.listdir(tmp)) - before if p.startswith("spike-")]
    d = str(tmp / new)
    summary, _ = _summary(d)
    assert summary["status"] == "diverged" and summary["epochs_run"] == 1
    assert summary["diverged"]["policy"] == "stop" and summary["diverged"]["epoch"] == 1
    assert 1 <= summary["diverged"]["step"] <= 6
    assert os.path.isfile(os.path.join(d, "plots", "loss.png"))


def test_ignore_policy_applies_the_nan(spike):
    tmp, data = spike
    d = run(config_from_dict(_raw(tmp, data, nonfinite="ignore", epochs=1)))
    summary, rows = _summary(d)
    assert summary["status"] == "completed"  # nothing guards it: the loss is NaN from then on
    assert "opt/skip/total" not in rows[0] and rows[0]["nonfinite_steps"] >= 1


def test_diverging_run_is_diverged_with_one_line(tmp_path, capsys):
    raw = {
        "name": "boom",
        "data": {"name": "digits", "val_fraction": 0.2, "test_fraction": 0.2},
        "model": {"name": "mlp", "hidden": [8]},
        "optimizer": {"name": "sgd", "learning_rate": 1e30},
        "batching": {"batch_size": 256},
        "train": {"epochs": 3, "max_consecutive_skips": 2},
        "output": {"progress": False, "runs_dir": str(tmp_path)},
    }
    cfg = tmp_path / "boom.yaml"
    cfg.write_text(json.dumps(raw))
    assert cli(["run", str(cfg), "--no-progress"]) == 3
    out = capsys.readouterr()
    err = out.err.strip().splitlines()
    assert len(err) == 1, err
    assert "diverged at step" in err[0] and "max_consecutive_skips=2" in err[0]
    assert "diverged" in out.out and "completed" not in out.out
    (d,) = [tmp_path / p for p in os.listdir(tmp_path) if p.startswith("boom-")]
    summary, rows = _summary(str(d))
    assert summary["status"] == "diverged"
    assert summary["diverged"]["quantity"] in ("gradient", "loss and gradient")
    assert summary["diverged"]["consecutive"] == 3
    assert rows[-1]["opt/skip/total"] >= 3 and rows[-1]["opt/skip/consecutive"] >= 3
    assert summary["epochs_run"] < 3  # ended once the limit was passed
    assert None not in summary["final"].values()  # diverged, never null
    assert os.path.isfile(os.path.join(d, "plots", "loss.png"))
    # the compare table says so in a status column
    assert cli(["compare", str(d), "--out", str(tmp_path / "cmp")]) == 0
    table = (tmp_path / "cmp" / "compare.md").read_text()
    assert "| status |" in table.splitlines()[0] and "| diverged |" in table
    # a diverged run has ended: resume says so (before loading data or compiling)
    with pytest.raises(JoptError, match=r"already ended \(diverged: diverged at step"):
        resume(str(d))


def test_early_stopping_does_not_stop_on_nan():
    es = jopt.train.EarlyStopping(metric="val_loss", patience=1)
    improved, best, epoch, stop = es.update(1, 0.5, None, None)
    assert improved and best == 0.5
    for e in (2, 3, 4):
        improved, best, epoch, stop = es.update(e, float("nan"), best, epoch)
        assert not improved and not stop and best == 0.5 and epoch == 1
    assert es.update(5, 0.6, best, epoch)[3]  # a finite plateau still stops


def test_fit_with_skip_nonfinite(spike):
    from jopt.data import load_dataset
    from jopt.models import make_model

    data = load_dataset("digits", val_fraction=0.2, test_fraction=0.0)
    model = make_model("mlp", num_outputs=data.num_outputs, hidden=(8,))
    res = jopt.train.fit(model, jopt.skip_nonfinite(jopt.adam(1e-3)), data, epochs=2)
    assert len(res.history) == 2 and math.isfinite(res.history[-1]["train_loss"])
    assert res.history[-1]["opt/skip/total"] == 0.0
    # the loop calls check_state after each epoch: past the limit it raises one line
    with pytest.raises(JoptError, match="consecutive steps had non-finite gradients"):
        jopt.train.fit(
            model, jopt.skip_nonfinite(jopt.sgd(1e30), max_consecutive=2), data, epochs=1
        )


def test_bad_policy_is_refused(spike):
    tmp, data = spike
    bad = config_from_dict(_raw(tmp, data, nonfinite="maybe"), validate=False)
    with pytest.raises(JoptError, match=r"train\.nonfinite"):
        jopt.experiment.build_optimizer(bad)


def test_sweep_member_that_diverges_is_marked_the_others_continue(tmp_path):
    from jopt.experiment._sweep import sweep

    raw = {
        "name": "sw",
        "data": {"name": "digits", "val_fraction": 0.2, "test_fraction": 0.0},
        "model": {"name": "mlp", "hidden": [8]},
        "optimizer": {"name": "sgd", "learning_rate": 0.1},
        "batching": {"batch_size": 256},
        "train": {"epochs": 3, "max_consecutive_skips": 1},
        "output": {
            "progress": False,
            "checkpoints": False,
            "plots": False,
            "runs_dir": str(tmp_path),
        },
        "sweep": {"grid": {"optimizer.learning_rate": [0.1, 1e30]}},
    }
    directory = sweep(config_from_dict(raw))
    info = read_json(os.path.join(directory, "sweep.json"))
    assert info["num_compiled_groups"] == 1 and info["groups"][0]["vmapped"]
    ok, bad = (
        read_json(os.path.join(directory, m["dir"], "summary.json")) for m in info["members"]
    )
    assert ok["status"] == "completed" and ok["epochs_run"] == 3
    assert bad["status"] == "diverged" and bad["epochs_run"] < 3
    assert [r["status"] for r in info["results"]] == ["completed", "1/1 diverged"]
    with open(os.path.join(directory, "results.md"), encoding="utf-8") as f:
        table = f.read()
    assert "| status |" in table and "1/1 diverged" in table

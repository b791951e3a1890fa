"""TensorBoard event files written by jopt.experiment.TensorBoardTracker, read back with the
tensorboard package's own reader (EventAccumulator)."""

from __future__ import annotations

import math
import os
import sys

import numpy as np
import pytest

from jopt import JoptError
from jopt.experiment import TensorBoardTracker, tensorboard_available

pytest.importorskip("tensorboardX")
event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def _read(log_dir):
    acc = event_accumulator.EventAccumulator(
        str(log_dir), size_guidance={"scalars": 0, "tensors": 0}
    )
    acc.Reload()
    return acc


def _curve(acc, tag):
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def _text(acc, tag):
    """The newest text under ``tag`` (a resumed run writes its config again)."""
    event = acc.Tensors(f"{tag}/text_summary")[-1]
    return event.tensor_proto.string_val[0].decode()


ROWS = [
    {
        "epoch": 1,
        "step": 10,
        "train_loss": 2.0,
        "val_accuracy": 0.5,
        "hp/adam/learning_rate": 1e-3,
        "opt/skip/total": 0,
        "learning_rate": 1e-3,
        "sharpness": 40.0,
        "stability_bound": 2000.0,
        "epoch_time": 0.25,
        "time": 1.0,
        "status": "ok",  # not a number: skipped
        "val_loss": None,  # not evaluated this epoch: skipped
    },
    {
        "epoch": 2,
        "step": 20,
        "train_loss": float("nan"),
        "val_accuracy": np.float32(0.75),
        "hp/adam/learning_rate": np.asarray(5e-4),
        "opt/skip/total": True,
        "learning_rate": 5e-4,
        "epoch_time": 0.5,
        "time": 2.0,
    },
]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    config = {"name": "quick", "optimizer": {"name": "adam", "learning_rate": 0.001}}
    with TensorBoardTracker(str(run_dir), config=config) as tb:
        counts = [tb.log_row(r) for r in ROWS]
        tb.close({"status": "completed", "steps": 20, "best": {"val_accuracy": 0.75}})
    return run_dir, tb, counts


def test_rows_read_back_as_scalars(written):
    run_dir, tb, counts = written
    assert tb.log_dir == str(run_dir / "tensorboard")
    assert counts == [8, 6]  # numbers only: epoch/step/time, strings and None are not curves
    acc = _read(tb.log_dir)
    assert set(acc.Tags()["scalars"]) == {
        "train_loss",
        "val_accuracy",
        "hp/adam/learning_rate",
        "opt/skip/total",
        "learning_rate",
        "sharpness",
        "stability_bound",
        "time/epoch_s",
    }
    assert _curve(acc, "val_accuracy") == [(10, 0.5), (20, 0.75)]
    (s1, l1), (s2, l2) = _curve(acc, "train_loss")
    assert (s1, l1, s2) == (10, 2.0, 20) and math.isnan(l2)
    assert _curve(acc, "hp/adam/learning_rate") == [
        (10, pytest.approx(1e-3)),
        (20, pytest.approx(5e-4)),
    ]
    assert _curve(acc, "opt/skip/total") == [(10, 0.0), (20, 1.0)]
    assert _curve(acc, "sharpness") == [(10, 40.0)]  # only the epochs that logged it
    assert _curve(acc, "time/epoch_s") == [(10, 0.25), (20, 0.5)]


def test_config_and_summary_as_text(written):
    _, tb, _ = written
    acc = _read(tb.log_dir)
    config = _text(acc, "config")
    assert "    name: quick" in config and "    learning_rate: 0.001" in config
    assert '"status": "completed"' in _text(acc, "summary")


def test_sharpness_curve_given_apart(tmp_path):
    with TensorBoardTracker(str(tmp_path)) as tb:
        tb.log_sharpness([0, 5, 10], [1.0, 2.0, 4.0], stability_bound=[20.0, 20.0, 10.0])
    acc = _read(tb.log_dir)
    assert _curve(acc, "sharpness") == [(0, 1.0), (5, 2.0), (10, 4.0)]
    assert _curve(acc, "stability_bound") == [(0, 20.0), (5, 20.0), (10, 10.0)]


def test_resume_purges_the_interrupted_tail(tmp_path):
    with TensorBoardTracker(str(tmp_path)) as tb:
        for step in range(5):
            tb.log_scalars({"train_loss": float(step)}, step)
    # resumed from the checkpoint at step 3: the earlier process's steps 3 and 4 are dropped
    with TensorBoardTracker(str(tmp_path), start_step=3) as tb:
        for step in (3, 4):
            tb.log_scalars({"train_loss": 10.0 + step}, step)
    acc = _read(tb.log_dir)
    assert _curve(acc, "train_loss") == [(0, 0.0), (1, 1.0), (2, 2.0), (3, 13.0), (4, 14.0)]


def test_row_without_step_is_refused(tmp_path):
    with TensorBoardTracker(str(tmp_path)) as tb, pytest.raises(JoptError, match="needs a 'step'"):
        tb.log_row({"train_loss": 1.0})


def test_missing_extra_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # import now fails
    assert not tensorboard_available()
    with pytest.raises(JoptError) as err:
        TensorBoardTracker(str(tmp_path))
    msg = str(err.value)
    assert "\n" not in msg and "pip install 'jopt[tensorboard]'" in msg
    assert not (tmp_path / "tensorboard").exists()


# --- the runner: output.tensorboard: true --------------------------------------------------

TINY = {
    "name": "tb",
    "seed": 1,
    "data": {"name": "iris", "val_fraction": 0.3, "test_fraction": 0.0},
    "model": {"name": "mlp", "hidden": [8]},
    "optimizer": {"name": "adam", "learning_rate": 1e-2},
    "batching": {"batch_size": 32},
    "train": {"epochs": 3, "checkpoint_every": 1},
    "output": {"progress": False, "plots": False, "tensorboard": True},
}


def _config(tmp_path, **output):
    from jopt.experiment import config_from_dict

    raw = {**TINY, "output": {**TINY["output"], "runs_dir": str(tmp_path), **output}}
    return config_from_dict(raw)


def test_jopt_run_writes_event_files_and_resume_continues_them(tmp_path):
    from jopt.experiment import read_jsonl, resume, run

    run_dir = run(_config(tmp_path), stop_after=2)  # interrupted after epoch 2's checkpoint
    rows = read_jsonl(f"{run_dir}/metrics.jsonl")
    assert [r["epoch"] for r in rows] == [1, 2]
    resume(run_dir)
    rows = read_jsonl(f"{run_dir}/metrics.jsonl")
    acc = _read(f"{run_dir}/tensorboard")
    # one point per epoch, none doubled by the resume, equal to metrics.jsonl
    for key in ("train_loss", "val_loss", "val_accuracy", "hp/adam/learning_rate"):
        assert _curve(acc, key) == [(r["step"], pytest.approx(r[key])) for r in rows], key
    assert "    name: tb" in _text(acc, "config")
    assert '"status": "completed"' in _text(acc, "summary")


def test_off_by_default_and_refusals(tmp_path, monkeypatch):
    from jopt.experiment import run, validate_config

    run_dir = run(_config(tmp_path, tensorboard=False))
    assert not os.path.exists(f"{run_dir}/tensorboard")
    from jopt.experiment import config_from_dict

    with pytest.raises(JoptError, match=r"output\.tensorboard: true is for model runs"):
        validate_config(
            config_from_dict({"problem": {"name": "rosenbrock"}, "output": {"tensorboard": True}})
        )
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    with pytest.raises(JoptError, match=r"pip install 'jopt\[tensorboard\]'"):
        validate_config(_config(tmp_path))

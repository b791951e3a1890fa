"""Sweeps: one compiled program per structural group, equal to the separate runs."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import jopt.train
from jopt.experiment import config_from_dict
from jopt.experiment._artifacts import read_json, read_jsonl
from jopt.experiment._runner import run
from jopt.experiment._sweep import expand, group_members, sweep
from tests.helpers import TraceCounter

LRS = [1e-3, 3e-3, 1e-2, 3e-2]
RAW = {
    "name": "sw",
    "seed": 5,
    "data": {"name": "digits", "val_fraction": 0.2, "test_fraction": 0.2},
    "model": {"name": "mlp", "hidden": [8]},
    "optimizer": {"name": "sgd", "learning_rate": 0.1, "momentum": 0.9},
    "batching": {"batch_size": 128},
    "train": {"epochs": 2},
    "output": {"progress": False, "checkpoints": False, "plots": False},
    "sweep": {"grid": {"optimizer.learning_rate": LRS}, "seeds": 2},
}


def _config(tmp, **extra):
    raw = json.loads(json.dumps(RAW))
    raw["output"]["runs_dir"] = str(tmp)
    return config_from_dict(raw, [f"{k}={v}" for k, v in extra.items()])


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    real = jopt.train.make_train_epoch
    traces = []

    def counting(*args, **kwargs):  # count how often the epoch function is traced
        fn = TraceCounter(real(*args, **kwargs))
        traces.append(fn)
        return fn

    jopt.train.make_train_epoch = counting
    try:
        directory = sweep(_config(tmp))
    finally:
        jopt.train.make_train_epoch = real
    return directory, traces, tmp


def test_grid_times_seeds_is_one_compiled_group(swept):
    directory, traces, _ = swept
    info = read_json(os.path.join(directory, "sweep.json"))
    assert len(info["members"]) == 8
    assert info["num_compiled_groups"] == 1 and info["groups"][0]["vmapped"]
    assert len(traces) == 1 and traces[0].count == 1  # built once, traced once
    for m in info["members"]:
        rows = read_jsonl(os.path.join(directory, m["dir"], "metrics.jsonl"))
        assert len(rows) == 2
        # the member's own learning rate is the one in its optimizer state
        lr = m["point"]["optimizer.learning_rate"]
        assert rows[-1]["hp/sgd/learning_rate"] == pytest.approx(lr)
    results = info["results"]
    assert [r["optimizer.learning_rate"] for r in results] == LRS
    assert all(r["seeds"] == 2 for r in results)
    for name in ("results.md", "results.csv"):
        assert os.path.isfile(os.path.join(directory, name))


@pytest.mark.parametrize("member", [5])
def test_sweep_members_equal_separate_runs(swept, member):
    directory, _, tmp = swept
    info = read_json(os.path.join(directory, "sweep.json"))
    m = info["members"][member]
    lr, seed = m["point"]["optimizer.learning_rate"], m["seed"]
    alone = run(_config(tmp, **{"optimizer.learning_rate": lr, "seed": seed, "sweep.grid": "{}"}))
    a = read_jsonl(os.path.join(alone, "metrics.jsonl"))
    b = read_jsonl(os.path.join(directory, m["dir"], "metrics.jsonl"))
    for key in ("train_loss", "val_loss", "val_accuracy", "test_loss", "grad_norm"):
        np.testing.assert_allclose(
            [r[key] for r in b], [r[key] for r in a], rtol=2e-5, atol=1e-6, err_msg=key
        )


def test_structural_differences_make_groups(tmp_path):
    grid = (
        "{optimizer.learning_rate: [0.1, 0.2], model.hidden: [[4], [8]], "
        "optimizer.momentum: [0.5, 0.9]}"
    )
    cfg = _config(tmp_path, **{"sweep.grid": grid, "sweep.seeds": 2})
    configs = [c for _, c in expand(cfg)]
    assert len(configs) == 16
    groups = group_members(configs)
    assert len(groups) == 2  # width is structural; lr, momentum and seed are vmappable
    assert sorted(len(g) for g in groups) == [8, 8]
    cfg = _config(
        tmp_path,
        **{
            "optimizer": "{name: sgd, learning_rate: 0.1}",
            "sweep.grid": "{optimizer.name: [sgd, adam], batching.batch_size: [64, 128]}",
        },
    )
    assert len(group_members([c for _, c in expand(cfg)])) == 4


def test_parameter_groups_keep_hyperparameters_structural(tmp_path):
    cfg = _config(tmp_path, **{"optimizer.groups": '[{pattern: "head/**", lr_mult: 0.1}]'})
    configs = [c for _, c in expand(cfg)]
    assert len(group_members(configs)) == len(LRS)  # only the seeds share a program

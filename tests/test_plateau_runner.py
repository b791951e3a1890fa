"""Issue 15 in the runner: ``schedule: {name: plateau, ...}`` drops the learning rate logged in
metrics.jsonl exactly as optax's reduce-on-plateau rule says for the logged validation metric
(per member of a vmapped sweep, and on a single run monitoring an accuracy), and schedule-free /
ASGD runs are evaluated with their evaluation parameters (checked by hand from the saved state).
"""

from __future__ import annotations

import glob
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jopt.core import JoptError
from jopt.experiment import config_from_dict, setup, sweep, validate_config
from jopt.experiment._runner import run
from jopt.train import make_eval_fn

BASE = {
    "data": {"name": "digits"},
    "model": {"name": "mlp", "hidden": [16]},
    "batching": {"strategy": "full"},
    "output": {"plots": False, "progress": False, "checkpoints": False},
}


def _config(tmp, **sections):
    raw = json.loads(json.dumps(BASE))
    raw["output"]["runs_dir"] = str(tmp)
    for k, v in sections.items():
        raw[k] = {**raw.get(k, {}), **v}
    return config_from_dict(raw)


def _rows(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def reference_scales(values, factor, patience, cooldown, min_scale, rtol=1e-4, atol=0.0):
    """optax.contrib.reduce_on_plateau's scale after each value (written out independently)."""
    scale, best, count, cool, out = 1.0, np.inf, 0, 0, []
    for v in values:
        if v < (1 - rtol) * best - atol:
            best, count = v, 0
        else:
            count += 1
        if cool > 0:
            cool, count = cool - 1, 0
        elif count == patience:
            scale, count, cool = max(scale * factor, min_scale), 0, cooldown
        out.append(scale)
    return out


RULE = {"factor": 0.5, "patience": 2, "cooldown": 1, "min_scale": 0.2}


def test_plateau_lr_follows_the_rule_per_member(tmp_path):
    # lr 1e-6: the validation loss barely moves (a plateau from epoch 2); lr 0.5 keeps improving.
    # Also a vmapped sweep under train.precision (issue 17): bf16_mixed with highest matmuls.
    lrs = [1e-6, 0.5]
    cfg = _config(
        tmp_path,
        optimizer={"name": "sgd", "learning_rate": 1e-6},
        schedule={"name": "plateau", "metric": "val_loss", **RULE},
        train={"epochs": 10, "precision": "bf16_mixed", "matmul_precision": "highest"},
        sweep={"grid": {"optimizer.learning_rate": lrs}},
    )
    out = sweep(cfg)
    runs = sorted(glob.glob(os.path.join(out, "**", "metrics.jsonl"), recursive=True))
    assert len(runs) == 2
    seen = {}
    for path in runs:
        d = os.path.dirname(path)
        with open(os.path.join(d, "summary.json")) as f:
            summary = json.load(f)
        assert summary["group_size"] == 2  # one vmapped program, a plateau per member
        assert summary["precision"]["precision"] == "bf16_mixed"
        assert summary["precision"]["matmul_precision"] == "highest"
        rows = _rows(d)
        lr0 = rows[0]["learning_rate"]
        got = [r["learning_rate"] / lr0 for r in rows]
        want = reference_scales([r["val_loss"] for r in rows], **RULE)
        np.testing.assert_allclose(got, want, rtol=1e-6)
        seen[lr0] = got
    assert seen[1e-6][-1] == pytest.approx(0.2)  # dropped 0.5, 0.25, then min_scale
    assert seen[1e-6][:4] == pytest.approx([1, 1, 0.5, 0.5])
    assert seen[0.5] == pytest.approx([1.0] * 10)  # it kept improving: never dropped


def test_plateau_on_accuracy_single_run(tmp_path):
    # accuracies are fed as the error rate 1 - accuracy (minimised); a single, unvmapped run
    rule = {"factor": 0.1, "patience": 1, "cooldown": 0, "min_scale": 0.0}
    cfg = _config(
        tmp_path,
        optimizer={"name": "sgd", "learning_rate": 1e-7},
        schedule={"name": "plateau", "metric": "val_accuracy", **rule},
        train={"epochs": 4},
    )
    rows = _rows(run(cfg))
    lr0 = 1e-7
    got = [r["learning_rate"] / lr0 for r in rows]
    want = reference_scales([1.0 - r["val_accuracy"] for r in rows], **rule)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert got[-1] < 1.0


@pytest.mark.parametrize(
    "sections, match",
    [
        ({"schedule": {"name": "plateau", "metric": "test_loss"}}, "schedule.metric must be"),
        ({"schedule": {"name": "plateau", "metric": "val_mse"}}, "schedule.metric must be"),
        (
            {"schedule": {"name": "plateau"}, "data": {"val_fraction": 0.0}},
            "needs a validation split",
        ),
        (
            {"schedule": {"name": "plateau", "metric": "train_eval_loss"}},
            "needs train.eval_train: true",
        ),
        ({"schedule": {"name": "plateau", "factor": 1.5}}, "factor"),
        (
            {"optimizer": {"name": "schedule_free_adamw", "execution": "fused"}},
            "not fused",
        ),
        (
            {"optimizer": {"name": "asgd", "groups": [{"pattern": "head/**", "lr_mult": 2.0}]}},
            "remove the groups",
        ),
    ],
)
def test_refused_in_one_line(tmp_path, sections, match):
    with pytest.raises(JoptError, match=match) as e:
        validate_config(_config(tmp_path, **sections), paths=False)
    assert "\n" not in str(e.value)


def test_plateau_refused_for_test_problems(tmp_path):
    raw = {"problem": {"name": "rosenbrock"}, "schedule": {"name": "plateau"}}
    with pytest.raises(JoptError, match="has none"):
        validate_config(config_from_dict(raw), paths=False)


def _find(tree, key):
    """The first value stored under ``key`` in a nested dict/list (a restored orbax tree)."""
    if isinstance(tree, dict):
        if key in tree:
            return tree[key]
        items = tree.values()
    elif isinstance(tree, (list, tuple)):
        items = tree
    else:
        return None
    for v in items:
        got = _find(v, key)
        if got is not None:
            return got
    return None


@pytest.mark.parametrize("name", ["schedule_free_adamw", "asgd"])
def test_evaluated_with_eval_params(tmp_path, name):
    lr = 1e-2 if name == "schedule_free_adamw" else 0.5
    cfg = _config(
        tmp_path,
        optimizer={"name": name, "learning_rate": lr, **({"t0": 0.0} if name == "asgd" else {})},
        train={"epochs": 3},
        output={"checkpoints": True},
    )
    run_dir = run(cfg)
    last = _rows(run_dir)[-1]
    (path,) = glob.glob(os.path.join(run_dir, "checkpoints", "epoch_000003"))
    saved = ocp.StandardCheckpointer().restore(path)["state"]
    y, opt = saved["params"], saved["opt_state"]
    if name == "asgd":
        x = _find(opt, "ax")  # torch's averaged parameters
    else:
        b1 = float(np.asarray(_find(opt, "b1")))
        z = _find(opt, "z")
        x = jax.tree.map(lambda yy, zz: (yy - (1.0 - b1) * zz) / b1, y, z)
    s = setup(cfg)
    evaluate = make_eval_fn(s.model, s.spec)
    xv, yv = s.data.split("val")
    model_state = saved["model_state"] or {}
    by_hand = evaluate(jax.tree.map(jnp.asarray, x), model_state, jnp.asarray(xv), jnp.asarray(yv))
    on_y = evaluate(jax.tree.map(jnp.asarray, y), model_state, jnp.asarray(xv), jnp.asarray(yv))
    assert float(by_hand["loss"]) == pytest.approx(last["val_loss"], rel=1e-5)
    assert abs(float(on_y["loss"]) - last["val_loss"]) > 1e-4  # the trained y differs

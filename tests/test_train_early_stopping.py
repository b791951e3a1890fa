"""One training loop and one early-stopping rule under ``jopt.train.fit`` and the runner.

``fit`` and the experiment runner both drive ``jopt.train.run_epochs`` and stop with
``jopt.train.EarlyStopping``; they must stop at the same epoch.

Both entry points see the same scripted metric history (fit through ``on_epoch``, which runs
before early stopping reads the record; the runner through its evaluation function) and must
pick the same best epoch and stop after the same number of epochs. Patience counts epochs in
both, also when the runner evaluates only every other epoch.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import jopt
from jopt import JoptError
from jopt.data import Batching, load_dataset
from jopt.experiment import config_from_dict, setup
from jopt.experiment._trainer import GroupTrainer, Member
from jopt.models import make_model
from jopt.train import EarlyStopping, fit, improves, metric_mode

HISTORIES = {
    "dip then plateau": [1.0, 0.8, 0.7, 0.75, 0.7, 0.71, 0.72, 0.73, 0.6, 0.5],
    "nan then recovers": [math.nan, 0.9, 0.95, 0.96, 0.97, 0.98, 0.99, 1.0, 1.0, 1.0],
    "keeps improving": [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1],
}
PATIENCE = 3


def _expected(history, patience, every=1):
    """By hand: best epoch and the epoch training stops (len(history) if never)."""
    best, best_epoch = None, None
    for epoch, v in enumerate(history, start=1):
        if epoch % every and epoch != len(history):
            continue
        if not math.isnan(v) and (best is None or v < best):
            best, best_epoch = v, epoch
        elif best_epoch is not None and epoch - best_epoch >= patience:
            return best_epoch, epoch
    return best_epoch, len(history)


def _fit_stop(history):
    data = load_dataset("iris", seed=0, val_fraction=0.2)
    model = make_model("mlp", num_outputs=3, hidden=[4])

    def script(epoch, rec, state):
        rec["val_loss"] = history[epoch - 1]

    r = fit(
        model,
        jopt.sgd(0.01),
        data,
        epochs=len(history),
        batching=Batching("full"),
        early_stopping=EarlyStopping("val_loss", patience=PATIENCE),
        eval_splits=("val",),
        on_epoch=script,
    )
    return r.best_epoch, len(r.history)


def _runner_stop(history, every=1):
    config = config_from_dict(
        {
            "data": {"name": "iris", "val_fraction": 0.2, "test_fraction": 0.0},
            "model": {"name": "mlp", "hidden": [4]},
            "optimizer": {"name": "sgd", "learning_rate": 0.01},
            "batching": {"strategy": "full"},
            "regularization": {"early_stopping": {"metric": "val_loss", "patience": PATIENCE}},
            # a scripted NaN is not divergence here (the default policy would end the run)
            "train": {"epochs": len(history), "eval_every": every, "nonfinite": "ignore"},
            "output": {"progress": False, "checkpoints": False, "plots": False},
        }
    )
    member = Member(config)
    trainer = GroupTrainer([member], setup(config))
    real = trainer.evaluate
    evaluated = [e for e in range(1, len(history) + 1) if e % every == 0 or e == len(history)]
    values = iter(history[e - 1] for e in evaluated)  # the runner evaluates only these epochs

    def scripted(*args):  # (params, model_state, [opt_state,] splits)
        out = real(*args)
        # the group's metrics carry a leading member axis (one member here)
        out["val"] = {**out["val"], "loss": np.full_like(out["val"]["loss"], next(values))}
        return out

    trainer.evaluate = scripted
    trainer.run()
    return member.best_epoch, member.last_epoch, member.stopped_early


@pytest.mark.parametrize("name", list(HISTORIES))
def test_fit_and_runner_stop_at_the_same_epoch(name):
    history = HISTORIES[name]
    want_best, want_stop = _expected(history, PATIENCE)
    assert _fit_stop(history) == (want_best, want_stop)
    best, last, stopped = _runner_stop(history)
    assert (best, last) == (want_best, want_stop)
    assert stopped == (want_stop < len(history))


def test_runner_patience_counts_epochs_not_evaluations():
    # evaluated at epochs 2, 4, 6, 8, 10: best at 2, no gain after; patience 3 epochs -> the
    # first evaluation at least 3 epochs after the best (epoch 6) stops the run, where
    # counting bad evaluations would have waited until epoch 8.
    history = [9.0, 1.0, 9.0, 2.0, 9.0, 3.0, 9.0, 4.0, 9.0, 5.0]
    assert _expected(history, PATIENCE, every=2) == (2, 6)
    best, last, stopped = _runner_stop(history, every=2)
    assert (best, last, stopped) == (2, 6, True)


def test_one_mode_table():
    assert metric_mode("val_loss") == "min" and metric_mode("train_accuracy") == "max"
    assert metric_mode("val_mse") == "min" and metric_mode("val_accuracy", "min") == "min"
    with pytest.raises(JoptError, match="minimised or maximised"):
        metric_mode("val_f1")
    with pytest.raises(JoptError, match="min or max"):
        EarlyStopping("val_loss", patience=1, mode="up")
    assert improves("max", 0.9, 0.8) and not improves("max", 0.8, 0.8)
    assert improves("min", 0.7, None) and not improves("min", math.nan, 1.0)
    assert not improves("min", 0.95, 1.0, min_delta=0.1)


def test_the_host_loop_cadence_and_stop():
    """``run_epochs``, the loop under both entry points: evaluation every ``eval_every`` epochs
    and after the last, resumption from ``start_epoch``, and a callback that stops it."""
    from jopt.train import run_epochs

    def epoch_fn(state, step):
        return state + step, {"loss": np.float32(state)}

    seen = []

    def log(entry, state):
        seen.append((entry.epoch, entry.evaluated, bool(entry.evals), int(state)))
        return entry.epoch == 6

    final = run_epochs(
        epoch_fn,
        0,
        (1,),
        epochs=7,
        start_epoch=1,
        on_epoch=log,
        evaluate=lambda s: {"val": {"loss": s}},
        eval_every=3,
    )
    assert final == 5  # epochs 2..6 ran, the callback stopped after 6
    assert seen == [(2, False, False, 1), (3, True, True, 2), (4, False, False, 3),
                    (5, False, False, 4), (6, True, True, 5)]  # fmt: skip

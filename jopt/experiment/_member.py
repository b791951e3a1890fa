"""One run of a group and the per-member rules applied to it after every epoch.

:class:`Member` holds a run's bookkeeping (rows, best epoch, early stopping, divergence);
:func:`early_stopping` gives the run's ``jopt.train.EarlyStopping`` (the one rule ``fit`` uses
too) and :func:`divergence` applies ``train.nonfinite`` to one member's epoch.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from jopt.experiment._schema import Config


@dataclasses.dataclass
class Member:
    """One run of a group and its bookkeeping (JSON-serialisable except ``best_vars``)."""

    config: Config
    run_dir: str | None = None
    rows: list[dict] = dataclasses.field(default_factory=list)
    active: bool = True
    best_value: float | None = None
    best_epoch: int | None = None
    bad_evals: int = 0  # evaluations since the best one (informational; patience counts epochs)
    stopped_early: bool = False
    last_epoch: int = 0
    best_vars: Any = None  # host copy of (params, model_state) at the best epoch
    final_state: Any = None
    # train.nonfinite: where the run diverged ({epoch, step, quantity, ...}) and the run of
    # consecutive non-finite steps carried from the previous epoch
    diverged: dict | None = None
    skip_run: int = 0
    # False in processes other than 0 of a multi-process job: they train and join the
    # (collective) checkpoint saves, but process 0 alone writes logs and summaries.
    writes: bool = True
    tracker: Any = None  # a TensorBoardTracker when output.tensorboard (this process writes)

    def bookkeeping(self) -> dict:
        return {k: getattr(self, k) for k in BOOKKEEPING}


# the Member fields a checkpoint's .json records and a resumed run restores
BOOKKEEPING = (
    "last_epoch",
    "best_value",
    "best_epoch",
    "bad_evals",
    "stopped_early",
    "active",
    "diverged",
    "skip_run",
)


def finite_float(x: Any) -> float | None:
    """``x`` as a Python float, None when it is not finite (JSON has no NaN)."""
    v = float(np.asarray(x))
    return v if math.isfinite(v) else None


def monitor_metric(config: Config, has_val: bool) -> str:
    """The metric that picks the best epoch: early stopping's, else validation loss."""
    es = config.regularization.early_stopping
    if es.patience > 0:
        return es.metric
    return "val_loss" if has_val else "train_loss"


def early_stopping(config: Config, metric: str) -> Any:
    """The run's ``jopt.train.EarlyStopping`` (the one rule ``fit`` uses too), monitoring
    ``metric``. Without patience it only tracks the best epoch: its patience is then longer
    than any run, so it never stops."""
    from jopt.train import EarlyStopping

    es = config.regularization.early_stopping
    return EarlyStopping(
        metric=metric,
        patience=es.patience if es.patience > 0 else 2**62,
        mode=es.mode if es.patience > 0 else None,
        min_delta=es.min_delta,
        restore_best=es.restore_best,
    )


def restores_best(config: Config) -> bool:
    """Whether early stopping hands back the best epoch's parameters."""
    es = config.regularization.early_stopping
    return es.patience > 0 and es.restore_best


def diverged_record(epoch: int, step: int, what: str, run: int, policy: str, limit: int) -> dict:
    """The summary's ``diverged`` record and its one line."""
    why = f"non-finite {what}"
    if what in ("gradient", "loss", "loss and gradient") and policy == "skip":
        why += f" ({run} steps in a row, more than train.max_consecutive_skips={limit})"
    line = (
        f"diverged at step {step} (epoch {epoch}): {why}; lower the learning rate, clip "
        "gradients or check the data"
    )
    return {
        "epoch": epoch,
        "step": step,
        "quantity": what,
        "consecutive": run,
        "policy": policy,
        "message": line,
    }


def divergence(
    mb: Member,
    row: dict,
    *,
    epoch: int,
    steps_per_epoch: int,
    finite: Any,
    loss: Any,
    opt_state: Any,
    metric: str,
    monitored: bool,
) -> dict | None:
    """``train.nonfinite`` for one member after ``epoch``: where it diverged, else None.

    ``finite``/``loss``: the member's per-step guard flags and losses of the epoch; ``row``
    gets ``nonfinite_steps``. ``skip``: more than ``max_consecutive_skips`` steps in a row with
    a non-finite gradient (they were skipped: params and state unchanged; the run carries
    across epochs in ``mb.skip_run``); ``stop``: the first step with a non-finite loss or
    gradient. Under both, a non-finite monitored ``metric`` (``val_loss``...) is divergence
    too. ``jopt.check_state`` (the guard's own rule) runs on the member's ``opt_state``.
    """
    from jopt.combinators import NonFiniteError, check_state

    t = mb.config.train
    finite = np.asarray(finite).reshape(-1)
    loss_ok = np.isfinite(np.asarray(loss)).reshape(-1)
    row["nonfinite_steps"] = int(np.sum(~finite | ~loss_ok))
    if t.nonfinite == "ignore":
        return None
    limit = 0 if t.nonfinite == "stop" else t.max_consecutive_skips
    run = mb.skip_run
    for i in range(len(finite)):
        bad = not finite[i] or (t.nonfinite == "stop" and not loss_ok[i])
        run = run + 1 if bad else 0
        if run > limit:
            what = "gradient" if loss_ok[i] else "loss" if finite[i] else "loss and gradient"
            step = (epoch - 1) * steps_per_epoch + i + 1
            return diverged_record(epoch, step, what, run, t.nonfinite, limit)
    mb.skip_run = run
    end = epoch * steps_per_epoch
    try:
        check_state(opt_state)
    except NonFiniteError:
        return diverged_record(epoch, end, "gradient", run, t.nonfinite, limit)
    if monitored and metric in row and row[metric] is None:
        return diverged_record(epoch, end, metric, 0, t.nonfinite, limit)
    return None

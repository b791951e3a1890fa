"""``fit``: the driver. Builds the epoch once, jits it once (state donated), then runs the one
host loop (:func:`jopt.train.run_epochs`) with a callback for logging, early stopping and the
progress bar."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jopt.core.errors import JoptError
from jopt.data import Augment, Batching, Dataset, check_labels
from jopt.train._eval import make_eval_fn
from jopt.train._loop import run_epochs
from jopt.train._state import TrainState, init_train_state
from jopt.train._step import LossSpec, make_train_epoch

METRIC_MODES = {"loss": "min", "mse": "min", "accuracy": "max"}
"""How each metric kind is optimised, by the name's last ``_`` part (``val_accuracy`` -> max)."""


def metric_mode(metric: str, mode: str | None = None) -> str:
    """``mode`` when given, else the mode of ``metric``'s kind (:data:`METRIC_MODES`)."""
    if mode is None:
        mode = METRIC_MODES.get(metric.rsplit("_", 1)[-1])
        if mode is None:
            raise JoptError(
                f"cannot tell whether {metric!r} is minimised or maximised; give mode='min' or "
                f"'max' (known kinds: {', '.join(METRIC_MODES)})"
            )
    if mode not in ("min", "max"):
        raise JoptError(f"early_stopping.mode must be min or max, got {mode!r}")
    return mode


def improves(mode: str, value: float | None, best: float | None, min_delta: float = 0.0) -> bool:
    """Whether ``value`` beats ``best`` by more than ``min_delta`` (``None``/NaN never does;
    anything finite beats no best yet)."""
    if value is None or math.isnan(value):
        return False
    if best is None or math.isnan(best):
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


@dataclasses.dataclass(frozen=True)
class EarlyStopping:
    """Stop when ``metric`` has not improved by ``min_delta`` for ``patience`` epochs.

    The one early-stopping rule of jopt: :func:`fit` and the experiment runner (``jopt run``,
    ``regularization.early_stopping``) both call :meth:`update` once per evaluated epoch.
    Patience counts *epochs* since the best one, also when evaluation is not every epoch.
    ``mode`` is ``"min"`` or ``"max"``; by default it is the mode of the metric's kind
    (:data:`METRIC_MODES`: losses min, accuracies max). With ``restore_best`` the returned
    state holds the params (and batch statistics) of the best epoch.
    """

    metric: str = "val_loss"
    patience: int = 10
    mode: str | None = None
    min_delta: float = 0.0
    restore_best: bool = True

    def __post_init__(self):
        if self.patience < 1:
            raise JoptError(f"early_stopping.patience must be >= 1, got {self.patience}")
        object.__setattr__(self, "mode", metric_mode(self.metric, self.mode))

    def better(self, value: float | None, best: float | None) -> bool:
        return improves(self.mode, value, best, self.min_delta)

    def update(
        self, epoch: int, value: float | None, best_value: float | None, best_epoch: int | None
    ) -> tuple[bool, float | None, int | None, bool]:
        """One evaluated epoch: ``(improved, best_value, best_epoch, stop)``.

        ``stop`` is True once ``patience`` epochs have passed since the best epoch. A NaN or
        missing ``value`` never stops: a non-finite metric is divergence (the caller's
        non-finite policy), not a plateau.
        """
        if value is None or math.isnan(value):
            return False, best_value, best_epoch, False
        if self.better(value, best_value):
            return True, value, epoch, False
        stop = best_epoch is not None and epoch - best_epoch >= self.patience
        return False, best_value, best_epoch, stop


@dataclasses.dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes:
        state: the final train state (best params restored if early stopping asked for it).
        history: one dict of floats per epoch (``epoch``, ``step``, ``train_loss``,
            ``train_accuracy``, ``val_loss``, ``val_accuracy``, ``test_*``, ``opt/*``, ``hp/*``,
            ``epoch_time``: the runner's ``metrics.jsonl`` vocabulary).
        best_epoch: the epoch (1-based) with the best early-stopping metric (``None`` without one).
        stopped_early: whether patience ran out before ``epochs``.
        steps_per_epoch: optimizer steps per epoch.
        timings: ``compile_s`` (epoch + eval functions), ``train_s`` (epochs only), ``eval_s``,
            ``steps_per_s`` (train steps per second, compile excluded).
    """

    state: TrainState
    history: list[dict[str, float]]
    best_epoch: int | None
    stopped_early: bool
    steps_per_epoch: int
    timings: dict[str, float]


def _validate(data: Dataset) -> None:
    for split in ("train", "val", "test"):
        x, y = data.split(split)
        if len(x) != len(y):
            raise JoptError(f"{split} split: {len(x)} inputs but {len(y)} labels")
        if len(x) and tuple(x.shape[1:]) != tuple(data.input_shape):
            raise JoptError(
                f"{split} split: inputs of shape {x.shape[1:]}, expected {data.input_shape}"
            )
        if len(x) and not np.all(np.isfinite(x)):
            raise JoptError(f"{split} split: inputs contain NaN or inf")
        if data.task == "classification":
            check_labels(np.asarray(y), data.num_classes, f"{split} split")


def optimizer_logs(opt_state: Any) -> dict[str, np.ndarray]:
    """What the optimizer state reports, as host arrays: ``opt/<name>`` from
    ``jopt.metrics`` and ``hp/<name>`` from ``jopt.get_hparams`` (a leading member axis when
    the state is stacked). ``fit`` and the experiment runner both log these keys."""
    from jopt.combinators import get_hparams, metrics

    out: dict[str, np.ndarray] = {}
    for prefix, fn in (("opt/", metrics), ("hp/", get_hparams)):
        for k, v in dict(fn(opt_state)).items():
            out[prefix + k] = np.asarray(v)
    return out


def _opt_logs(opt_state) -> dict[str, Any]:
    return {
        k: float(a) if a.ndim == 0 else a.tolist() for k, a in optimizer_logs(opt_state).items()
    }


def fit(
    model: nn.Module,
    tx: Any,
    data: Dataset,
    *,
    epochs: int,
    key: jax.Array | int = 0,
    batching: Batching | None = None,
    loss: LossSpec | None = None,
    augment: Augment | None = None,
    early_stopping: EarlyStopping | None = None,
    eval_splits: tuple[str, ...] = ("val", "test"),
    state: TrainState | None = None,
    on_epoch: Callable[[int, dict, TrainState], bool | None] | None = None,
    progress: bool = False,
) -> FitResult:
    """Train ``model`` with optimizer ``tx`` on ``data`` for up to ``epochs`` epochs.

    Everything is checked before training starts (batch size vs data, labels in range, NaN,
    shapes, the early-stopping metric). The epoch function is built once and jitted once with
    the state donated, compiled ahead of time (so ``compile_s`` is separate from the step rate).
    Each epoch then runs as one dispatch; evaluation, logging, ``on_epoch`` and early stopping
    run on the host between epochs.

    Args:
        key: PRNG key or int seed for init, shuffling, dropout and augmentation.
        batching: default ``Batching("minibatch", 32)``.
        loss: default: cross-entropy (classification) or MSE (regression), no penalty.
        eval_splits: splits evaluated each epoch (``"train"`` is recorded as ``train_eval_*``).
        state: resume from this state instead of initializing; its buffers are donated.
        on_epoch: ``on_epoch(epoch, record, state)`` after each epoch (1-based); the state is
            only valid during the call (it is donated to the next epoch). Return True to stop.
        progress: show a tqdm bar of steps with the train step rate (compile excluded).
    """
    if int(epochs) < 0:
        raise JoptError(f"epochs must be >= 0, got {epochs}")
    batching = batching or Batching()
    loss = loss or LossSpec(task=data.task, num_classes=data.num_classes)
    if loss.task != data.task:
        raise JoptError(f"loss is for a {loss.task} task but the data set is {data.task}")
    _validate(data)
    n = len(data.y_train)
    steps_per_epoch = batching.steps_per_epoch(n)  # raises if the batch is too large
    for s in eval_splits:
        data.split(s)
    has = {s: len(data.split(s)[1]) > 0 for s in eval_splits}
    if early_stopping is not None:
        split = early_stopping.metric.split("_")[0]
        suffix = early_stopping.metric[len(split) + 1 :]
        allowed_suffix = ("loss", "accuracy") if data.task == "classification" else ("loss", "mse")
        ok = split in ("train", "val", "test") and suffix in allowed_suffix
        if ok and split != "train" and not has.get(split, False):
            raise JoptError(
                f"early stopping on {early_stopping.metric!r} needs a non-empty {split} split "
                f"in eval_splits"
            )
        if not ok:
            raise JoptError(
                f"unknown early-stopping metric {early_stopping.metric!r}; allowed: "
                f"train_loss, val_loss, val_{allowed_suffix[1]}, test_..."
            )
    if isinstance(key, int):
        key = jax.random.key(key)

    x_tr, y_tr = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    if state is None:
        state = init_train_state(model, tx, x_tr[:1], key)
    epoch_fn = make_train_epoch(model, tx, loss, batching, augment=augment, kind=data.kind)
    eval_fn = make_eval_fn(model, loss)

    t0 = time.perf_counter()
    compiled = jax.jit(epoch_fn, donate_argnums=0).lower(state, x_tr, y_tr).compile()
    split_arrays = {}
    eval_compiled = {}
    for s in eval_splits:
        if has[s]:
            xs, ys = (jnp.asarray(a) for a in data.split(s))
            split_arrays[s] = (xs, ys)
            eval_compiled[s] = (
                jax.jit(eval_fn).lower(state.params, state.model_state, xs, ys).compile()
            )
    compile_s = time.perf_counter() - t0

    history: list[dict[str, float]] = []
    es: dict[str, Any] = {"best": None, "epoch": None, "vars": None, "stopped": False}
    clock = {"train": 0.0, "eval": 0.0}
    bar = tqdm(total=int(epochs) * steps_per_epoch, unit="step", disable=not progress, leave=False)

    def evaluate(state):
        return {
            s: eval_compiled[s](state.params, state.model_state, xs, ys)
            for s, (xs, ys) in split_arrays.items()
        }

    def record(log, state) -> bool:
        clock["train"] += log.epoch_time
        clock["eval"] += log.eval_time
        rec: dict[str, Any] = {"epoch": log.epoch, "step": int(state.step)}
        rec["epoch_time"] = log.epoch_time
        rec.update({k: float(v) for k, v in log.metrics.items() if np.ndim(v) == 0})
        for s, r in log.evals.items():
            name = "train_eval" if s == "train" else s
            rec.update({f"{name}_{k}": float(v) for k, v in r.items()})
        rec.update(_opt_logs(state.opt_state))
        history.append(rec)
        bar.update(steps_per_epoch)
        bar.set_postfix(
            loss=f"{rec['train_loss']:.4g}",
            steps_s=f"{len(history) * steps_per_epoch / clock['train']:.0f}",
        )
        if on_epoch is not None and on_epoch(log.epoch, rec, state):
            return True
        if early_stopping is None:
            return False
        improved, es["best"], es["epoch"], stop = early_stopping.update(
            log.epoch, rec[early_stopping.metric], es["best"], es["epoch"]
        )
        if improved and early_stopping.restore_best:
            # Copies: the live state's buffers are donated to the next epoch.
            es["vars"] = jax.tree.map(jnp.copy, (state.params, state.model_state))
        es["stopped"] = bool(stop)
        return bool(stop)

    try:
        state = run_epochs(
            compiled, state, (x_tr, y_tr), epochs=int(epochs), on_epoch=record, evaluate=evaluate
        )
    finally:
        bar.close()
    best_epoch, best_vars, stopped = es["epoch"], es["vars"], es["stopped"]
    train_s, eval_s = clock["train"], clock["eval"]
    if best_vars is not None:
        state = state._replace(params=best_vars[0], model_state=best_vars[1])
    steps = len(history) * steps_per_epoch
    timings = {
        "compile_s": compile_s,
        "train_s": train_s,
        "eval_s": eval_s,
        "steps_per_s": steps / train_s if train_s > 0 else 0.0,
    }
    return FitResult(state, history, best_epoch, stopped, steps_per_epoch, timings)

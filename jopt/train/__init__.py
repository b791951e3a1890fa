"""Training: losses and penalties, the train state, the scan-fused epoch, evaluation and ``fit``."""

from jopt.train._eval import make_eval_fn, make_eval_sums
from jopt.train._fit import (
    METRIC_MODES,
    EarlyStopping,
    FitResult,
    fit,
    improves,
    metric_mode,
    optimizer_logs,
)
from jopt.train._loop import EpochLog, run_epochs
from jopt.train._losses import (
    LOSSES,
    cross_entropy,
    default_penalty_mask,
    huber,
    make_loss,
    mse,
    one_hot_targets,
    penalty,
)
from jopt.train._precision import (
    apply_precision,
    precision_loss,
    precision_optimizer,
    precision_params,
    under_matmul_precision,
)
from jopt.train._recipes import RECIPES, run_recipe
from jopt.train._state import TrainState, init_train_state
from jopt.train._step import (
    LossSpec,
    apply_model,
    make_train_epoch,
    make_train_step,
    pack_train_state,
    unpack_train_state,
    with_offsets_argument,
)
from jopt.train._stream import StreamEpoch, evaluate_stream, make_stream_step

__all__ = [
    "LOSSES",
    "METRIC_MODES",
    "RECIPES",
    "EarlyStopping",
    "EpochLog",
    "FitResult",
    "LossSpec",
    "StreamEpoch",
    "TrainState",
    "apply_model",
    "apply_precision",
    "cross_entropy",
    "default_penalty_mask",
    "evaluate_stream",
    "fit",
    "huber",
    "improves",
    "init_train_state",
    "make_eval_fn",
    "make_eval_sums",
    "make_loss",
    "make_stream_step",
    "make_train_epoch",
    "make_train_step",
    "metric_mode",
    "mse",
    "one_hot_targets",
    "optimizer_logs",
    "pack_train_state",
    "penalty",
    "precision_loss",
    "precision_optimizer",
    "precision_params",
    "run_epochs",
    "run_recipe",
    "under_matmul_precision",
    "unpack_train_state",
    "with_offsets_argument",
]

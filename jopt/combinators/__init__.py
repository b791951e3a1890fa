"""Composition beyond optax: hyperparameters as state, parameter groups, robust steps, metrics."""

from jopt.combinators._hparams import (
    HparamsState,
    HparamsTransformation,
    get_hparams,
    set_hparams,
    with_hparams,
)
from jopt.combinators._metrics import MonitorState, TapState, metrics, monitor, tap

__all__ = [
    "HparamsState",
    "HparamsTransformation",
    "MonitorState",
    "TapState",
    "get_hparams",
    "metrics",
    "monitor",
    "set_hparams",
    "tap",
    "with_hparams",
]

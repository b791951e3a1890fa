"""Composition beyond optax: hyperparameters as state, parameter groups, robust steps, metrics."""

from jopt.combinators._averaging import EmaState, LookaheadState, ema, ema_params, lookahead
from jopt.combinators._groups import GroupsState, GroupsTransformation, coverage, describe, groups
from jopt.combinators._hparams import (
    HparamsState,
    HparamsTransformation,
    get_hparams,
    set_hparams,
    with_hparams,
)
from jopt.combinators._metrics import MonitorState, TapState, metrics, monitor, tap
from jopt.combinators._precision import with_precision
from jopt.combinators._reset import reset
from jopt.combinators._robust import (
    AccumulateState,
    NonFiniteError,
    SkipState,
    accumulate,
    check_state,
    skip_nonfinite,
)

__all__ = [
    "AccumulateState",
    "EmaState",
    "GroupsState",
    "GroupsTransformation",
    "HparamsState",
    "HparamsTransformation",
    "LookaheadState",
    "MonitorState",
    "NonFiniteError",
    "SkipState",
    "TapState",
    "accumulate",
    "check_state",
    "coverage",
    "describe",
    "ema",
    "ema_params",
    "get_hparams",
    "groups",
    "lookahead",
    "metrics",
    "monitor",
    "reset",
    "set_hparams",
    "skip_nonfinite",
    "tap",
    "with_hparams",
    "with_precision",
]

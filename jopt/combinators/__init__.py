"""Composition beyond optax: hyperparameters as state, parameter groups, robust steps, metrics."""

from jopt.combinators._averaging import (
    LookaheadSlowState,
    ParamEmaState,
    ema_params,
    with_lookahead,
    with_param_ema,
)
from jopt.combinators._groups import GroupsState, GroupsTransformation, coverage, describe, groups
from jopt.combinators._hparams import (
    HparamsState,
    HparamsTransformation,
    get_hparams,
    set_hparams,
    with_hparams,
)
from jopt.combinators._metrics import NormsState, TapState, metrics, tap, with_norms
from jopt.combinators._precision import with_precision
from jopt.combinators._reset import reset
from jopt.combinators._robust import (
    AccumulateState,
    NonFiniteError,
    SkipState,
    SkipTransformation,
    accumulate,
    check_state,
    skip_nonfinite,
    update_and_apply,
)

__all__ = [
    "AccumulateState",
    "GroupsState",
    "GroupsTransformation",
    "HparamsState",
    "HparamsTransformation",
    "LookaheadSlowState",
    "NonFiniteError",
    "NormsState",
    "ParamEmaState",
    "SkipState",
    "SkipTransformation",
    "TapState",
    "accumulate",
    "check_state",
    "coverage",
    "describe",
    "ema_params",
    "get_hparams",
    "groups",
    "metrics",
    "reset",
    "set_hparams",
    "skip_nonfinite",
    "tap",
    "update_and_apply",
    "with_hparams",
    "with_lookahead",
    "with_norms",
    "with_param_ema",
    "with_precision",
]

# --- optax's wrapper names ---
from jopt.combinators._optax_api import (
    MultiSteps,
    apply_if_finite,
    freeze,
    multi_transform,
    partition,
)

__all__ += [
    "MultiSteps",
    "apply_if_finite",
    "freeze",
    "multi_transform",
    "partition",
]
# --- /optax's wrapper names ---

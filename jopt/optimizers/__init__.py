"""User-facing optimizers: short chains of building blocks."""

from jopt.optimizers._adam import adam, adamw, amsgrad, nadam
from jopt.optimizers._adam_variants import adamax, lamb, radam
from jopt.optimizers._lion import lion
from jopt.optimizers._rms import adadelta, adagrad, rmsprop
from jopt.optimizers._sgd import sgd

__all__ = [
    "adadelta",
    "adagrad",
    "adam",
    "adamax",
    "adamw",
    "amsgrad",
    "lamb",
    "lion",
    "nadam",
    "radam",
    "rmsprop",
    "sgd",
]

# --- issue 15 (H3b): contrib, L-BFGS, torch/Keras extras ---
from jopt.optimizers._contrib import DAdaptState, adopt, ademamix, dadapt_adamw, prodigy
from jopt.optimizers._wrapped import (
    MechanicState,
    ScheduleFreeState,
    mechanize,
    schedule_free,
    schedule_free_adamw,
    schedule_free_eval_params,
    schedule_free_sgd,
)

__all__ += [
    "DAdaptState",
    "MechanicState",
    "ScheduleFreeState",
    "adopt",
    "ademamix",
    "dadapt_adamw",
    "mechanize",
    "prodigy",
    "schedule_free",
    "schedule_free_adamw",
    "schedule_free_eval_params",
    "schedule_free_sgd",
]
# --- /issue 15 (H3b) ---

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

# --- optax catalogue (issue 15, H3a) ---
from jopt.optimizers._adaptive import (
    adabelief,
    adamaxw,
    adan,
    nadamw,
    noisy_sgd,
    optimistic_adam,
    optimistic_adam_v2,
    optimistic_gradient_descent,
    polyak_sgd,
    rprop,
    sign_sgd,
    signum,
    yogi,
)
from jopt.optimizers._layerwise import adafactor, fromage, lars, novograd, sm3

__all__ += [
    "adabelief",
    "adafactor",
    "adamaxw",
    "adan",
    "fromage",
    "lars",
    "nadamw",
    "noisy_sgd",
    "novograd",
    "optimistic_adam",
    "optimistic_adam_v2",
    "optimistic_gradient_descent",
    "polyak_sgd",
    "rprop",
    "sign_sgd",
    "signum",
    "sm3",
    "yogi",
]
# --- /optax catalogue ---

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

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

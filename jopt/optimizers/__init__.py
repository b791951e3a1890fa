"""User-facing optimizers: short chains of building blocks."""

from jopt.optimizers._adam import adam
from jopt.optimizers._sgd import sgd

__all__ = ["adam", "sgd"]

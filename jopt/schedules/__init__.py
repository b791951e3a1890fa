"""Schedules: pure ``count -> value`` functions returning float32 scalars."""

from jopt.schedules._basic import Schedule, constant, join_schedules, piecewise_constant, step_decay
from jopt.schedules._decay import (
    cosine_decay,
    exponential_decay,
    linear,
    one_cycle,
    polynomial,
    warmup_cosine_decay,
)

__all__ = [
    "Schedule",
    "constant",
    "cosine_decay",
    "exponential_decay",
    "join_schedules",
    "linear",
    "one_cycle",
    "piecewise_constant",
    "polynomial",
    "step_decay",
    "warmup_cosine_decay",
]
